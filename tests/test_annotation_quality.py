"""Quality control of a labeling campaign: gold pairs from the world's clips (jittered / frame-shuffled copies) served
at a set rate and never counted as data, per-labeler gold accuracy / position bias / response time with a flag,
overlap for agreement, and the studio's stats and export using them."""

import dataclasses
from collections import Counter
from pathlib import Path

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
    for clip in world_pool.clips() if gold_rate else []:
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
    assert len((tmp_path / "all" / "vote_details.jsonl").read_text().splitlines()) == 12  # data votes of both
    assert len((tmp_path / "without" / "vote_details.jsonl").read_text().splitlines()) == 6
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


def test_the_studio_serves_gold_pairs_and_shows_gold_bias_and_alpha(tmp_path, capsys):
    from huvidpo.studio.app import build_parser, config_from_args, main
    from huvidpo.studio.generation import GeneratedClip
    from huvidpo.studio.labeling import LabelingService

    args = build_parser().parse_args(["--data-dir", str(tmp_path / "data"), "--gold-rate", "0.5", "--overlap-share", "0.2",
                                      "--gold-threshold", "0.7", "--replica", "space-a"])
    config = config_from_args(args)
    assert (config.gold_rate, config.overlap_share, config.gold_threshold, config.replica) == (0.5, 0.2, 0.7, "space-a")
    # gold is drawn at random (labelers must not learn a rhythm); a fixed sampler seed makes this run repeatable
    config = dataclasses.replace(config, sampler_seed=0)
    assert main(["--gold-rate", "1.5", "--data-dir", str(tmp_path / "other")]) == 2
    assert "gold_rate is a share of the pairs served" in capsys.readouterr().err

    labeling = LabelingService(config)
    spec = sample_specs(1, seed=5, num_frames=FRAMES)[0]
    clips = []
    for seed in range(2):
        video = write_video(render_clip(spec, FRAMES, 32, seed=seed, jitter=seed), tmp_path / f"c{seed}.mp4")
        video.with_suffix(".png").write_bytes(b"")
        clips.append(GeneratedClip(video=video, first_frame=video.with_suffix(".png"), settings={"prompt": spec.prompt, "seed": seed}))
    records = labeling.add_clips(clips)
    assert len(labeling.gold.gold_pool) == 2 and all("model_revision" in r.settings for r in records)
    assert config.gold_dir / "videos" in config.served_dirs
    shown = Counter()
    for labeler in ("ann", "ben"):
        while (pair := labeling.next_pair(labeler, "s")) is not None:
            view = labeling.view(labeler, pair)
            assert all(Path(view[side]).is_file() for side in ("left_video", "right_video"))
            served = labeling.sampler._served[(labeler, "s")]
            shown["gold" if served.gold else "data"] += 1
            labeling.vote(labeler, "s", pair["token"], "left")
    assert shown["data"] == 2 and shown["gold"] >= 1
    stats = labeling.stats()
    rows = {row["labeler"]: row for row in stats["labelers"]}
    assert {"gold", "gold_accuracy", "left_share", "median_response_ms", "flagged"} <= set(rows["ann"])
    assert rows["ann"]["left_share"] == 1.0 and rows["ann"]["votes"] == 1
    assert stats["agreement"]["pairs"] == 1 and "krippendorff_alpha" in stats["agreement"]
    assert stats["progress"]["pairs_judged"] == 1
    folder, pairs = labeling.export(exclude_flagged=True)
    assert (folder / "vote_details.jsonl").read_text().count('"replica": "space-a"') == 2


def test_the_train_tab_can_leave_flagged_labelers_out_of_the_votes_it_trains_on(tmp_path):
    from huvidpo.annotation.votes import Vote
    from huvidpo.studio.config import StudioConfig
    from huvidpo.studio.labeling import LabelingService
    from huvidpo.studio.training import TrainingManager

    config = StudioConfig(data_dir=str(tmp_path / "data"), oauth=False)
    labeling = LabelingService(config)
    a = labeling.pool.add_clip("p", b"clip a", {"seed": 0})
    b = labeling.pool.add_clip("p", b"clip b", {"seed": 1})
    copy = labeling.gold.gold_pool.add_clip("p", b"clip a, degraded", {"seed": 0, GOLD_OF: a.clip_id})
    for labeler, ok in (("good", True), ("bad", False)):
        labeling.store.append(Vote(labeler=labeler, choice="left", left_clip=a.clip_id, right_clip=b.clip_id, prompt="p"))
        for _ in range(5):
            labeling.store.append(Vote(labeler=labeler, choice="left" if ok else "right", left_clip=a.clip_id,
                                       right_clip=copy.clip_id, prompt="p", gold=a.clip_id))
    manager = TrainingManager(config, labeling)
    kept = Path(manager.resolve_dataset("votes", exclude_flagged=True))
    everyone = Path(manager.resolve_dataset("votes"))
    assert len((kept / "vote_details.jsonl").read_text().splitlines()) == 1
    assert len((everyone / "vote_details.jsonl").read_text().splitlines()) == 2
    assert "flagged" in (everyone / "README.md").read_text() and "left out" in (kept / "README.md").read_text()


def test_undoing_a_gold_vote_serves_the_same_gold_pair_again(world_pool, tmp_path):
    sampler, store = campaign(tmp_path, world_pool, gold_rate=0.9, seed=2)
    while (pair := sampler.next_pair("ann", "s")).gold is None:  # 9 in 10 are gold: a data pair first is voted on
        sampler.record_vote("ann", "s", pair.token, "skip")
    assert pair.gold in (pair.left.clip_id, pair.right.clip_id)
    recorded = sampler.record_vote("ann", "s", pair.token, "left", left_clip=pair.left.clip_id, right_clip=pair.right.clip_id)
    assert recorded.gold == pair.gold
    again = sampler.undo_last("ann", "s")
    assert (again.pair_id, again.left, again.right, again.gold) == (pair.pair_id, pair.left, pair.right, pair.gold)
    assert all(vote.gold is None for vote in store.effective_votes())
