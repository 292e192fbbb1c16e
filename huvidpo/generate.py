"""Generate a video from a prompt (or a first-frame image) and write a playable mp4.

On a CPU with the embedded default this takes seconds::

    python -m huvidpo.generate --prompt "a red circle moving left on a blue background" --frames 16 --steps 25 --seed 0 --out clip.mp4

Video-to-video re-draws a clip from part-way through the schedule, its first frame kept (``--frames``
follows the clip)::

    python -m huvidpo.generate --prompt "a red circle moving left on a blue background" --video clip.mp4 --strength 0.4 --out redrawn.mp4
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import PIL.Image
import torch

from .data.video import read_video, write_video
from .hub import load_lora, load_pipeline, unload_lora
from .pipeline import HuViDPOPipeline, VideoInput, denoising_steps


@dataclass
class GenerationSettings:
    """Everything needed to reproduce a clip; stored next to every clip the studio makes."""

    prompt: str = field(metadata={"help": "What the video shows."})
    negative_prompt: str = field(default="", metadata={"help": "What to steer away from (needs guidance > 1)."})
    frames: int = field(default=16, metadata={"help": "Number of frames, including the first frame (>= 2)."})
    steps: int = field(default=25, metadata={"help": "Denoising steps (the paper uses 50 DDIM steps)."})
    guidance: float = field(default=7.5, metadata={"help": "Classifier-free guidance scale (the paper uses 12.5)."})
    seed: int = field(default=0, metadata={"help": "Random seed; the same seed and settings give the same clip."})
    height: int | None = field(default=None, metadata={"help": "Height in pixels (default: the model's)."})
    width: int | None = field(default=None, metadata={"help": "Width in pixels (default: the model's)."})
    shared_noise: float = field(default=0.2, metadata={"help": "Fraction of frame 0's noise mixed into every frame."})
    adain: bool = field(default=True, metadata={"help": "Match each frame's latent statistics to the first frame."})
    image_steps: int = field(default=25, metadata={"help": "Steps of the first-frame text-to-image model."})
    lora: str | None = field(default=None, metadata={"help": "LoRA folder, file or Hub id to apply (None: base model)."})
    lora_scale: float = field(default=1.0, metadata={"help": "Strength of the LoRA (0 = base model)."})
    fps: int = field(default=8, metadata={"help": "Frames per second of the written mp4."})

    def to_dict(self) -> dict:
        return asdict(self)


def apply_lora(pipe: HuViDPOPipeline, lora: str | None, scale: float) -> None:
    """Put the pipeline in the state the settings ask for: no LoRA, or ``lora`` at ``scale``."""
    if lora:
        load_lora(pipe, lora, scale)
    elif pipe.get_list_adapters():
        unload_lora(pipe)


def generate(
    pipe: HuViDPOPipeline,
    settings: GenerationSettings,
    image: PIL.Image.Image | None = None,
    step_callback: Callable[[int, int], None] | None = None,
    video: VideoInput | None = None,
    strength: float = 1.0,
) -> tuple[np.ndarray, PIL.Image.Image]:
    """One clip: frames (f, h, w, 3) float in [0, 1] and the first frame. ``step_callback(step, total)`` per step.
    With ``video``, video-to-video at ``strength`` (the pipeline's); the clip's length then stands in for ``settings.frames``."""
    apply_lora(pipe, settings.lora, settings.lora_scale)
    total = denoising_steps(settings.steps, strength)

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        step_callback(step + 1, total)
        return callback_kwargs

    out = pipe(
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt or None,
        image=image,
        video=video,
        strength=strength,
        num_frames=None if video is not None else settings.frames,  # None: the pipeline follows the clip
        height=settings.height,
        width=settings.width,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        shared_noise=settings.shared_noise,
        adain=settings.adain,
        generator=torch.Generator("cpu").manual_seed(settings.seed),
        image_pipeline_kwargs={"num_inference_steps": settings.image_steps},
        callback_on_step_end=on_step_end if step_callback else None,
    )
    return out.frames[0], out.first_frames[0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m huvidpo.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="HuViDPO or SD 1.x pipeline folder or Hub id (default: embedded).")
    parser.add_argument("--image-model", default=None, help="First-frame text-to-image model (e.g. mhdang/dpo-sdxl-text2image-v1).")
    parser.add_argument("--image", default=None, help="First frame as an image file (image-to-video).")
    parser.add_argument("--video", default=None, help="A clip (mp4, gif, ...) to re-draw (video-to-video); its first frame is kept.")
    parser.add_argument("--strength", type=float, default=1.0,
                        help="With --video: share of the steps that re-draw it (0.2 small changes, 1 all of it).")
    parser.add_argument("--out", default="clip.mp4", help="Where to write the mp4 (a .gif/.webp preview is written too with --preview).")
    parser.add_argument("--preview", choices=["gif", "webp"], default=None, help="Also write an animated preview.")
    parser.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu).")
    for f in fields(GenerationSettings):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"]
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
        elif f.name == "prompt":
            parser.add_argument(flag, required=True, help=help_text)
        else:
            kind = {"int": int, "int | None": int, "float": float}.get(f.type, str)
            parser.add_argument(flag, type=kind, default=f.default, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = GenerationSettings(**{f.name: getattr(args, f.name) for f in fields(GenerationSettings)})
    try:
        if args.strength != 1.0 and not args.video:
            raise ValueError(f"--strength {args.strength} needs --video, the clip to re-draw.")
        image = PIL.Image.open(args.image).convert("RGB") if args.image else None
        video = read_video(args.video) if args.video else None
        pipe = load_pipeline(args.model, image_model=args.image_model, device=args.device)
        frames, _ = generate(pipe, settings, image=image, video=video, strength=args.strength)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = write_video(frames, args.out, fps=settings.fps)
    print(f"wrote {out}")
    if args.preview:
        from .data.video import write_preview

        preview = write_preview(frames, Path(args.out).with_suffix("." + args.preview), fps=settings.fps)
        print(f"wrote {preview}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
