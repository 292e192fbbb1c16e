"""The settings of both training stages: one dataclass each, the only home of every setting.

What is unusual here:
- A field's metadata is the one home of what a setting allows: its help text, a number's range (``min`` /
  ``max``, both inclusive) and a text's ``choices``. ``__post_init__`` checks every value against them
  (:func:`check_settings`) and raises a ``ValueError`` that names the field, before any model is loaded; the
  command lines (:mod:`huvidpo.settings`, transformers' ``HfArgumentParser``) show them in ``--help``,
  and the studio's inputs can read the same ranges.
- ``DPOConfig.preset`` ('ours' or the original HuViDPO code's optimizer settings) fills the fields it covers
  that are None: their dataclass default is None, so a value given explicitly (a flag, a YAML key or an argument)
  always wins over the preset, and a constructed config holds plain values (saved and resumed as they are).
- No torch and no transformers here (the backends' module-level names cost none), so the studio can read the defaults while it builds its page.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huvidpo.backends.base import DEFAULT_LORA_TARGETS
from huvidpo.data.preferences import CRITERIA, KEEP_OR_DROP, PREFERENCE_FORMATS, STUDIO
from huvidpo.locations import check_hub_id
from huvidpo.settings import MAX_SEED, check_settings, parse_resolution, setting

AUTO = "auto"  # mixed_precision: bf16 + gradient checkpointing for an SD-sized denoiser on a CUDA GPU, else no
MIXED_PRECISIONS = (AUTO, "no", "fp16", "bf16")
TRACKERS = ("tensorboard", "wandb")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
LOSS_TYPES = ("sigmoid", "hinge", "ipo")  # the branches of huvidpo.losses.video_dpo_loss
LATEST = "latest"  # resume from the newest checkpoint in output_dir
REFERENCES = ("base", "previous")  # what DPO compares against (and where the trained LoRA starts): DPOConfig.reference


@dataclass
class TrainingConfig:
    """Settings shared by stage 1 and DPO."""

    model: str = setting(
        "",
        "Base model: a HuViDPO pipeline folder or Hub id (for DPO, the stage-1 output), a Stable "
        "Diffusion 1.x pipeline to inflate, or (DPO) a Wan 2.1 or AnimateDiff pipeline. Empty: the embedded default "
        "($HUVIDPO_MODEL or assets/huvidpo-tiny).",
    )
    data: str = setting("", "Training data: a local folder with metadata.jsonl, or a Hub dataset id.")
    output_dir: str = setting("outputs/huvidpo", "Where outputs, metrics and checkpoints go.")
    num_frames: int | None = setting(
        None, "Frames per training clip, frame 0 (the clean condition of a HuViDPO model) included. Default: the "
        "model family's (Backend.default_frames); Wan 2.1 takes 1 + 4k frames (5, 9, ..., 81).", min=2, max=256,
    )
    resolution: str | None = setting(
        None, "Training size, 'SIZE' or 'HEIGHTxWIDTH' in pixels (e.g. 320x512). Default: the model's native size."
    )
    max_steps: int = setting(500, "Optimizer steps to train for.", min=1, max=1_000_000)
    learning_rate: float = setting(1e-4, "AdamW learning rate.", min=1e-8, max=1.0)
    lr_scheduler: str = setting("constant", "Learning-rate schedule.", choices=LR_SCHEDULERS)
    lr_warmup_steps: int = setting(0, "Linear warm-up steps of the schedule.", min=0, max=1_000_000)
    weight_decay: float = setting(1e-2, "AdamW weight decay.", min=0.0, max=1.0)
    adam_epsilon: float = setting(1e-8, "AdamW epsilon (added to the root of the second moment).", min=1e-12, max=1.0)
    max_grad_norm: float = setting(1.0, "Gradient clipping norm; 0 disables clipping.", min=0.0, max=1e6)
    batch_size: int = setting(1, "Training clips (stage 1) or pairs (DPO) per device per micro-batch.", min=1, max=1024)
    gradient_accumulation_steps: int = setting(1, "Micro-batches per optimizer step.", min=1, max=1024)
    mixed_precision: str = setting(
        AUTO,
        "Frozen weights in this dtype, trained ones in fp32. fp16 needs a GPU. 'auto': bf16, with gradient "
        "checkpointing on, for a denoiser of Stable Diffusion's size or larger (a UNet as wide as SD 1.x's, Wan 2.1's "
        "1.3B transformer or larger) on a CUDA GPU (checkpointing is what lets a 24 GB card fit it); 'no' otherwise.",
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
        return parse_resolution(self.resolution)

    def to_dict(self, include_secrets: bool = False) -> dict[str, Any]:
        """The settings as plain values (the hub token left out unless asked for)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if include_secrets or not f.metadata.get("secret")
        }


# The DPO optimizer presets: ours, and the original HuViDPO code's (AdamW eps 1e-3, weight decay 1e-4, LoRA dropout
# 0.1, lr 1e-4, batch 1). DPOConfig's ``preset`` fills each of these fields that was not given explicitly.
DPO_PRESETS: dict[str, dict[str, Any]] = {
    "ours": dict(learning_rate=1e-4, batch_size=1, weight_decay=1e-2, adam_epsilon=1e-8, lora_dropout=0.0),
    "huvidpo": dict(learning_rate=1e-4, batch_size=1, weight_decay=1e-4, adam_epsilon=1e-3, lora_dropout=0.1),
}


def _preset_help(name: str, help: str) -> str:
    values = ", ".join(f"{preset} {values[name]:g}" for preset, values in DPO_PRESETS.items())
    return f"{help} Default: the preset's ({values})."


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
    preset: str = setting(
        "ours",
        "Optimizer preset: 'ours' or 'huvidpo' (the original code's: AdamW eps 1e-3, weight decay 1e-4, LoRA dropout "
        "0.1, lr 1e-4, batch 1). It sets learning_rate, batch_size, weight_decay, adam_epsilon and lora_dropout; "
        "any of them given explicitly (flag, YAML or argument) wins.",
        choices=tuple(DPO_PRESETS),
    )
    learning_rate: float | None = _redefault("learning_rate", None, _preset_help("learning_rate", "AdamW learning rate."))
    batch_size: int | None = _redefault("batch_size", None, _preset_help("batch_size", "Pairs per device per micro-batch."))
    weight_decay: float | None = _redefault("weight_decay", None, _preset_help("weight_decay", "AdamW weight decay."))
    adam_epsilon: float | None = _redefault("adam_epsilon", None, _preset_help("adam_epsilon", "AdamW epsilon."))
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
    min_timestep: int = setting(
        0,
        "Lowest noise timestep the DPO loss is taken at (t is drawn uniformly from [min_timestep, max_timestep)). "
        "What a sampler decides early (the coarse layout and motion of a clip) is set at the noisiest timesteps; "
        "raising this spends every step there. 0 (the paper): all timesteps.",
        min=0,
        max=100_000,
    )
    max_timestep: int | None = setting(
        None, "One past the highest timestep the DPO loss is taken at; None: the scheduler's number of training "
        "timesteps (1000 for Stable Diffusion).", min=1, max=100_000,
    )
    guidance_scale: float = setting(
        1.0,
        "Classifier-free guidance at which DPO compares predictions. 1 (the paper): the conditional prediction. "
        "Above 1: the guided prediction u + w (c - u) that the sampler follows at that guidance, u being the "
        "empty prompt's (twice the UNet work per step). Use the guidance you generate with.",
        min=1.0,
        max=100.0,
    )
    reference: str = setting(
        "base",
        "The DPO reference and the trained LoRA's start. 'base': the model without a LoRA; the LoRA starts at zero "
        "(the paper). 'previous' (preference rounds): the LoRA in previous_lora, loaded as a second, frozen adapter; "
        "the trained LoRA starts as a copy of it, so each round moves on from the last one. Either way the policy "
        "equals the reference at step 0 (the loss starts at log 2).",
        choices=REFERENCES,
    )
    previous_lora: str | None = setting(
        None, "With reference 'previous': the previous round's LoRA folder (trained here, with the same lora_rank, "
        "lora_alpha and lora_target_modules).",
    )
    lora_rank: int = setting(16, "LoRA rank r.", min=1, max=1024)
    lora_alpha: int = setting(32, "LoRA alpha (the update is scaled by alpha / r).", min=1, max=8192)
    lora_dropout: float | None = setting(
        None, _preset_help("lora_dropout", "Dropout on the LoRA branch's input while training."), min=0.0, max=0.9
    )
    lora_target_modules: list[str] = setting(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS),
        help="Module names that get a LoRA (default: every model family's attention projections, "
        f"{', '.join(DEFAULT_LORA_TARGETS)}; for AnimateDiff they include the motion modules' attention), or one "
        "preset of the family: AnimateDiff's 'motion' (only the motion modules' attention: a motion LoRA) or "
        "'spatial' (only the image UNet's attention).",
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
        if self.preset not in DPO_PRESETS:
            raise ValueError(f"preset must be one of {list(DPO_PRESETS)}, got {self.preset!r}.")
        for name, value in DPO_PRESETS[self.preset].items():  # the preset fills what was not given
            if getattr(self, name) is None:
                setattr(self, name, value)
        super().__post_init__()
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]
        if not self.lora_target_modules or not all(isinstance(m, str) and m for m in self.lora_target_modules):
            raise ValueError(f"lora_target_modules must be a non-empty list of module names, got {self.lora_target_modules!r}.")
        if self.max_timestep is not None and self.max_timestep <= self.min_timestep:
            raise ValueError(f"max_timestep ({self.max_timestep}) must be above min_timestep ({self.min_timestep}): "
                             "the DPO loss needs at least one timestep to draw from.")
        for name in ("prompt_column", "chosen_column", "rejected_column", "data_split"):
            if not getattr(self, name):
                raise ValueError(f"{name} is empty: name the dataset column (or split).")
        self.previous_lora = self.previous_lora or None
        if self.reference == "previous" and self.previous_lora is None:
            raise ValueError("reference 'previous' needs previous_lora: the folder of the previous round's LoRA.")
        if self.reference == "base" and self.previous_lora is not None:
            raise ValueError(f"previous_lora {self.previous_lora!r} is only used with reference 'previous'; set "
                             "reference to 'previous', or leave previous_lora empty.")
        if self.previous_lora is not None and not Path(self.previous_lora).expanduser().exists():
            raise ValueError(f"previous_lora: no LoRA folder at {self.previous_lora}; give the folder of the previous "
                             "round's run (it holds pytorch_lora_weights.safetensors).")

    @property
    def reader_options(self) -> dict[str, Any]:
        """How a public dataset is read into pairs (:func:`huvidpo.data.preferences.read_preference_pairs`)."""
        return {"criterion": self.criterion, "ties": self.ties, "both_bad": self.both_bad,
                "min_score_gap": self.min_score_gap, "split": self.data_split, "subset": self.data_subset}
