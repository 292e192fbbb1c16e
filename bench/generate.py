"""Generation speed of the embedded default on this CPU.

Measures seconds per clip at 8 and 16 frames (25 steps, guidance on), the video pipeline's overhead over
its UNet calls, and how time grows with frames (SparseCausal attention should make it linear)::

    python bench/generate.py            # ~2 minutes on 2 cores

Overhead = (image-to-video pipeline time) / (steps x one guided UNet forward at the same size): the first
frame is given, so the number isolates our loop, VAE encode/decode and scheduler. Text-to-video time
(first frame from the tiny text-to-image model, 25 steps) is reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from huvidpo.hub import load_pipeline

RESULTS = Path(__file__).resolve().parent / "results" / "generate.json"


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Pipeline to measure (default: the embedded default).")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    pipe = load_pipeline(args.model)
    height, width = pipe.default_size
    first_frame = np.full((height, width, 3), 128, np.uint8)
    text = pipe.encode_prompt(["a red circle moving left on a blue background"] * 2, pipe.device)
    rows = []
    for frames in (8, 16):
        latents = torch.randn(2, 4, frames, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
        with torch.no_grad():
            unet_s = best_of(lambda: pipe.unet(latents, 500, text), args.repeats)

        def i2v():
            pipe("a red circle moving left on a blue background", image=first_frame, num_frames=frames,
                 num_inference_steps=args.steps, generator=torch.Generator().manual_seed(0))

        def t2v():
            pipe("a red circle moving left on a blue background", num_frames=frames, num_inference_steps=args.steps,
                 image_pipeline_kwargs={"num_inference_steps": args.steps}, generator=torch.Generator().manual_seed(0))

        i2v_s = best_of(i2v, args.repeats)
        t2v_s = best_of(t2v, args.repeats)
        rows.append({
            "frames": frames, "steps": args.steps, "unet_forward_s": unet_s, "image_to_video_s": i2v_s,
            "text_to_video_s": t2v_s, "overhead": i2v_s / (args.steps * unet_s),
        })
    result = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "processor": platform.processor(),
                    "torch": torch.__version__},
        "model": args.model or "embedded default",
        "rows": rows,
        "time_ratio_16_over_8": rows[1]["text_to_video_s"] / rows[0]["text_to_video_s"],
        "targets": {"overhead": 1.10, "time_ratio_16_over_8": 2.2, "text_to_video_16_frames_s": 15.0},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'frames':>6} {'UNet fwd s':>10} {'img->video s':>12} {'text->video s':>13} {'overhead':>8}")
    for r in rows:
        print(f"{r['frames']:>6} {r['unet_forward_s']:>10.3f} {r['image_to_video_s']:>12.2f} {r['text_to_video_s']:>13.2f} {r['overhead']:>8.3f}")
    print(f"16/8 frame time ratio: {result['time_ratio_16_over_8']:.2f} (target <= 2.2); wrote {RESULTS}")


if __name__ == "__main__":
    main()
