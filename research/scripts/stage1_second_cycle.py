"""A second cosine cycle of stage 1 on a built default: does more motion training keep the asked shape in motion?

Loads a built pipeline (default: the embedded default), regenerates the world clips its build trained on
(``huvidpo.world.build.stage1_plan``: same plan and seed), and trains stage 1 again from it for ``--steps`` at ``--lr``
(cosine, warm-up min(100, 10 %), seed + 1 so batches and noise are new), then writes the pipeline folder ``--out``. Judge it
with ``python bench/world.py --model OUT --out ...`` against the default's ``bench/results/world.json`` (same draw).

    python research/scripts/stage1_second_cycle.py --out /tmp/refine1500        # 1500 steps at 3e-4: about 17 min on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from huvidpo.locations import DEFAULT_MODEL_DIR
from huvidpo.pipeline import HuViDPOPipeline
from huvidpo.training import train_stage1
from huvidpo.world.build import BuildPlan, stage1_plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="A pipeline built by scripts/build_embedded_default.py.")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0, help="The build's seed (the world's clips are drawn from it).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        config = replace(stage1_plan(BuildPlan(), Path(tmp), args.seed), output_dir=str(args.out), max_steps=args.steps,
                         learning_rate=args.lr, lr_warmup_steps=min(100, args.steps // 10), seed=args.seed + 1)
        result = train_stage1(config, pipe=HuViDPOPipeline.from_pretrained(args.model))
    print(f"wrote {result.output_dir}; final loss {result.metrics_history[-1]['loss']:.4f}")


if __name__ == "__main__":
    main()
