"""The settings of both training stages: one dataclass each, the only home of every setting.

What is unusual here:
- A field's metadata is the one home of what a setting allows: its help text, a number's range (``min`` /
  ``max``, both inclusive) and a text's ``choices``. ``__post_init__`` checks every value against them
  (:func:`check_settings`) and raises a ``ValueError`` that names the field, before any model is loaded; the
  command lines (:mod:`huvidpo.settings`, transformers' ``HfArgumentParser``) show them in ``--help``,
  and the studio's inputs can read the same ranges.
- No torch and no transformers here, so the studio can read the defaults while it builds its page.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huvidpo.data.preferences import CRITERIA, KEEP_OR_DROP, PREFERENCE_FORMATS, STUDIO
from huvidpo.locations import check_hub_id
from huvidpo.settings import MAX_SEED, check_settings, setting

AUTO = "auto"  # mixed_precision: bf16 + gradient checkpointing for an SD-sized UNet on a CUDA GPU, else no
MIXED_PRECISIONS = (AUTO, "no", "fp16", "bf16")
TRACKERS = ("tensorboard", "wandb")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
LOSS_TYPES = ("sigmoid", "hinge", "ipo")  # the branches of huvidpo.losses.video_dpo_loss
LATEST = "latest"  # resume from the newest checkpoint in output_dir


@dataclass
class TrainingConfig:
    """Settings shared by stage 1 and DPO."""

    model: str = setting(
        "",
        "Base model: a HuViDPO pipeline folder or Hub id (for DPO, the stage-1 output), or a Stable "
        "Diffusion 1.x pipeline to inflate. Empty: the embedded default ($HUVIDPO_MODEL or assets/huvidpo-tiny).",
    )
    data: str = setting("", "Training data: a local folder with metadata.jsonl, or a Hub dataset id.")
    output_dir: str = setting("outputs/huvidpo", "Where outputs, metrics and checkpoints go.")
    num_frames: int = setting(16, "Frames per training clip, frame 0 (the clean condition) included.", min=2, max=256)
    resolution: str | None = setting(
        None, "Training size, 'SIZE' or 'HEIGHTxWIDTH' in pixels (e.g. 320x512). Default: the model's native size."
    )
    max_steps: int = setting(500, "Optimizer steps to train for.", min=1, max=1_000_000)
    learning_rate: float = setting(1e-4, "AdamW learning rate.", min=1e-8, max=1.0)
    lr_scheduler: str = setting("constant", "Learning-rate schedule.", choices=LR_SCHEDULERS)
    lr_warmup_steps: int = setting(0, "Linear warm-up steps of the schedule.", min=0, max=1_000_000)
    weight_decay: float = setting(1e-2, "AdamW weight decay.", min=0.0, max=1.0)
    max_grad_norm: float = setting(1.0, "Gradient clipping norm; 0 disables clipping.", min=0.0, max=1e6)
    batch_size: int = setting(1, "Training clips (stage 1) or pairs (DPO) per device per micro-batch.", min=1, max=1024)
    gradient_accumulation_steps: int = setting(1, "Micro-batches per optimizer step.", min=1, max=1024)
    mixed_precision: str = setting(
        AUTO,
        "Frozen weights in this dtype, trained ones in fp32. fp16 needs a GPU. 'auto': bf16, with gradient "
        "checkpointing on, for a Stable Diffusion-sized UNet on a CUDA GPU (what a 24 GB card needs); 'no' otherwise.",
        choices=MIXED_PRECISIONS,
    )
    gradient_checkpointing: bool = setting(False, "Recompute UNet activations in backward to save memory.")
    seed: int = setting(0, "Seed of data order, noise, timesteps and augmentation.", min=0, max=MAX_SEED)
    checkpointing_steps: int = setting(
        500, "Save a resumable checkpoint every N steps (and at the end); 0: only at the end.", min=0, max=1_000_000
    )
    checkpoints_total_limit: int | None = setting(
        None, "Keep at most this many checkpoints (oldest deleted first); empty keeps all.", min=1, max=100_000
    )
    resume: str | None = setting(
        None,
        f"Resume training: '{LATEST}' (or the flag alone) for the newest checkpoint in output_dir (a fresh start "
        "if there is none), or the path of a checkpoints/step-N folder. In Python, True means 'latest'.",
        nargs="?",
        const=LATEST,
        metavar="CHECKPOINT",
    )
    log_with: str | None = setting(
        None, "Also log to this tracker (must be installed); metrics.jsonl is always written.", choices=TRACKERS
    )
    push_to_hub: bool = setting(False, "Upload the result to a Hub model repo when training ends.")
    hub_model_id: str | None = setting(None, "The Hub repo to push to, 'owner/name'.")
    hub_private: bool = setting(True, "Create the Hub repo as private.")
    overwrite_output_dir: bool = setting(
        False, "Start afresh in an output_dir that holds checkpoints of an earlier run (they are deleted)."
    )
    hub_token: str | None = setting(
        None, "Hub token with write access; default HF_TOKEN or the `hf auth login` token. Never saved.", secret=True
    )

    def __post_init__(self) -> None:
        if self.resume is True:
            self.resume = LATEST
        elif self.resume is False or self.resume == "":
            self.resume = None
        check_settings(self)
        if self.lr_warmup_steps and self.lr_scheduler == "constant":
            raise ValueError("lr_warmup_steps has no effect with lr_scheduler 'constant': use 'constant_with_warmup'.")
        if not self.output_dir:
            raise ValueError("output_dir is empty: give a folder for the outputs.")
        _ = self.size  # parses and validates resolution
        if self.resume not in (None, LATEST) and not Path(self.resume).is_dir():
            raise ValueError(
                f"resume: no checkpoint folder at {self.resume}; give a checkpoints/step-N folder or '{LATEST}'."
            )
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("push_to_hub needs hub_model_id ('owner/name' of the model repo to create or update).")
        if self.hub_model_id is not None:
            check_hub_id(self.hub_model_id, "hub_model_id")

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


def _redefault(name: str, default: Any, help: str | None = None) -> Any:
    """A :class:`TrainingConfig` field with another default (and help text); its range and choices stay."""
    metadata = dict(TrainingConfig.__dataclass_fields__[name].metadata)
    if help is not None:
        metadata["help"] = help
    return field(default=default, metadata=metadata)


@dataclass
class Stage1Config(TrainingConfig):
    """Stage 1: the inflated UNet's temporal layers and attn1.to_q learn motion from videos with prompts.

    Trained: temporal convs and gates, temporal attention, ``attn1.to_q``; everything else stays frozen.
    """

    output_dir: str = _redefault("output_dir", "outputs/huvidpo-stage1", "Where the trained pipeline, metrics and checkpoints go.")
    data: str = _redefault(
        "data",
        "",
        "Videos with one prompt each: a folder with metadata.jsonl (file_name or video, prompt) and the videos, "
        "or a Hub dataset id.",
    )
    max_steps: int = _redefault("max_steps", 1000)
    learning_rate: float = _redefault("learning_rate", 3e-5, "AdamW learning rate (the original recipe: 3e-5).")
    random_start_frame: bool = setting(True, "Take each clip from a random start frame (else from frame 0).")
    horizontal_flip: bool = setting(True, "Flip half of the clips left-right.")
    cache_latents: bool = setting(
        False,
        "Encode each clip once and keep its latents in memory (about 1 MB per 16-frame 512px clip) instead of "
        "decoding and VAE-encoding it every step; needs random_start_frame and horizontal_flip off.",
    )
    prompt_dropout: float = setting(
        0.0,
        "Share of clips trained with the empty prompt, so that classifier-free guidance's unconditional branch "
        "has learnt video too (SD and AnimateDiff train with 0.1). 0: every clip keeps its prompt; below 1.",
        min=0.0,
        max=1.0,
    )
    video_column: str = setting("video", "Column with the video path (metadata.jsonl may use file_name).")
    prompt_column: str = setting("prompt", "Column with the prompt.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prompt_dropout == 1:
            raise ValueError("prompt_dropout is a share of clips below 1: at 1 no clip keeps its prompt.")
        if self.cache_latents and (self.random_start_frame or self.horizontal_flip):
            raise ValueError(
                "cache_latents keeps one encoding per clip, but random_start_frame / horizontal_flip change the clip "
                "every step: turn those off, or cache_latents off."
            )


@dataclass
class DPOConfig(TrainingConfig):
    """Stage 2: a LoRA on the stage-1 model trained with the video DPO loss on (winner, loser) pairs."""

    output_dir: str = _redefault("output_dir", "outputs/huvidpo-dpo", "Where the LoRA, model card, metrics and checkpoints go.")
    data: str = _redefault(
        "data",
        "",
        "Preference pairs: a HuViDPO Studio export folder (metadata.jsonl + videos/), any folder whose "
        "metadata.jsonl has prompt / winner / loser video columns, or a Hub dataset id with those columns; "
        "with data_format, a dataset in that public schema (a folder, a table file or a Hub id).",
    )
    data_format: str = setting(
        STUDIO,
        "Schema of data: 'studio' (prompt / winner / loser columns, named by the *_column settings), 'pickapic' "
        "(caption, label_0, label_1 with 0.5 for a tie, video_0, video_1), 'videoreward' (CSV: prompt, path_A, "
        "path_B, VQ / MQ / TA in A, B, same), 'videodpo' (pair.json + metadata.json), 'genai-bench' (prompt, "
        "left_video, right_video, vote_type) or 'scores' (prompt, video, a 0-10 score per clip).",
        choices=PREFERENCE_FORMATS,
    )
    criterion: str = setting(
        "majority", "videoreward: the label a pair is decided by (VQ, MQ, TA), or the majority of the three.",
        choices=CRITERIA,
    )
    ties: str = setting(
        "drop", "Ties (Pick-a-Pic 0.5/0.5, VideoReward 'same', GenAI-Bench 'tievote'): drop them, or keep each "
        "as both orders (pulling the two clips' margin to zero). Dropped rows are counted in the log.",
        choices=KEEP_OR_DROP,
    )
    both_bad: str = setting("drop", "GenAI-Bench 'bothbad_vote' rows: drop them, or keep each as both orders.",
                            choices=KEEP_OR_DROP)
    min_score_gap: float = setting(
        1.0, "scores: two clips of a prompt make a pair when their scores differ by at least this (equal scores "
        "never do).", min=1e-6, max=10.0,
    )
    data_split: str = setting("train", "Split of a Hub dataset to read (GenAI-Bench publishes 'test').")
    data_subset: str | None = setting(None, "Subset (config) of a Hub dataset, e.g. GenAI-Bench's 'video_generation'.")
    learning_rate: float = _redefault("learning_rate", 1e-4, "AdamW learning rate (the original recipe: 1e-4).")
    beta: float = setting(
        50.0, "DPO beta: how far the LoRA may move from the reference (the original: 50).", min=1e-4, max=1e6
    )
    loss_type: str = setting("sigmoid", "DPO loss ('sigmoid' is the paper's).", choices=LOSS_TYPES)
    rpo_alpha: float = setting(
        0.0,
        "Weight of the winners' plain denoising loss added to the DPO loss (RPO; trl's rpo_alpha): keeps the "
        "LoRA from getting worse at denoising winners while it separates them from losers (with guidance_scale > 1, "
        "at denoising them from the conditional prediction). 0: the paper's loss.",
        min=0.0,
        max=1e4,
    )
    guidance_scale: float = setting(
        1.0,
        "Classifier-free guidance at which DPO compares predictions. 1 (the paper): the conditional prediction. "
        "Above 1: the guided prediction u + w (c - u) that the sampler follows at that guidance, u being the "
        "empty prompt's (twice the UNet work per step). Use the guidance you generate with.",
        min=1.0,
        max=100.0,
    )
    lora_rank: int = setting(16, "LoRA rank r.", min=1, max=1024)
    lora_alpha: int = setting(32, "LoRA alpha (the update is scaled by alpha / r).", min=1, max=8192)
    lora_target_modules: list[str] = setting(
        default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"],
        help="Module names that get a LoRA (attention projections by default).",
    )
    prompt_column: str = setting("prompt", "Column with the prompt.")
    chosen_column: str = setting("video_w", "Column with the preferred (winner) video.")
    rejected_column: str = setting("video_l", "Column with the rejected (loser) video.")
    cache_latents: bool = setting(
        True,
        "Keep the encoded latents and text states on disk under output_dir/cache, read a batch at a time (RAM does "
        "not grow with the number of pairs; reused on resume). Off: all of them in RAM.",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]
        if not self.lora_target_modules or not all(isinstance(m, str) and m for m in self.lora_target_modules):
            raise ValueError(f"lora_target_modules must be a non-empty list of module names, got {self.lora_target_modules!r}.")
        for name in ("prompt_column", "chosen_column", "rejected_column", "data_split"):
            if not getattr(self, name):
                raise ValueError(f"{name} is empty: name the dataset column (or split).")

    @property
    def reader_options(self) -> dict[str, Any]:
        """How a public dataset is read into pairs (:func:`huvidpo.data.preferences.read_preference_pairs`)."""
        return {"criterion": self.criterion, "ties": self.ties, "both_bad": self.both_bad,
                "min_score_gap": self.min_score_gap, "split": self.data_split, "subset": self.data_subset}
