"""Preference rounds, measured: three rounds of label -> DPO -> next round's clips in the embedded world.

The taste labeler (``Taste("speed", "slowly")``) plays the labelers. Round 0 is the embedded default's pool (training
prompts that leave the speed out, as ``bench/taste.py`` fills it). Each round k = 1, 2, 3:

1. The labeler casts ``votes_per_round`` more votes through the real PairSampler and VoteStore; the sampler serves
   the least-judged pairs of the whole pool, so from round 2 on most pairs put the newest round's clips against each
   other and against earlier rounds (same prompt and seed, same first frame).
2. DPO on every decided pair so far (``--pairs round``: on this round's new votes only), with the shipped plan
   (``huvidpo.world.taste.TASTE_DPO``). The reference is the base model and each round's LoRA starts at zero (the
   default, ``--reference base``: the best of the variants measured, research/2026-12-04-rounds-reference.md); with
   ``--reference previous`` it is the previous round's LoRA from round 2 on, and the new LoRA starts from it.
3. On held-out prompts x seeds: the share of clips in the taste's mode (the "taste share") and the oracle's
   faithfulness, with ``bench/taste.py``'s functions.
4. The round's clips enter the pool (``huvidpo.annotation.rounds.fill_round``: the base clips' prompts and seeds).
A last labeling pass judges the third round's pairs, and the leaderboard (Bradley-Terry strengths relative to the
base, bootstrap 95 % intervals, ranked by the lower bound) ranks the four versions by the labeler's votes.

    python bench/rounds.py             # bench/results/rounds.json (about an hour on one core)
    python bench/rounds.py --quick     # every step at toy size, in minutes (bench/results/rounds-quick.json)
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taste import faithfulness, make_pool, measure, share  # bench/taste.py (this script's folder is on sys.path)

from huvidpo.annotation import PairSampler, VoteStore, export_preferences
from huvidpo.annotation.export import SourcedClip, export_votes
from huvidpo.annotation.rounds import fill_round
from huvidpo.annotation.stats import version_ranking
from huvidpo.generate import GenerationSettings
from huvidpo.hub import load_pipeline
from huvidpo.training import DPOConfig, train_dpo
from huvidpo.training.config import REFERENCES
from huvidpo.world.clips import make_prompt_set
from huvidpo.world.labelers import label_with_taste
from huvidpo.world.taste import TASTE_DPO, Taste

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TASTE = Taste("speed", "slowly")


@dataclass
class RoundsPlan:
    rounds: int = 3
    pool_prompts: int = 16
    clips_per_prompt: int = 4
    votes_per_round: int = 64
    heldout_prompts: int = 16
    eval_seeds: int = 4
    frames: int = 16
    steps: int = 25
    leaderboard_min_votes: int = 10
    leaderboard_resamples: int = 200
    dpo: dict[str, Any] = field(default_factory=lambda: dict(TASTE_DPO))


# Eight frames: at four, the toy clips' speed is rarely readable and every vote is a tie.
QUICK = RoundsPlan(pool_prompts=3, clips_per_prompt=4, votes_per_round=10, heldout_prompts=2, eval_seeds=2, frames=8,
                   steps=4, leaderboard_min_votes=1, leaderboard_resamples=50,
                   dpo={**TASTE_DPO, "max_steps": 4, "num_frames": 8})


def held_out(rows: list[dict]) -> dict[str, float]:
    return {"taste_share": share(rows, TASTE.prefers), "other_share": share(rows, TASTE.reversed.prefers),
            "unreadable_share": share(rows, None), "faithfulness": faithfulness(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Pipeline to measure (default: the embedded default).")
    parser.add_argument("--root", type=Path, default=Path("outputs/bench-rounds"), help="Working folder (emptied first).")
    parser.add_argument("--quick", action="store_true", help="Toy sizes: checks every step runs.")
    parser.add_argument("--reference", default="base", choices=REFERENCES,
                        help="DPO reference from round 2 on: the base model (default) or the previous round's LoRA.")
    parser.add_argument("--pairs", default="all", choices=("all", "round"),
                        help="What each round's DPO trains on: every decided pair so far (default) or the round's new votes only.")
    parser.add_argument("--out", type=Path, default=None, help="Results file (default: bench/results/rounds.json).")
    args = parser.parse_args()
    plan = QUICK if args.quick else RoundsPlan()
    root = args.root / ("quick" if args.quick else "full")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    pipe = load_pipeline(args.model)
    settings = GenerationSettings(prompt="-", frames=plan.frames, steps=plan.steps, image_steps=plan.steps)
    train = make_prompt_set("train", plan.pool_prompts, seed=2, unstated_speed_prob=1.0)
    heldout = make_prompt_set("heldout", plan.heldout_prompts, seed=1, unstated_speed_prob=1.0)
    seeds = list(range(plan.eval_seeds))

    pool = make_pool(pipe, root / "train", train, plan.clips_per_prompt, settings)
    store = VoteStore(root / "votes.jsonl")
    base = held_out(measure(pipe, heldout, seeds, settings, None))
    rows: list[dict[str, Any]] = [{"round": 0, "reference": None, **base}]
    print(json.dumps(rows[-1]), flush=True)
    previous: str | None = None
    for number in range(1, plan.rounds + 1):
        cast = label_with_taste(PairSampler(pool, store, seed=number), TASTE, max_votes=plan.votes_per_round)
        if args.pairs == "round":
            cast_ids = {vote.vote_id for vote in cast}
            clips = {clip.clip_id: SourcedClip(clip, pool.root) for clip in pool.clips()}
            votes = [vote for vote in store.effective_votes() if vote.vote_id in cast_ids]
            pairs = len(export_votes(votes, clips, root / f"export-{number}"))
        else:
            pairs = len(export_preferences(store, pool, root / f"export-{number}"))
        if pairs == 0:  # every vote a tie (at toy sizes the clips often show no readable mode)
            rows.append({"round": number, "votes": len(cast), "pairs": 0, "skipped": "no decided pair yet"})
            print(json.dumps(rows[-1]), flush=True)
            break
        reference = args.reference if previous is not None else "base"
        config = DPOConfig(data=str(root / f"export-{number}"), output_dir=str(root / f"round-{number}"),
                           checkpointing_steps=0, overwrite_output_dir=True, reference=reference,
                           previous_lora=previous if reference == "previous" else None,
                           **{"num_frames": plan.frames, **plan.dpo})
        start = time.perf_counter()
        trained = train_dpo(config, pipe=pipe)
        minutes = (time.perf_counter() - start) / 60
        previous = str(trained.output_dir)
        after = held_out(measure(pipe, heldout, seeds, settings, previous))  # leaves the pipeline without a LoRA
        start = time.perf_counter()
        _, clips = fill_round(pipe, pool, previous, lora_name=f"round-{number}")
        rows.append({"round": number, "reference": reference, "votes": len(store.effective_votes()), "votes_this_round": len(cast),
                     "pairs": pairs, **after, "dpo_minutes": minutes, "dpo_steps": trained.steps,
                     "round_clips": len(clips), "fill_minutes": (time.perf_counter() - start) / 60})
        print(json.dumps(rows[-1]), flush=True)
    final = label_with_taste(PairSampler(pool, store, seed=0), TASTE, max_votes=plan.votes_per_round)
    ranking = version_ranking(store, pool, min_votes=plan.leaderboard_min_votes, resamples=plan.leaderboard_resamples)

    result = {"model": args.model or "embedded default", "taste": TASTE.name, "plan": asdict(plan),
              "reference": args.reference, "pairs": args.pairs, "rounds": rows, "final_votes": len(final),
              "leaderboard": ranking["rows"], "leaderboard_note": ranking["note"]}
    out = args.out or RESULTS_DIR / ("rounds-quick.json" if args.quick else "rounds.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'round':>5}{'reference':>11}{'votes':>7}{'pairs':>7}{'taste share':>13}{'other':>7}{'faith':>7}{'DPO min':>9}")
    for row in rows:
        if row.get("skipped"):
            print(f"{row['round']:>5}  skipped: {row['skipped']}")
            continue
        print(f"{row['round']:>5}{row['reference'] or '-':>11}{row.get('votes', 0):>7}{row.get('pairs', 0):>7}"
              f"{row['taste_share']:>13.2f}{row['other_share']:>7.2f}{row['faithfulness']:>7.3f}"
              f"{row.get('dpo_minutes', 0.0):>9.1f}")
    print("leaderboard (ranked by the lower bound of the bootstrap 95% interval):")
    for row in ranking["rows"]:
        low, high = row.get("bt_low"), row.get("bt_high")
        interval = f"[{low:.2f}, {high:.2f}]" if low is not None else "[-]"
        print(f"  round {row.get('round', '?')}  {row['version']:<40} strength {row['bt_strength'] or 0:.2f} {interval}"
              f"  games {row['games']}")
    if ranking["note"]:
        print("  " + ranking["note"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
