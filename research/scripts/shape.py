"""Where does the embedded default lose the asked shape? The oracle's per-shape confusion at each stage.

On held-out specs (shape/colour/direction combinations never seen in training):
1. VAE: true first frames, encoded and decoded.
2. First-frame model: images drawn from the prompt (the text-to-image pipeline alone).
3. Video model given the true first frame (image-to-video): does it keep the shape in frames 1..N-1?
For squares it also reports the median of the oracle's corner statistic (kurtosis axis/diagonal ratio:
2.0 for a square, 1.0 for a disc, read as a square above 1.5), which shows corners being rounded off.

    python research/scripts/shape.py          # research/2026-11-25-shape-size.md's figures (about 6 minutes on 2 cores)
    python research/scripts/shape.py --quick  # a smoke run

Writes research/results/shape.json (or shape-quick.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from huvidpo.generate import GenerationSettings, generate
from huvidpo.hub import load_pipeline
from huvidpo.world.clips import SHAPES, render_clip, sample_specs
from huvidpo.world.oracle import read_clip

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


def tally(asked: list[str], clips: list) -> dict:
    """Per asked shape: how often the oracle read each shape; and the squares' median corner statistic.
    ``clips``: anything ``read_clip`` takes (uint8 or [0, 1] frames, PIL images)."""
    readings = [read_clip(clip) for clip in clips]
    confusion = Counter((want, str(reading.shape)) for want, reading in zip(asked, readings))
    squares = [r.shape_features["kurtosis_ratio"] for want, r in zip(asked, readings)
               if want == "square" and "kurtosis_ratio" in r.shape_features]
    per_shape = {}
    for shape in SHAPES:
        total = sum(n for (want, _), n in confusion.items() if want == shape)
        per_shape[shape] = {"n": total, "read_as": {got: n for (want, got), n in confusion.items() if want == shape},
                            "match": confusion[(shape, shape)] / total if total else None}
    return {
        "match": sum(confusion[(s, s)] for s in SHAPES) / len(asked),
        "per_shape": per_shape,
        "square_corner_statistic_median": float(np.median(squares)) if squares else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="Pipeline to measure (default: the embedded default).")
    parser.add_argument("--quick", action="store_true", help="A few specs and steps: checks every step runs.")
    parser.add_argument("--specs", type=int, default=48, help="Held-out specs (each a shape, colour, direction...).")
    parser.add_argument("--out", type=Path, default=None, help="Results file (default: research/results/shape.json).")
    args = parser.parse_args()
    num = 3 if args.quick else args.specs
    steps, frames = (3, 4) if args.quick else (25, 16)
    pipe = load_pipeline(args.model)
    specs = sample_specs(num, seed=3, split="heldout")
    asked = [spec.shape for spec in specs]
    true_first = [render_clip(spec, 1)[0] for spec in specs]
    result: dict = {"model": args.model or "embedded default", "specs": num, "steps": steps, "frames": frames}

    result["true_frames"] = tally(asked, [frame[None] for frame in true_first])
    with torch.no_grad():
        pixels = torch.from_numpy(np.stack(true_first)).permute(0, 3, 1, 2).float() / 127.5 - 1
        decoded = pipe.vae.decode(pipe.vae.encode(pixels).latent_dist.mode()).sample
    result["vae"] = tally(asked, [(image[None] + 1) / 2 for image in decoded])

    drawn = pipe.image_pipeline([spec.prompt for spec in specs], num_inference_steps=steps,
                                generator=torch.Generator("cpu").manual_seed(0), output_type="np").images
    result["first_frame_model"] = tally(asked, [image[None] for image in drawn])

    clips = []
    for spec, first in zip(specs, true_first):
        video, _ = generate(pipe, GenerationSettings(prompt=spec.prompt, frames=frames, steps=steps), image=Image.fromarray(first))
        clips.append(video)
    result["video_given_true_first_frame"] = tally(asked, clips)

    out = args.out or RESULTS_DIR / ("shape-quick.json" if args.quick else "shape.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'stage':<30} {'all':>5} " + " ".join(f"{s:>8}" for s in SHAPES) + "  square corner stat (2.0 = square)")
    for stage in ("true_frames", "vae", "first_frame_model", "video_given_true_first_frame"):
        row = result[stage]
        rates = " ".join(f"{row['per_shape'][s]['match'] or 0:8.2f}" for s in SHAPES)
        corner = row["square_corner_statistic_median"]
        print(f"{stage:<30} {row['match']:5.2f} {rates}  {'-' if corner is None else f'{corner:.2f}'}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
