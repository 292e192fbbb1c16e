"""The README's picture, made by our own pipeline: clips as frame strips, one clip a row.

    python bench/readme_figure.py          # assets/readme/default-strip.png: 4 clips of the embedded default
    python bench/readme_figure.py --kind taste-compare --prompts 2 \
        --loras slowly=outputs/bench-taste/full/dpo-A-64/dpo,quickly=outputs/bench-taste/full/dpo-B-64/dpo
                                           # assets/readme/taste-compare.png: base vs each taste's LoRA, same seed

A figure kind is a function in ``FIGURES`` that takes the pipeline and the parsed arguments and returns its rows,
``(label, frames)``; ``strip_image`` lays out the rows of any kind the same way, ``--shown`` evenly spaced frames
a row. A second kind, e.g. base and base+LoRA rows of the same prompt and seed, is one more function there.
Clips use ``GenerationSettings``' defaults (the Generate tab's), so the picture shows what a user gets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from huvidpo.data.video import to_uint8_frames
from huvidpo.generate import GenerationSettings, generate
from huvidpo.hub import load_pipeline
from huvidpo.world.clips import make_prompt_set, prompt_set
from huvidpo.world.taste import read_mode

OUT_DIR = Path(__file__).resolve().parent.parent / "assets" / "readme"
GAP = 2  # px between frames and around rows
LABEL_HEIGHT = 18  # px of the band above each row that holds its label


def default_strip(pipe, args: argparse.Namespace) -> list[tuple[str, np.ndarray]]:
    """The embedded default on ``args.prompts`` held-out prompts (combinations never seen in training), one seed."""
    rows = []
    for prompt in make_prompt_set("heldout", args.prompts, seed=1):
        frames, _ = generate(pipe, GenerationSettings(prompt=prompt, seed=args.seed))
        rows.append((f"{prompt}  (seed {args.seed})", to_uint8_frames(frames)))
    return rows


def taste_compare(pipe, args: argparse.Namespace) -> list[tuple[str, np.ndarray]]:
    """Held-out prompts that leave the speed out: the base clip, then each taste's LoRA (``--loras``) on the same
    seed, each row labelled with the speed the oracle reads from its pixels."""
    loras = dict(item.split("=", 1) for item in args.loras.split(",") if item) if args.loras else {}
    if not loras:
        raise SystemExit("--loras: give the tastes' LoRAs, e.g. slowly=PATH,quickly=PATH (bench/taste.py writes them).")
    rows = []
    for prompt in prompt_set("heldout-speedless", args.prompts, seed=1):
        for label, lora in [("base", None), *((f"LoRA of 64 votes for '{mode}'", path) for mode, path in loras.items())]:
            frames, _ = generate(pipe, GenerationSettings(prompt=prompt, seed=args.seed, lora=lora))
            rows.append((f"{label}: {prompt}  (seed {args.seed}) -> moves {read_mode(frames) or '?'}", to_uint8_frames(frames)))
    return rows


FIGURES = {"default-strip": default_strip, "taste-compare": taste_compare}


def strip_image(rows: list[tuple[str, np.ndarray]], shown: int, scale: int) -> Image.Image:
    """``rows`` of ``(label, frames)`` as one image: each row its label above ``shown`` evenly spaced frames (the
    first and last included), each frame enlarged ``scale`` times without smoothing."""
    height, width = rows[0][1].shape[1:3]
    cell_h, cell_w = height * scale, width * scale
    font = ImageFont.load_default(size=13)
    image = Image.new("RGB", (GAP + shown * (cell_w + GAP), GAP + len(rows) * (LABEL_HEIGHT + cell_h + GAP)), "white")
    draw = ImageDraw.Draw(image)
    for r, (label, frames) in enumerate(rows):
        top = GAP + r * (LABEL_HEIGHT + cell_h + GAP)
        draw.text((GAP, top + 2), label, fill="black", font=font)
        for c, index in enumerate(np.linspace(0, len(frames) - 1, shown).round().astype(int)):
            frame = Image.fromarray(frames[index]).resize((cell_w, cell_h), Image.Resampling.NEAREST)
            image.paste(frame, (GAP + c * (cell_w + GAP), top + LABEL_HEIGHT))
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(FIGURES), default="default-strip", help="Which figure to make.")
    parser.add_argument("--model", default=None, help="Pipeline folder or Hub id (default: the embedded default).")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: assets/readme/KIND.png).")
    parser.add_argument("--prompts", type=int, default=4, help="Rows: how many prompts.")
    parser.add_argument("--seed", type=int, default=0, help="Generation seed of every clip.")
    parser.add_argument("--loras", default=None, help="taste-compare: MODE=LORA_PATH pairs, comma separated.")
    parser.add_argument("--shown", type=int, default=8, help="Frames shown a row, evenly spaced over the clip.")
    parser.add_argument("--scale", type=int, default=2, help="Enlargement of each frame (nearest neighbour).")
    args = parser.parse_args()
    rows = FIGURES[args.kind](load_pipeline(args.model), args)
    out = args.out or OUT_DIR / f"{args.kind}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    strip_image(rows, args.shown, args.scale).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
