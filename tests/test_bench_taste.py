"""bench/taste.py's figures of record: seeds' runs summarised, and runs from parallel processes merged into one file.

What is unusual here: the benchmark is a script, not a package module, so it is imported from bench/ for the test.
"""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def taste_bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import taste

    return taste


def run(taste_bench, name, seed, share, wins, losses, ties, votes=64, faith=0.94):
    return {"taste": taste_bench.TASTES[name].name, "votes": votes, "seed": seed, "pairs": 33,
            "preferred_share_base": 0.5, "preferred_share_dpo": share, "other_share_dpo": 1 - share,
            "win_rate": wins / (wins + losses), "win_rate_ci95_low": 0.0,
            "comparisons": {"wins": wins, "losses": losses, "ties": ties}, "faithfulness_base": 0.95,
            "faithfulness_dpo": faith, "dpo_minutes": 6.0, "dpo_steps": 300, "heldout_implicit_accuracy": 0.6,
            "heldout_pairs": 17}


def result(taste_bench, runs):
    from dataclasses import asdict

    return {"model": "embedded default", "plan": asdict(taste_bench.TastePlan()), "runs": runs,
            "base_mode_shares": {"slowly": 0.44, "quickly": 0.56, "null": 0.0}, "targets": {}}


def test_a_taste_is_the_mean_of_its_seeds_with_their_comparisons_pooled(taste_bench, tmp_path):
    out = tmp_path / "taste.json"
    written = taste_bench.write_result(out, result(taste_bench, [
        run(taste_bench, "B", 0, 0.80, 20, 5, 39), run(taste_bench, "B", 1, 0.90, 21, 0, 43)]))
    row = written["tastes"]["B"]
    assert row["seeds"] == [0, 1]
    assert row["preferred_share_dpo"] == pytest.approx(0.85)
    assert row["win_rate"] == pytest.approx(41 / 46)  # pooled, not the mean of 0.8 and 1.0
    assert row["comparisons"] == {"wins": 41, "losses": 5, "ties": 82}
    assert 0.76 < row["win_rate_ci95_low"] < 0.78  # Wilson on 41 of 46
    assert row["per_seed"]["0"]["preferred_share_dpo"] == 0.80 and row["per_seed"]["1"]["win_rate"] == 1.0
    assert json.loads(out.read_text())["tastes"]["B"] == row


def test_seeds_run_in_parallel_processes_land_in_one_file(taste_bench, tmp_path):
    out = tmp_path / "taste.json"
    taste_bench.write_result(out, result(taste_bench, [run(taste_bench, "A", 0, 0.9, 30, 2, 32),
                                                       run(taste_bench, "A", 0, 0.7, 10, 4, 50, votes=16)]))
    taste_bench.write_result(out, result(taste_bench, [run(taste_bench, "A", 1, 0.8, 28, 4, 32)]))
    merged = taste_bench.write_result(out, result(taste_bench, [run(taste_bench, "B", 1, 0.86, 20, 3, 41)]))
    assert merged["tastes"]["A"]["seeds"] == [0, 1] and merged["tastes"]["B"]["seeds"] == [1]
    assert [point["votes"] for point in merged["votes_curve"]["A"]] == [16, 64]
    # another plan is another experiment: nothing of the earlier runs is kept
    other = result(taste_bench, [run(taste_bench, "B", 0, 0.5, 1, 1, 62)])
    other["plan"]["dpo"] = {**other["plan"]["dpo"], "rpo_alpha": 5.0}
    assert list(taste_bench.write_result(out, other)["tastes"]) == ["B"]


def test_a_file_from_before_the_seeds_counts_as_seed_0(taste_bench, tmp_path):
    out = tmp_path / "taste.json"
    plan = {key: value for key, value in result(taste_bench, [])["plan"].items() if key != "dpo_seeds"}
    old_row = {key: value for key, value in run(taste_bench, "B", 0, 0.80, 20, 5, 39).items() if key != "seed"}
    curve = [{"votes": 16, "pairs": 8, "preferred_share_dpo": 0.875, "win_rate": 1.0, "faithfulness_dpo": 0.94},
             {"votes": 64, "pairs": 33, "preferred_share_dpo": 0.80, "win_rate": 0.8, "faithfulness_dpo": 0.94}]
    out.write_text(json.dumps({"model": "embedded default", "plan": plan, "tastes": {"B": old_row},
                               "votes_curve": {"B": curve}, "base_mode_shares": {"slowly": 0.44, "quickly": 0.56, "null": 0.0}}))
    merged = taste_bench.write_result(out, result(taste_bench, [run(taste_bench, "B", 1, 0.90, 21, 0, 43)]))
    assert merged["tastes"]["B"]["seeds"] == [0, 1]
    assert merged["tastes"]["B"]["preferred_share_dpo"] == pytest.approx(0.85)
    assert merged["votes_curve"]["B"][0] == {"votes": 16, "seeds": [0], "pairs": 8, "preferred_share_dpo": 0.875,
                                             "win_rate": 1.0, "faithfulness_dpo": 0.94}
