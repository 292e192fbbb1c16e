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
DPO runs with three seeds (its noise, timesteps and LoRA initialisation): one seed moved taste B's share to
0.80 and another to 0.89 with the same votes, so the figures are the seeds' mean, with their comparisons pooled
for the win rate, and each seed's figures beside them (the curve's 16 and 32 votes: the first seed).

    python bench/taste.py                    # the README's figures: bench/results/taste.json
    python bench/taste.py --quick            # every step at toy size, in a few minutes
    python bench/taste.py --tastes A --seeds 1,2 & python bench/taste.py --tastes B --seeds 1,2   # in parallel

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
    # DPO runs differ by seed (noise, timesteps, LoRA init) as much as the targets' margins: the figures are the
    # seeds' mean, their comparisons pooled; the 16- and 32-vote points use the first seed only
    dpo_seeds: tuple[int, ...] = (0, 1, 2)


QUICK = TastePlan(pool_prompts=2, clips_per_prompt=3, votes=4, votes_curve=(2,), heldout_prompts=2, eval_seeds=1, dpo_seeds=(0,),
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
              settings: GenerationSettings, root: Path, seed: int = 0) -> dict[str, Any]:
    """DPO (seed ``seed``) on the first ``votes`` votes, then the held-out comparison against the base clips."""
    pairs = export_first(votes_path, pool, votes, root)
    if pairs == 0:  # every vote a tie: the pool showed one mode only (at toy sizes, often no readable mode)
        return {"taste": taste.name, "votes": votes, "seed": seed, "pairs": 0, "skipped": "no decided pair among the votes"}
    config = DPOConfig(data=str(root / "export"), output_dir=str(root / "dpo"), checkpointing_steps=0,
                       overwrite_output_dir=True, **{"num_frames": plan.frames, **plan.dpo, "seed": seed})
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
        "seed": seed,
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


MEANS = ("preferred_share_dpo", "other_share_dpo", "faithfulness_dpo", "dpo_minutes", "heldout_implicit_accuracy")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs of one taste and vote count (one per DPO seed) as one row: the means of the per-run figures, the
    win rate of the comparisons pooled over the seeds (Wilson 95 %), and each seed's share and win rate."""
    done = sorted((run for run in runs if not run.get("skipped")), key=lambda run: run["seed"])
    if len(done) <= 1:  # one seed (or none): its row as it is (older curve points hold only the curve's figures)
        return {**(done or runs)[0], "seeds": [run["seed"] for run in done]}
    wins, losses, ties = (sum(run["comparisons"][key] for run in done) for key in ("wins", "losses", "ties"))
    rate = win_rate(["b"] * wins + ["a"] * losses + ["tie"] * ties, ties="excluded")
    first = done[0]
    return {
        "taste": first["taste"], "votes": first["votes"], "pairs": first["pairs"], "seeds": [run["seed"] for run in done],
        "preferred_share_base": first["preferred_share_base"], "faithfulness_base": first["faithfulness_base"],
        **{key: sum(run[key] for run in done) / len(done) for key in MEANS},
        "win_rate": rate.win_rate, "win_rate_ci95_low": rate.ci95[0] if rate.ci95 else None,
        "comparisons": {"wins": wins, "losses": losses, "ties": ties},
        "dpo_steps": first["dpo_steps"], "heldout_pairs": first["heldout_pairs"],
        "per_seed": {str(run["seed"]): {"preferred_share_dpo": run["preferred_share_dpo"], "other_share_dpo": run["other_share_dpo"],
                                        "win_rate": run["win_rate"], "faithfulness_dpo": run["faithfulness_dpo"]} for run in done},
    }


def write_result(out: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Write ``result`` to ``out`` with the runs an earlier run of the same model, plan and base clips left there
    (one taste or seed can be rerun, or several run in parallel processes into one file), and the summary of
    them all: ``tastes`` (at the plan's vote count) and ``votes_curve``. Runs without a seed are seed 0 (files
    written before the seeds were recorded; DPOConfig's default)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    same = ("model", "plan", "base_mode_shares")
    with FileLock(str(out) + ".lock"):
        earlier = json.loads(out.read_text()) if out.is_file() else {}
        result = json.loads(json.dumps(result))  # as the file holds it (tuples as lists), so the two compare
        old_plan = {key: value for key, value in earlier.get("plan", {}).items() if key != "dpo_seeds"}
        new_plan = {key: value for key, value in result["plan"].items() if key != "dpo_seeds"}
        if old_plan == new_plan and all(earlier.get(key) == result[key] for key in same if key != "plan"):
            runs = earlier.get("runs") or [*earlier.get("tastes", {}).values(), *(
                {**row, "taste": TASTES[name].name} for name, curve in earlier.get("votes_curve", {}).items()
                for row in curve if row["votes"] != earlier["plan"]["votes"])]
            keep = {(run["taste"], run["votes"], run.get("seed", 0)): run for run in runs}
            keep.update({(run["taste"], run["votes"], run["seed"]): run for run in result["runs"]})
            result["runs"] = [{**run, "seed": run.get("seed", 0)} for run in keep.values()]
        result["runs"].sort(key=lambda run: (run["taste"], run["votes"], run["seed"]))
        names = {name: taste.name for name, taste in TASTES.items()}
        result["tastes"], result["votes_curve"] = {}, {}
        for name, label in names.items():
            counts = sorted({run["votes"] for run in result["runs"] if run["taste"] == label})
            rows = {count: summarize([run for run in result["runs"] if run["taste"] == label and run["votes"] == count])
                    for count in counts}
            if result["plan"]["votes"] in rows:
                result["tastes"][name] = rows[result["plan"]["votes"]]
            if rows:
                result["votes_curve"][name] = [{key: row.get(key) for key in CURVE_KEYS} for row in rows.values()]
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


CURVE_KEYS = ("votes", "seeds", "pairs", "preferred_share_dpo", "win_rate", "faithfulness_dpo")


def heldout_setup(plan: TastePlan) -> tuple[GenerationSettings, list[str], list[int]]:
    """What the base and every DPO LoRA are measured on: the settings, the held-out speedless prompts and the seeds."""
    settings = GenerationSettings(prompt="-", frames=plan.frames, steps=plan.steps, image_steps=plan.steps)
    heldout = make_prompt_set("heldout", plan.heldout_prompts, seed=1, unstated_speed_prob=1.0)
    return settings, heldout, list(range(plan.eval_seeds))


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
    parser.add_argument("--seeds", default=None, help="DPO seeds to run, e.g. '1,2' (default: the plan's); the runs of "
                        "other seeds already in --out are kept, so seeds can run in parallel processes.")
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
    settings, heldout, seeds = heldout_setup(plan)
    train = make_prompt_set("train", plan.pool_prompts, seed=2, unstated_speed_prob=1.0)

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

    dpo_seeds = [int(seed) for seed in args.seeds.split(",")] if args.seeds else list(plan.dpo_seeds)
    result: dict[str, Any] = {"model": args.model or "embedded default", "plan": asdict(plan), "runs": []}
    for name in tastes:
        taste = TASTES[name]
        votes_path = cast_votes(pool, root / f"votes-{name}", taste, plan.votes)
        heldout_votes = cast_votes(heldout_pool, root / f"heldout-votes-{name}", taste, 10**9)
        counts = [plan.votes] + ([] if args.no_curve else [n for n in plan.votes_curve if n < plan.votes])
        for count in counts:
            for seed in dpo_seeds if count == plan.votes else [seed for seed in dpo_seeds if seed == plan.dpo_seeds[0]]:
                run_root = root / (f"dpo-{name}-{count}" + (f"-seed{seed}" if seed else ""))
                shutil.rmtree(run_root, ignore_errors=True)
                row = run_taste(pipe, plan, taste, count, pool, votes_path, heldout_pool, heldout_votes, base, heldout,
                                seeds, settings, run_root, seed=seed)
                print(json.dumps(row), flush=True)
                result["runs"].append(row)

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
        for seed, one in row.get("per_seed", {}).items():
            print(f"{'  seed ' + seed:<16}{'':>6}{'':>12}{one['preferred_share_dpo']:>11.2f}{one['win_rate'] or float('nan'):>10.2f}"
                  f"{'':>7}{'':>12}{one['faithfulness_dpo']:>11.3f}")
    for name, curve in result["votes_curve"].items():
        print(f"curve {name}: " + ", ".join(f"{c['votes']} votes -> share {c['preferred_share_dpo']:.2f} (seeds {c['seeds']})"
                                            for c in curve))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
