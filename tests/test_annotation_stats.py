"""Stats on hand-made vote sets whose numbers can be checked by hand."""

import pytest

from huvidpo.annotation.pool import CandidatePool
from huvidpo.annotation.stats import (
    bradley_terry,
    head_to_head,
    inter_annotator_agreement,
    krippendorff_alpha_nominal,
    labeler_stats,
    leaderboard,
    pool_progress,
    version_ranking,
    version_of,
    wilson_interval,
)
from huvidpo.annotation.votes import Vote, VoteStore

BASE = {"model": "tiny"}
LORA = {"model": "tiny", "lora": "dpo-v1", "lora_scale": 1.0}


def fake_mp4(tag: str) -> bytes:
    return b"\x00\x00\x00\x18ftypmp42" + tag.encode()


@pytest.fixture
def pool(tmp_path):
    """Prompt "rain": base clips b0, b1 and LoRA clips l0, l1; prompt "fire": b2 and l2."""
    pool = CandidatePool(tmp_path / "pool")
    for clip_id, prompt, settings in [
        ("b0", "rain", BASE), ("b1", "rain", BASE), ("l0", "rain", LORA), ("l1", "rain", LORA),
        ("b2", "fire", BASE), ("l2", "fire", LORA),
    ]:
        pool.add_clip(prompt, fake_mp4(clip_id), {**settings, "seed": int(clip_id[1])}, clip_id=clip_id)
    return pool


def vote(left: str, right: str, choice: str, labeler: str = "alice", **extra) -> Vote:
    return Vote(labeler=labeler, session_id="s", left_clip=left, right_clip=right, choice=choice, **extra)


def test_leaderboard_lora_wins_8_of_10(pool, tmp_path):
    store = VoteStore(tmp_path / "votes.jsonl")
    outcomes = [("l0", "b0", "left")] * 5 + [("b1", "l1", "right")] * 3 + [("l2", "b2", "right")] * 2
    for index, (left, right, choice) in enumerate(outcomes):
        store.append(vote(left, right, choice, labeler=f"labeler{index % 3}"))
    store.append(vote("b0", "l0", "tie"))
    store.append(vote("b0", "b1", "left"))  # same version: not a head-to-head game

    board = {row["version"]: row for row in leaderboard(store, pool)}
    lora, base = board["tiny/dpo-v1@1"], board["tiny/base"]
    assert (lora["games"], lora["wins"], lora["losses"], lora["ties"]) == (10, 8, 2, 1)
    assert lora["win_rate"] == pytest.approx(0.8) and base["win_rate"] == pytest.approx(0.2)
    assert lora["ci_low"] < 0.8 < lora["ci_high"]
    assert (lora["ci_low"], lora["ci_high"]) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert lora["bt_strength"] == pytest.approx(8.1 / 2.1)  # relative to the base: (8 + 0.1) / (2 + 0.1)
    assert base["bt_strength"] == 1.0
    assert [row["version"] for row in leaderboard(store, pool)] == ["tiny/dpo-v1@1", "tiny/base"]
    assert lora["clips"] == 3
    assert head_to_head(store, pool) == [
        {"version_a": "tiny/base", "version_b": "tiny/dpo-v1@1", "wins_a": 2, "wins_b": 8, "ties": 1}
    ]
    by_seed = {row["version"] for row in leaderboard(store, pool, key="seed")}
    assert by_seed == {"0", "1", "2"}


def test_bootstrap_interval_of_two_versions_is_the_binomial_one(pool, tmp_path):
    # LoRA 14 wins, base 6, and 3 ties. Two versions: the LoRA's strength relative to the base is (k + 0.1) /
    # (n - k + 0.1) for k wins of n = 20 decided votes; a resample draws k ~ Binomial(20, 0.7), whose 2.5% and 97.5% quantiles are 10 and 18
    # (P(k <= 9) = 0.017, P(k <= 10) = 0.048; P(k <= 17) = 0.964, P(k <= 18) = 0.992).
    store = VoteStore(tmp_path / "votes.jsonl")
    for index, choice in enumerate(["left"] * 14 + ["right"] * 6 + ["tie"] * 3):
        store.append(vote("l0", "b0", choice, labeler=f"labeler{index}"))
    ranking = version_ranking(store, pool, resamples=2000, seed=0, min_votes=20)
    lora, base = ranking["rows"]
    assert (lora["version"], base["version"]) == ("tiny/dpo-v1@1", "tiny/base") and ranking["hidden"] == []
    assert lora["bt_strength"] == pytest.approx(14.1 / 6.1) and ranking["anchor"] == "tiny/base"
    assert (lora["bt_low"], lora["bt_high"]) == pytest.approx((10.1 / 10.1, 18.1 / 2.1))
    assert (base["bt_strength"], base["bt_low"], base["bt_high"]) == (1.0, 1.0, 1.0)
    assert version_ranking(store, pool, resamples=2000, seed=0)["rows"] == ranking["rows"]  # seeded: the same again
    assert version_ranking(store, pool, min_votes=21)["rows"] == []  # 20 decided votes each: both hidden


def test_the_board_ranks_by_the_lower_bound_and_hides_versions_with_few_votes(tmp_path):
    """Round 2 beat the base 5 of 7 times, round 1 60 of 100: round 2's strength is higher, but its lower bound is not
    (it is below the base's), so round 1 leads and round 2 comes after the base; round 3 (2 votes) is not ranked, and
    the note says so."""
    pool = CandidatePool(tmp_path / "pool")
    for name in ("base", "round-1", "round-2", "round-3"):
        settings = {"model": "tiny", "seed": 0, "round": int(name[-1]) if name != "base" else 0,
                    **({"lora": name, "lora_scale": 1.0} if name != "base" else {})}
        pool.add_clip("rain", fake_mp4(name), settings, clip_id=name)
    store = VoteStore(tmp_path / "votes.jsonl")
    games = [("round-1", 60, 40), ("round-2", 5, 2), ("round-3", 2, 0)]
    for version, wins, losses in games:
        for index, choice in enumerate(["left"] * wins + ["right"] * losses):
            store.append(vote(version, "base", choice, labeler=f"labeler{index}"))
    ranking = version_ranking(store, pool, min_votes=5, resamples=300, seed=1)
    rows = {row["version"]: row for row in ranking["rows"]}
    assert rows["tiny/round-2@1"]["bt_strength"] > rows["tiny/round-1@1"]["bt_strength"]
    assert rows["tiny/round-2@1"]["bt_low"] < rows["tiny/round-1@1"]["bt_low"]
    assert [row["version"] for row in ranking["rows"]] == ["tiny/round-1@1", "tiny/base", "tiny/round-2@1"]
    assert [row["round"] for row in ranking["rows"]] == [1, 0, 2]
    assert ranking["anchor"] == "tiny/base" and rows["tiny/base"]["bt_strength"] == 1.0
    for row in ranking["rows"]:
        assert row["bt_low"] <= row["bt_strength"] <= row["bt_high"]
    assert ranking["hidden"] == [{"version": "tiny/round-3@1", "decided_votes": 2}]
    assert "fewer than 5 decided votes" in ranking["note"] and "tiny/round-3@1 (2)" in ranking["note"]
    # strengths relative to the base: round 1's is its odds against it, (60 + 0.1) / (40 + 0.1), alone with the base
    assert rows["tiny/round-1@1"]["bt_strength"] == pytest.approx(60.1 / 40.1)


def test_bradley_terry_recovers_a_known_ordering():
    wins = {("a", "b"): 30, ("b", "a"): 10, ("b", "c"): 30, ("c", "b"): 10, ("a", "c"): 45, ("c", "a"): 5}
    strengths = bradley_terry(wins, prior=0.0)
    assert strengths["a"] > strengths["b"] > strengths["c"]
    assert sum(strengths.values()) == pytest.approx(1.0)
    undefeated = bradley_terry({("a", "b"): 5})
    assert undefeated["a"] == pytest.approx(5.1 / 5.2) and undefeated["b"] > 0
    assert bradley_terry({}) == {}


def test_wilson_interval_known_values():
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == pytest.approx(1.0)


def test_version_of_names_model_lora_and_scale():
    assert version_of({"model": "sd15"}) == "sd15/base"
    assert version_of({"model": "sd15", "lora": "dpo", "lora_scale": 0.5}) == "sd15/dpo@0.5"
    assert version_of({"lora": "dpo"}) == "dpo"
    assert version_of({}) == "base"
    assert version_of({"steps": 50}, key="steps") == "50"


def test_labeler_stats_and_pool_progress(pool, tmp_path):
    store = VoteStore(tmp_path / "votes.jsonl")
    store.append(vote("l0", "b0", "left", response_ms=1000))
    store.append(vote("b0", "l0", "right", labeler="bob", response_ms=3000))
    store.append(vote("l1", "b1", "tie", response_ms=2000))
    store.append(vote("l2", "b2", "skip"))
    store.append(vote("l1", "b0", "both_bad", labeler="bob"))
    store.undo_last("bob", "s")

    stats = {row["labeler"]: row for row in labeler_stats(store)}
    assert stats["alice"] | {"median_response_ms": None} == {
        "labeler": "alice", "votes": 2, "left": 1, "right": 0, "tie": 1, "both_bad": 0, "skip": 1,  # a skip is no vote
        "undone": 0, "sessions": 1, "median_response_ms": None, "left_share": 1.0, "gold": 0, "gold_accuracy": None,
        "flagged": False,
    }
    assert stats["alice"]["median_response_ms"] == 1500
    bob = stats["bob"]
    assert (bob["votes"], bob["right"], bob["both_bad"], bob["undone"]) == (1, 1, 0, 1)
    assert [row["labeler"] for row in labeler_stats(store)] == ["alice", "bob"]

    progress = pool_progress(pool, store)
    assert progress == {
        "clips": 6, "prompts": 2, "pairs_total": 7, "pairs_judged": 2, "pairs_judged_by_2": 1,
        "share_judged": pytest.approx(2 / 7),
    }


def test_inter_annotator_agreement_ignores_sides(tmp_path):
    store = VoteStore(tmp_path / "votes.jsonl")
    store.append(vote("x", "y", "left", labeler="ann"))  # x wins
    store.append(vote("y", "x", "right", labeler="ben"))  # x wins, shown on the other side
    store.append(vote("x", "z", "left", labeler="ann"))  # x wins
    store.append(vote("z", "x", "left", labeler="ben"))  # z wins: disagreement
    store.append(vote("y", "z", "tie", labeler="ann"))
    store.append(vote("y", "z", "tie", labeler="ben"))
    store.append(vote("y", "w", "left", labeler="ann"))  # judged once: not in the agreement
    agreement = inter_annotator_agreement(store)
    assert (agreement["pairs"], agreement["labelers"], agreement["comparisons"]) == (3, 2, 3)
    assert agreement["percent_agreement"] == pytest.approx(2 / 3)
    # labels: (first, first), (first, second), (tie, tie): n = 6, n_first = 3, n_second = 1, n_tie = 2
    # alpha = 1 - (n - 1) * 2 / (2 * (3*1 + 3*2 + 1*2)) = 1 - 5 / 11
    assert agreement["krippendorff_alpha"] == pytest.approx(1 - 5 / 11)


def test_krippendorff_alpha_textbook_cases():
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"], ["a", "b"]]) == pytest.approx(1 - 10 / 18)
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]) is None
    assert krippendorff_alpha_nominal([]) is None
