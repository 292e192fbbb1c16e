"""Reproduce the embedded default checkpoint from nothing, on a CPU, with the project's own code.

The real recipe in miniature: (1) a tiny VAE is trained on the synthetic world's frames; (2) a tiny
CLIP text encoder (our locally built tokenizer) is pretrained to tell apart every attribute a world
prompt names, then frozen, as SD's CLIP encoder is; (3) a tiny text-to-image UNet is trained on first
frames; (4) the image UNet is inflated to video and (5) stage 1 trains its temporal layers and
``attn1.to_q`` on world clips with ``huvidpo.training.train_stage1``. The result is a HuViDPO pipeline folder with the text-to-image
pipeline as its first-frame model, plus a model card.

    python scripts/build_embedded_default.py --out assets/huvidpo-tiny          # the shipped one (its card's build history says how long)
    python scripts/build_embedded_default.py --out /tmp/tiny --quick            # a smoke run in ~1 minute
    python scripts/build_embedded_default.py --out /tmp/cand --stage1_steps 3000 --image-from assets/huvidpo-tiny
                                                                                # a candidate: any BuildPlan field is a flag

Departures from the real recipe, because everything here starts from random weights: stage 1 uses a
higher learning rate (1e-3 instead of 3e-5) and no horizontal flip (a flipped "moving left" clip would
show motion to the right); the VAE's loss weighs shape pixels 5x (they are a tenth of a frame); and the
text encoder is pretrained on prompts alone (trained only through the
text-to-image loss, it learned nothing the first frame does not show, motion words included, and stage 1
then could not tell "left" from "right"); and the noise schedule has zero terminal SNR with v-prediction, because with SD's schedule a model of plain
backgrounds reads the background from the noise instead of the prompt (in our runs the first-frame
model drew the asked background on 25% of held-out prompts after 700 steps with SD's schedule, and on
100% after 500 steps with this one).
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import torch
from transformers import HfArgumentParser

from huvidpo.world.build import QUICK, BuildPlan, build


def main() -> None:
    # every BuildPlan field is a flag too (--stage1_steps 500 ...): a candidate recipe is tried without editing code
    parser = HfArgumentParser(BuildPlan, description="Train the embedded default checkpoint on the synthetic world.")
    parser.add_argument("--out", type=Path, default=Path("assets/huvidpo-tiny"), help="Output pipeline folder.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of every stage.")
    parser.add_argument("--quick", action="store_true", help="A few steps of each stage (smoke test).")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
    parser.add_argument("--image-from", type=Path, default=None,
                        help="Reuse the VAE, text encoder and first-frame model of an earlier build from nothing with the same seed and "
                             "plan for build steps 1-3, and train only the video steps (4-5).")
    parser.add_argument("--vae-from", type=Path, default=None,
                        help="Reuse the VAE of an earlier build with the same plan and seed instead of training it.")
    plan, args = parser.parse_args_into_dataclasses()
    if args.quick:  # the smoke plan, with any field given on the command line
        plan = replace(QUICK, **{f.name: getattr(plan, f.name) for f in fields(BuildPlan) if getattr(plan, f.name) != f.default})
    if args.threads:
        torch.set_num_threads(args.threads)
    build(args.out, plan, seed=args.seed, log=lambda s: print(s, flush=True), vae_from=args.vae_from, image_from=args.image_from)


if __name__ == "__main__":
    main()
