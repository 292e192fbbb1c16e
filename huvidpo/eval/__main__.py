"""Evaluate a video model (and its DPO LoRA) on prompts: print the paper-style table, write eval.json and eval.png.

With the embedded default and the oracle metrics only (two clips), this takes a minute or two on a CPU::

    python -m huvidpo.eval --num-prompts 2 --seeds 0 --frames 8 --steps 10 --image-steps 10 --clip-model none --out ev

With a DPO LoRA, the same (prompt, seed) clips of base and base+LoRA are compared by the oracle::

    python -m huvidpo.eval --lora runs/dpo/lora --prompts heldout --seeds 0,1,2 --clip-model none --out eval-out
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from ..world.clips import make_prompt_set
from ..generate import GenerationSettings
from ..hub import load_pipeline
from .clip_metrics import DEFAULT_CLIP_MODEL, load_clip
from .report import REPORT_JSON, REPORT_PNG
from .runner import evaluate

# Settings the CLI sets in its own way (a prompt set, a seed list, --lora) instead of one flag per field.
_OWN_FLAGS = ("prompt", "seed", "lora")


def resolve_prompts(spec: str, num_prompts: int = 8, prompt_seed: int = 0) -> list[str]:
    """Prompts from a file (one a line, ``#`` comments), ``heldout`` / ``train`` (the world's splits), or a comma list."""
    path = Path(spec).expanduser()
    if path.is_file():
        prompts = [line.strip() for line in path.read_text().splitlines()]
        prompts = [p for p in prompts if p and not p.startswith("#")]
    elif spec in ("heldout", "train"):
        prompts = make_prompt_set(spec, n=num_prompts, seed=prompt_seed)
    else:
        prompts = [p.strip() for p in spec.split(",") if p.strip()]
    if not prompts:
        raise ValueError(f"No prompts in {spec!r}: give a file with one prompt a line, heldout, train, or 'a,b,c'.")
    return prompts


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"seeds must be integers separated by commas, e.g. 0,1,2; got {text!r}") from err
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed, e.g. 0,1,2")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m huvidpo.eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="HuViDPO or SD 1.x pipeline folder or Hub id (default: embedded).")
    parser.add_argument(
        "--image-model", default=None, help="First-frame text-to-image model (e.g. mhdang/dpo-sdxl-text2image-v1)."
    )
    parser.add_argument(
        "--lora", default=None,
        help="DPO LoRA (folder, file or Hub id): adds a base+DPO LoRA row and the oracle's pairwise win rate.",
    )
    parser.add_argument(
        "--prompts", default="heldout",
        help="A file with one prompt a line, 'heldout' or 'train' (the synthetic world's splits), or 'a,b,c'.",
    )
    parser.add_argument("--num-prompts", type=int, default=8, help="How many prompts --prompts heldout/train draws.")
    parser.add_argument("--prompt-seed", type=int, default=0, help="Seed of the heldout/train prompt draw.")
    parser.add_argument(
        "--seeds", type=parse_seeds, default=[0, 1, 2], help="Generation seeds, comma separated (default 0,1,2)."
    )
    parser.add_argument(
        "--clip-model", default=DEFAULT_CLIP_MODEL,
        help=f"CLIP model id or folder for the CLIP metrics (default {DEFAULT_CLIP_MODEL}); 'none' skips them.",
    )
    parser.add_argument("--out", required=True, help=f"Output folder for {REPORT_JSON}, {REPORT_PNG} and videos/.")
    parser.add_argument("--save-videos", action="store_true", help="Also write every clip as an mp4 under OUT/videos/.")
    parser.add_argument(
        "--device", default=None, help="torch device for the video and CLIP models, e.g. cuda (default: cpu)."
    )
    for f in fields(GenerationSettings):
        if f.name in _OWN_FLAGS:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"])
        else:
            kind = {"int": int, "int | None": int, "float": float}.get(f.type, str)
            parser.add_argument(flag, type=kind, default=f.default, help=f.metadata["help"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    template = GenerationSettings(
        prompt="", **{f.name: getattr(args, f.name) for f in fields(GenerationSettings) if f.name not in _OWN_FLAGS}
    )
    try:
        prompts = resolve_prompts(args.prompts, args.num_prompts, args.prompt_seed)
        # CLIP first: a missing CLIP model should fail before minutes of generation, not after.
        clip = None if args.clip_model.lower() == "none" else load_clip(args.clip_model, device=args.device)
        pipe = load_pipeline(args.model, image_model=args.image_model, device=args.device)
        report = evaluate(
            pipe, prompts, args.seeds, template, lora=args.lora, clip=clip, out_dir=args.out,
            save_videos=args.save_videos, model_name=args.model or "embedded default",
            progress=lambda done, total: print(f"\rclips {done}/{total}", end="", file=sys.stderr, flush=True),
        )
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(report.table())
    out = Path(args.out)
    videos = f" and {out / 'videos'}/" if args.save_videos else ""
    print(f"wrote {out / REPORT_JSON} and {out / REPORT_PNG}{videos}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
