"""Video I/O: mp4 round trips keep frame count, size and (approximately) pixels; bad input fails clearly."""

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from huvidpo.data.video import probe_video, read_video, to_uint8_frames, write_preview, write_video


def smooth_clip(num_frames: int, height: int, width: int) -> np.ndarray:
    """A gradient that drifts over time: smooth, so H.264 keeps it well."""
    t = np.arange(num_frames)[:, None, None]
    y = np.arange(height)[None, :, None]
    x = np.arange(width)[None, None, :]
    r = 40 + 150 * x / width + 2 * t
    g = 60 + 120 * y / height
    b = 200 - 100 * (x + y) / (width + height) + t
    return np.clip(np.stack(np.broadcast_arrays(r, g, b), axis=-1), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("num_frames", [2, 8, 16])
@pytest.mark.parametrize("height,width", [(64, 64), (64, 96)])
def test_round_trip_keeps_count_size_and_pixels(tmp_path, num_frames, height, width):
    frames = smooth_clip(num_frames, height, width)
    path = write_video(frames, tmp_path / "clip.mp4", fps=8)
    back = read_video(path)
    assert back.shape == frames.shape
    assert back.dtype == np.uint8
    assert np.abs(back.astype(np.int16) - frames).mean() < 2.0


def test_file_is_browser_playable_h264_yuv420p(tmp_path):
    path = write_video(smooth_clip(8, 64, 64), tmp_path / "clip.mp4")
    assert path.read_bytes()[4:8] == b"ftyp"
    stderr = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True
    ).stderr
    assert "h264" in stderr and "yuv420p" in stderr
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height, info.codec, info.pix_fmt) == (8, 64, 64, "h264", "yuv420p")
    assert info.fps == pytest.approx(8.0)
    assert not [p for p in tmp_path.iterdir() if p.name != "clip.mp4"], "temporary file left behind"


def test_odd_size_is_padded_by_edge_replication(tmp_path):
    frames = smooth_clip(4, 63, 65)
    back = read_video(write_video(frames, tmp_path / "odd.mp4"))
    assert back.shape == (4, 64, 66, 3)
    assert np.abs(back[:, :63, :65].astype(np.int16) - frames).mean() < 2.0
    assert np.abs(back[:, 63, :65].astype(np.int16) - frames[:, 62]).mean() < 4.0


def test_accepts_float_torch_and_pil_inputs(tmp_path):
    frames = smooth_clip(4, 32, 32)
    as_float = frames.astype(np.float32) / 255
    channels_first = torch.from_numpy(as_float).permute(0, 3, 1, 2)
    for name, source in [
        ("float", as_float),
        ("torch_cf", channels_first),
        ("torch_cl", torch.from_numpy(as_float)),
        ("pil", [Image.fromarray(f) for f in frames]),
    ]:
        np.testing.assert_array_equal(to_uint8_frames(source), frames, err_msg=name)
    assert read_video(write_video(channels_first, tmp_path / "t.mp4")).shape == frames.shape


def test_max_frames(tmp_path):
    path = write_video(smooth_clip(16, 32, 32), tmp_path / "clip.mp4")
    assert read_video(path, max_frames=5).shape[0] == 5


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 8, 8, 3), np.uint8), np.zeros((4, 8, 8), np.uint8), np.zeros((4, 8, 8, 4), np.uint8), [],
     np.full((2, 8, 8, 3), 255.0)],
)
def test_bad_input_raises_value_error(tmp_path, bad):
    with pytest.raises(ValueError):
        write_video(bad, tmp_path / "bad.mp4")
    assert not (tmp_path / "bad.mp4").exists()


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_video(tmp_path / "nope.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"garbage" * 50)
    with pytest.raises(ValueError, match="corrupt.mp4"):
        read_video(corrupt)
    with pytest.raises(ValueError, match="corrupt.mp4"):
        probe_video(corrupt)


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_preview(tmp_path, suffix):
    frames = smooth_clip(6, 32, 32)
    path = write_preview(frames, tmp_path / f"p{suffix}", fps=8)
    with Image.open(path) as image:
        assert image.n_frames == 6
        assert image.size == (32, 32)
    with pytest.raises(ValueError):
        write_preview(frames, tmp_path / "p.png")
