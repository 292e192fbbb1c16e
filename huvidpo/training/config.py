"""The settings of both training stages: one dataclass each, the only home of every setting.

Each field carries a default and a help string; ``__post_init__`` rejects bad values with a
``ValueError`` that names the field and the fix, before any model is loaded. The CLI builds its flags
from these fields (:func:`add_config_arguments`), and YAML files hold the same keys
(:meth:`TrainingConfig.from_yaml`): defaults < YAML < flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from huvidpo.losses import LOSS_TYPES

MIXED_PRECISIONS = ("no", "fp16", "bf16")
TRACKERS = ("tensorboard", "wandb")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass
class TrainingConfig:
    """Settings shared by stage 1 and DPO."""

    model: str = field(
        default="",
        metadata=_help(
            "Base model: a HuViDPO pipeline folder or Hub id (for DPO, the stage-1 output), or a Stable "
            "Diffusion 1.x pipeline to inflate. Empty: the embedded default ($HUVIDPO_MODEL or assets/huvidpo-tiny)."
        ),
    )
    data: str = field(
        default="",
        metadata=_help("Training data: a local folder with metadata.jsonl, or a Hub dataset id."),
    )
    output_dir: str = field(default="outputs/huvidpo", metadata=_help("Where outputs, metrics and checkpoints go."))
    num_frames: int = field(default=16, metadata=_help("Frames per training clip, frame 0 (the clean condition) included."))
    resolution: str | None = field(
        default=None,
        metadata=_help("Training size, 'SIZE' or 'HEIGHTxWIDTH' in pixels (e.g. 320x512). Default: the model's native size."),
    )
    max_steps: int = field(default=500, metadata=_help("Optimizer steps to train for."))
    learning_rate: float = field(default=1e-4, metadata=_help("AdamW learning rate."))
    lr_scheduler: str = field(default="constant", metadata=_help(f"Learning-rate schedule: one of {LR_SCHEDULERS}."))
    lr_warmup_steps: int = field(default=0, metadata=_help("Linear warm-up steps of the schedule."))
    weight_decay: float = field(default=1e-2, metadata=_help("AdamW weight decay."))
    max_grad_norm: float = field(default=1.0, metadata=_help("Gradient clipping norm; 0 disables clipping."))
    batch_size: int = field(default=1, metadata=_help("Training clips (stage 1) or pairs (DPO) per device per micro-batch."))
    gradient_accumulation_steps: int = field(default=1, metadata=_help("Micro-batches per optimizer step."))
    mixed_precision: str = field(
        default="no",
        metadata=_help(f"One of {MIXED_PRECISIONS}: frozen weights in that dtype, trained ones in fp32. fp16 needs a GPU."),
    )
    gradient_checkpointing: bool = field(default=False, metadata=_help("Recompute UNet activations in backward to save memory."))
    seed: int = field(default=0, metadata=_help("Seed of data order, noise, timesteps and augmentation."))
    checkpointing_steps: int = field(
        default=500, metadata=_help("Save a resumable checkpoint every N steps (and at the end); 0: only at the end.")
    )
    checkpoints_total_limit: int | None = field(
        default=None, metadata=_help("Keep at most this many checkpoints (oldest deleted first); empty keeps all.")
    )
    resume: bool | str = field(
        default=False,
        metadata=_help(
            "Resume training: true for the latest checkpoint in output_dir (a fresh start if there is none), "
            "or the path of a checkpoint folder."
        ),
    )
    log_with: str | None = field(
        default=None, metadata=_help(f"Also log to one of {TRACKERS} (must be installed); metrics.jsonl is always written.")
    )
    push_to_hub: bool = field(default=False, metadata=_help("Upload the result to a Hub model repo when training ends."))
    hub_model_id: str | None = field(default=None, metadata=_help("The Hub repo to push to, 'user/name'."))
    hub_private: bool = field(default=True, metadata=_help("Create the Hub repo as private."))
    overwrite_output_dir: bool = field(
        default=False,
        metadata=_help("Start afresh in an output_dir that holds checkpoints of an earlier run (they are deleted)."),
    )
    hub_token: str | None = field(
        default=None,
        metadata=_help("Hub token with write access; default HF_TOKEN or the `hf auth login` token. Never saved.", secret=True),
    )

    def __post_init__(self) -> None:
        self._check_positive_ints("num_frames", "max_steps", "batch_size", "gradient_accumulation_steps")
        self._check_non_negative("lr_warmup_steps", "checkpointing_steps", "max_grad_norm", "weight_decay")
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 (frame 0 is the clean condition), got {self.num_frames}.")
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, (int, float)) or not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}; the recipe uses 3e-5 (stage 1) / 1e-4 (DPO).")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"lr_scheduler must be one of {LR_SCHEDULERS}, got {self.lr_scheduler!r}.")
        if self.lr_warmup_steps and self.lr_scheduler == "constant":
            raise ValueError("lr_warmup_steps has no effect with lr_scheduler 'constant': use 'constant_with_warmup'.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}.")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISIONS}, got {self.mixed_precision!r}.")
        if self.log_with is not None and self.log_with not in TRACKERS:
            raise ValueError(f"log_with must be empty or one of {TRACKERS}, got {self.log_with!r}.")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise ValueError(f"checkpoints_total_limit must be >= 1 or empty, got {self.checkpoints_total_limit}.")
        if not self.output_dir:
            raise ValueError("output_dir is empty: give a folder for the outputs.")
        _ = self.size  # parses and validates resolution
        if isinstance(self.resume, str) and self.resume.lower() in ("true", "false", ""):
            self.resume = self.resume.lower() == "true"
        if isinstance(self.resume, str) and not Path(self.resume).is_dir():
            raise ValueError(f"resume: no checkpoint folder at {self.resume}; give a checkpoints/step-N folder or true for the latest.")
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("push_to_hub needs hub_model_id ('user/name' of the model repo to create or update).")
        if self.hub_model_id is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+|[\w.-]+", self.hub_model_id):
            raise ValueError(f"hub_model_id must look like 'user/name', got {self.hub_model_id!r}.")

    def _check_positive_ints(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")

    def _check_non_negative(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}.")

    @property
    def size(self) -> tuple[int, int] | None:
        """``resolution`` as (height, width), or None for the model's native size."""
        if self.resolution in (None, ""):
            return None
        match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(self.resolution))
        if not match:
            raise ValueError(f"resolution must be 'SIZE' or 'HEIGHTxWIDTH' (e.g. 320x512), got {self.resolution!r}.")
        height = int(match.group(1))
        width = int(match.group(2) or height)
        if height < 8 or width < 8 or height % 8 or width % 8:
            raise ValueError(f"resolution must be multiples of 8 pixels, got {height}x{width}.")
        return height, width

    def to_dict(self, include_secrets: bool = False) -> dict[str, Any]:
        """The settings as plain values (the hub token left out unless asked for)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if include_secrets or not f.metadata.get("secret")
        }

    def to_yaml(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainingConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"Unknown {cls.__name__} settings {unknown}; valid ones are {sorted(names)}.")
        hints = typing.get_type_hints(cls)
        values = dict(values)
        for name, value in values.items():
            kind, scalar = _flag_type(hints[name])
            if kind == "scalar" and scalar in (int, float) and isinstance(value, str):
                # YAML 1.1 reads 1e-4 (no dot) as text.
                try:
                    values[name] = scalar(value)
                except ValueError as err:
                    raise ValueError(f"{name} must be {'an integer' if scalar is int else 'a number'}, got {value!r}.") from err
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path | None = None, **overrides: Any) -> "TrainingConfig":
        """Settings from a YAML mapping (may be None: defaults), then ``overrides`` on top."""
        values: dict[str, Any] = {}
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ValueError(f"No config file at {path}.")
            try:
                loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as err:
                raise ValueError(f"{path} is not valid YAML: {err}") from err
            if loaded is not None and not isinstance(loaded, dict):
                raise ValueError(f"{path} must hold a mapping of settings, got {type(loaded).__name__}.")
            values.update(loaded or {})
        values.update(overrides)
        return cls.from_dict(values)


@dataclass
class Stage1Config(TrainingConfig):
    """Stage 1: the inflated UNet's temporal layers and attn1.to_q learn motion from videos with prompts.

    Trained: temporal convs and gates, temporal attention, ``attn1.to_q``; everything else stays frozen.
    """

    output_dir: str = field(default="outputs/huvidpo-stage1", metadata=_help("Where the trained pipeline, metrics and checkpoints go."))
    data: str = field(
        default="",
        metadata=_help(
            "Videos with one prompt each: a folder with metadata.jsonl (file_name or video, prompt) and the videos, "
            "or a Hub dataset id."
        ),
    )
    max_steps: int = field(default=1000, metadata=_help("Optimizer steps to train for."))
    learning_rate: float = field(default=3e-5, metadata=_help("AdamW learning rate (the original recipe: 3e-5)."))
    random_start_frame: bool = field(default=True, metadata=_help("Take each clip from a random start frame (else from frame 0)."))
    horizontal_flip: bool = field(default=True, metadata=_help("Flip half of the clips left-right."))
    cache_latents: bool = field(
        default=False,
        metadata=_help(
            "Encode each clip once and keep its latents in memory (about 1 MB per 16-frame 512px clip) instead of "
            "decoding and VAE-encoding it every step; needs random_start_frame and horizontal_flip off."
        ),
    )
    prompt_dropout: float = field(
        default=0.0,
        metadata=_help(
            "Share of clips trained with the empty prompt, so that classifier-free guidance's unconditional branch "
            "has learnt video too (SD and AnimateDiff train with 0.1). 0: every clip keeps its prompt."
        ),
    )
    video_column: str = field(default="video", metadata=_help("Column with the video path (metadata.jsonl may use file_name)."))
    prompt_column: str = field(default="prompt", metadata=_help("Column with the prompt."))

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.prompt_dropout, bool) or not isinstance(self.prompt_dropout, (int, float)) or not 0 <= self.prompt_dropout < 1:
            raise ValueError(f"prompt_dropout is a share of clips: use [0, 1), got {self.prompt_dropout!r}.")
        if self.cache_latents and (self.random_start_frame or self.horizontal_flip):
            raise ValueError(
                "cache_latents keeps one encoding per clip, but random_start_frame / horizontal_flip change the clip "
                "every step: turn those off, or cache_latents off."
            )


@dataclass
class DPOConfig(TrainingConfig):
    """Stage 2: a LoRA on the stage-1 model trained with the video DPO loss on (winner, loser) pairs."""

    output_dir: str = field(default="outputs/huvidpo-dpo", metadata=_help("Where the LoRA, model card, metrics and checkpoints go."))
    data: str = field(
        default="",
        metadata=_help(
            "Preference pairs: a HuViDPO Studio export folder (metadata.jsonl + videos/), any folder whose "
            "metadata.jsonl has prompt / winner / loser video columns, or a Hub dataset id."
        ),
    )
    max_steps: int = field(default=500, metadata=_help("Optimizer steps to train for."))
    learning_rate: float = field(default=1e-4, metadata=_help("AdamW learning rate (the original recipe: 1e-4)."))
    beta: float = field(default=50.0, metadata=_help("DPO beta: how far the LoRA may move from the reference (the original: 50)."))
    loss_type: str = field(default="sigmoid", metadata=_help(f"DPO loss: one of {LOSS_TYPES} ('sigmoid' is the paper's)."))
    rpo_alpha: float = field(
        default=0.0,
        metadata=_help(
            "Weight of the winners' plain denoising loss added to the DPO loss (RPO; trl's rpo_alpha): keeps the "
            "LoRA from getting worse at denoising winners while it separates them from losers (with guidance_scale > 1, "
            "at denoising them from the conditional prediction). 0: the paper's loss."
        ),
    )
    guidance_scale: float = field(
        default=1.0,
        metadata=_help(
            "Classifier-free guidance at which DPO compares predictions. 1 (the paper): the conditional prediction. "
            "Above 1: the guided prediction u + w (c - u) that the sampler follows at that guidance, u being the "
            "empty prompt's (twice the UNet work per step). Use the guidance you generate with."
        ),
    )
    lora_rank: int = field(default=16, metadata=_help("LoRA rank r."))
    lora_alpha: int = field(default=32, metadata=_help("LoRA alpha (the update is scaled by alpha / r)."))
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"],
        metadata=_help("Module names that get a LoRA (attention projections by default)."),
    )
    prompt_column: str = field(default="prompt", metadata=_help("Column with the prompt."))
    chosen_column: str = field(default="video_w", metadata=_help("Column with the preferred (winner) video."))
    rejected_column: str = field(default="video_l", metadata=_help("Column with the rejected (loser) video."))
    cache_latents: bool = field(
        default=True, metadata=_help("Also keep the encoded latents on disk under output_dir/cache (reused on resume).")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}.")
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta!r}; the original recipe uses 50.")
        if isinstance(self.rpo_alpha, bool) or not isinstance(self.rpo_alpha, (int, float)) or not self.rpo_alpha >= 0:
            raise ValueError(f"rpo_alpha must be >= 0, got {self.rpo_alpha!r}; 0 trains the paper's loss.")
        gs = self.guidance_scale
        if isinstance(gs, bool) or not isinstance(gs, (int, float)) or not gs >= 1:
            raise ValueError(f"guidance_scale must be >= 1 (1: the paper's conditional DPO), got {gs!r}.")
        self._check_positive_ints("lora_rank", "lora_alpha")
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]
        if not self.lora_target_modules or not all(isinstance(m, str) and m for m in self.lora_target_modules):
            raise ValueError(f"lora_target_modules must be a non-empty list of module names, got {self.lora_target_modules!r}.")
        for name in ("prompt_column", "chosen_column", "rejected_column"):
            if not getattr(self, name):
                raise ValueError(f"{name} is empty: name the dataset column.")


# ---------------------------------------------------------------------------------------------- CLI flags


def _flag_type(annotation: Any) -> tuple[str, Any]:
    """(kind, scalar type) of a field annotation: kind is 'bool', 'list', 'resume' or 'scalar'."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if annotation is bool:
        return "bool", bool
    if typing.get_origin(annotation) is list:
        return "list", typing.get_args(annotation)[0]
    if bool in args and str in args:
        return "resume", str
    if args:
        return "scalar", args[0]
    return "scalar", annotation


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type[TrainingConfig]) -> None:
    """One flag per field (``--max_steps`` or ``--max-steps``); flags left out do not override YAML or defaults."""
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        kind, scalar = _flag_type(hints[f.name])
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        help_text = f"{f.metadata.get('help', '')} (default: {default!r})"
        if f.metadata.get("secret"):
            help_text = f.metadata.get("help", "")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if kind == "bool":
            parser.add_argument(*names, action=argparse.BooleanOptionalAction, **kwargs)
        elif kind == "list":
            parser.add_argument(*names, nargs="+", type=scalar, metavar=f.name.upper(), **kwargs)
        elif kind == "resume":
            parser.add_argument(*names, nargs="?", const=True, metavar="CHECKPOINT", **kwargs)
        else:
            parser.add_argument(*names, type=scalar, metavar=f.name.upper(), **kwargs)
