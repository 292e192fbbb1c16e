"""Training data: videos with prompts (stage 1), preference pairs (DPO), and the DPO latent cache.

What is unusual here:
- Rows come through ``datasets``: a folder's ``metadata.jsonl`` (the studio's export, or any folder in the
  ``datasets`` convention) through its JSON builder, a Hub dataset through ``load_dataset`` (its videos then
  fetched by ``snapshot_download``), or a ``Dataset`` / list of dicts given in Python.
- Public preference schemas (Pick-a-Pic, VideoReward, VideoDPO, GenAI-Bench, per-clip scores) become pairs in
  :mod:`huvidpo.data.preferences`; ``PreferencePairs.load(..., data_format=...)`` reads them through it.
- Both kinds of data are checked when loaded, before any model work: wrong columns, empty prompts and
  missing files raise a ``ValueError`` that names the row and what to do. Unreadable or too-short
  videos are reported the same way when they are first decoded.
- DPO never runs the VAE or the text encoder in its loop: :func:`build_pair_cache` encodes every
  distinct video and prompt once (the VAE posterior's mode, so it is deterministic) and can keep the
  result on disk, keyed by the model, the files and the clip settings: safetensors shards written as they
  are encoded and read a batch at a time, so RAM stays flat however many pairs there are.
- Clips are taken from frame 0 for DPO (frame 0 is the clean condition that was shown to the labeler)
  and from a seeded random start frame, optionally flipped, for stage 1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from huvidpo.data.preferences import STUDIO, is_url, read_preference_pairs
from huvidpo.data.video import read_video
from huvidpo.locations import is_hub_id

logger = logging.getLogger(__name__)

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
    return frames_to_tensor(frames[start : start + num_frames], size)


# ---------------------------------------------------------------------------------------------- sources


def load_rows(source: Any, what: str) -> tuple[Any, Path | str]:
    """The rows of a dataset-like ``source`` and where its relative video paths point.

    ``source``: a ``datasets.Dataset`` (or a ``DatasetDict`` with a train split), a list of dicts, a folder with
    ``metadata.jsonl`` or such a ``.jsonl`` file (read by ``datasets``' JSON builder), or a Hub dataset id (read
    by ``datasets.load_dataset``). The second value is the folder that relative paths start from, or, for a Hub
    dataset, its id: :func:`video_paths` fetches the files its rows name.
    """
    import datasets

    if isinstance(source, datasets.DatasetDict):
        if "train" not in source:
            raise ValueError(f"The {what} DatasetDict has splits {list(source)}; give one split (e.g. dataset['train']).")
        source = source["train"]
    if isinstance(source, datasets.Dataset):
        return _undecoded(source), Path.cwd()
    if isinstance(source, (list, tuple)):
        return source, Path.cwd()
    if not isinstance(source, (str, os.PathLike)) or not str(source):
        raise ValueError(f"No {what} data given: set data to a folder with {METADATA_NAME} or a Hub dataset id.")
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / METADATA_NAME).is_file():
            raise ValueError(f"{path} has no {METADATA_NAME}: the {what} folder needs one row per example (JSON lines).")
        return _file_name_columns(_read_json_lines(path / METADATA_NAME)), path.resolve()
    if path.is_file() and path.suffix == ".jsonl":
        return _file_name_columns(_read_json_lines(path)), path.parent.resolve()
    if not is_hub_id(str(source)):
        raise ValueError(f"No {what} data at {source}: give an existing folder with {METADATA_NAME} or a Hub dataset id 'owner/name'.")
    try:
        return _undecoded(datasets.load_dataset(str(source), split="train")), str(source)
    except Exception as err:  # noqa: BLE001 - offline, missing repo, no access, no train split: all need the same advice
        raise ValueError(
            f"'{source}' is not a local folder, and the Hub dataset '{source}' could not be loaded ({type(err).__name__}: "
            f"{err}). Check the id and the network, or download it (`hf download --repo-type dataset {source} "
            "--local-dir DIR`) and point data at DIR."
        ) from err


def _file_name_columns(rows):
    """The ``datasets`` folder convention: a ``video_w_file_name`` column is the ``video_w`` column (what
    ``load_dataset`` on the folder shows as a ``Video`` feature)."""
    names = _column_names(rows)
    renames = {name: name.removesuffix("_file_name") for name in names
               if name.endswith("_file_name") and name.removesuffix("_file_name") not in names}
    if not renames:
        return rows
    if isinstance(rows, (list, tuple)):
        return [{renames.get(key, key): value for key, value in row.items()} for row in rows]
    return rows.rename_columns(renames)


def _undecoded(dataset):
    """A Hub dataset with its ``Video`` columns as ``{"path", "bytes"}``: the trainer decodes clips itself
    (decoding through ``datasets`` needs torchcodec)."""
    import datasets

    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Video):
            dataset = dataset.cast_column(name, datasets.Video(decode=False))
    return dataset


def _read_json_lines(path: Path):
    import datasets

    if path.stat().st_size == 0:
        return []
    try:
        return datasets.Dataset.from_json(str(path), keep_in_memory=True)
    except (datasets.exceptions.DatasetGenerationError, StopIteration) as err:
        reason = err.__cause__ or err
        raise ValueError(f"{path} is not valid JSON lines, one object a line ({reason}).") from err


def _check_columns(rows: Any, columns: dict[str, str], what: str) -> None:
    if len(rows) == 0:
        raise ValueError(f"The {what} dataset is empty: it needs at least one row.")
    present = _column_names(rows)
    if isinstance(rows, (list, tuple)):
        missing = [name for name in columns.values() if any(name not in row for row in rows)]
    else:
        missing = [name for name in columns.values() if name not in present]
    if missing:
        flags = ", ".join(f"--{flag} (now {name!r})" for flag, name in columns.items())
        raise ValueError(
            f"The {what} dataset lacks column(s) {missing} in some rows; it has {present}. "
            f"Rename the columns or set {flags}."
        )


def video_paths(values: list[Any], origin: Path | str, where: list[str]) -> list[Path]:
    """Local paths of the videos ``values`` names (paths, or ``{"path": ...}`` as a datasets ``Video`` column
    holds them), each checked to exist; relative paths start at ``origin``, a folder, or a Hub dataset id whose
    named files are downloaded (one ``snapshot_download``, cached by huggingface_hub)."""
    names = []
    for value, place in zip(values, where):
        if isinstance(value, dict) and "path" in value:
            value = value["path"]
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise ValueError(f"{place}: expected the path of a video file, got {type(value).__name__} {value!r:.60}.")
        if is_url(value):
            raise ValueError(f"{place}: {value!r:.80} is a web address; download the videos and give their local paths.")
        names.append(Path(value).expanduser())
    relative = sorted({name.as_posix() for name in names if not name.is_absolute()})
    if isinstance(origin, str) and relative:  # a Video column's files are already local: nothing to fetch
        origin = _fetch_files(origin, relative)
    paths = []
    for name, place in zip(names, where):
        path = name if name.is_absolute() else origin / name
        if not path.is_file():
            raise ValueError(f"{place}: the video {path} does not exist. Fix the path or drop the row.")
        paths.append(path)
    return paths


def _fetch_files(repo_id: str, files: list[str]) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=files))
    except Exception as err:  # noqa: BLE001 - the rows loaded, the videos did not: say so with the same advice
        raise ValueError(
            f"The videos of the Hub dataset '{repo_id}' could not be downloaded ({type(err).__name__}: {err}). Check "
            f"the network, or download the dataset (`hf download --repo-type dataset {repo_id} --local-dir DIR`) "
            "and point data at DIR."
        ) from err


def _prompt(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: the prompt is empty or not text ({value!r:.60}).")
    return value


def _column_names(rows: Any) -> list[str]:
    return sorted({key for row in rows for key in row}) if isinstance(rows, (list, tuple)) else list(rows.column_names)


def _column(rows: Any, name: str) -> list[Any]:
    return [row.get(name) for row in rows] if isinstance(rows, (list, tuple)) else list(rows[name])


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
        """From any :func:`load_rows` source, or a list of (path, prompt) tuples. ``file_name`` stands in for
        the video column when that is missing (the ``datasets`` folder convention)."""
        if isinstance(source, (list, tuple)) and source and isinstance(source[0], (list, tuple)):
            source = [{video_column: video, prompt_column: prompt} for video, prompt in source]
        rows, origin = load_rows(source, "video")
        names = _column_names(rows)
        if video_column not in names and "file_name" in names:
            video_column = "file_name"
        _check_columns(rows, {"video_column": video_column, "prompt_column": prompt_column}, "video")
        where = [f"Row {index}" for index in range(len(rows))]
        videos = video_paths(_column(rows, video_column), origin, [f"{w}, column {video_column!r}" for w in where])
        prompts = [_prompt(value, w) for value, w in zip(_column(rows, prompt_column), where)]
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
        data_format: str = STUDIO,
        **reader_options: Any,
    ) -> "PreferencePairs":
        """From any :func:`load_rows` source: a HuViDPO Studio export folder (``metadata.jsonl`` with paths
        relative to it), a folder or ``.jsonl`` with prompt / winner / loser columns, a ``datasets.Dataset``, a
        list of dicts, or a Hub dataset id with those columns.

        Any other ``data_format`` (pickapic, videoreward, videodpo, genai-bench, scores) is read by
        :func:`huvidpo.data.preferences.read_preference_pairs` with ``reader_options`` (criterion, ties,
        both_bad, min_score_gap, split, subset); the column names then are that format's own."""
        if data_format != STUDIO:
            rows, origin, report = read_preference_pairs(source, data_format, **reader_options)
            logger.info("Read %s", report.summary())
            prompt_column, chosen_column, rejected_column = "prompt", "video_w", "video_l"
        else:
            rows, origin = load_rows(source, "preference pair")
        columns = {"prompt_column": prompt_column, "chosen_column": chosen_column, "rejected_column": rejected_column}
        _check_columns(rows, columns, "preference pair")
        where = [f"Pair {index}" for index in range(len(rows))]
        prompts = [_prompt(value, w) for value, w in zip(_column(rows, prompt_column), where)]
        videos = video_paths(
            _column(rows, chosen_column) + _column(rows, rejected_column),
            origin,
            [f"{w}, column {chosen_column!r}" for w in where] + [f"{w}, column {rejected_column!r}" for w in where],
        )
        winners, losers = videos[: len(rows)], videos[len(rows) :]
        for w, winner, loser in zip(where, winners, losers):
            if winner == loser:
                raise ValueError(f"{w}: winner and loser are the same file {winner}; a pair needs two different videos.")
        return cls(prompts, winners, losers)


class TensorShards:
    """Rows of one ``n ...`` tensor kept on disk in safetensors shards (``NAME-00000.safetensors``, ...), read a
    few rows at a time: a shard is memory-mapped only while rows are sliced out of it, so what stays in RAM is
    the rows asked for, however many there are on disk."""

    def __init__(self, paths: Sequence[Path], key: str = "rows") -> None:
        from safetensors import safe_open

        self.paths, self.key, self.starts = [Path(p) for p in paths], key, [0]
        for path in self.paths:
            with safe_open(str(path), framework="pt") as shard:
                shape = shard.get_slice(key).get_shape()
            self.starts.append(self.starts[-1] + shape[0])
            self.row_shape = tuple(shape[1:])

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, indices: torch.Tensor) -> torch.Tensor:
        """The rows ``indices`` (a 1-d index tensor), stacked in that order."""
        from safetensors import safe_open

        rows: list[torch.Tensor | None] = [None] * len(indices)
        wanted = [int(i) for i in indices]
        for number, path in enumerate(self.paths):
            first, stop = self.starts[number], self.starts[number + 1]
            here = [(k, i - first) for k, i in enumerate(wanted) if first <= i < stop]
            if here:
                with safe_open(str(path), framework="pt") as shard:
                    block = shard.get_slice(self.key)
                    for k, offset in here:
                        rows[k] = block[offset : offset + 1].clone()
        if any(row is None for row in rows):
            raise IndexError(f"row index out of range 0..{len(self) - 1} in {wanted}")
        return torch.cat(rows)


class ShardWriter:
    """Appends rows to ``folder/NAME-NNNNN.safetensors`` shards of about ``shard_bytes`` each (a row is one
    video's latents or one prompt's text states); :meth:`close` returns the paths."""

    def __init__(self, folder: Path, name: str, shard_bytes: int = 64 * 2**20) -> None:
        self.folder, self.name, self.shard_bytes = folder, name, shard_bytes
        self.pending: list[torch.Tensor] = []
        self.pending_bytes = 0
        self.paths: list[Path] = []

    def append(self, rows: torch.Tensor) -> None:
        self.pending.append(rows.float().contiguous())
        self.pending_bytes += rows.numel() * 4
        if self.pending_bytes >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            path = self.folder / f"{self.name}-{len(self.paths):05d}.safetensors"
            save_file({"rows": torch.cat(self.pending)}, str(path))
            self.paths.append(path)
            self.pending, self.pending_bytes = [], 0

    def close(self) -> list[Path]:
        self.flush()
        return self.paths


@dataclass
class PairCache:
    """Everything a DPO step reads, encoded once.

    ``latents``: ``v c f h w`` scaled VAE latents of each distinct video; ``prompt_embeds``: ``u l d`` text
    states of each distinct prompt (each a tensor in RAM, or :class:`TensorShards` on disk, read a batch at a
    time); per pair, the index of its winner / loser video and of its prompt.
    """

    latents: torch.Tensor | TensorShards
    prompt_embeds: torch.Tensor | TensorShards
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

    INDEX_NAME = "pairs.safetensors"

    @classmethod
    def open(cls, folder: str | Path) -> "PairCache":
        """The cache :func:`write_pair_cache` wrote to ``folder``: the pair indices in RAM, the rest on disk."""
        folder = Path(folder)
        index = load_file(str(folder / cls.INDEX_NAME))
        return cls(
            latents=TensorShards(sorted(folder.glob("latents-*.safetensors"))),
            prompt_embeds=TensorShards(sorted(folder.glob("prompt_embeds-*.safetensors"))),
            index_w=index["index_w"], index_l=index["index_l"], index_prompt=index["index_prompt"],
        )


def write_pair_cache(folder: str | Path, latents: Iterable[torch.Tensor], prompt_embeds: Iterable[torch.Tensor],
                     index_w: torch.Tensor, index_l: torch.Tensor, index_prompt: torch.Tensor,
                     shard_bytes: int = 64 * 2**20) -> PairCache:
    """Write a pair cache to ``folder`` as it is produced (``latents`` and ``prompt_embeds`` yield ``n ...``
    blocks of rows), written aside and renamed, so RAM holds one shard at most and a crash leaves no half
    cache; return it opened from disk."""
    import shutil

    folder = Path(folder)
    staged = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for name, blocks in (("latents", latents), ("prompt_embeds", prompt_embeds)):
        writer = ShardWriter(staged, name, shard_bytes)
        for rows in blocks:
            writer.append(rows)
        writer.close()
    save_file({"index_w": index_w, "index_l": index_l, "index_prompt": index_prompt}, str(staged / PairCache.INDEX_NAME))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staged, folder)
    return PairCache.open(folder)


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
    pipe, pairs: PreferencePairs, num_frames: int, size: tuple[int, int], device: torch.device, show_progress: bool = True,
    folder: str | Path | None = None,
) -> PairCache:
    """Encode every distinct video (VAE, first ``num_frames`` frames) and prompt (text encoder) once, as the model
    family's backend does (:meth:`~huvidpo.backends.Backend.encode_video`, ``encode_prompt``): into RAM,
    or with ``folder`` into safetensors shards there, written as they are encoded (:func:`write_pair_cache`)."""
    from tqdm.auto import tqdm

    from huvidpo.backends import backend_for

    backend = backend_for(pipe)  # how the model family encodes clips and prompts
    videos = list(dict.fromkeys(pairs.videos_w + pairs.videos_l))
    prompts = list(dict.fromkeys(pairs.prompts))
    video_index = {path: i for i, path in enumerate(videos)}
    prompt_index = {prompt: i for i, prompt in enumerate(prompts)}
    where = {}
    for i in range(len(pairs)):
        where.setdefault(pairs.videos_w[i], f"Pair {i}, winner: ")
        where.setdefault(pairs.videos_l[i], f"Pair {i}, loser: ")

    def video_latents():
        for path in tqdm(videos, desc="Encoding videos", disable=not show_progress):
            clip = read_clip(path, num_frames, size, start=0, where=where[path])
            yield backend.encode_video(pipe, clip[None].to(device, pipe.vae.dtype)).float().cpu()

    def text_states():
        for i in range(0, len(prompts), 64):
            yield backend.encode_prompt(pipe, prompts[i : i + 64], device).float().cpu()

    index_w = torch.tensor([video_index[p] for p in pairs.videos_w])
    index_l = torch.tensor([video_index[p] for p in pairs.videos_l])
    index_prompt = torch.tensor([prompt_index[p] for p in pairs.prompts])
    if folder is not None:
        return write_pair_cache(folder, video_latents(), text_states(), index_w, index_l, index_prompt)
    return PairCache(torch.cat(list(video_latents())), torch.cat(list(text_states())), index_w, index_l, index_prompt)


def build_pair_cache(
    pipe,
    pairs: PreferencePairs,
    num_frames: int,
    size: tuple[int, int],
    device: torch.device,
    cache_dir: str | Path | None = None,
    accelerator=None,
) -> PairCache:
    """:func:`encode_pairs`: into RAM, or with ``cache_dir`` into ``cache_dir/pairs-<key>/`` on disk (read a batch
    at a time, so RAM does not grow with the number of pairs), reused when the model, files and settings match.

    With an ``accelerator`` and a ``cache_dir``, the main process encodes and writes, the others read.
    """
    if cache_dir is None:
        return encode_pairs(pipe, pairs, num_frames, size, device)
    folder = Path(cache_dir) / f"pairs-{pair_cache_key(pipe, pairs, num_frames, size)}"
    is_main = accelerator is None or accelerator.is_main_process
    if is_main and not (folder / PairCache.INDEX_NAME).is_file():
        encode_pairs(pipe, pairs, num_frames, size, device, folder=folder)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return PairCache.open(folder)


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
