"""The embedded default in its world: does it draw what held-out prompts ask, however they are worded, and does it
leave an unstated speed to chance?

Three prompt sets of the same held-out combinations (``huvidpo.world.clips.PROMPT_SETS``), each x seeds, read by
the oracle:
- ``heldout``: canonical prompts ("a red circle moving left slowly on a blue background");
- ``heldout-worded``: the same prompts as people write them (synonyms, word order, capitals);
- ``heldout-speedless``: the same prompts without a speed word: each speed mode's share (the unprompted mode a
  taste labeler moves; the target is each mode in 30-70 % of clips).
And the seconds for one 16-frame clip at 25 steps.

    python bench/world.py            # the README's figures: bench/results/world.json (about 10 minutes on 2 cores)
    python bench/world.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from huvidpo.eval import evaluate
from huvidpo.generate import GenerationSettings, generate
from huvidpo.hub import load_pipeline
from huvidpo.world.clips import prompt_set

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SETS = ("heldout", "heldout-worded", "heldout-speedless")
TARGETS = {"shape_and_color": 0.90, "direction": 0.90, "worded_gap": 0.05, "mode_share": (0.30, 0.70),
           "seconds_16_frames_25_steps": 15.0}


def faithfulness(summary: dict) -> dict[str, float]:
    """Match rates of one prompt set, and the mean of shape, colour and direction (what the taste bench compares)."""
    rates = {key: summary[f"{key}_match_rate"] for key in ("shape", "color", "background", "direction")}
    return {**rates, "shape_and_color": summary["all_shape_color"], "mean_shape_color_direction":
            (rates["shape"] + rates["color"] + rates["direction"]) / 3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Pipeline to measure (default: the embedded default).")
    parser.add_argument("--quick", action="store_true", help="2 prompts, 1 seed, 4 frames, 3 steps.")
    parser.add_argument("--prompts", type=int, default=16, help="Held-out prompts per set.")
    parser.add_argument("--seeds", type=int, default=2, help="Seeds per prompt.")
    parser.add_argument("--out", type=Path, default=None, help="Results file (default: bench/results/world.json).")
    args = parser.parse_args()
    prompts, seeds = (2, 1) if args.quick else (args.prompts, args.seeds)
    frames, steps = (4, 3) if args.quick else (16, 25)
    pipe = load_pipeline(args.model)
    settings = GenerationSettings(prompt="-", frames=frames, steps=steps, image_steps=steps)

    start = time.perf_counter()
    generate(pipe, GenerationSettings(prompt=prompt_set("heldout", 1)[0], frames=16, steps=25, image_steps=25))
    result: dict = {"model": args.model or "embedded default", "seconds_16_frames_25_steps": time.perf_counter() - start,
                    "prompts": prompts, "seeds": seeds, "frames": frames, "steps": steps, "sets": {}}
    for name in SETS:
        report = evaluate(pipe, prompt_set(name, prompts, seed=1), list(range(seeds)), settings)
        base = [r["oracle"] for r in report.records]
        summary = report.summary["base"]
        summary["all_shape_color"] = sum(r["shape_match"] and r["color_match"] for r in base) / len(base)
        result["sets"][name] = {"clips": len(base), **faithfulness(summary),
                                "mode_shares": summary.get("mode_shares"), "smoothness": summary["smoothness"]}
    canonical, worded = result["sets"]["heldout"], result["sets"]["heldout-worded"]
    result["worded_gap"] = canonical["mean_shape_color_direction"] - worded["mean_shape_color_direction"]
    result["targets"] = TARGETS
    out = args.out or RESULTS_DIR / ("world-quick.json" if args.quick else "world.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{'prompt set':<20}{'clips':>6}{'shape':>7}{'colour':>8}{'backgr.':>8}{'direction':>10}{'shape+col':>10}"
          f"{'slowly':>8}{'quickly':>8}")
    for name, row in result["sets"].items():
        speed = (row["mode_shares"] or {}).get("speed", {})
        modes = "".join(f"{speed[m]:>8.2f}" if m in speed else f"{'-':>8}" for m in ("slowly", "quickly"))
        print(f"{name:<20}{row['clips']:>6}{row['shape']:>7.2f}{row['color']:>8.2f}{row['background']:>8.2f}"
              f"{row['direction']:>10.2f}{row['shape_and_color']:>10.2f}{modes}")
    print(f"worded below canonical (mean of shape, colour, direction): {result['worded_gap']:+.3f} (target <= "
          f"{TARGETS['worded_gap']}); one 16-frame clip at 25 steps: {result['seconds_16_frames_25_steps']:.1f} s")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
