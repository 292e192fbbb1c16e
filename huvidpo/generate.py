"""Generate a video from a prompt (or a first-frame image) and write a playable mp4.

On a CPU with the embedded default this takes seconds::

    python -m huvidpo.generate --prompt "a red circle moving left slowly on a blue background" --frames 16 --steps 25 --seed 0 --out clip.mp4

Video-to-video re-draws a clip from part-way through the schedule, its first frame kept (``--frames``
follows the clip)::

    python -m huvidpo.generate --prompt "a red circle moving left slowly on a blue background" --video clip.mp4 --strength 0.4 --out redrawn.mp4

The original HuViDPO/LAMP sampler (their shared noise, AdaIN inside the loop, histogram matching)::

    python -m huvidpo.generate --prompt "a red circle moving left slowly on a blue background" --sampler huvidpo --out original.mp4

The same settings can come from a YAML file (its keys are the flags' names); flags win over it::

    python -m huvidpo.generate --config clip.yaml --seed 3

What is unusual here:
- ``GenerationSettings`` is the one home of the generation defaults and their bounds (``min``, ``max`` and a
  slider ``step`` in the field metadata): the CLI's flags, the studio's sliders and the studio's checks read them.
- ``sampler`` picks how frames are kept together (the pipeline's ``SAMPLER_PRESETS``: how frame 0's noise is
  mixed in, where AdaIN runs, histogram matching); ``shared_noise`` and ``adain`` are passed on top of it as
  ``pipe(..., sampler=..., **overrides)`` takes them: the amount of shared noise, and the preset's AdaIN on or
  off. Both presets use 0.2 and AdaIN, so the defaults give each preset exactly (``--sampler huvidpo`` alone is
  the original's sampler).
- torch and the pipeline are imported when a clip is generated, not with the module, so the studio's page can
  read the settings before the model stack has loaded.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .backends import BACKENDS
from .sampling import SAMPLER_PRESETS
from .settings import MAX_SEED, check_settings, setting, settings_without

if TYPE_CHECKING:  # the model stack loads with the first generation
    import numpy as np
    import PIL.Image

    from diffusers import DiffusionPipeline

    from .pipeline import VideoInput
    from .settings import SettingsParser


@dataclass
class GenerationSettings:
    """Everything needed to reproduce a clip; stored next to every clip the studio makes."""

    prompt: str = setting(help="What the video shows.")
    negative_prompt: str = setting("", "What to steer away from (needs guidance > 1).")
    frames: int | None = setting(
        None, "Number of frames, including the first frame. Default: the model family's ("
        + ", ".join(f"{family.title} {family.default_frames}" for family in BACKENDS.values()) + ").", min=2,
    )
    steps: int = setting(25, "Denoising steps (the paper uses 50 DDIM steps).", min=1)
    guidance: float = setting(7.5, "Classifier-free guidance scale (the paper uses 12.5).", min=0.0, max=30.0, step=0.5)
    seed: int = setting(0, "Random seed; the same seed and settings give the same clip.", min=0, max=MAX_SEED)
    height: int | None = setting(None, "Height in pixels; None: the model's.", min=8, max=4096)
    width: int | None = setting(None, "Width in pixels; None: the model's.", min=8, max=4096)
    sampler: str = setting(
        "ours", "How frames are kept together: 'ours' (variance-preserving shared noise, AdaIN once before decoding) or "
        "'huvidpo', the original's (0.2 n0 + 0.8 n_f, AdaIN inside the loop, RGB histograms matched to frame 0).",
        choices=tuple(SAMPLER_PRESETS),
    )
    shared_noise: float = setting(0.2, "Fraction of frame 0's noise mixed into every frame, as the sampler mixes it "
                                  "(both samplers: 0.2).", min=0.0, max=0.95, step=0.05)
    adain: bool = setting(True, "Match the frames' latent statistics to the first frame, as the sampler does it "
                          "(ours: once before decoding; huvidpo: inside the loop). Off: no AdaIN.")
    image_steps: int = setting(25, "Steps of the first-frame text-to-image model.", min=1)
    lora: str | None = setting(None, "LoRA folder, file or Hub id to apply (None: base model).")
    lora_scale: float = setting(1.0, "Strength of the LoRA (0 = base model).", min=-2.0, max=2.0, step=0.05)
    fps: int | None = setting(
        None, "Frames per second of the written mp4. Default: the model family's ("
        + ", ".join(f"{family.title} {family.fps}" for family in BACKENDS.values()) + ").", min=1, max=60,
    )

    def __post_init__(self) -> None:
        check_settings(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def spec(cls, name: str) -> dataclasses.Field:
        """The field ``name``: its ``default`` and its ``metadata`` (``help``; ``min``/``max``/``step`` where bounded)."""
        return next(f for f in dataclasses.fields(cls) if f.name == name)


# Every generation setting but what a batch of clips varies itself (prompt, seed) or decides apart (lora): the
# flags of the commands that generate many clips (python -m huvidpo.eval, python -m huvidpo.annotation.fill).
GenerationFlags = settings_without(GenerationSettings, "prompt", "seed", "lora")


@dataclass
class GenerateCommand:
    """What the command line adds to the settings: where the model and the inputs come from, where the clip goes."""

    model: str | None = setting(None, "HuViDPO, SD 1.x, Wan 2.1 or AnimateDiff pipeline folder or Hub id; None: "
                                "$HUVIDPO_MODEL or the embedded model.")
    image_model: str | None = setting(None, "First-frame text-to-image model (e.g. mhdang/dpo-sdxl-text2image-v1).")
    image: str | None = setting(None, "First frame as an image file (image-to-video).")
    video: str | None = setting(None, "A clip (mp4, gif, ...) to re-draw (video-to-video); its first frame is kept.")
    strength: float = setting(1.0, "With --video: share of the steps that re-draw it (0.2 small changes, 1 all of it).",
                              min=0.0, max=1.0)
    out: str = setting("clip.mp4", "Where to write the mp4.")
    preview: str | None = setting(None, "Also write an animated preview.", choices=("gif", "webp"))
    device: str | None = setting(None, "torch device, e.g. cuda; None: cpu.")

    def __post_init__(self) -> None:
        check_settings(self)


def apply_lora(pipe: DiffusionPipeline, lora: str | None, scale: float) -> None:
    """Put the pipeline in the state the settings ask for: no LoRA, or ``lora`` at ``scale``."""
    from .hub import load_lora, unload_lora

    if lora:
        load_lora(pipe, lora, scale)
    elif pipe.get_list_adapters():
        unload_lora(pipe)


def generate(
    pipe: DiffusionPipeline,
    settings: GenerationSettings,
    image: PIL.Image.Image | None = None,
    step_callback: Callable[[int, int], None] | None = None,
    video: VideoInput | None = None,
    strength: float = 1.0,
) -> tuple[np.ndarray, PIL.Image.Image]:
    """One clip: frames (f, h, w, 3) float in [0, 1] and the first frame. ``step_callback(step, total)`` per step.
    With ``video``, video-to-video at ``strength`` (the pipeline's); the clip's length then stands in for
    ``settings.frames``. Without, ``settings.frames`` None is the model family's default, and a count the family
    cannot take is refused with the nearest ones it takes. The model family's backend makes it
    (:meth:`huvidpo.backends.Backend.generate`): the sampler options are HuViDPO's, and a text-to-video family
    refuses a first frame or a video."""
    from .backends import backend_for

    backend = backend_for(pipe)
    if video is None:  # with a video, its length is the frame count
        if settings.frames is None:
            settings = dataclasses.replace(settings, frames=backend.default_frames)
        backend.check_num_frames(settings.frames, pipe)  # before the LoRA loads: the message names the setting
    apply_lora(pipe, settings.lora, settings.lora_scale)
    return backend.generate(pipe, settings, image=image, step_callback=step_callback, video=video, strength=strength)


def clip_fps(settings: GenerationSettings, pipe: DiffusionPipeline) -> int:
    """The frame rate a clip of ``pipe`` made with ``settings`` is written at: ``settings.fps``, else the model
    family's (Wan 2.1's clips are 16 frames per second, HuViDPO's 8)."""
    from .backends import backend_for

    return settings.fps or backend_for(pipe).fps


def build_parser() -> SettingsParser:
    """Flags for every field of ``GenerationSettings`` and ``GenerateCommand`` (``--lora-scale`` or ``--lora_scale``),
    and ``--config`` for a YAML file of the same keys (flags override it)."""
    from .settings import SettingsParser

    return SettingsParser(
        (GenerationSettings, GenerateCommand), prog="python -m huvidpo.generate", description=__doc__.splitlines()[0]
    )


def main(argv: list[str] | None = None) -> int:
    settings, command, _ = build_parser().parse(argv)  # a bad flag, value or YAML key exits here with the reason
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

    out = write_video(frames, command.out, fps=clip_fps(settings, pipe))
    print(f"wrote {out}")
    if command.preview:
        preview = write_preview(frames, Path(command.out).with_suffix("." + command.preview), fps=clip_fps(settings, pipe))
        print(f"wrote {preview}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
