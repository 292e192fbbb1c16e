"""Where the embedded default's squares go round, part two: by speed word in the first-frame model, and frame by frame
in the video model.

1. First-frame model: the share of asked squares drawn as squares (the oracle's reading) when the prompt says
   "slowly", "quickly" or no speed, on 40 held-out and 40 training-split square specs (the same specs, only the
   speed word changed), and the share of all shapes right on 96 held-out specs.
2. With ``--first-frame-more-steps N``: the first-frame model trains on for N more steps (a second cycle of
   ``huvidpo.world.build.train_text_to_image``: cosine from ``--lr``, new batches and noise) and (1) is measured
   again; ``--save DIR`` writes the whole pipeline with that first-frame model (for ``bench/world.py --model DIR``).
3. Video model given the true first frame of 10 held-out squares: the oracle's corner statistic (2.0 square,
   1.0 disc) of every frame, and which colours the rounded ones have.

    python research/scripts/squares.py --out research/results/squares-default.json                  # ~6 min on 1 core
    python research/scripts/squares.py --first-frame-more-steps 1000 --lr 3e-4 --save /tmp/ff-more \\
        --out research/results/squares-first-frame-more-1000.json                                   # ~15 min on 1 core
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from huvidpo.generate import GenerationSettings, generate
from huvidpo.hub import load_pipeline
from huvidpo.locations import default_model_path
from huvidpo.world.build import BuildPlan, train_text_to_image
from huvidpo.world.clips import render_clip, sample_specs
from huvidpo.world.oracle import read_clip


def first_frame_squares(image_pipe) -> dict:
    """(1): square accuracy per speed word and split, and all shapes on held-out specs."""
    def draw(prompts):
        return image_pipe(prompts, num_inference_steps=25, generator=torch.Generator("cpu").manual_seed(0), output_type="np").images

    result = {}
    for split in ("heldout", "train"):
        squares = [s for s in sample_specs(200, seed=5, split=split) if s.shape == "square"][:40]
        for word in ("slowly", "quickly", "none"):
            specs = [dataclasses.replace(s, speed=s.speed if word == "none" else word, speed_stated=word != "none") for s in squares]
            drawn = draw([s.prompt for s in specs])
            result[f"{split}_square_{word}"] = float(np.mean([read_clip(image[None]).shape == "square" for image in drawn]))
    specs = sample_specs(96, seed=3, split="heldout")
    drawn = draw([s.prompt for s in specs])
    result["heldout_all_shapes"] = float(np.mean([read_clip(image[None]).shape == s.shape for s, image in zip(specs, drawn)]))
    return result


def video_square_frames(pipe) -> list[dict]:
    """(3): per-frame corner statistic of clips made from the true first frames of held-out squares."""
    rows = []
    for spec in [s for s in sample_specs(200, seed=5, split="heldout") if s.shape == "square"][:10]:
        first = render_clip(spec, 1)[0]
        video, _ = generate(pipe, GenerationSettings(prompt=spec.prompt, frames=16, steps=25), image=Image.fromarray(first))
        per_frame = [read_clip(video[i:i + 1]).shape_features.get("kurtosis_ratio") for i in range(len(video))]
        rows.append({"prompt": spec.prompt, "read_as": str(read_clip(video).shape),
                     "corner_statistic_per_frame": [None if x is None else round(float(x), 2) for x in per_frame]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="Pipeline folder (default: the embedded default).")
    parser.add_argument("--first-frame-more-steps", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--save", type=Path, default=None, help="With --first-frame-more-steps: write the pipeline here.")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    pipe = load_pipeline(args.model)
    image_pipe = pipe.image_pipeline
    result: dict = {"model": args.model or "embedded default", "first_frame_model": first_frame_squares(image_pipe)}
    print(json.dumps(result["first_frame_model"]), flush=True)
    if args.first_frame_more_steps:
        image_pipe.unet.requires_grad_(True)
        plan = BuildPlan()  # the shipped build's first-frame data and batch
        train_text_to_image(image_pipe, steps=args.first_frame_more_steps, batch_size=plan.t2i_batch, lr=args.lr,
                            num_images=plan.t2i_images, text_lr=0.0, seed=7, unstated_speed_prob=plan.unstated_speed_prob,
                            wording_prob=plan.wording_prob, log=lambda s: print(s, flush=True))
        image_pipe.unet.requires_grad_(False)
        result["first_frame_more"] = {"steps": args.first_frame_more_steps, "lr": args.lr, **first_frame_squares(image_pipe)}
        print(json.dumps(result["first_frame_more"]), flush=True)
        if args.save:
            shutil.copytree(args.model or default_model_path(), args.save, dirs_exist_ok=True)
            shutil.rmtree(args.save / "image_pipeline" / "unet")
            image_pipe.unet.save_pretrained(args.save / "image_pipeline" / "unet")
    else:
        result["video_given_true_first_frame"] = video_square_frames(pipe)
        for row in result["video_given_true_first_frame"]:
            print(row["read_as"], row["prompt"], row["corner_statistic_per_frame"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
