"""The Generate tab without the browser: one pipeline, one lock, clips written into the data dir.

What is unusual here:
- The pipeline is loaded once (at start-up, or by the first request under a lock) and every
  generation runs under one lock: the pipeline keeps per-call state (the frame count of its temporal
  layers, the active LoRA), so two generations must never interleave.
- LoRA references are what users type or pick ("runs/dpo-...", "loras/name", "assets/name" or a Hub
  id). Local references are resolved inside the app's own folders only; a path elsewhere on the
  server is refused, so the picker cannot be used to probe the disk.
- The clip's settings keep the reference as typed (plus the model name), not the resolved path: they
  are what the pool, the votes and the leaderboard show.
- Building modules is serialised across threads (``MODEL_BUILD_LOCK``): the libraries build models on the
  meta device by patching torch globally, which would leave another thread's new modules weightless.
- torch and diffusers are imported by the first use of the model (``start_loading`` does it in the
  background at start-up), so the page is served while they load.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import shlex
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from huvidpo.data.video import write_video
from huvidpo.generate import GenerationSettings, clip_fps, generate
from huvidpo.settings import check_settings as check_ranges
from huvidpo.locations import (
    ASSETS_DIR,
    DEFAULT_MODEL_DIR,
    LORA_WEIGHT_NAME,
    default_model_path,
    is_hub_id,
)
from huvidpo.studio.config import StudioConfig
from huvidpo.studio.gpu_turns import GpuTurns
from huvidpo.studio.runs import trained_run
from huvidpo.studio.zerogpu import gpu
from huvidpo.world.clips import REFERENCE_SIZE
from huvidpo.world.prompts import COLORS, DIRECTIONS, SHAPES, SPEEDS, vocabulary, vocabulary_warnings

if TYPE_CHECKING:  # the model stack (torch, diffusers) is imported when the model loads, not with the app
    import PIL.Image

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, int], None]
MAX_PROMPT_CHARS = 500


@dataclass
class GeneratedClip:
    """One generated video: its mp4 and first frame in the data dir, and how to make it again."""

    video: Path
    first_frame: Path
    settings: dict[str, Any]
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "video": str(self.video), "first_frame": str(self.first_frame)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GeneratedClip":
        return cls(Path(values["video"]), Path(values["first_frame"]), dict(values["settings"]), values.get("seconds", 0.0))


def setting_range(name: str, config: StudioConfig) -> tuple[float, float | None]:
    """(lowest, highest) value this app accepts for the ``GenerationSettings`` field ``name``: the field's own
    bounds, and this app's limits on the work one clip may ask for (highest None: unbounded)."""
    limits = {"frames": config.max_frames, "steps": config.max_steps, "image_steps": config.max_steps}
    metadata = GenerationSettings.spec(name).metadata
    return metadata["min"], limits.get(name, metadata.get("max"))


def check_settings(settings: GenerationSettings, config: StudioConfig) -> None:
    """Raise a ValueError a visitor can act on for settings outside what this app allows."""
    if not settings.prompt or not settings.prompt.strip():
        raise ValueError(f"The prompt is empty: describe the video, e.g. '{config.suggested_prompts[0]}'.")
    for name, text in (("prompt", settings.prompt), ("negative prompt", settings.negative_prompt)):
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"The {name} is {len(text)} characters long; keep it to {MAX_PROMPT_CHARS}.")
    limits = {spec.name: setting_range(spec.name, config) for spec in fields(GenerationSettings) if "min" in spec.metadata}
    check_ranges(settings, limits)


def vocabulary_text(config: StudioConfig) -> str:
    """What the embedded default can draw, shown beside the prompt box ("" when the app serves another model)."""
    if not config.serves_embedded_default:
        return ""
    words = vocabulary()

    def kind(name: str, canonical: tuple[str, ...]) -> str:
        others = [word for word in words[name] if word not in canonical]
        others = [word for word in others if not (word.endswith("s") and word[:-1] in others)]  # leftward(s)
        return f"{name} {', '.join(canonical)}" + (f" (or {', '.join(others)})" if others else "")

    kinds = " · ".join(kind(name, canonical) for name, canonical in (
        ("colours", COLORS), ("shapes", SHAPES), ("directions", tuple(DIRECTIONS)), ("speeds", tuple(SPEEDS))))
    return (
        f"**The embedded model** draws {REFERENCE_SIZE}×{REFERENCE_SIZE} clips of one shape moving on a plain "
        f"background, and knows these words: {kinds}. Real models load with `python app.py --model <folder or Hub id>`."
    )


def prompt_notes(prompt: str, config: StudioConfig) -> list[str]:
    """Gentle notes on words of ``prompt`` the served model cannot draw (the embedded default's vocabulary only:
    larger models know more). Never an error: the clip is made anyway."""
    return vocabulary_warnings(prompt or "") if config.serves_embedded_default else []


def _has_lora(folder: Path) -> bool:
    return (folder / LORA_WEIGHT_NAME).is_file()


def _local_lora_roots(config: StudioConfig, maintainer: bool) -> dict[str, Path]:
    """Where local LoRAs come from: ``loras/`` (what a maintainer published on this server) and ``assets/`` for
    everyone; the Train tab's ``runs/`` only for maintainers (a run is not published until a maintainer copies it
    into loras/ or pushes it)."""
    roots = {"loras/": config.loras_dir, "assets/": ASSETS_DIR}
    return {"runs/": config.runs_dir, **roots} if maintainer else roots


def resolve_lora(reference: str | None, config: StudioConfig, maintainer: bool = False) -> str | None:
    """A LoRA reference from the picker -> what ``load_lora`` reads: a folder inside the app, or a Hub id.

    ``loras/<name>`` (in the data dir), ``assets/<name>`` and, for maintainers, ``runs/<run>`` name local folders;
    any other ``owner/name`` is a Hub model id. Paths outside these folders are refused.
    """
    if reference is not None and not isinstance(reference, str):
        raise ValueError(f"lora must be text (a LoRA from the list or a Hub id), got {type(reference).__name__}.")
    reference = (reference or "").strip()
    if not reference:
        return None
    if reference.startswith("runs/") and not maintainer:
        raise ValueError(f"'{reference}' is an unpublished training run (maintainers only); pick a LoRA from the list.")
    for prefix, root in _local_lora_roots(config, maintainer).items():
        if reference.startswith(prefix):
            folder = (root / reference[len(prefix):]).resolve()
            if not folder.is_relative_to(root.resolve()) or folder == root.resolve():
                raise ValueError(f"'{reference}' leaves the {prefix.rstrip('/')} folder; pick a LoRA from the list.")
            if not _has_lora(folder) or (prefix == "runs/" and not trained_run(folder)):
                raise ValueError(f"No trained LoRA at '{reference}' (expected {LORA_WEIGHT_NAME} in it); pick one from the list.")
            return str(folder)
    # A Hub id is 'owner/name'. One that is also a folder here (relative to the working directory) would be
    # read from disk by diffusers, so is_hub_id refuses it like any other path.
    if is_hub_id(reference):
        return reference
    raise ValueError(
        f"'{reference}' is not a LoRA this app can use: pick one from the list, give a Hub model id "
        "('user/name'), or (maintainers) copy the LoRA folder into the data dir's loras/ folder and pick 'loras/' "
        "followed by the folder's name."
    )


def list_loras(config: StudioConfig, maintainer: bool = False) -> list[str]:
    """Local LoRA references for the picker, newest runs first (trained runs for maintainers only)."""
    found = []
    for prefix, root in _local_lora_roots(config, maintainer).items():
        if not root.is_dir():
            continue
        folders = [folder for folder in root.iterdir() if folder.is_dir() and _has_lora(folder)
                   and (prefix != "runs/" or trained_run(folder))]
        folders.sort(key=lambda folder: folder.stat().st_mtime, reverse=prefix == "runs/")
        found += [prefix + folder.name for folder in folders]
    return found


def load_studio_pipeline(config: StudioConfig):
    """The serving pipeline: ``config.model``, or the embedded default (random tiny weights, with a warning,
    while the embedded checkpoint has not been built)."""
    import torch

    from huvidpo.world.tiny import build_tiny_pipeline
    from huvidpo.hub import load_pipeline

    device = config.device or ("cuda" if torch.cuda.is_available() else None)
    serves_default = not config.model and default_model_path() == str(DEFAULT_MODEL_DIR)
    if serves_default and not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
        logger.warning(
            "The embedded checkpoint %s is not built: serving random-initialised tiny weights. "
            "Build it with `python -m huvidpo.world.tiny` (or train it), or pass --model.",
            DEFAULT_MODEL_DIR,
        )
        pipe = build_tiny_pipeline(seed=0)
        for pipeline in (pipe, pipe.image_pipeline):
            pipeline.set_progress_bar_config(disable=True)
        return pipe.to(device) if device else pipe
    return load_pipeline(config.model or None, image_model=config.image_model, device=device)


_MODEL_STACK_LOCK = threading.Lock()

# Held while a pipeline or a LoRA is being built (loading, adding adapters): transformers, accelerate and peft
# build modules on the meta device by patching torch globally for the duration, so a second thread building
# modules meanwhile gets weightless ("meta") parameters. The serving pipeline, a preference round's clips and every
# LoRA swap take it; plain generations with no LoRA involved do not. A training run builds its model in a process
# of its own, where nothing else builds.
MODEL_BUILD_LOCK = threading.Lock()


def import_model_stack(training: bool = False) -> None:
    """Import torch, diffusers and the pipeline modules (and the trainers) from one thread at a time.

    The model loads in a background thread while requests arrive; two threads running the first import of
    diffusers' lazy modules at once can see a half-initialised module ("cannot import name ...").
    """
    modules = ["huvidpo.world.tiny", "huvidpo.pipeline", "huvidpo.hub"] + (["huvidpo.training"] if training else [])
    with _MODEL_STACK_LOCK:
        for module in modules:
            importlib.import_module(module)
        # The server's console is its log: no loading bars from diffusers and transformers ("Loading pipeline
        # components", "Loading weights") each time the studio loads a model.
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()


@gpu(duration=120)
def render(pipe, settings: GenerationSettings, image: PIL.Image.Image | None, step_callback: StepCallback | None):
    """The GPU part of a generation (a ZeroGPU slot on a Space): frames and the first frame."""
    return generate(pipe, settings, image=image, step_callback=step_callback)


@dataclass
class GenerationService:
    """Loads the pipeline once and turns settings into clips, one at a time. ``gpu``: the turns generation and the
    app's training runs take on a shared GPU (give the app's ``TrainingManager`` the same; default: one of its own)."""

    config: StudioConfig
    pipe: Any = None
    gpu: GpuTurns | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _load_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.gpu is None:
            self.gpu = GpuTurns(self.config)

    def start_loading(self) -> threading.Thread:
        """Load the pipeline in a background thread (a failure is logged; the next request retries and reports it)."""

        def load() -> None:
            try:
                self.pipeline()
            except Exception as err:  # noqa: BLE001 - reported here, and again to whoever generates
                logger.error("Could not load the video model %s: %s", self.config.model_name, err, exc_info=True)

        thread = threading.Thread(target=load, name="load-model", daemon=True)
        thread.start()
        return thread

    def pipeline(self):
        """The pipeline, loaded by the first caller."""
        import_model_stack()
        with self._load_lock:
            if self.pipe is None:
                started = time.perf_counter()
                with MODEL_BUILD_LOCK:
                    self.pipe = load_studio_pipeline(self.config)
                logger.info("Loaded the video model %s in %.1f s", self.config.model_name, time.perf_counter() - started)
            return self.pipe

    def generate(
        self,
        settings: GenerationSettings,
        image: PIL.Image.Image | None = None,
        step_callback: StepCallback | None = None,
        maintainer: bool = False,
    ) -> GeneratedClip:
        """One clip; ``step_callback(step, total)`` after every denoising step. Maintainers may also use the LoRAs
        of training runs. Refused while a training run holds the GPU this app generates on (:mod:`.gpu_turns`)."""
        check_settings(settings, self.config)
        run_settings = replace(settings, lora=resolve_lora(settings.lora, self.config, maintainer))
        started = time.perf_counter()
        with self.gpu.generating(), self._lock:
            pipe = self.pipeline()
            swaps_lora = bool(run_settings.lora) or bool(pipe.get_list_adapters())
            with MODEL_BUILD_LOCK if swaps_lora else contextlib.nullcontext():
                try:
                    frames, first_frame = render(pipe, run_settings, image, step_callback)
                except ValueError as err:  # a LoRA that does not load: name it as the user did, not by its server path
                    if run_settings.lora and run_settings.lora != settings.lora:
                        raise ValueError(str(err).replace(run_settings.lora, settings.lora)) from None
                    raise
        seconds = time.perf_counter() - started
        stem = self.config.generated_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        video = write_video(frames, stem.with_suffix(".mp4"), fps=clip_fps(settings, pipe))
        first_frame.save(stem.with_suffix(".png"))
        self._prune()
        recorded = {
            **settings.to_dict(),
            "lora": settings.lora or None,
            "model": self.config.model_name,
            "first_frame": "uploaded" if image is not None else "generated",
        }
        return GeneratedClip(video=video, first_frame=stem.with_suffix(".png"), settings=recorded, seconds=round(seconds, 2))

    def compare(
        self,
        settings: GenerationSettings,
        image: PIL.Image.Image | None = None,
        step_callback: StepCallback | None = None,
        maintainer: bool = False,
    ) -> tuple[GeneratedClip, GeneratedClip]:
        """The base model and the base model with ``settings.lora``, same seed: (base, with LoRA)."""
        if not settings.lora:
            raise ValueError("Compare mode shows the base model next to a LoRA: pick a LoRA first.")
        total = 2 * settings.steps

        def first_half(step: int, _: int) -> None:
            if step_callback:
                step_callback(step, total)

        def second_half(step: int, _: int) -> None:
            if step_callback:
                step_callback(settings.steps + step, total)

        resolve_lora(settings.lora, self.config, maintainer)  # a LoRA that cannot be used fails before the base clip
        base = self.generate(replace(settings, lora=None), image, first_half)
        tuned = self.generate(settings, image, second_half, maintainer)
        return base, tuned

    def _prune(self) -> None:
        """Keep the newest ``keep_generated`` clips (and their first frames)."""
        videos = sorted(self.config.generated_dir.glob("*.mp4"), key=lambda path: path.stat().st_mtime)
        for video in videos[: max(0, len(videos) - self.config.keep_generated)]:
            video.unlink(missing_ok=True)
            video.with_suffix(".png").unlink(missing_ok=True)


def reproduce_command(settings: dict[str, Any], config: StudioConfig, clip: GeneratedClip | None = None,
                      server_paths: bool = False) -> str:
    """The command that makes the same clip again with the installed ``huvidpo-generate``. With ``server_paths``
    (maintainers, who can run it on this server, from any folder): the model and the LoRA as absolute paths (or
    Hub ids) and the mp4 written to ``data_dir/reproduced/``. Without (visitors): no server path, the model by its
    Hub id or name, the LoRA as picked, files by their names."""
    defaults = GenerationSettings(prompt="").to_dict()
    parts = ["huvidpo-generate", f"--prompt {_quote(settings['prompt'])}"]

    def model_reference(model: str) -> str:
        if is_hub_id(model):
            return model
        return str(Path(model).expanduser().resolve()) if server_paths else Path(model).name

    if not config.serves_embedded_default:
        parts.append(f"--model {_quote(model_reference(config.model or default_model_path()))}")
    if config.image_model:
        parts.append(f"--image-model {_quote(model_reference(config.image_model))}")
    for name, value in settings.items():
        if name not in defaults or name == "prompt" or value == defaults[name] or value is None:
            continue
        if name == "lora" and server_paths:
            value = resolve_lora(value, config, maintainer=True)  # runs/<run> is the data dir's, not the working folder's
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{name.replace('_', '-')}")
        else:
            parts.append(f"{flag} {_quote(value)}")
    if settings.get("first_frame") == "uploaded":
        parts.append(f"--image {_quote(clip.first_frame if clip is not None and server_paths else 'first_frame.png')}")
    name = clip.video.stem if clip is not None else "clip"
    parts.append(f"--out {_quote(config.root / 'reproduced' / f'{name}.mp4' if server_paths else f'{name}.mp4')}")
    return " ".join(parts)


def _quote(value: Any) -> str:
    return shlex.quote(str(value))
