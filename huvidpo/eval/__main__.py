"""Evaluate a video model (and its DPO LoRA) on prompts: print the paper-style table, write eval.json and eval.png.

With the embedded default and the oracle metrics only (two clips), this takes a minute or two on a CPU::

    python -m huvidpo.eval --num-prompts 2 --seeds 0 --frames 8 --steps 10 --image-steps 10 --clip-model none --out ev

With a DPO LoRA, the same (prompt, seed) clips of base and base+LoRA are compared by the oracle::

    python -m huvidpo.eval --lora runs/dpo/lora --prompts heldout --seeds 0,1,2 --clip-model none --out eval-out
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ..generate import GenerationFlags, GenerationSettings
from ..hub import load_pipeline
from ..settings import MAX_SEED, SettingsParser, check_settings, setting
from ..world.clips import PROMPT_SETS, resolve_prompts
from .clip_metrics import DEFAULT_CLIP_MODEL, load_clip
from .report import REPORT_JSON, REPORT_PNG
from .runner import evaluate



@dataclass
class EvalConfig:
    """What to evaluate and where to write it (the generation settings are GenerationSettings')."""

    out: str = setting(help=f"Output folder for {REPORT_JSON}, {REPORT_PNG} and videos/.")
    model: str | None = setting(None, "HuViDPO or SD 1.x pipeline folder or Hub id; empty: the embedded default.")
    image_model: str | None = setting(None, "First-frame text-to-image model (e.g. mhdang/dpo-sdxl-text2image-v1).")
    lora: str | None = setting(
        None, "DPO LoRA (folder, file or Hub id): adds a base+DPO LoRA row and the oracle's pairwise win rate."
    )
    prompts: str = setting(
        "heldout", "A file with one prompt a line, a prompt set of the synthetic world ("
        + ", ".join(PROMPT_SETS) + "; '-speedless' prompts leave the speed out, so the table shows each speed mode's "
        "share), or 'a,b,c'."
    )
    num_prompts: int = setting(8, "How many prompts a prompt set (--prompts heldout, ...) draws.", min=1, max=10_000)
    prompt_seed: int = setting(0, "Seed of the prompt set's draw.", min=0, max=MAX_SEED)
    seeds: str = setting("0,1,2", "Generation seeds, comma separated.")
    clip_model: str = setting(
        DEFAULT_CLIP_MODEL, "CLIP model id or folder for the CLIP metrics; 'none' skips them."
    )
    save_videos: bool = setting(False, "Also write every clip as an mp4 under OUT/videos/.")
    device: str | None = setting(None, "torch device for the video and CLIP models, e.g. cuda; empty: the CPU.")

    def __post_init__(self) -> None:
        check_settings(self)
        _ = self.seed_list

    @property
    def seed_list(self) -> list[int]:
        """``seeds`` as integers: ``"0,1,2"`` -> ``[0, 1, 2]``."""
        try:
            seeds = [int(s) for s in self.seeds.split(",") if s.strip()]
        except ValueError as err:
            raise ValueError(f"seeds must be integers separated by commas, e.g. 0,1,2; got {self.seeds!r}.") from err
        if not seeds:
            raise ValueError("seeds: give at least one seed, e.g. 0,1,2.")
        return seeds


def build_parser() -> SettingsParser:
    return SettingsParser([EvalConfig, GenerationFlags], prog="python -m huvidpo.eval", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    config, generation, _ = build_parser().parse(argv)
    try:
        template = GenerationSettings(prompt="", **asdict(generation))
        prompts = resolve_prompts(config.prompts, config.num_prompts, config.prompt_seed)
        # CLIP first: a missing CLIP model should fail before minutes of generation, not after.
        clip = None if config.clip_model.lower() == "none" else load_clip(config.clip_model, device=config.device)
        pipe = load_pipeline(config.model, image_model=config.image_model, device=config.device)
        report = evaluate(
            pipe, prompts, config.seed_list, template, lora=config.lora, clip=clip, out_dir=config.out,
            save_videos=config.save_videos, model_name=config.model or "embedded default",
            progress=lambda done, total: print(f"\rclips {done}/{total}", end="", file=sys.stderr, flush=True),
        )
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(report.table())
    out = Path(config.out)
    videos = f" and {out / 'videos'}/" if config.save_videos else ""
    print(f"wrote {out / REPORT_JSON} and {out / REPORT_PNG}{videos}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
