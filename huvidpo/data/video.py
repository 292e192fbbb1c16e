"""Video files: frames <-> browser-playable mp4 (H.264, yuv420p), and GIF/WebP previews.

What is unusual here:
- Writing goes through moviepy (``ImageSequenceClip.write_videofile``) with a *low* CRF by
  default: our clips are tiny (64x64) and an oracle reads colours and positions from the
  pixels, so we spend a few kilobytes to keep them faithful.
- H.264 with yuv420p needs even width and height. Odd sizes are padded by *edge replication*
  on the right/bottom (one column/row), so ``read_video`` of such a file returns the padded size.
- Reading uses imageio-ffmpeg's frame generator, which yields exactly the frames stored in the
  file; moviepy's ``VideoFileClip`` derives the count from duration*fps and can be off by one
  at the end of a clip.
- Files are written to a temporary name in the destination folder and renamed, so a reader
  (the app, a vote export) never sees a half-written video.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# CRF of libx264 for each named quality (0 = lossless luma; 23 = ffmpeg's default).
QUALITY_CRF: dict[str, int] = {"high": 10, "medium": 18, "low": 28}


@dataclass
class VideoInfo:
    """What ffmpeg says about a video file."""

    num_frames: int
    fps: float
    width: int
    height: int
    codec: str
    pix_fmt: str


def to_uint8_frames(frames: Any) -> np.ndarray:
    """Convert frames to a ``(F, H, W, 3)`` uint8 array.

    Accepts a numpy array ``(F,H,W,3)`` (uint8, or float in [0, 1]), a torch tensor
    ``(F,3,H,W)`` or ``(F,H,W,3)`` in [0, 1], or a sequence of PIL images / ``(H,W,3)`` arrays.
    Float values slightly outside [0, 1] are clipped; values that look like [0, 255] or
    [-1, 1] raise, since silently clipping them would give a white or half-black video.
    """
    if isinstance(frames, (list, tuple)):
        if len(frames) == 0:
            raise ValueError("No frames given: pass at least one frame.")
        frames = np.stack([_frame_to_array(f) for f in frames])
    elif _is_torch_tensor(frames):
        tensor = frames.detach().cpu()
        if tensor.ndim == 4 and tensor.shape[1] in (1, 3) and tensor.shape[-1] not in (1, 3):
            tensor = tensor.permute(0, 2, 3, 1)  # f c h w -> f h w c
        frames = tensor.float().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"Expected frames of shape (F, H, W, 3) (or a torch tensor (F, 3, H, W)); got shape "
            f"{tuple(frames.shape)}."
        )
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"Empty video: frames have shape {tuple(frames.shape)}.")
    if frames.dtype == np.uint8:
        return np.ascontiguousarray(frames)
    if np.issubdtype(frames.dtype, np.bool_) or not np.issubdtype(frames.dtype, np.number):
        raise ValueError(f"Frames must be uint8 or float in [0, 1]; got dtype {frames.dtype}.")
    frames = frames.astype(np.float32)
    lo, hi = float(frames.min()), float(frames.max())
    if hi > 1.5 or lo < -0.5:
        raise ValueError(
            f"Float frames must be in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]. "
            "Divide [0, 255] values by 255, or map [-1, 1] values with (x + 1) / 2."
        )
    return np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)


def _is_torch_tensor(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def _frame_to_array(frame: Any) -> np.ndarray:
    if hasattr(frame, "convert") and hasattr(frame, "size"):  # a PIL image
        return np.asarray(frame.convert("RGB"))
    if _is_torch_tensor(frame):
        frame = frame.detach().cpu().float().numpy()
        if frame.ndim == 3 and frame.shape[0] == 3 and frame.shape[-1] != 3:
            frame = frame.transpose(1, 2, 0)
    return np.asarray(frame)


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    """Pad height/width to even sizes by repeating the last row/column (yuv420p needs it)."""
    pad_h = frames.shape[1] % 2
    pad_w = frames.shape[2] % 2
    if pad_h == 0 and pad_w == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _crf_for(quality: str | int) -> int:
    if isinstance(quality, int) and not isinstance(quality, bool):
        if not 0 <= quality <= 51:
            raise ValueError(f"A CRF quality must be in [0, 51]; got {quality}.")
        return quality
    if quality not in QUALITY_CRF:
        raise ValueError(
            f"Unknown quality {quality!r}: use one of {sorted(QUALITY_CRF)} or a CRF int in [0, 51]."
        )
    return QUALITY_CRF[quality]


def _temp_sibling(path: Path) -> Path:
    # Keep the real suffix last: ffmpeg and Pillow choose the container from it.
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


def write_video(
    frames: Any, path: str | os.PathLike, fps: float = 8, quality: str | int = "high"
) -> Path:
    """Write frames to a browser-playable mp4 (H.264, yuv420p, faststart) and return its path.

    Args:
        frames: see :func:`to_uint8_frames`.
        path: destination ``.mp4``; parent folders are created.
        fps: frames per second.
        quality: ``"high"`` (CRF 10, the default), ``"medium"``, ``"low"`` or a CRF int.
    """
    from moviepy import ImageSequenceClip

    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"write_video writes mp4 files; got {path}. Use a path ending in .mp4.")
    if fps <= 0:
        raise ValueError(f"fps must be positive; got {fps}.")
    crf = _crf_for(quality)
    array = _pad_to_even(to_uint8_frames(frames))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    clip = ImageSequenceClip(list(array), fps=fps)
    try:
        clip.write_videofile(
            str(tmp),
            fps=fps,
            codec="libx264",
            audio=False,
            ffmpeg_params=["-pix_fmt", "yuv420p", "-crf", str(crf), "-movflags", "+faststart"],
            logger=None,
        )
        os.replace(tmp, path)
    finally:
        clip.close()
        tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def _frame_reader(path: Path):
    """imageio-ffmpeg's frame generator and its metadata; any decoding failure becomes a ValueError naming the file."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        yield next(reader), reader
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as err:
        raise ValueError(
            f"Could not read video {path}: the file is corrupt or not a video "
            f"({type(err).__name__}). Re-generate or re-download it."
        ) from err
    finally:
        reader.close()


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """Read a video file into a ``(F, H, W, 3)`` uint8 array (at most ``max_frames`` frames)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No video file at {path}: check the path, or generate the clip first.")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None; got {max_frames}.")
    with _frame_reader(path) as (meta, reader):
        width, height = meta["size"]
        frames = []
        for raw in reader:
            frames.append(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"Video {path} contains no frames: re-generate or re-download it.")
    return np.stack(frames)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, fps, size, codec and pixel format of a video file (decodes it once)."""
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No video file at {path}: check the path.")
    with _frame_reader(path) as (meta, _):
        num_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    width, height = meta["size"]
    return VideoInfo(
        num_frames=int(num_frames),
        fps=float(meta.get("fps", 0.0)),
        width=int(width),
        height=int(height),
        codec=str(meta.get("codec", "")),
        pix_fmt=str(meta.get("pix_fmt", "")).split("(")[0],
    )


def write_preview(
    frames: Any | Sequence[Any], path: str | os.PathLike, fps: float = 8
) -> Path:
    """Write an animated, looping GIF or WebP (chosen by the extension) through Pillow."""
    from PIL import Image

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".webp"):
        raise ValueError(f"Previews are .gif or .webp files; got {path}.")
    if fps <= 0:
        raise ValueError(f"fps must be positive; got {fps}.")
    images = [Image.fromarray(frame) for frame in to_uint8_frames(frames)]
    duration_ms = int(round(1000.0 / fps))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    extra: dict[str, Any] = {"lossless": True} if suffix == ".webp" else {"disposal": 2}
    try:
        images[0].save(
            tmp,
            save_all=True,
            append_images=images[1:],
            duration=duration_ms,
            loop=0,
            **extra,
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
