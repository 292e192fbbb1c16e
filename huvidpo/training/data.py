"""Training data: videos with prompts (stage 1), preference pairs (DPO), and the DPO latent cache.

What is unusual here:
- Both kinds of data are checked when loaded, before any model work: wrong columns, empty prompts and
  missing files raise a ``ValueError`` that names the row and what to do. Unreadable or too-short
  videos are reported the same way when they are first decoded.
- DPO never runs the VAE or the text encoder in its loop: :func:`build_pair_cache` encodes every
  distinct video and prompt once (the VAE posterior's mode, so it is deterministic) and can keep the
  result on disk, keyed by the model, the files and the clip settings.
- Clips are taken from frame 0 for DPO (frame 0 is the clean condition that was shown to the labeler)
  and from a seeded random start frame, optionally flipped, for stage 1.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from huvidpo.data.video import read_video

METADATA_NAME = "metadata.jsonl"


# ---------------------------------------------------------------------------------------------- frames


def frames_to_tensor(frames: np.ndarray, size: tuple[int, int] | None) -> torch.Tensor:
    """uint8 ``(F, H, W, 3)`` -> float ``f 3 h w`` in [-1, 1], resized to cover ``size`` and centre-cropped."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if size is None or tuple(video.shape[-2:]) == tuple(size):
        return video
    height, width = size
    scale = max(height / video.shape[-2], width / video.shape[-1])
    resized = (max(height, round(video.shape[-2] * scale)), max(width, round(video.shape[-1] * scale)))
    video = F.interpolate(video, size=resized, mode="bilinear", antialias=True, align_corners=False)
    top, left = (resized[0] - height) // 2, (resized[1] - width) // 2
    return video[:, :, top : top + height, left : left + width].clamp(-1, 1)


def read_clip(
    path: str | Path,
    num_frames: int,
    size: tuple[int, int] | None,
    start: int | torch.Generator = 0,
    flip: bool = False,
    where: str = "",
) -> torch.Tensor:
    """``num_frames`` frames of a video as ``f 3 h w`` in [-1, 1].

    ``start`` is a frame index, or a generator that draws a random start frame.
    """
    try:
        frames = read_video(path)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"{where}{err}") from err
    if len(frames) < num_frames:
        raise ValueError(
            f"{where}video {path} has {len(frames)} frames but num_frames is {num_frames}: "
            "lower num_frames or drop the clip."
        )
    if isinstance(start, torch.Generator):
        start = int(torch.randint(0, len(frames) - num_frames + 1, (1,), generator=start))
    clip = frames_to_tensor(frames[start : start + num_frames], size)
    return clip.flip(-1) if flip else clip


# ---------------------------------------------------------------------------------------------- sources


def _rows_from_source(source: Any, what: str) -> tuple[list[dict[str, Any]], Path]:
    """Rows of a dataset-like source and the folder that relative paths are relative to."""
    import datasets

    if isinstance(source, datasets.DatasetDict):
        if "train" not in source:
            raise ValueError(f"The {what} DatasetDict has splits {list(source)}; give one split (e.g. dataset['train']).")
        source = source["train"]
    if isinstance(source, datasets.Dataset):
        return source.to_list(), Path.cwd()
    if isinstance(source, (list, tuple)):
        return [dict(row) for row in source], Path.cwd()
    if not isinstance(source, (str, os.PathLike)) or not str(source):
        raise ValueError(f"No {what} given: set data to a folder with {METADATA_NAME} or a Hub dataset id.")
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".jsonl":
        return _read_jsonl(path), path.parent.resolve()
    if path.is_dir():
        if not (path / METADATA_NAME).is_file():
            raise ValueError(f"{path} has no {METADATA_NAME}: the {what} folder needs one row per example (JSON lines).")
        return _read_jsonl(path / METADATA_NAME), path.resolve()
    if os.path.isabs(str(source)) or str(source).startswith(".") or str(source).count("/") != 1:
        raise ValueError(f"No {what} at {source}: give an existing folder with {METADATA_NAME} or a Hub dataset id 'user/name'.")
    return _rows_from_source(_download_dataset(str(source)), what)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not valid JSON ({err.msg}).") from err
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}.")
        rows.append(row)
    return rows


def _download_dataset(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset"))
    except Exception as err:  # noqa: BLE001 - offline, missing repo, no access: all need the same advice
        raise ValueError(
            f"'{repo_id}' is not a local folder, and the Hub dataset '{repo_id}' could not be fetched ({type(err).__name__}: {err}). Check the id and the "
            "network, or download it (`hf download --repo-type dataset ...`) and point data at the local folder."
        ) from err


def _check_columns(rows: list[dict[str, Any]], columns: dict[str, str], what: str) -> None:
    if not rows:
        raise ValueError(f"The {what} dataset is empty: it needs at least one row.")
    present = sorted({key for row in rows for key in row})
    missing = [name for name in columns.values() if any(name not in row for row in rows)]
    if missing:
        flags = ", ".join(f"--{flag} (now {name!r})" for flag, name in columns.items())
        raise ValueError(
            f"The {what} dataset lacks column(s) {missing} in some rows; it has {present}. "
            f"Rename the columns or set {flags}."
        )


def _video_path(value: Any, base: Path, where: str) -> Path:
    if isinstance(value, dict) and "path" in value:
        value = value["path"]
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(f"{where}: expected the path of a video file, got {type(value).__name__} {value!r:.60}.")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise ValueError(f"{where}: the video {path} does not exist. Fix the path or drop the row.")
    return path


def _prompt(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: the prompt is empty or not text ({value!r:.60}).")
    return value


# ---------------------------------------------------------------------------------------------- stage 1


@dataclass
class VideoPromptData:
    """Stage-1 examples: one video file and one prompt each."""

    videos: list[Path]
    prompts: list[str]

    def __len__(self) -> int:
        return len(self.videos)

    @classmethod
    def load(cls, source: Any, video_column: str = "video", prompt_column: str = "prompt") -> "VideoPromptData":
        """From a folder with metadata.jsonl (``file_name`` is accepted for the video column, as in
        ``datasets``' folder convention), a ``datasets.Dataset``, a list of dicts or (path, prompt)
        tuples, or a Hub dataset id."""
        if isinstance(source, (list, tuple)) and source and isinstance(source[0], (list, tuple)):
            source = [{video_column: video, prompt_column: prompt} for video, prompt in source]
        rows, base = _rows_from_source(source, "video")
        if rows and all(video_column not in row and "file_name" in row for row in rows):
            video_column = "file_name"
        _check_columns(rows, {"video_column": video_column, "prompt_column": prompt_column}, "video")
        videos, prompts = [], []
        for index, row in enumerate(rows):
            where = f"Row {index}"
            videos.append(_video_path(row[video_column], base, f"{where}, column {video_column!r}"))
            prompts.append(_prompt(row[prompt_column], where))
        return cls(videos, prompts)


# ---------------------------------------------------------------------------------------------- DPO pairs


@dataclass
class PreferencePairs:
    """DPO examples: a prompt and the paths of its preferred (w) and rejected (l) videos."""

    prompts: list[str]
    videos_w: list[Path]
    videos_l: list[Path]

    def __len__(self) -> int:
        return len(self.prompts)

    @classmethod
    def load(
        cls,
        source: Any,
        prompt_column: str = "prompt",
        chosen_column: str = "video_w",
        rejected_column: str = "video_l",
    ) -> "PreferencePairs":
        """From a HuViDPO Studio export folder, a folder/``.jsonl`` with prompt / winner / loser columns,
        a ``datasets.Dataset``, a list of dicts, or a Hub dataset id (downloaded, then read as a folder)."""
        if isinstance(source, (str, os.PathLike)) and _is_studio_export(Path(source)):
            from huvidpo.annotation.export import load_exported_pairs

            try:
                source = load_exported_pairs(source)
            except ValueError as err:
                raise ValueError(f"The preference export {source} is malformed: {err}") from err
        rows, base = _rows_from_source(source, "preference pair")
        columns = {"prompt_column": prompt_column, "chosen_column": chosen_column, "rejected_column": rejected_column}
        _check_columns(rows, columns, "preference pair")
        pairs = cls([], [], [])
        for index, row in enumerate(rows):
            where = f"Pair {index}"
            pairs.prompts.append(_prompt(row[prompt_column], where))
            winner = _video_path(row[chosen_column], base, f"{where}, column {chosen_column!r}")
            loser = _video_path(row[rejected_column], base, f"{where}, column {rejected_column!r}")
            if winner == loser:
                raise ValueError(f"{where}: winner and loser are the same file {winner}; a pair needs two different videos.")
            pairs.videos_w.append(winner)
            pairs.videos_l.append(loser)
        return pairs


def _is_studio_export(path: Path) -> bool:
    metadata = path / METADATA_NAME
    if not metadata.is_file():
        return False
    with open(metadata, encoding="utf-8") as stream:
        first = stream.readline()
    try:
        return "pair_id" in json.loads(first)
    except (json.JSONDecodeError, TypeError):
        return False


@dataclass
class PairCache:
    """Everything a DPO step reads, encoded once.

    ``latents``: ``v c f h w`` scaled VAE latents of each distinct video; ``prompt_embeds``: ``u l d`` text
    states of each distinct prompt; per pair, the index of its winner / loser video and of its prompt.
    """

    latents: torch.Tensor
    prompt_embeds: torch.Tensor
    index_w: torch.Tensor
    index_l: torch.Tensor
    index_prompt: torch.Tensor

    def __len__(self) -> int:
        return len(self.index_w)

    def batch(self, indices: Sequence[int], device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """(latents_w, latents_l, prompt_embeds) of the pairs ``indices``, each ``b ...`` on ``device``."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        latents_w = self.latents[self.index_w[idx]].to(device, dtype)
        latents_l = self.latents[self.index_l[idx]].to(device, dtype)
        embeds = self.prompt_embeds[self.index_prompt[idx]].to(device, dtype)
        return latents_w, latents_l, embeds


def _fingerprint(module: torch.nn.Module) -> str:
    """A short hash of a module's first and last parameters: enough to tell two checkpoints apart."""
    params = list(module.parameters())
    digest = hashlib.sha256()
    for param in (params[0], params[-1]):
        digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def pair_cache_key(pipe, pairs: PreferencePairs, num_frames: int, size: tuple[int, int]) -> str:
    videos = sorted({str(p) for p in pairs.videos_w + pairs.videos_l})
    stats = [(v, os.stat(v).st_size, os.stat(v).st_mtime_ns) for v in videos]
    key = json.dumps(
        [_fingerprint(pipe.vae), _fingerprint(pipe.text_encoder), num_frames, list(size), stats, sorted(set(pairs.prompts))]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:20]


@torch.no_grad()
def encode_pairs(
    pipe, pairs: PreferencePairs, num_frames: int, size: tuple[int, int], device: torch.device, show_progress: bool = True
) -> PairCache:
    """Encode every distinct video (VAE, first ``num_frames`` frames) and prompt (text encoder) once."""
    from tqdm.auto import tqdm

    videos = list(dict.fromkeys(pairs.videos_w + pairs.videos_l))
    prompts = list(dict.fromkeys(pairs.prompts))
    video_index = {path: i for i, path in enumerate(videos)}
    prompt_index = {prompt: i for i, prompt in enumerate(prompts)}
    where = {}
    for i in range(len(pairs)):
        where.setdefault(pairs.videos_w[i], f"Pair {i}, winner: ")
        where.setdefault(pairs.videos_l[i], f"Pair {i}, loser: ")
    latents = []
    for path in tqdm(videos, desc="Encoding videos", disable=not show_progress):
        clip = read_clip(path, num_frames, size, start=0, where=where[path])
        latents.append(pipe.encode_video(clip[None].to(device, pipe.vae.dtype)).float().cpu())
    embeds = [pipe.encode_prompt(prompts[i : i + 64], device).float().cpu() for i in range(0, len(prompts), 64)]
    return PairCache(
        latents=torch.cat(latents),
        prompt_embeds=torch.cat(embeds),
        index_w=torch.tensor([video_index[p] for p in pairs.videos_w]),
        index_l=torch.tensor([video_index[p] for p in pairs.videos_l]),
        index_prompt=torch.tensor([prompt_index[p] for p in pairs.prompts]),
    )


def build_pair_cache(
    pipe,
    pairs: PreferencePairs,
    num_frames: int,
    size: tuple[int, int],
    device: torch.device,
    cache_dir: str | Path | None = None,
    accelerator=None,
) -> PairCache:
    """:func:`encode_pairs`, reusing ``cache_dir/pairs-<key>.pt`` when the model, files and settings match.

    With an ``accelerator`` and a ``cache_dir``, the main process encodes and writes, the others read.
    """
    if cache_dir is None:
        return encode_pairs(pipe, pairs, num_frames, size, device)
    path = Path(cache_dir) / f"pairs-{pair_cache_key(pipe, pairs, num_frames, size)}.pt"
    is_main = accelerator is None or accelerator.is_main_process
    if is_main and not path.is_file():
        cache = encode_pairs(pipe, pairs, num_frames, size, device)
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{path.name}.tmp")
        torch.save(vars(cache), staged)
        os.replace(staged, path)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return PairCache(**torch.load(path, weights_only=True))


# ---------------------------------------------------------------------------------------------- synthetic pairs


def write_world_pairs(
    out_dir: str | Path,
    num_pairs: int,
    num_frames: int = 16,
    size: int = 64,
    seed: int = 0,
    degradations: Sequence[str] = ("wrong_direction", "jitter", "flicker", "wrong_color"),
) -> Path:
    """A folder of synthetic-world preference pairs (``metadata.jsonl`` with prompt / video_w / video_l + ``videos/``).

    The winner is the clip its prompt describes, the loser the same prompt rendered with one of
    ``degradations`` (cycled): a stand-in for labelled pairs in demos, tests and benchmarks.
    """
    from huvidpo.data.video import write_video
    from huvidpo.world.clips import render_clip, render_degraded, sample_specs

    out_dir = Path(out_dir)
    rows = []
    for i, spec in enumerate(sample_specs(num_pairs, seed=seed, num_frames=num_frames)):
        kind = degradations[i % len(degradations)]
        winner, loser = f"videos/{i:05d}_w.mp4", f"videos/{i:05d}_l.mp4"
        write_video(render_clip(spec, num_frames, size), out_dir / winner)
        write_video(render_degraded(spec, kind, num_frames, size, seed=seed + i), out_dir / loser)
        rows.append({"prompt": spec.prompt, "video_w": winner, "video_l": loser, "degradation": kind})
    (out_dir / METADATA_NAME).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return out_dir
