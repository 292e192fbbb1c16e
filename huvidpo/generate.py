"""Generate a video from a prompt (or a first-frame image) and write a playable mp4.

On a CPU with the embedded default this takes seconds::

    python -m huvidpo.generate --prompt "a red circle moving left on a blue background" --frames 16 --steps 25 --seed 0 --out clip.mp4

Video-to-video re-draws a clip from part-way through the schedule, its first frame kept (``--frames``
follows the clip)::

    python -m huvidpo.generate --prompt "a red circle moving left on a blue background" --video clip.mp4 --strength 0.4 --out redrawn.mp4

The same settings can come from a YAML file given first (its keys are the flags' names); flags after it win::

    python -m huvidpo.generate clip.yaml --seed 3

What is unusual here:
- ``GenerationSettings`` is the one home of the generation defaults and their bounds (``min``, ``max`` and a
  slider ``step`` in the field metadata): the CLI's flags, the studio's sliders and the studio's checks read them.
- torch and the pipeline are imported when a clip is generated, not with the module, so the studio's page can
  read the settings before the model stack has loaded.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Literal

if TYPE_CHECKING:  # the model stack loads with the first generation
    import numpy as np
    import PIL.Image
    from transformers import HfArgumentParser

    from .pipeline import HuViDPOPipeline, VideoInput

ARGPARSE_METADATA = ("help", "aliases")  # what HfArgumentParser may pass to argparse; bounds stay with the settings


@dataclass
class GenerationSettings:
    """Everything needed to reproduce a clip; stored next to every clip the studio makes."""

    prompt: str = field(metadata={"help": "What the video shows."})
    negative_prompt: str = field(default="", metadata={"help": "What to steer away from (needs guidance > 1)."})
    frames: int = field(default=16, metadata={"help": "Number of frames, including the first frame.", "min": 2})
    steps: int = field(default=25, metadata={"help": "Denoising steps (the paper uses 50 DDIM steps).", "min": 1})
    guidance: float = field(
        default=7.5,
        metadata={"help": "Classifier-free guidance scale (the paper uses 12.5).", "min": 0.0, "max": 30.0, "step": 0.5},
    )
    seed: int = field(
        default=0, metadata={"help": "Random seed; the same seed and settings give the same clip.", "min": 0, "max": 2**32 - 1}
    )
    height: int | None = field(default=None, metadata={"help": "Height in pixels; None: the model's."})
    width: int | None = field(default=None, metadata={"help": "Width in pixels; None: the model's."})
    shared_noise: float = field(
        default=0.2,
        metadata={"help": "Fraction of frame 0's noise mixed into every frame.", "min": 0.0, "max": 0.95, "step": 0.05},
    )
    adain: bool = field(default=True, metadata={"help": "Match each frame's latent statistics to the first frame."})
    image_steps: int = field(default=25, metadata={"help": "Steps of the first-frame text-to-image model.", "min": 1})
    lora: str | None = field(default=None, metadata={"help": "LoRA folder, file or Hub id to apply (None: base model)."})
    lora_scale: float = field(
        default=1.0, metadata={"help": "Strength of the LoRA (0 = base model).", "min": -2.0, "max": 2.0, "step": 0.05}
    )
    fps: int = field(default=8, metadata={"help": "Frames per second of the written mp4.", "min": 1, "max": 60})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def spec(cls, name: str) -> dataclasses.Field:
        """The field ``name``: its ``default`` and its ``metadata`` (``help``; ``min``/``max``/``step`` where bounded)."""
        return next(f for f in dataclasses.fields(cls) if f.name == name)


@dataclass
class GenerateCommand:
    """What the command line adds to the settings: where the model and the inputs come from, where the clip goes."""

    model: str | None = field(
        default=None, metadata={"help": "HuViDPO or SD 1.x pipeline folder or Hub id; None: $HUVIDPO_MODEL or the embedded model."}
    )
    image_model: str | None = field(
        default=None, metadata={"help": "First-frame text-to-image model (e.g. mhdang/dpo-sdxl-text2image-v1)."}
    )
    image: str | None = field(default=None, metadata={"help": "First frame as an image file (image-to-video)."})
    video: str | None = field(
        default=None, metadata={"help": "A clip (mp4, gif, ...) to re-draw (video-to-video); its first frame is kept."}
    )
    strength: float = field(
        default=1.0, metadata={"help": "With --video: share of the steps that re-draw it (0.2 small changes, 1 all of it)."}
    )
    out: str = field(default="clip.mp4", metadata={"help": "Where to write the mp4."})
    preview: Literal["gif", "webp"] | None = field(default=None, metadata={"help": "Also write an animated preview."})
    device: str | None = field(default=None, metadata={"help": "torch device, e.g. cuda; None: cpu."})


def apply_lora(pipe: HuViDPOPipeline, lora: str | None, scale: float) -> None:
    """Put the pipeline in the state the settings ask for: no LoRA, or ``lora`` at ``scale``."""
    from .hub import load_lora, unload_lora

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
    import torch

    from .pipeline import denoising_steps

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


def build_parser() -> HfArgumentParser:
    """Flags for every field of ``GenerationSettings`` and ``GenerateCommand`` (``--lora-scale`` or ``--lora_scale``)."""
    from transformers import HfArgumentParser

    class SettingsParser(HfArgumentParser):
        """Hands argparse only the metadata it knows; the bounds are for the studio's sliders and checks."""

        @staticmethod
        def _parse_dataclass_field(parser, dataclass_field):
            dataclass_field = copy.copy(dataclass_field)
            dataclass_field.metadata = MappingProxyType(
                {key: value for key, value in dataclass_field.metadata.items() if key in ARGPARSE_METADATA}
            )
            HfArgumentParser._parse_dataclass_field(parser, dataclass_field)

    return SettingsParser(
        (GenerationSettings, GenerateCommand), prog="python -m huvidpo.generate", description=__doc__.splitlines()[0]
    )


def parse_args(parser: HfArgumentParser, argv: list[str] | None = None) -> tuple[GenerationSettings, GenerateCommand]:
    """Flags, or a YAML file first whose keys read as flags placed before the ones that follow it (those win)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0].endswith((".yaml", ".yml")):
        args = _yaml_flags(Path(args[0])) + args[1:]
    return parser.parse_args_into_dataclasses(args, look_for_args_file=False)


def _yaml_flags(path: Path) -> list[str]:
    import yaml

    if not path.is_file():
        raise ValueError(f"No settings file at {path}.")
    try:
        values: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of settings (flag names without --), got {type(values).__name__}.")
    return [f"--{key}={value}" for key, value in values.items() if value is not None]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        settings, command = parse_args(parser, argv)
    except ValueError as err:  # an unknown flag or YAML key, an unreadable YAML file
        parser.error(str(err))
    try:
        import PIL.Image

        from .data.video import read_video
        from .hub import load_pipeline

        if command.strength != 1.0 and not command.video:
            raise ValueError(f"--strength {command.strength} needs --video, the clip to re-draw.")
        image = PIL.Image.open(command.image).convert("RGB") if command.image else None
        video = read_video(command.video) if command.video else None
        pipe = load_pipeline(command.model, image_model=command.image_model, device=command.device)
        frames, _ = generate(pipe, settings, image=image, video=video, strength=command.strength)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from .data.video import write_preview, write_video

    out = write_video(frames, command.out, fps=settings.fps)
    print(f"wrote {out}")
    if command.preview:
        preview = write_preview(frames, Path(command.out).with_suffix("." + command.preview), fps=settings.fps)
        print(f"wrote {preview}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
