"""The synthetic world: deterministic, prompts round-trip, held-out combinations are new triples
of seen words, and generate_world writes playable mp4s with metadata."""

import json

import numpy as np
import pytest

from huvidpo.data.video import probe_video, read_video
from huvidpo.world.clips import (
    COLORS,
    DEGRADATIONS,
    DIRECTIONS,
    SHAPES,
    SPEEDS,
    ClipSpec,
    Distractor,
    all_combinations,
    generate_world,
    make_prompt_set,
    parse_prompt,
    render_clip,
    render_degraded,
    sample_clip_spec,
    specs_from_rows,
    split_combinations,
    straight_track,
    world_dataset,
    world_frames,
)


def test_same_seed_same_clips_and_different_seed_differs():
    a, specs_a = world_frames(6, seed=1)
    b, specs_b = world_frames(6, seed=1)
    c, specs_c = world_frames(6, seed=2)
    assert a.shape == (6, 16, 64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert specs_a == specs_b
    assert specs_a != specs_c and not np.array_equal(a, c)


def test_spec_dict_round_trip_and_validation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        spec = sample_clip_spec(rng, distractor_prob=0.5)
        assert ClipSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="invisible"):
        ClipSpec("circle", "red", "red", "left")
    with pytest.raises(ValueError, match="shape"):
        ClipSpec("hexagon", "red", "blue", "left")


@pytest.mark.parametrize("speed", list(SPEEDS))
def test_prompt_parse_round_trip_over_all_combos(speed):
    for shape, color, direction in all_combinations():
        for background in COLORS:
            if background == color:
                continue
            spec = ClipSpec(shape, color, background, direction, speed)
            parsed = parse_prompt(spec.prompt)
            assert (parsed.shape, parsed.color, parsed.background, parsed.direction, parsed.speed) == (
                shape, color, background, direction, speed), spec.prompt


def test_parse_prompt_is_tolerant_and_rejects_nonsense():
    parsed = parse_prompt("A GREEN ball, going upwards FAST, on a Black backdrop!")
    assert (parsed.shape, parsed.color, parsed.background, parsed.direction, parsed.speed) == (
        "circle", "green", "black", "up", "quickly")
    partial = parse_prompt("a triangle moving down")
    assert (partial.shape, partial.color, partial.background, partial.speed) == ("triangle", None, None, None)
    spec = ClipSpec("square", "yellow", "blue", "left", distractor=Distractor("circle", "red", "top-right"))
    with_distractor = parse_prompt(spec.prompt)
    assert (with_distractor.shape, with_distractor.color) == ("square", "yellow")
    assert (with_distractor.distractor_shape, with_distractor.distractor_color) == ("circle", "red")
    with pytest.raises(ValueError, match="Nothing recognisable"):
        parse_prompt("a photo of a cat")


def test_heldout_combos_are_new_triples_of_seen_words():
    train, heldout = split_combinations(seed=0, holdout_fraction=0.2)
    assert set(train).isdisjoint(heldout)
    assert set(train) | set(heldout) == set(all_combinations())
    assert len(heldout) == round(0.2 * len(all_combinations()))
    for position, vocabulary in enumerate([SHAPES, COLORS, list(DIRECTIONS)]):
        assert {c[position] for c in train} == set(vocabulary)
    train_pairs = {(i, j, c[i], c[j]) for c in train for i, j in ((0, 1), (0, 2), (1, 2))}
    assert all((i, j, c[i], c[j]) in train_pairs for c in heldout for i, j in ((0, 1), (0, 2), (1, 2)))
    assert split_combinations(seed=0) == (train, heldout)
    assert split_combinations(seed=1)[1] != heldout

    _, heldout_specs = world_frames(20, seed=0, split="heldout", num_frames=2)
    assert all(s.combo in set(heldout) for s in heldout_specs)
    prompts = make_prompt_set("heldout", n=10, seed=0)
    assert len(prompts) == len(set(prompts)) == 10
    assert all(tuple(getattr(parse_prompt(p), k) for k in ("shape", "color", "direction")) in set(heldout)
               for p in prompts)
    assert make_prompt_set("heldout", n=10, seed=0) == prompts


def test_shape_stays_in_frame_and_moves_as_specified():
    frames, specs = world_frames(40, seed=3)
    for clip, spec in zip(frames, specs):
        background = np.array(clip[0, 0, 0], np.int16)
        moving = np.abs(clip.astype(np.int16) - background).sum(-1) > 30  # f h w
        assert moving.any(axis=(1, 2)).all(), spec
        assert not moving[:, :1].any() and not moving[:, -1:].any(), f"touches the border: {spec}"
        assert not moving[:, :, :1].any() and not moving[:, :, -1:].any(), f"touches the border: {spec}"
        ys, xs = np.nonzero(moving[0])
        ye, xe = np.nonzero(moving[-1])
        dx, dy = DIRECTIONS[spec.direction]
        travel = SPEEDS[spec.speed] * 15
        assert xe.mean() - xs.mean() == pytest.approx(dx * travel, abs=0.6)
        assert ye.mean() - ys.mean() == pytest.approx(dy * travel, abs=0.6)


def test_straight_track_is_the_path_render_clip_draws():
    """A pair's loser can be drawn on the spec's own path with only the jitter added (bench jitter pairs)."""
    spec = ClipSpec("square", "red", "blue", "up", "quickly", 24, 30.5, 50.25)
    track = straight_track(spec, 16)
    assert track.shape == (16, 2)
    np.testing.assert_allclose(np.diff(track, axis=0), [[0.0, -2.0]] * 15)
    np.testing.assert_array_equal(render_clip(spec, track=track), render_clip(spec))
    np.testing.assert_array_equal(render_clip(spec, size=32, track=track), render_clip(spec, size=32))
    shaken = track + np.random.default_rng(0).normal(0, 1.0, track.shape)
    shaken[0] = track[0]
    jerky = render_clip(spec, track=shaken)
    assert np.array_equal(jerky[0], render_clip(spec)[0]) and not np.array_equal(jerky, render_clip(spec))


def test_render_scales_and_degradations_differ():
    spec = ClipSpec("triangle", "white", "black", "right", "slowly", 16, 20, 30)
    small = render_clip(spec, num_frames=4, size=32)
    assert small.shape == (4, 32, 32, 3)
    clean = render_clip(spec)
    for kind in DEGRADATIONS:
        worse = render_degraded(spec, kind, seed=1)
        assert worse.shape == clean.shape and not np.array_equal(worse, clean), kind
        np.testing.assert_array_equal(worse, render_degraded(spec, kind, seed=1))
    with pytest.raises(ValueError, match="degradation"):
        render_degraded(spec, "blurry")


def test_generate_world_writes_playable_videos_and_metadata(tmp_path):
    root = generate_world(tmp_path / "world", num_clips=3, seed=4, num_frames=8)
    rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    _, expected = world_frames(3, seed=4, num_frames=8)
    assert specs_from_rows(rows) == expected
    for row, spec in zip(rows, expected):
        assert row["prompt"] == spec.prompt
        path = root / row["file_name"]
        info = probe_video(path)
        assert (info.num_frames, info.width, info.height, info.codec, info.pix_fmt) == (8, 64, 64, "h264", "yuv420p")
        err = np.abs(read_video(path).astype(np.int16) - render_clip(spec, num_frames=8)).mean()
        assert err < 3.0

    dataset = world_dataset(root)
    assert dataset.column_names == ["prompt", "video", "spec"]
    assert dataset[0]["prompt"] == rows[0]["prompt"]
    assert read_video(dataset[1]["video"]).shape == (8, 64, 64, 3)
    assert specs_from_rows(dataset) == expected

    generate_world(root, num_clips=2, seed=5, num_frames=4)
    assert len(list((root / "videos").glob("*.mp4"))) == 2 == len(world_dataset(root))

    with pytest.raises(FileNotFoundError, match="generate_world"):
        world_dataset(tmp_path / "missing")
