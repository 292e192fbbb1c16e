"""The candidate pool: generated (or imported) clips waiting to be compared, on disk.

Layout: `root/videos/<clip_id>.mp4` and `root/manifest.jsonl`, one `ClipRecord` a line, written with the same
append-only, fsynced, file-locked log as the votes (`JsonLinesLog`). What is unusual:
- Clip ids are content addressed (sha1 of prompt, settings and the video bytes), so importing the same folder
  twice, or re-running an interrupted `build_pool`, never duplicates a clip.
- A video is copied to a temporary name, fsynced and renamed before its manifest line is appended: a crash
  leaves at most an orphan video file, never a manifest line without its video.
- `build_pool` resumes: a (prompt, seed, settings) job already in the manifest is not generated again.
- This module never decodes video; the generator is injected (`generate_fn`), so tests use dummy bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import huggingface_hub

from huvidpo.annotation.votes import JsonLinesLog, utc_now_iso

CATEGORY_PRESETS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "birds fly": (
            "a bird flying over the lake",
            "a flock of birds flying across the sunset sky",
            "an eagle soaring above the mountains",
        ),
        "firework": (
            "fireworks exploding in the night sky",
            "colorful fireworks over a city skyline",
            "fireworks bursting above the river",
        ),
        "helicopter": (
            "a helicopter flying over the city",
            "a helicopter taking off from a helipad",
            "a helicopter hovering above the sea",
        ),
        "horse run": (
            "a horse running on the grassland",
            "a white horse galloping on the beach",
            "a brown horse running in the snow",
        ),
        "play the guitar": (
            "a man playing the guitar on the street",
            "a woman playing the guitar in a park",
            "a boy playing an acoustic guitar on a sofa",
        ),
        "rain": (
            "rain falling on a quiet street",
            "heavy rain over the forest",
            "raindrops falling on a window",
        ),
        "turn to smile": (
            "a woman turning to smile",
            "a little girl turning around and smiling",
            "an old man turning to smile at the camera",
        ),
        "waterfall": (
            "a waterfall flowing down the cliff",
            "a waterfall in the tropical forest",
            "a huge waterfall in the mountains",
        ),
    }
)
ALL_PRESETS = "all"
MANIFEST_NAME = "manifest.jsonl"
VIDEOS_DIR_NAME = "videos"
VIDEO_SUFFIX = ".mp4"
_CLIP_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class UnknownClipError(KeyError, ValueError):
    """A clip id that is not in the pool; both a `KeyError` (lookup) and a `ValueError` (bad user input)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown clip id"


@dataclass(frozen=True)
class ClipRecord:
    """One clip of the pool. `video` is relative to the pool root; `settings` holds how it was made."""

    clip_id: str
    prompt: str
    video: str
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=utc_now_iso)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clip_id": self.clip_id,
            "prompt": self.prompt,
            "video": self.video,
            "settings": dict(self.settings),
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "ClipRecord":
        if not isinstance(record, dict) or not isinstance(record.get("settings", {}), dict):
            raise ValueError(f"not a clip record: {record!r}")
        return cls(
            clip_id=str(record["clip_id"]),
            prompt=str(record["prompt"]),
            video=str(record["video"]),
            settings=dict(record.get("settings", {})),
            created_at=str(record.get("created_at", "")),
        )


class CandidatePool:
    """A folder of clips plus an append-only manifest; safe for several threads and processes."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()
        self.videos_dir = self.root / VIDEOS_DIR_NAME
        self.manifest_path = self.root / MANIFEST_NAME
        self._log: JsonLinesLog[ClipRecord] = JsonLinesLog(self.manifest_path, ClipRecord.from_dict)

    def add_clip(
        self,
        prompt: str,
        video: str | os.PathLike | bytes,
        settings: dict[str, Any] | None = None,
        clip_id: str | None = None,
    ) -> ClipRecord:
        """Copy a video (a file path or its bytes) into the pool and record it; an identical clip is returned as is."""
        prompt = _clean_prompt(prompt)
        settings = _json_roundtrip(settings or {})
        self.videos_dir.mkdir(parents=True, exist_ok=True)
        suffix = VIDEO_SUFFIX if isinstance(video, bytes) else (Path(video).suffix or VIDEO_SUFFIX)
        staged_path, video_sha1 = self._stage_video(video, suffix)
        clip_id = _validated_clip_id(clip_id) if clip_id else _content_clip_id(prompt, settings, video_sha1)
        record = ClipRecord(clip_id, prompt, f"{VIDEOS_DIR_NAME}/{clip_id}{suffix}", settings)
        try:
            with self._log.transaction() as transaction:
                existing = {clip.clip_id: clip for clip in transaction.records()}.get(clip_id)
                if existing is not None:
                    if existing.prompt != prompt or existing.settings != settings:
                        raise ValueError(f"clip id {clip_id!r} is already in the pool with another prompt or settings")
                    return existing
                os.replace(staged_path, self.root / record.video)
                transaction.append([record.to_dict()])
                return record
        finally:
            staged_path.unlink(missing_ok=True)

    def clips(self) -> list[ClipRecord]:
        """All clips in the order they were added."""
        unique: dict[str, ClipRecord] = {}
        for clip in self._log.read():
            unique.setdefault(clip.clip_id, clip)
        return list(unique.values())

    def get(self, clip_id: str) -> ClipRecord:
        for clip in self.clips():
            if clip.clip_id == clip_id:
                return clip
        raise UnknownClipError(f"unknown clip id {clip_id!r}: it is not in the pool at {self.root}")

    def prompts(self) -> list[str]:
        """Distinct prompts in first-seen order."""
        return list(dict.fromkeys(clip.prompt for clip in self.clips()))

    def clips_for_prompt(self, prompt: str) -> list[ClipRecord]:
        return [clip for clip in self.clips() if clip.prompt == prompt]

    def video_path(self, clip_id: str) -> Path:
        """Absolute path of a clip's video file."""
        return self.root / self.get(clip_id).video

    def __len__(self) -> int:
        return len(self.clips())

    def __contains__(self, clip_id: object) -> bool:
        return any(clip.clip_id == clip_id for clip in self.clips())

    def _stage_video(self, video: str | os.PathLike | bytes, suffix: str) -> tuple[Path, str]:
        """Write the video under a temporary name in the pool (fsynced); return that path and its sha1."""
        staged_path = self.videos_dir / f".staging-{uuid.uuid4().hex}{suffix}"
        digest = hashlib.sha1()
        with open(staged_path, "wb") as staged:
            for chunk in _video_chunks(video):
                digest.update(chunk)
                staged.write(chunk)
            staged.flush()
            os.fsync(staged.fileno())
        return staged_path, digest.hexdigest()


def _video_chunks(video: str | os.PathLike | bytes, chunk_size: int = 1 << 20) -> Iterable[bytes]:
    if isinstance(video, bytes):
        yield video
        return
    path = Path(video)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    with open(path, "rb") as source:
        while chunk := source.read(chunk_size):
            yield chunk


def _clean_prompt(prompt: str) -> str:
    prompt = (prompt or "").strip()
    if not prompt:
        raise ValueError("a clip needs a non-empty prompt")
    return prompt


def _json_roundtrip(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings exactly as they will read back from the manifest (tuples become lists, and so on)."""
    try:
        return json.loads(json.dumps(settings, sort_keys=True))
    except TypeError as error:
        raise ValueError(f"clip settings must be JSON serialisable: {error}") from None


def _validated_clip_id(clip_id: str) -> str:
    if not _CLIP_ID_PATTERN.match(clip_id):
        raise ValueError(f"invalid clip id {clip_id!r}: use letters, digits, '_', '-' and '.' only")
    return clip_id


def _content_clip_id(prompt: str, settings: dict[str, Any], video_sha1: str) -> str:
    key = json.dumps({"prompt": prompt, "settings": settings, "video_sha1": video_sha1}, sort_keys=True)
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def _generation_key(prompt: str, settings: dict[str, Any]) -> str:
    return json.dumps([prompt, settings], sort_keys=True)


def build_pool(
    pool: CandidatePool,
    generate_fn: Callable[..., str | os.PathLike],
    prompts: Sequence[str],
    clips_per_prompt: int,
    base_seed: int = 0,
    settings: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[ClipRecord]:
    """Generate `clips_per_prompt` clips (seeds base_seed, base_seed+1, ...; or the given `seeds`) for each prompt;
    resumable.

    `generate_fn(prompt=..., seed=..., **settings)` returns the path of an mp4; the clip's settings are
    `settings` plus its seed. Jobs already in the manifest are skipped, so re-running an interrupted call
    completes it without duplicates. Returns the clips of every job, in job order.
    """
    seeds = list(seeds) if seeds is not None else [base_seed + index for index in range(clips_per_prompt)]
    if len(seeds) < 1:
        raise ValueError(f"clips_per_prompt must be at least 1, got {len(seeds)}")
    settings = _json_roundtrip(settings or {})
    if "seed" in settings:
        raise ValueError("pass seeds with base_seed or seeds, not in settings")
    jobs = [(_clean_prompt(prompt), seed) for prompt in prompts for seed in seeds]
    done = {_generation_key(clip.prompt, clip.settings): clip for clip in pool.clips()}
    built = []
    for job_index, (prompt, seed) in enumerate(jobs):
        clip_settings = {**settings, "seed": seed}
        clip = done.get(_generation_key(prompt, clip_settings))
        if clip is None:
            video_path = generate_fn(prompt=prompt, seed=seed, **settings)
            clip = pool.add_clip(prompt, video_path, clip_settings)
            done[_generation_key(prompt, clip_settings)] = clip
        built.append(clip)
        if progress is not None:
            progress(job_index + 1, len(jobs))
    return built


def load_prompts(source: str | os.PathLike | Sequence[str]) -> list[str]:
    """Prompts from a text file (one a line, blanks and #comments skipped), a list, or a preset name.

    Presets are the paper's eight categories (`CATEGORY_PRESETS`), or "all" for every one of them.
    """
    if isinstance(source, (list, tuple)):
        lines = list(source)
    elif isinstance(source, str) and source.strip().lower() == ALL_PRESETS:
        lines = [prompt for prompts in CATEGORY_PRESETS.values() for prompt in prompts]
    elif isinstance(source, str) and source.strip().lower() in CATEGORY_PRESETS:
        lines = list(CATEGORY_PRESETS[source.strip().lower()])
    elif Path(source).is_file():
        lines = Path(source).read_text(encoding="utf-8").splitlines()
    else:
        presets = ", ".join([*CATEGORY_PRESETS, ALL_PRESETS])
        raise ValueError(f"{source!r} is neither a prompt file nor a category preset (presets: {presets})")
    prompts = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not prompts:
        raise ValueError(f"no prompts found in {source!r}")
    return list(dict.fromkeys(prompts))


def import_folder(
    pool: CandidatePool, folder: str | os.PathLike, settings: dict[str, Any] | None = None
) -> list[ClipRecord]:
    """Import every `*.mp4` under `folder` (hidden folders skipped); idempotent.

    Prompts come from `metadata.jsonl` rows (`file_name`, `prompt`; any other keys, and a `settings` object,
    become the clip's settings) when present, otherwise from the file stem with underscores as spaces.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"not a folder: {folder}")
    metadata = _read_folder_metadata(folder / "metadata.jsonl")
    imported = []
    for video_path in sorted(folder.rglob(f"*{VIDEO_SUFFIX}")):
        relative = video_path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        row = metadata.get(relative.as_posix(), {})
        prompt = row.get("prompt") or video_path.stem.replace("_", " ")
        clip_settings = {**(settings or {}), **_settings_from_metadata_row(row)}
        imported.append(pool.add_clip(prompt, video_path, clip_settings))
    return imported


def _read_folder_metadata(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    rows = {}
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows[Path(row["file_name"]).as_posix()] = row
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{line_number}: expected a JSON object with 'file_name': {error}") from None
    return rows


def _settings_from_metadata_row(row: dict[str, Any]) -> dict[str, Any]:
    extra = {key: value for key, value in row.items() if key not in ("file_name", "prompt", "settings")}
    return {**extra, **(row.get("settings") or {})}


def import_hub_dataset(
    pool: CandidatePool,
    repo_id_or_local_path: str | os.PathLike,
    revision: str | None = None,
    token: str | None = None,
) -> list[ClipRecord]:
    """Import the clips of a Hub dataset repo (downloaded with `snapshot_download`) or of a local folder."""
    local_path = Path(repo_id_or_local_path).expanduser()
    if local_path.is_dir():
        return import_folder(pool, local_path)
    repo_id = str(repo_id_or_local_path)
    try:
        snapshot = huggingface_hub.snapshot_download(
            repo_id=repo_id,
            repo_type="dataset",
            revision=revision,
            token=token,
            allow_patterns=[f"*{VIDEO_SUFFIX}", "*.jsonl"],
        )
    except Exception as error:  # offline, unknown repo, bad id, gated...: one message the user can act on
        raise ValueError(
            f"could not download the dataset {repo_id!r} from the Hugging Face Hub "
            f"({type(error).__name__}: {error}). Check the repo id, your network and your login, "
            f"or pass a local folder instead."
        ) from error
    return import_folder(pool, snapshot)

