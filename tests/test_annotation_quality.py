"""Quality control of a labeling campaign: gold pairs from the world's clips (jittered / frame-shuffled copies) served
at a set rate and never counted as data, per-labeler gold accuracy / position bias / response time with a flag,
overlap for agreement, and the studio's stats and export using them."""

from collections import Counter

import numpy as np
import pytest

from huvidpo.annotation.export import export_preferences
from huvidpo.annotation.gold import GOLD_OF, GoldMaker, degrade
from huvidpo.annotation.pool import CandidatePool
from huvidpo.annotation.sampler import PairSampler
from huvidpo.annotation.stats import inter_annotator_agreement, labeler_stats, leaderboard, pool_progress
from huvidpo.annotation.votes import VoteStore
from huvidpo.data.video import read_video, write_video
from huvidpo.world.clips import render_clip, sample_specs

FRAMES = 6


@pytest.fixture
def world_pool(tmp_path):
    """Two world prompts with three clips each (different seeds of the same spec family), as real mp4s."""
    pool = CandidatePool(tmp_path / "pool")
    for index, spec in enumerate(sample_specs(2, seed=3, num_frames=FRAMES)):
        for seed in range(3):
            video = write_video(render_clip(spec, FRAMES, 32, seed=seed, jitter=0.3 * seed), tmp_path / f"{index}-{seed}.mp4")
            pool.add_clip(spec.prompt, video, {"model": "tiny", "seed": seed, "lora": "r1" if seed else None})
    return pool


def test_degradations_keep_frame_zero_and_change_the_rest():
    rng = np.random.default_rng(0)
    frames = np.stack([np.full((16, 16, 3), 10 * i, dtype=np.uint8) for i in range(5)])
    frames[:, 4:8, 4:8] = 255
    for kind in ("shuffle", "jitter"):
        copy = degrade(frames, kind, rng)
        assert copy.shape == frames.shape and np.array_equal(copy[0], frames[0])
        assert not np.array_equal(copy, frames)
    jittered = degrade(frames, "jitter", rng)
    assert all(not np.array_equal(jittered[i], frames[i]) for i in range(1, 5))  # every later frame moved
    shuffled = degrade(frames, "shuffle", rng)
    assert sorted(int(f[0, 0, 0]) for f in shuffled[1:]) == [10, 20, 30, 40]
    with pytest.raises(ValueError, match="at least 3 frames"):
        degrade(frames[:2], "jitter", rng)
    with pytest.raises(ValueError, match="Unknown gold degradation"):
        degrade(frames, "blur", rng)


def test_gold_copies_live_in_their_own_pool(world_pool, tmp_path):
    gold = GoldMaker(world_pool, CandidatePool(tmp_path / "gold"))
    clip = world_pool.clips()[0]
    copy = gold.copy_of(clip)
    assert gold.copy_of(clip) == copy and len(gold.gold_pool) == 1  # made once
    assert copy.settings[GOLD_OF] == clip.clip_id and copy.settings["degradation"] in ("jitter", "shuffle")
    intact, degraded = read_video(world_pool.video_path(clip.clip_id)), read_video(gold.gold_pool.video_path(copy.clip_id))
    assert degraded.shape == intact.shape and np.abs(degraded[1:].astype(int) - intact[1:].astype(int)).mean() > 1
    assert copy.clip_id not in world_pool and len(world_pool) == 6
    assert gold.pairs() == [(clip, copy)]


def campaign(tmp_path, world_pool, gold_rate, overlap_share=0.0, seed=0):
    gold = GoldMaker(world_pool, CandidatePool(tmp_path / "gold"))
    for clip in world_pool.clips():
        gold.copy_of(clip)
    store = VoteStore(tmp_path / "votes.jsonl")
    return PairSampler(world_pool, store, seed=seed, gold=gold, gold_rate=gold_rate, overlap_share=overlap_share), store


def test_gold_pairs_are_served_at_the_rate_and_never_counted_as_data(world_pool, tmp_path):
    sampler, store = campaign(tmp_path, world_pool, gold_rate=0.3)
    served = Counter()
    for labeler in ("careful", "lazy"):
        while (pair := sampler.next_pair(labeler, "s")) is not None:
            if labeler == "careful":  # prefers the intact clip on gold pairs, the lower clip id otherwise
                winner = pair.gold or min(pair.left.clip_id, pair.right.clip_id)
                choice = "left" if pair.left.clip_id == winner else "right"
            else:  # always clicks left
                choice = "left"
            sampler.record_vote(labeler, "s", pair.token, choice)
            served["gold" if pair.gold else "data"] += 1
    # each labeler judged every data pair (6) and the gold pairs drawn before the data ran out
    assert served["data"] == 12 and 2 <= served["gold"] <= 10
    votes = store.effective_votes()
    assert {v.gold for v in votes if v.gold} <= {c.settings[GOLD_OF] for c in sampler.gold.gold_pool.clips()}
    assert pool_progress(world_pool, store)["pairs_judged"] == 6
    assert sum(row["games"] for row in leaderboard(store, world_pool)) == 2 * sum(
        1 for v in votes if not v.gold and v.left_settings.get("lora") != v.right_settings.get("lora"))
    exported = export_preferences(store, world_pool, tmp_path / "export")
    assert all(row["clip_w"] in world_pool and row["clip_l"] in world_pool for row in exported)

    stats = {row["labeler"]: row for row in labeler_stats(store, min_gold=1)}
    careful, lazy = stats["careful"], stats["lazy"]
    assert careful["votes"] == lazy["votes"] == 6  # data votes only
    assert careful["gold_accuracy"] == 1.0 and not careful["flagged"]
    assert lazy["left_share"] == 1.0 and lazy["gold"] >= 1
    lazy_gold = [v for v in votes if v.labeler == "lazy" and v.gold]
    assert lazy["gold_accuracy"] == pytest.approx(sum(v.left_clip == v.gold for v in lazy_gold) / len(lazy_gold))
    assert careful["median_response_ms"] is not None


def test_a_labeler_below_the_gold_threshold_is_flagged_and_can_be_left_out(world_pool, tmp_path):
    sampler, store = campaign(tmp_path, world_pool, gold_rate=0.9, seed=1)
    for labeler, right_answer in (("good", True), ("bad", False)):
        while (pair := sampler.next_pair(labeler, "s")) is not None:
            if pair.gold:
                wanted = pair.gold if right_answer else next(c.clip_id for c in (pair.left, pair.right) if c.clip_id != pair.gold)
                choice = "left" if pair.left.clip_id == wanted else "right"
            else:
                choice = "left"
            sampler.record_vote(labeler, "s", pair.token, choice)
    stats = {row["labeler"]: row for row in labeler_stats(store, gold_threshold=0.8, min_gold=5)}
    assert stats["good"]["gold"] >= 5 and stats["bad"]["gold"] >= 5
    assert (stats["good"]["flagged"], stats["bad"]["flagged"]) == (False, True)
    assert stats["bad"]["gold_accuracy"] == 0.0
    export_preferences(store, world_pool, tmp_path / "all")
    without = export_preferences(store, world_pool, tmp_path / "without", exclude_labelers={"bad"})
    assert len((tmp_path / "all" / "votes.jsonl").read_text().splitlines()) == 12  # data votes of both
    assert len((tmp_path / "without" / "votes.jsonl").read_text().splitlines()) == 6
    assert sum(row["n_w"] + row["n_l"] for row in without) == 6 and len(without) == 6


def test_overlap_share_measures_agreement_before_the_first_sweep_ends(world_pool, tmp_path):
    def second_labeler_overlaps(overlap_share):
        sampler, store = campaign(tmp_path / str(overlap_share), world_pool, gold_rate=0.0, overlap_share=overlap_share)
        for _ in range(3):  # ann judges half of the six pairs
            pair = sampler.next_pair("ann", "s")
            sampler.record_vote("ann", "s", pair.token, "left")
        for _ in range(3):
            pair = sampler.next_pair("ben", "s")
            sampler.record_vote("ben", "s", pair.token, "left")
        return inter_annotator_agreement(store)["pairs"]

    assert second_labeler_overlaps(0.0) == 0  # coverage first: ben takes the three pairs nobody judged
    assert second_labeler_overlaps(0.99) == 3  # ben is served the pairs ann judged


def test_bad_rates_are_refused(world_pool, tmp_path):
    store = VoteStore(tmp_path / "votes.jsonl")
    with pytest.raises(ValueError, match="gold_rate is a share"):
        PairSampler(world_pool, store, gold_rate=1.0, gold=GoldMaker(world_pool, CandidatePool(tmp_path / "g")))
    with pytest.raises(ValueError, match="gold_rate needs gold pairs"):
        PairSampler(world_pool, store, gold_rate=0.1)
    with pytest.raises(ValueError, match="overlap_share is a share"):
        PairSampler(world_pool, store, overlap_share=-0.1)
