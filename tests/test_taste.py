"""The world's wordings, its unprompted speed mode, and the taste labeler voting through the real vote path."""

from dataclasses import replace

import numpy as np
import pytest

from huvidpo.world.clips import SPEEDS, ClipSpec, render_clip, sample_specs
from huvidpo.world.prompts import TEMPLATES, parse_prompt, template_of, vocabulary, vocabulary_warnings, word_prompt
from huvidpo.world.taste import Taste, read_mode


def test_every_wording_parses_back_to_its_attributes():
    specs = sample_specs(300, seed=4, unstated_speed_prob=0.5, wording_prob=1.0, distractor_prob=0.3)
    templates_seen = set()
    for spec in specs:
        parsed = parse_prompt(spec.prompt)
        assert (parsed.shape, parsed.color, parsed.background, parsed.direction) == spec.combo[:1] + (
            spec.color, spec.background, spec.direction), spec.prompt
        assert parsed.speed == (spec.speed if spec.speed_stated else None), spec.prompt
        templates_seen.add(template_of(spec.wording))
    assert len(templates_seen) == len(TEMPLATES)


def test_wording_zero_is_canonical_and_other_wordings_vary():
    assert word_prompt("circle", "red", "blue", "left", "slowly") == "a red circle moving left slowly on a blue background"
    assert word_prompt("circle", "red", "blue", "left", None) == "a red circle moving left on a blue background"
    wordings = {word_prompt("circle", "red", "blue", "left", "quickly", wording) for wording in range(1, 60)}
    assert len(wordings) > 30
    assert any("," in w for w in wordings) and any(w[0].isupper() for w in wordings)
    assert any(word in w.lower().split() for w in wordings for word in ("ball", "disc", "dot"))
    assert any("fast" in w.lower().split() for w in wordings)


def test_unstated_speed_prompts_name_no_speed_and_start_where_fast_fits():
    specs = sample_specs(400, seed=1, unstated_speed_prob=0.5)
    unstated = [s for s in specs if not s.speed_stated]
    assert 0.4 < len(unstated) / len(specs) < 0.6
    assert 0.4 < np.mean([s.speed == "quickly" for s in unstated]) < 0.6
    for spec in unstated:
        assert parse_prompt(spec.prompt).speed is None
        fast = replace(spec, speed="quickly")  # the same start must keep a quick shape in frame all clip long
        clip = render_clip(fast, 16, 64)
        assert (clip[-1] != clip[-1, 0, 0]).any()
        half = spec.size / 2
        track_end = np.array([spec.start_x, spec.start_y]) + 15 * SPEEDS["quickly"] * np.array(
            {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[spec.direction])
        assert (track_end - half >= 0).all() and (track_end + half <= 64).all()


def test_speed_twins_show_every_speedless_first_frame_at_both_speeds():
    specs = sample_specs(401, seed=1, unstated_speed_prob=0.5, wording_prob=0.5, speed_twins=True)
    unstated = [s for s in specs if not s.speed_stated]
    assert len(specs) == 401 and 0.4 < len(unstated) / len(specs) < 0.6  # still the share of clips asked for
    twins = [(a, b) for a, b in zip(specs, specs[1:]) if not a.speed_stated and b == replace(a, speed=b.speed) and a.speed != b.speed]
    assert len(twins) >= len(unstated) // 2 - 1  # each speedless draw is followed by its twin at the other speed
    for a, b in twins:  # same prompt, same first frame
        assert a.prompt == b.prompt and np.array_equal(render_clip(a, 1, 64), render_clip(b, 1, 64))
    assert abs(sum(s.speed == "quickly" for s in unstated) - sum(s.speed == "slowly" for s in unstated)) <= 1


def test_streams_without_the_new_mixes_are_unchanged():
    # Seeds of the old world must give the same specs: the new draws happen only when asked for.
    old = sample_specs(20, seed=9)
    assert all(s.speed_stated and s.wording == 0 for s in old)
    assert [s.start_x for s in old] == [s.start_x for s in sample_specs(20, seed=9, unstated_speed_prob=0.0)]


@pytest.mark.parametrize("speed", list(SPEEDS))
def test_read_mode_reads_the_speed_from_pixels(speed):
    spec = ClipSpec("square", "yellow", "black", "right", speed, 24, 20, 30, speed_stated=False)
    assert read_mode(render_clip(spec, 16, 64)) == speed


def test_taste_prefers_its_mode_ties_on_equal_modes_and_parses():
    slow = render_clip(ClipSpec("circle", "red", "blue", "down", "slowly", 24, 30, 16), 16, 64)
    fast = render_clip(ClipSpec("circle", "red", "blue", "down", "quickly", 24, 30, 16), 16, 64)
    empty = np.zeros_like(slow) + np.array([40, 90, 220], np.uint8)
    fast_taste = Taste("speed", "quickly")
    assert fast_taste.choose(slow, fast) == "right"
    assert fast_taste.choose(fast, slow) == "left"
    assert fast_taste.choose(fast, fast) == "tie"
    assert fast_taste.reversed.choose(slow, fast) == "left"
    assert fast_taste.choose(empty, slow) == "right"  # a clip whose mode cannot be read ranks last
    assert Taste.parse("fast") == fast_taste and Taste.parse("speed=slowly") == fast_taste.reversed
    with pytest.raises(ValueError, match="prefers one of"):
        Taste("speed", "sideways")


def test_taste_labeler_votes_through_the_sampler_and_vote_store(tmp_path):
    from huvidpo.annotation import CandidatePool, PairSampler, VoteStore
    from huvidpo.data.video import write_video
    from huvidpo.world.labelers import label_with_taste

    pool = CandidatePool(tmp_path / "pool")
    clips = {}
    for seed, speed in enumerate(["slowly", "quickly", "slowly"]):
        spec = ClipSpec("triangle", "white", "green", "left", speed, 24, 48, 32, speed_stated=False)
        path = write_video(render_clip(spec, 16, 64), tmp_path / f"{seed}.mp4")
        clips[seed] = pool.add_clip(spec.prompt, path, {"seed": seed}).clip_id
    store = VoteStore(tmp_path / "votes.jsonl")
    votes = label_with_taste(PairSampler(pool, store, seed=0), Taste("speed", "quickly"))
    assert len(votes) == 3 and {v.labeler for v in store.read()} == {"taste-quickly"}
    decided = [v for v in votes if v.winner_clip is not None]
    assert len(decided) == 2 and all(v.winner_clip == clips[1] for v in decided)
    assert sum(v.choice == "tie" for v in votes) == 1


def test_vocabulary_and_gentle_warnings():
    words = vocabulary()
    assert "purple" not in words["colours"] and "ball" in words["shapes"] and "fast" in words["speeds"]
    assert vocabulary_warnings("a red circle moving left") == []
    notes = vocabulary_warnings("a purple hexagon moving left")
    assert any("purple" in note for note in notes) and any("hexagon" in note for note in notes)


def test_win_rate_can_leave_ties_out():
    from huvidpo.world.metrics import win_rate

    votes = ["b"] * 8 + ["a"] * 2 + ["tie"] * 10
    assert win_rate(votes).win_rate == 0.65  # ties half: (8 + 5) / 20
    decided = win_rate(votes, ties="excluded")
    assert decided.win_rate == 0.8 and decided.ties == 10 and decided.ci95[0] < 0.8 < decided.ci95[1]
    assert win_rate(["tie"] * 3, ties="excluded").win_rate is None
