"""The taste loop, measured: does labeling plus DPO move the embedded default toward what a labeler prefers?

A prompt that names no speed leaves the clip free to move slowly or quickly (the world's unprompted mode). For
each taste (A prefers slowly, B quickly):

1. Pool: the default's clips of training prompts that leave the speed out (a prompt's clips share their first
   frame, so a pair differs in what the video model did).
2. The taste labeler casts ``votes`` votes through the real PairSampler and VoteStore, as a person would
   (a tie when both clips show the same mode); the votes are exported as the studio exports them.
3. DPO with the shipped plan (``huvidpo.world.taste.TASTE_DPO`` over ``DPOConfig``: what the Train tab runs on the
   embedded default).
4. On held-out prompts x seeds (same prompt and seed for base and LoRA): the preferred mode's share, the
   labeler's vote between the base and the LoRA clip (win rate with ties left out, Wilson 95 %), the oracle's
   faithfulness (mean of shape, colour and direction match), and the implicit accuracy on held-out pairs.
The curve repeats 2-4 with the first 16 and 32 of the 64 votes (what a person who stopped earlier gave).

    python bench/taste.py                    # the README's figures: bench/results/taste.json
    python bench/taste.py --quick            # every step at toy size, in a few minutes

Base clips are cached in ``--root`` (heldout-base.json), so a rerun with other DPO settings (``--dpo``) only
trains and generates the LoRA clips.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from filelock import FileLock

from huvidpo.annotation import CandidatePool, PairSampler, VoteStore, export_preferences
from huvidpo.annotation.fill import fill_pool
from huvidpo.eval.implicit import heldout_implicit_accuracy
from huvidpo.generate import GenerationSettings, apply_lora, generate
from huvidpo.hub import load_pipeline
from huvidpo.training import DPOConfig, train_dpo
from huvidpo.world.clips import make_prompt_set
from huvidpo.world.labelers import label_with_taste
from huvidpo.world.metrics import oracle_clip_metrics, win_rate
from huvidpo.world.taste import TASTE_DPO, Taste

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TASTES = {"A": Taste("speed", "slowly"), "B": Taste("speed", "quickly")}
FAITHFULNESS_KEYS = ("shape_match", "color_match", "direction_match")


@dataclass
class TastePlan:
    pool_prompts: int = 16
    clips_per_prompt: int = 4  # 6 pairs per prompt, 96 in all: 64 votes leave some unseen
    votes: int = 64  # what a person gives in about five minutes
    votes_curve: tuple[int, ...] = (16, 32)
    heldout_prompts: int = 16
    eval_seeds: int = 4  # 64 comparisons per taste
    heldout_pair_prompts: int = 6
    frames: int = 16  # of every generated clip (and of DPO's clips unless the plan says)
    steps: int = 25
    dpo: dict[str, Any] = field(default_factory=lambda: dict(TASTE_DPO))


QUICK = TastePlan(pool_prompts=2, clips_per_prompt=3, votes=4, votes_curve=(2,), heldout_prompts=2, eval_seeds=1,
                  heldout_pair_prompts=1, frames=4, steps=3, dpo={**TASTE_DPO, "max_steps": 2, "num_frames": 4})


def make_pool(pipe, root: Path, prompts: list[str], clips_per_prompt: int, settings: GenerationSettings) -> CandidatePool:
    """The clips to label, as ``python -m huvidpo.annotation.fill`` makes them (a prompt's clips share a first frame)."""
    pool = CandidatePool(root / "pool")
    fill_pool(pipe, pool, prompts, clips_per_prompt, settings)
    return pool


def cast_votes(pool: CandidatePool, root: Path, taste: Taste, votes: int) -> Path:
    """The taste labeler's ``votes`` votes on ``pool``, in ``root/votes.jsonl`` (kept between runs)."""
    path = root / "votes.jsonl"
    store = VoteStore(path)
    missing = votes - len(store.read())
    if missing > 0:
        label_with_taste(PairSampler(pool, store, seed=0), taste, max_votes=missing)
    return path


def export_first(votes_path: Path, pool: CandidatePool, count: int, out: Path) -> int:
    """Export the decided pairs among the first ``count`` votes (a labeler who stopped there); their number."""
    prefix = out / "votes.jsonl"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.write_text("".join(votes_path.read_text().splitlines(keepends=True)[:count]))
    return len(export_preferences(VoteStore(prefix), pool, out / "export"))


def measure(pipe, prompts: list[str], seeds: list[int], settings: GenerationSettings, lora: str | None) -> list[dict]:
    """Per (prompt, seed): the speed mode the clip shows and the oracle's faithfulness flags."""
    rows = []
    for prompt in prompts:
        for seed in seeds:
            frames, _ = generate(pipe, replace(settings, prompt=prompt, seed=seed, lora=lora))
            metrics = oracle_clip_metrics(frames, prompt)
            rows.append({"prompt": prompt, "seed": seed, "mode": metrics.modes.get("speed"),
                         **{key: getattr(metrics, key) for key in FAITHFULNESS_KEYS}})
    apply_lora(pipe, None, 1.0)
    return rows


def share(rows: list[dict], mode: str) -> float:
    return sum(row["mode"] == mode for row in rows) / len(rows)


def faithfulness(rows: list[dict]) -> float:
    return sum(row[key] for row in rows for key in FAITHFULNESS_KEYS) / (len(rows) * len(FAITHFULNESS_KEYS))


def run_taste(pipe, plan: TastePlan, taste: Taste, votes: int, pool: CandidatePool, votes_path: Path,
              heldout_pool: CandidatePool, heldout_votes: Path, base: list[dict], heldout: list[str], seeds: list[int],
              settings: GenerationSettings, root: Path) -> dict[str, Any]:
    """DPO on the first ``votes`` votes, then the held-out comparison against the base clips."""
    pairs = export_first(votes_path, pool, votes, root)
    if pairs == 0:  # every vote a tie: the pool showed one mode only (at toy sizes, often no readable mode)
        return {"taste": taste.name, "votes": votes, "pairs": 0, "skipped": "no decided pair among the votes"}
    config = DPOConfig(data=str(root / "export"), output_dir=str(root / "dpo"), checkpointing_steps=0,
                       overwrite_output_dir=True, **{"num_frames": plan.frames, **plan.dpo})
    start = time.perf_counter()
    trained = train_dpo(config, pipe=pipe)
    minutes = (time.perf_counter() - start) / 60
    lora = str(trained.lora_path)
    apply_lora(pipe, lora, 1.0)
    export_first(heldout_votes, heldout_pool, 10**9, root / "heldout")
    implicit = heldout_implicit_accuracy(pipe, root / "heldout" / "export", config.num_frames)
    dpo = measure(pipe, heldout, seeds, settings, lora)
    # The labeler's vote between the base clip (a) and the LoRA clip (b) of each prompt and seed.
    choices = [{"left": "a", "right": "b", "tie": "tie"}[taste.choose(b["mode"], d["mode"])] for b, d in zip(base, dpo)]
    rate = win_rate(choices, ties="excluded")
    return {
        "taste": taste.name,
        "votes": votes,
        "pairs": pairs,
        "preferred_share_base": share(base, taste.prefers),
        "preferred_share_dpo": share(dpo, taste.prefers),
        "other_share_dpo": share(dpo, taste.reversed.prefers),
        "win_rate": rate.win_rate,
        "win_rate_ci95_low": rate.ci95[0] if rate.ci95 else None,
        "comparisons": {"wins": rate.wins, "losses": rate.losses, "ties": rate.ties},
        "faithfulness_base": faithfulness(base),
        "faithfulness_dpo": faithfulness(dpo),
        "dpo_minutes": minutes,
        "dpo_steps": trained.steps,
        "heldout_implicit_accuracy": implicit["expected"],
        "heldout_pairs": implicit["pairs"],
    }


def write_result(out: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Write ``result`` to ``out``, keeping the tastes a run of the same model and plan left there: one taste can be
    rerun, or the two run in parallel processes (``--tastes A`` and ``--tastes B``), into one file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        earlier = json.loads(out.read_text()) if out.is_file() else {}
        result = json.loads(json.dumps(result))  # as the file holds it (tuples as lists), so the two compare
        if all(earlier.get(key) == result[key] for key in ("model", "plan", "base_mode_shares")):
            for key in ("tastes", "votes_curve"):
                result[key] = {**earlier[key], **result[key]}
            result["tastes"] = dict(sorted(result["tastes"].items()))
            result["votes_curve"] = dict(sorted(result["votes_curve"].items()))
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Pipeline to measure (default: the embedded default).")
    parser.add_argument("--root", type=Path, default=Path("outputs/bench-taste"),
                        help="Working folder (pools, votes, LoRAs, cached base clips); reused by reruns.")
    parser.add_argument("--quick", action="store_true", help="Toy sizes: checks every step runs.")
    parser.add_argument("--tastes", default="A,B", help="Which tastes to run (A prefers slowly, B quickly); a run of one "
                        "taste keeps the other's results in --out when the model and plan are the same.")
    parser.add_argument("--no-curve", action="store_true", help="Skip the 16- and 32-vote runs.")
    parser.add_argument("--dpo", default=None, help="JSON of DPOConfig fields over the shipped plan, e.g. "
                        "'{\"learning_rate\": 3e-4}' (a screen; the README's figures use the shipped plan).")
    parser.add_argument("--out", type=Path, default=None, help="Results file (default: bench/results/taste.json).")
    args = parser.parse_args()
    plan = QUICK if args.quick else TastePlan()
    if args.dpo:
        plan = replace(plan, dpo={**plan.dpo, **json.loads(args.dpo)})
    tastes = [name.strip() for name in args.tastes.split(",") if name.strip()]
    unknown = [name for name in tastes if name not in TASTES]
    if unknown:
        parser.error(f"--tastes: unknown {unknown}; use A and/or B.")
    root = args.root / ("quick" if args.quick else "full")
    root.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(args.model)
    settings = GenerationSettings(prompt="-", frames=plan.frames, steps=plan.steps, image_steps=plan.steps)
    train = make_prompt_set("train", plan.pool_prompts, seed=2, unstated_speed_prob=1.0)
    heldout = make_prompt_set("heldout", plan.heldout_prompts, seed=1, unstated_speed_prob=1.0)
    seeds = list(range(plan.eval_seeds))

    base_cache = root / "heldout-base.json"
    key = {"model": args.model, "prompts": heldout, "seeds": seeds, "frames": plan.frames, "steps": plan.steps}
    cached = json.loads(base_cache.read_text()) if base_cache.is_file() else {}
    if cached.get("key") == key:
        base = cached["rows"]
    else:
        base = measure(pipe, heldout, seeds, settings, None)
        base_cache.write_text(json.dumps({"key": key, "rows": base}, indent=1))
    pool = make_pool(pipe, root / "train", train, plan.clips_per_prompt, settings)
    heldout_pool = make_pool(pipe, root / "heldout", heldout[: plan.heldout_pair_prompts], plan.clips_per_prompt, settings)

    result: dict[str, Any] = {"model": args.model or "embedded default", "plan": asdict(plan), "tastes": {},
                              "votes_curve": {}}
    for name in tastes:
        taste = TASTES[name]
        votes_path = cast_votes(pool, root / f"votes-{name}", taste, plan.votes)
        heldout_votes = cast_votes(heldout_pool, root / f"heldout-votes-{name}", taste, 10**9)
        counts = [plan.votes] + ([] if args.no_curve else [n for n in plan.votes_curve if n < plan.votes])
        curve = []
        for count in counts:
            run_root = root / f"dpo-{name}-{count}"
            shutil.rmtree(run_root, ignore_errors=True)
            row = run_taste(pipe, plan, taste, count, pool, votes_path, heldout_pool, heldout_votes, base, heldout,
                            seeds, settings, run_root)
            print(json.dumps(row), flush=True)
            if count == plan.votes:
                result["tastes"][name] = row
            curve.append({key: row.get(key) for key in ("votes", "pairs", "preferred_share_dpo", "win_rate", "faithfulness_dpo")})
        result["votes_curve"][name] = sorted(curve, key=lambda row: row["votes"])

    result["base_mode_shares"] = {mode: share(base, mode) for mode in ("slowly", "quickly", None)}
    result["targets"] = {"preferred_share_dpo": 0.85, "win_rate": 0.80, "win_rate_ci95_low": 0.65,
                         "other_taste_share_after_dpo": 0.15, "faithfulness_drop": 0.03, "dpo_minutes": 10}
    out = args.out or RESULTS_DIR / ("taste-quick.json" if args.quick else "taste.json")
    result = write_result(out, result)
    print(f"{'taste':<16}{'votes':>6}{'share base':>12}{'share DPO':>11}{'win rate':>10}{'low95':>7}"
          f"{'faith base':>12}{'faith DPO':>11}{'DPO min':>9}{'impl.acc':>10}")
    for name, row in result["tastes"].items():
        if row.get("skipped"):
            print(f"{name + ' ' + row['taste']:<16}{row['votes']:>6}  skipped: {row['skipped']}")
            continue
        print(f"{name + ' ' + row['taste']:<16}{row['votes']:>6}{row['preferred_share_base']:>12.2f}"
              f"{row['preferred_share_dpo']:>11.2f}{row['win_rate'] or float('nan'):>10.2f}"
              f"{row['win_rate_ci95_low'] or float('nan'):>7.2f}{row['faithfulness_base']:>12.3f}"
              f"{row['faithfulness_dpo']:>11.3f}{row['dpo_minutes']:>9.1f}{row['heldout_implicit_accuracy']:>10.2f}")
    for name, curve in result["votes_curve"].items():
        print(f"curve {name}: " + ", ".join(f"{c['votes']} votes -> share {c['preferred_share_dpo']}" for c in curve))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
