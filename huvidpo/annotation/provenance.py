"""Where a clip came from, in a form that survives copying: revisions of the model and LoRA that made it, and
a hash of its first frame. Recorded in a clip's settings when it enters the pool, exported with every vote.

What is unusual here:
- A revision is content, not a name: a Hub id gives the commit of its snapshot in the local cache (the files
  the model was loaded from), a local folder a hash of its weight files' sizes and first megabyte (so a
  retrained LoRA saved under the same name gets a new revision, and hashing a 3 GB UNet stays instant).
  Nothing here uses the network: an id not in the cache has no known revision (None).
- The first-frame hash is over decoded pixels (uint8 RGB), so a PNG and the same image saved again hash equal.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np

from huvidpo.locations import is_hub_id

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
HEAD_BYTES = 1 << 20
SHORT = 16  # hex digits kept


def revision_of(reference: str | os.PathLike | None) -> str | None:
    """A short content revision of a model or LoRA: a local folder or weights file, or a cached Hub id."""
    if not reference:
        return None
    path = Path(reference).expanduser()
    if path.exists():
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
        if not files:
            return None
        return _files_revision(tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files), str(path))
    if is_hub_id(str(reference)):
        return _cached_commit(str(reference))
    return None


@functools.lru_cache(maxsize=256)
def _files_revision(signature: tuple[tuple[str, int, int], ...], root: str) -> str:
    """Cached per (path, size, mtime): a file rewritten in place gets a new signature and is hashed again."""
    digest = hashlib.sha256()
    for name, size, _ in signature:
        digest.update(os.path.relpath(name, root).encode() + b"\0" + str(size).encode() + b"\0")
        with open(name, "rb") as stream:
            digest.update(stream.read(HEAD_BYTES))
    return digest.hexdigest()[:SHORT]


def _cached_commit(repo_id: str) -> str | None:
    from huggingface_hub import snapshot_download

    for repo_type in ("model", "dataset"):
        try:
            return Path(snapshot_download(repo_id, repo_type=repo_type, local_files_only=True)).name
        except Exception:  # noqa: BLE001 - not in the cache (or no cache): the revision is unknown offline
            continue
    return None


def frame_sha256(frame: np.ndarray) -> str:
    """Hash of one uint8 ``(H, W, 3)`` frame's pixels and shape."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    return hashlib.sha256(str(frame.shape).encode() + frame.tobytes()).hexdigest()[:SHORT]


def image_sha256(path: str | os.PathLike) -> str | None:
    """:func:`frame_sha256` of an image file (None if it is missing or unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return frame_sha256(np.asarray(image.convert("RGB")))
    except (OSError, ValueError):
        return None


def video_first_frame_sha256(path: str | os.PathLike) -> str | None:
    """:func:`frame_sha256` of a video's first frame as decoded (None if it cannot be read)."""
    from huvidpo.data.video import read_video

    try:
        return frame_sha256(read_video(path, max_frames=1)[0])
    except Exception:  # noqa: BLE001 - an unreadable clip has no known first frame; the export goes on
        return None
