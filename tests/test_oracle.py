"""The oracle reads rendered clips (raw and after an mp4 round trip), rejects clips that
contradict their prompt, prefers clean clips to degraded ones, and survives empty clips."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from huvidpo.world.oracle import matches, prefer, read_clip, retrace, score_clip
from huvidpo.data.video import read_video, write_video
from huvidpo.world.clips import DEGRADATIONS, SPEEDS, ClipSpec, Distractor, render_clip, render_degraded, world_frames

ATTRIBUTES = ("shape", "color", "background", "direction")


@pytest.fixture(scope="module")
def sampled():
    return world_frames(60, seed=11, distractor_prob=0.25)


def accuracy(clips, specs):
    readings = [read_clip(clip) for clip in clips]
    acc = {a: np.mean([getattr(r, a) == getattr(s, a) for r, s in zip(readings, specs)]) for a in ATTRIBUTES}
    speed_error = max(abs(r.speed / SPEEDS[s.speed] - 1) for r, s in zip(readings, specs))
    return acc, speed_error


def test_reads_rendered_clips(sampled):
    acc, speed_error = accuracy(*sampled)
    assert min(acc.values()) >= 0.95, acc
    assert speed_error < 0.1


def test_reads_clips_after_mp4_round_trip(sampled, tmp_path):
    clips, specs = sampled
    decoded = [read_video(write_video(clip, tmp_path / f"{i}.mp4")) for i, clip in enumerate(clips)]
    acc, speed_error = accuracy(decoded, specs)
    assert min(acc.values()) >= 0.95, acc
    assert speed_error < 0.1
    assert np.mean([score_clip(c, s.prompt).total for c, s in zip(decoded, specs)]) > 0.95


HAND_PICKED = [
    ClipSpec("circle", "red", "blue", "left", "slowly", 16, 44, 30),
    ClipSpec("square", "yellow", "black", "up", "quickly", 14, 20, 50),
    ClipSpec("triangle", "white", "green", "down", "slowly", 18, 40, 14),
    ClipSpec("triangle", "black", "yellow", "right", "quickly", 14, 12, 40,
             distractor=Distractor("square", "red", "bottom-right")),
]


@pytest.mark.parametrize("spec", HAND_PICKED, ids=lambda s: s.prompt)
def test_hand_picked_clips_exactly(spec, tmp_path):
    clip = render_clip(spec)
    for frames in (clip, read_video(write_video(clip, tmp_path / "c.mp4"))):
        reading = read_clip(frames)
        assert (reading.shape, reading.color, reading.background, reading.direction) == (
            spec.shape, spec.color, spec.background, spec.direction)
        assert reading.presence == 1.0
        assert reading.speed == pytest.approx(SPEEDS[spec.speed], rel=0.05)
        assert reading.smoothness > 0.9 and reading.flicker < 0.01
        x0, y0 = reading.centroids[0]
        drop = spec.size / 6 if spec.shape == "triangle" else 0.0  # a triangle's mass sits low
        assert (x0, y0) == pytest.approx((spec.start_x, spec.start_y + drop), abs=0.5)
        assert all(matches(frames, spec.prompt).values())


def test_accepts_float_and_torch_frames():
    spec = HAND_PICKED[0]
    clip = render_clip(spec)
    as_float = clip.astype(np.float32) / 255
    for frames in (as_float, torch.from_numpy(as_float).permute(0, 3, 1, 2)):
        assert read_clip(frames).shape == "circle"


def test_mismatching_prompt_scores_lower_and_fails_matches():
    spec = HAND_PICKED[0]
    clip = render_clip(spec)
    right = score_clip(clip, spec.prompt)
    assert right.total > 0.99
    wrong_prompts = {
        "color": "a green circle moving left slowly on a blue background",
        "direction": "a red circle moving up slowly on a blue background",
        "shape": "a red square moving left slowly on a blue background",
        "background": "a red circle moving left slowly on a white background",
        "speed": "a red circle moving left quickly on a blue background",
    }
    for attribute, prompt in wrong_prompts.items():
        result = matches(clip, prompt)
        assert not result[attribute] and not result["all"], attribute
        assert score_clip(clip, prompt).total < right.total - 0.03, attribute
    static = np.repeat(clip[:1], 16, axis=0)
    assert read_clip(static).direction == "static"
    assert not matches(static, spec.prompt)["direction"]
    assert score_clip(static, spec.prompt).total < right.total - 0.1


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_prefers_clean_to_degraded(kind):
    _, specs = world_frames(8, seed=21, num_frames=2)
    for i, spec in enumerate(specs):
        clean, worse = render_clip(spec), render_degraded(spec, kind, seed=i)
        assert prefer(clean, worse, spec.prompt) == "left", (kind, spec.prompt)
        assert prefer(worse, clean, spec.prompt) == "right", (kind, spec.prompt)
        assert not matches(worse, spec.prompt)["all"], (kind, spec.prompt)
    assert prefer(clean, clean.copy(), spec.prompt) == "tie"


def test_empty_and_tiny_clips_do_not_crash():
    empty = np.broadcast_to(np.array([40, 90, 220], np.uint8), (16, 64, 64, 3)).copy()
    reading = read_clip(empty)
    assert reading.background == "blue" and reading.shape is None and reading.presence == 0.0
    assert reading.centroids == [None] * 16
    score = score_clip(empty, "a red circle moving left on a blue background")
    assert score.presence == 0.0 and score.total == 0.0
    assert not matches(empty, "a red circle moving left")["present"]
    one_frame = render_clip(HAND_PICKED[1], num_frames=1)
    assert read_clip(one_frame).shape == "square"
    assert 0.0 <= score_clip(one_frame, HAND_PICKED[1].prompt).total <= 1.0


def test_shape_missing_in_some_frames_lowers_presence():
    spec = HAND_PICKED[2]
    clip = render_clip(spec)
    clip[8:] = clip[8:, :1, :1]  # frames 8.. show only the background
    reading = read_clip(clip)
    assert reading.presence == pytest.approx(0.5)
    assert reading.centroids[8:] == [None] * 8 and reading.direction == "down"
    assert reading.areas[8:] == [None] * 8 and all(area > 0 for area in reading.areas[:8])


@pytest.mark.parametrize("shape, area", [("square", 24.0**2), ("circle", np.pi * 12.0**2), ("triangle", 24.0**2 / 2)])
def test_reads_the_shape_area_per_frame_and_sees_it_change(shape, area):
    spec = ClipSpec(shape, "red", "blue", "right", "slowly", 24.0, 20.0, 32.0)
    reading = read_clip(render_clip(spec))
    assert np.allclose(reading.areas, area, rtol=0.05), reading.areas  # a rigid shape keeps its area
    grown = render_clip(spec)
    grown[8:] = render_clip(replace(spec, size=30.0))[8:]  # the same track, drawn larger from frame 8
    areas = np.array(read_clip(grown).areas)
    assert np.allclose(areas[8:] / areas[:8].mean(), (30 / 24) ** 2, rtol=0.05)


@pytest.mark.parametrize("spec", HAND_PICKED[:3], ids=lambda s: s.shape)
def test_retrace_renders_the_same_clip_with_the_motion_of_another(spec, tmp_path):
    clean = render_clip(spec)
    assert np.array_equal(render_clip(spec, track=retrace(spec, clean)), clean)
    jerky = read_video(write_video(render_degraded(spec, "jitter", seed=3), tmp_path / "jerky.mp4"))
    retraced = render_clip(spec, track=retrace(spec, jerky))
    original, copy = read_clip(jerky), read_clip(retraced)
    assert (copy.shape, copy.color, copy.background) == (spec.shape, spec.color, spec.background)
    moved = np.array(original.centroids) - original.centroids[0]
    assert np.abs(np.array(copy.centroids) - copy.centroids[0] - moved).max() < 0.5
    assert copy.smoothness == pytest.approx(original.smoothness, abs=0.05) and copy.smoothness < 0.2
    assert prefer(clean, retraced, spec.prompt) == "left"


def test_retrace_fills_frames_without_the_shape_and_rejects_bad_input():
    spec = HAND_PICKED[0]
    clean = render_clip(spec)
    gaps = clean.copy()
    gaps[5:8] = gaps[5:8, :1, :1]  # frames 5-7 show only the background
    assert np.abs(render_clip(spec, track=retrace(spec, gaps)).astype(int) - clean).max() <= 1
    with pytest.raises(ValueError, match="No shape"):
        retrace(spec, np.broadcast_to(clean[:, :1, :1], clean.shape))
    with pytest.raises(ValueError, match="track must be 16"):
        render_clip(spec, track=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        render_clip(spec, track=np.full((16, 2), np.nan))
    with pytest.raises(ValueError, match="wrong_direction and track"):
        render_clip(spec, wrong_direction=True, track=retrace(spec, clean))
