"""The run both stages share: accelerate setup, seeded sampling, the loop, checkpoints, metrics, card, push.

What is unusual here:
- A stage is a small subclass of :class:`Trainer` that says what it trains and how: its data, the weights it
  makes trainable, its loss, its card, and what it saves at the end (:mod:`.stage1`, :mod:`.dpo`).
- Randomness is a pure function of (seed, the example's position in the run's stream of examples): data
  order, and each example's noise, timestep and augmentation from its own ``torch.Generator`` (a CPU
  generator, so GPU and CPU runs draw the same values). A resumed run therefore replays exactly what an
  uninterrupted run would have drawn, and a batch split over processes or micro-batches draws what one
  process with the whole batch draws: 2 processes x batch 1 train the same LoRA as 1 process x batch 2
  (DDP averages their gradients). accelerate saves and restores the global RNG states too, for anything else.
- Checkpoints are accelerate's ``save_state`` / ``load_state``. A save hook stores only what the stage trains
  (the LoRA in the diffusers format, which ``load_lora`` reads, or the stage-1 set), never the frozen UNet;
  the optimizer, the LR schedule and the step are registered with accelerate. Each is written aside and
  renamed to ``checkpoints/step-N``, so a crash never leaves half a checkpoint and the folder names the
  step; accelerate's ``automatic_checkpoint_naming`` would count saves and write in place, so the folders
  and ``checkpoints_total_limit`` are handled here, as diffusers' training scripts do.
- Cancelling (a ``threading.Event``-like ``stop_event``) stops before the next step, then saves a
  checkpoint and the outputs, exactly as the end of training does.
- The text encoder only encodes: each stage encodes its prompts once before the loop, and the loop runs with the
  text encoder in CPU memory (:func:`text_encoder_offloaded`), so a large one (Wan 2.1's UMT5) leaves the GPU to
  training. Frozen weights are loaded in the run's dtype of frozen weights (:func:`load_training_pipeline`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

from huvidpo.training.config import AUTO, LATEST, TrainingConfig

logger = logging.getLogger("huvidpo.training")

CHECKPOINTS_DIR = "checkpoints"
CACHE_DIR = "cache"
LOGS_DIR = "logs"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.yaml"
TRAINABLE_NAME = "trainable.safetensors"
CHECKPOINT_MARKER = "optimizer.bin"  # written by every accelerate save_state
# Not for the Hub: resumable state, caches, tracker logs (and optimizer states wherever they are), and what the
# studio keeps beside a run (its record, with who started it and server paths, and its lock).
PUSH_IGNORE = [f"{CHECKPOINTS_DIR}/*", f"{CACHE_DIR}/*", f"{LOGS_DIR}/*", "*optimizer.bin", "*random_states_*.pkl",
               "run.json", ".run.lock", ".run.json.tmp"]

Callback = Callable[[dict[str, Any]], None]


class StopEvent(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class TrainResult:
    """What a training run produced.

    ``output_dir``: the run's folder; ``lora_path``: the LoRA file (DPO) or None (stage 1, whose output is
    the pipeline in ``output_dir``); ``steps``: optimizer steps done, resumed ones included;
    ``metrics_history``: one dict per step (``step``, ``loss``, ...); ``cancelled``: stopped by the stop
    event; ``hub_url`` / ``hub_error``: the pushed repo, or why the push failed (local files are intact).
    """

    output_dir: Path
    lora_path: Path | None
    steps: int
    metrics_history: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False
    hub_url: str | None = None
    hub_error: str | None = None


class Progress:
    """The optimizer step, saved in every checkpoint (``accelerator.register_for_checkpointing``)."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


# ---------------------------------------------------------------------------------------------- the run


class Trainer:
    """One training run. A stage subclass supplies the methods marked "the stage's"; :meth:`train` is the rest.

    Args:
        config: the settings (already validated by construction).
        callbacks: called on the main process with each step's metrics dict (``step``, ``loss``, ``lr``, ...).
        stop_event: checked before every step; once set, training stops, saves and returns ``cancelled=True``.
        pipe: an already-loaded pipeline whose UNet is trained in place; default: load ``config.model``.
        dataset: data to use instead of ``config.data`` (a ``datasets.Dataset`` or a list of dicts).
    """

    name = "training"  # progress bar and tracker project
    data_kind = "data"  # how the card names data given in Python
    card_title = ""
    card_tags: tuple[str, ...] = ()
    card_metrics: tuple[str, ...] = ("loss",)
    card_license: str | None = None

    def __init__(self, config: TrainingConfig, callbacks: list[Callback] | None = None, stop_event: StopEvent | None = None,
                 pipe=None, dataset: Any = None) -> None:
        self.config = config
        self.callbacks = list(callbacks or [])
        self.stop_event = stop_event
        self.pipe = pipe
        self.dataset = dataset

    # ------------------------------------------------------------------------------------------ the stage's

    def load_data(self, source: Any) -> Any:
        """Read and check the data (before any model work); return an object with ``len``."""
        raise NotImplementedError

    def prepare(self, pipe) -> None:
        """Encode what is encoded once and make the stage's weights of ``self.denoiser`` (placed already) trainable."""
        raise NotImplementedError

    def compute_loss(self, micro_step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """This micro-batch's loss and its metrics (0-dim tensors)."""
        raise NotImplementedError

    def save_outputs(self, output_dir: Path) -> Path | None:
        """Write the trained result; return the LoRA file, if that is what it is."""
        raise NotImplementedError

    def card_text(self, base_name: str, data_name: str) -> str:
        """The model card's text under its title; the names are never local paths."""
        raise NotImplementedError

    def card_settings(self, steps: int) -> dict[str, Any]:
        """The settings the model card's table lists (the final metrics follow them)."""
        raise NotImplementedError

    def save_trainable(self, directory: Path) -> None:
        """A checkpoint's weights: the trainable parameters (a stage may store them in its own format)."""
        save_file({name: p.detach().cpu().contiguous() for name, p in self.params.items()}, directory / TRAINABLE_NAME)

    def load_trainable(self, directory: Path) -> None:
        saved = load_file(directory / TRAINABLE_NAME)
        mismatched = sorted(set(saved) ^ set(self.params)) or sorted(n for n in saved if saved[n].shape != self.params[n].shape)
        if mismatched:
            raise ValueError(
                f"The checkpoint {directory} was made with other trainable parameters (e.g. {mismatched[:3]}); resume "
                "with the settings it was trained with (model, and for DPO lora_rank and lora_target_modules)."
            )
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(saved[name])

    # ------------------------------------------------------------------------------------------ shared helpers

    def micro_batch(self, num_items: int, micro_step: int) -> list[int]:
        """The examples of this process's share of ``micro_step`` (:func:`batch_indices`)."""
        accelerator = self.accelerator
        return batch_indices(num_items, micro_step, self.config.batch_size, self.config.seed,
                             accelerator.num_processes, accelerator.process_index)

    def generators(self, micro_step: int) -> list[torch.Generator]:
        """One generator per example of this process's share of ``micro_step`` (:func:`example_generator`)."""
        accelerator = self.accelerator
        return [example_generator(self.config.seed, position) for position in
                stream_positions(micro_step, self.config.batch_size, accelerator.num_processes, accelerator.process_index)]

    # ------------------------------------------------------------------------------------------ the run

    def train(self) -> TrainResult:
        """Train; write the outputs, ``README.md``, ``metrics.jsonl``, ``config.yaml`` and ``checkpoints/step-N``
        to ``config.output_dir``."""
        from accelerate.utils import set_seed
        from diffusers.training_utils import cast_training_params

        from huvidpo.backends import backend_for, model_family
        from huvidpo.locations import default_model_path

        # 1. Data: columns and files are checked before any model work
        self.data = self.load_data(self.dataset if self.dataset is not None else self.config.data)

        # 2. Precision, devices, output folder, resume point
        if self.pipe is not None:
            backend = backend_for(self.pipe)
            denoiser_config = dict(backend.denoiser(self.pipe).config)
        else:
            backend = model_family(self.config.model)
            denoiser_config = backend.read_denoiser_config(self.config.model or default_model_path())
        config, chosen = resolve_auto_precision(self.config, backend, denoiser_config)
        self.config = config
        if chosen:
            logger.warning("%s", chosen)
        accelerator = self.accelerator = make_accelerator(config)
        resume_from = prepare_output_dir(config, accelerator)
        output_dir = Path(config.output_dir)
        if accelerator.is_main_process:
            (output_dir / CONFIG_NAME).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
        if config.log_with is not None:
            flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in config.to_dict().items()}
            accelerator.init_trackers(f"huvidpo-{self.name}", config=flat)
        set_seed(config.seed)
        self.device, self.dtype = accelerator.device, weight_dtype(accelerator)

        # 3. Model: its family's backend says how it is trained; the stage encodes what it encodes once and chooses
        #    what is trained
        pipe = self.pipe = self.pipe if self.pipe is not None else load_training_pipeline(config.model, self.dtype)
        self.backend = backend_for(pipe)
        if config.num_frames is None:  # the family's clip length (config.yaml keeps None: a resume resolves it again)
            config = self.config = replace(config, num_frames=self.backend.default_frames)
        self.size = training_size(config, pipe, self.backend)
        self.noise_scheduler = self.backend.training_scheduler(pipe)
        self.denoiser = self.backend.denoiser(pipe)
        place(self.denoiser, self.device, self.dtype)
        self.prepare(pipe)
        cast_training_params(self.denoiser, dtype=torch.float32)
        if config.gradient_checkpointing:
            self.denoiser.enable_gradient_checkpointing()

        # 4. Optimizer and what a checkpoint holds
        self.params = trainable_parameters(self.denoiser)
        optimizer, self.lr_scheduler = make_optimizer(config, self.params)
        self.model, self.optimizer = accelerator.prepare(self.denoiser, optimizer)
        self.progress = Progress()
        accelerator.register_for_checkpointing(self.lr_scheduler)
        accelerator.register_for_checkpointing(self.progress)
        accelerator.register_save_state_pre_hook(self._save_hook)
        accelerator.register_load_state_pre_hook(self._load_hook)

        # 5. Train, without the text encoder on the accelerator: the stage encoded every prompt it needs in prepare
        with text_encoder_offloaded(pipe, self.device):
            history, cancelled = self._loop(resume_from)

        # 6. Outputs, model card, push
        steps = self.progress.step
        result = TrainResult(output_dir=output_dir, lora_path=None, steps=steps, metrics_history=history, cancelled=cancelled)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            result.lora_path = self.save_outputs(output_dir)
            self.write_card(output_dir, steps, history)
            if config.push_to_hub:
                result.hub_url, result.hub_error = push_output(config, output_dir)
        accelerator.end_training()
        return result

    def _save_hook(self, models: list, weights: list, output_dir: str) -> None:
        weights.clear()  # not the whole UNet: only what the stage trains
        if self.accelerator.is_main_process:
            self.save_trainable(Path(output_dir))

    def _load_hook(self, models: list, input_dir: str) -> None:
        models.clear()
        self.load_trainable(Path(input_dir))

    def _loop(self, resume_from: Path | None) -> tuple[list[dict[str, Any]], bool]:
        """Train until ``max_steps`` or a stop; return (metrics history, cancelled).

        One optimizer step averages ``gradient_accumulation_steps`` micro-batches. A checkpoint is written
        every ``checkpointing_steps``, at the end, and when cancelled.
        """
        from tqdm.auto import tqdm

        config, accelerator, progress = self.config, self.accelerator, self.progress
        if resume_from is not None:
            accelerator.load_state(str(resume_from))
            logger.info("Resumed from %s at step %d.", resume_from, progress.step)
        log = MetricsLog(Path(config.output_dir) / METRICS_NAME, progress.step if resume_from else None, accelerator.is_main_process)
        accumulation = config.gradient_accumulation_steps
        cancelled, last_saved = False, progress.step if resume_from is not None else None
        bar = tqdm(total=config.max_steps, initial=progress.step, desc=self.name, disable=not accelerator.is_local_main_process)
        self.model.train()
        while progress.step < config.max_steps:
            if self.stop_event is not None and self.stop_event.is_set():
                cancelled = True
                break
            totals: dict[str, torch.Tensor] = {}
            for micro in range(accumulation):
                with accelerator.accumulate(self.model):
                    loss, metrics = self.compute_loss(progress.step * accumulation + micro)
                    accelerator.backward(loss)
                    for name, value in {"loss": loss.detach(), **metrics}.items():
                        totals[name] = totals.get(name, 0) + value.detach().float() / accumulation
            grad_norm = None
            if config.max_grad_norm > 0:
                grad_norm = accelerator.clip_grad_norm_(list(self.params.values()), config.max_grad_norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            progress.step += 1

            names = list(totals)
            reduced = accelerator.reduce(torch.stack([totals[n] for n in names]), reduction="mean").tolist()
            row = {"step": progress.step, **dict(zip(names, reduced)), "lr": self.lr_scheduler.get_last_lr()[0]}
            if grad_norm is not None:
                row["grad_norm"] = float(grad_norm)
            log.write(row)
            if accelerator.is_main_process:
                if config.log_with is not None:
                    accelerator.log({k: v for k, v in row.items() if k != "step"}, step=progress.step)
                for callback in self.callbacks:
                    callback(dict(row))
            bar.update()
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            if config.checkpointing_steps and progress.step % config.checkpointing_steps == 0 and progress.step < config.max_steps:
                self.save_checkpoint()
                last_saved = progress.step
        bar.close()
        if last_saved != progress.step:
            self.save_checkpoint()
        if cancelled:
            logger.warning("Training cancelled at step %d; checkpoint and outputs saved.", progress.step)
        return log.history, cancelled

    def save_checkpoint(self) -> Path:
        """``checkpoints/step-N`` by accelerate's ``save_state``, written aside and renamed; the oldest beyond
        ``checkpoints_total_limit`` are deleted."""
        accelerator = self.accelerator
        path = Path(self.config.output_dir) / CHECKPOINTS_DIR / f"step-{self.progress.step}"
        staged = path.with_name(f".{path.name}.tmp")
        if accelerator.is_main_process:
            shutil.rmtree(staged, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(staged))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(path, ignore_errors=True)
            os.replace(staged, path)
            limit = self.config.checkpoints_total_limit
            if limit is not None:
                for old in list_checkpoints(self.config.output_dir)[:-limit]:
                    shutil.rmtree(old)
        accelerator.wait_for_everyone()
        return path

    def write_card(self, output_dir: Path, steps: int, history: list[dict[str, Any]]) -> Path:
        """README.md: the base model and data (Hub ids in the metadata, names in the text, never a local
        path), the stage's settings, and the mean of its metrics over the last steps."""
        from huvidpo.hub import card_name, write_model_card

        base_model, base_name = card_name(self.config.model)
        dataset, data_name = (None, f"custom {self.data_kind}") if self.dataset is not None else card_name(self.config.data)
        recent = history[-10:]
        metrics = {
            f"final {name} (mean of last {len(recent)} steps)": round(sum(row[name] for row in recent) / len(recent), 4)
            for name in self.card_metrics
            if recent and name in recent[0]
        }
        return write_model_card(
            output_dir, self.card_title, self.card_text(base_name, data_name), {**self.card_settings(steps), **metrics},
            list(self.card_tags), base_model=base_model, dataset=dataset, license=self.card_license,
        )


# ---------------------------------------------------------------------------------------------- setup

def resolve_auto_precision(config: TrainingConfig, backend, denoiser_config: dict | None,
                           cuda: bool | None = None) -> tuple[TrainingConfig, str | None]:
    """``mixed_precision='auto'`` made concrete by the precision rule loading follows too
    (:meth:`~huvidpo.backends.Backend.runs_in_bf16`): bf16 with gradient checkpointing for a denoiser its family
    calls Stable Diffusion-sized or larger on a CUDA GPU (16 frames of 320x512 then fit 24 GB:
    ``bench/realsize.py``), 'no' otherwise. ``cuda`` None: whether torch sees a CUDA GPU.
    Returns the settings to train with and, when it chose bf16, the sentence that says so."""
    if config.mixed_precision != AUTO:
        return config, None
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if not backend.runs_in_bf16(denoiser_config, "cuda" if cuda else "cpu"):
        return replace(config, mixed_precision="no"), None
    chosen = replace(config, mixed_precision="bf16", gradient_checkpointing=True)
    return chosen, (f"A {backend.title} model of Stable Diffusion's size or larger on a CUDA GPU: training in bf16 with "
                    "gradient checkpointing (mixed_precision 'auto'; set mixed_precision to 'no' or 'bf16' to choose "
                    "yourself).")


def make_accelerator(config: TrainingConfig):
    """An ``Accelerator`` for the config's precision, accumulation and tracker."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType, ProjectConfiguration

    if config.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("mixed_precision 'fp16' needs a CUDA GPU; use 'bf16' or 'no' on a CPU.")
    if config.log_with is not None:
        import importlib.util

        packages = ("tensorboard", "tensorboardX") if config.log_with == "tensorboard" else ("wandb",)
        if all(importlib.util.find_spec(name) is None for name in packages):
            raise ValueError(f"log_with={config.log_with!r} needs the {packages[0]} package: `pip install {packages[0]}`, or leave log_with empty.")
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, config.mixed_precision) and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # A second run in the same process (the app) may use another precision; accelerate keeps the first.
        AcceleratorState._reset_state()
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=config.log_with,
        project_config=ProjectConfiguration(project_dir=config.output_dir, logging_dir=str(Path(config.output_dir) / LOGS_DIR)),
    )
    if accelerator.distributed_type == DistributedType.FSDP:
        raise ValueError(
            "FSDP is not supported yet: checkpoints save the LoRA (or the stage-1 set) from each process's weights, "
            "which FSDP shards. Launch with configs/accelerate/multi-gpu.yaml (DDP) or deepspeed-zero2.yaml."
        )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:  # no DataLoader to infer it from (as diffusers' scripts)
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = config.batch_size
    return accelerator


def weight_dtype(accelerator) -> torch.dtype:
    """The dtype of frozen weights under the accelerator's mixed precision (trained weights stay fp32)."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


def place(module: torch.nn.Module, device, dtype: torch.dtype | None = None) -> None:
    """Move a model, casting only when the dtype changes (diffusers warns on every dtype ``.to``)."""
    module.to(device)
    if dtype is not None and next(module.parameters()).dtype != dtype:
        module.to(dtype=dtype)


@contextlib.contextmanager
def text_encoder_offloaded(pipe, device: torch.device):
    """The pipeline's text encoder in CPU memory while the body runs (the training loop), and back where it was
    after it (diffusers' ``offload_models``, so even on error): the pipeline leaves training as it entered the loop.
    The stages encode their prompts (and DPO its empty prompt) once before training, so the encoder's memory (Wan
    2.1's UMT5: 5.7 B parameters, 10.6 GB in bf16) is free for the steps. Nothing moves when ``device`` is the CPU."""
    from diffusers.training_utils import free_memory, offload_models

    encoder = getattr(pipe, "text_encoder", None)
    if encoder is None or torch.device(device).type == "cpu":
        yield
        return
    with offload_models(encoder, device="cpu"):
        free_memory()  # hand the freed blocks back, as diffusers' training scripts do after encoding
        yield


def load_training_pipeline(model: str, torch_dtype: torch.dtype | None = None):
    """The pipeline to train, on the CPU (the trainer places each part): ``model`` (path or Hub id) or the embedded
    default, in ``torch_dtype``: the run's dtype of frozen weights (:func:`weight_dtype`), or, None (a run whose
    settings are not resolved yet: the studio's), what the precision rule picks for the device the run trains on
    (``hub.load_pipeline``'s ``runs_on``), which is what ``mixed_precision`` 'auto' picks too.

    When the embedded default has not been built yet (no ``assets/huvidpo-tiny``), the tiny classes are
    built at random with a warning, so the CLI demo still runs on a fresh checkout.
    """
    from huvidpo.hub import load_pipeline
    from huvidpo.locations import MODEL_ENV_VAR, default_model_path
    from huvidpo.world.tiny import build_tiny_pipeline

    if not model and not os.environ.get(MODEL_ENV_VAR) and not (Path(default_model_path()) / "model_index.json").is_file():
        logger.warning(
            "The embedded default checkpoint %s is not built; training random-initialised tiny components. "
            "Build it with `python -m huvidpo.world.tiny` or pass --model.",
            default_model_path(),
        )
        pipe = build_tiny_pipeline(seed=0)
        pipe.set_progress_bar_config(disable=True)
        return pipe
    return load_pipeline(model or None, torch_dtype=torch_dtype, runs_on="cuda" if torch.cuda.is_available() else "cpu")


def training_size(config: TrainingConfig, pipe, backend) -> tuple[int, int]:
    """(height, width) in pixels: the config's resolution or the model's, checked against the model's strides."""
    size = config.size or backend.default_size(pipe)
    multiple = backend.size_multiple(pipe)
    if size[0] % multiple or size[1] % multiple:
        raise ValueError(f"resolution {size[0]}x{size[1]} must be a multiple of {multiple} pixels for this model.")
    return size


def prepare_output_dir(config: TrainingConfig, accelerator) -> Path | None:
    """Create the output folder; return the checkpoint to resume from (None: a fresh start).

    A fresh start in a folder with checkpoints of an earlier run is refused unless ``overwrite_output_dir``,
    so a later ``--resume`` can never pick up a checkpoint of another run.
    """
    output_dir = Path(config.output_dir)
    checkpoint = None
    if config.resume == LATEST:
        checkpoint = latest_checkpoint(output_dir)
        if checkpoint is None:
            logger.info("No checkpoint in %s: starting a new run.", output_dir / CHECKPOINTS_DIR)
    elif config.resume:
        checkpoint = Path(config.resume)
    if checkpoint is not None and not (checkpoint / CHECKPOINT_MARKER).is_file():
        raise ValueError(
            f"{checkpoint} is not a training checkpoint of this version (no {CHECKPOINT_MARKER}): give a "
            "checkpoints/step-N folder, or start afresh with --overwrite_output_dir."
        )
    if checkpoint is None and latest_checkpoint(output_dir) is not None:
        if not config.overwrite_output_dir:
            raise ValueError(
                f"{output_dir} holds checkpoints of an earlier run: pass --resume to continue it, "
                "--overwrite_output_dir to start afresh (deleting them), or choose another output_dir."
            )
        if accelerator.is_main_process:
            shutil.rmtree(output_dir / CHECKPOINTS_DIR)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return checkpoint


def trainable_parameters(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def make_optimizer(config: TrainingConfig, params: dict[str, torch.nn.Parameter]):
    from diffusers.optimization import get_scheduler

    optimizer = torch.optim.AdamW(list(params.values()), lr=config.learning_rate, weight_decay=config.weight_decay,
                                  eps=config.adam_epsilon)
    lr_scheduler = get_scheduler(
        config.lr_scheduler, optimizer, num_warmup_steps=config.lr_warmup_steps, num_training_steps=config.max_steps
    )
    return optimizer, lr_scheduler


# ---------------------------------------------------------------------------------------------- randomness


def derived_seed(*numbers: int) -> int:
    """A 63-bit seed from a tuple of non-negative integers (numpy's SeedSequence mixing)."""
    words = np.random.SeedSequence([int(n) for n in numbers]).generate_state(2)
    return (int(words[0]) << 31) ^ int(words[1])


def example_generator(seed: int, position: int) -> torch.Generator:
    """The CPU generator of the example at ``position`` in the run's stream: its noise, timestep and augmentation.

    (With one process and batch size 1, ``position`` is the micro-step.)"""
    return torch.Generator().manual_seed(derived_seed(seed, 1, position))


def stream_positions(micro_step: int, batch_size: int, num_processes: int = 1, process_index: int = 0) -> range:
    """The positions in the run's stream of the examples of one micro-step on one process.

    Micro-step k takes the next ``batch_size * num_processes`` positions and each process its own slice.
    """
    start = (micro_step * num_processes + process_index) * batch_size
    return range(start, start + batch_size)


def batch_indices(num_items: int, micro_step: int, batch_size: int, seed: int, num_processes: int = 1, process_index: int = 0) -> list[int]:
    """The examples of one micro-step on one process.

    The data is an endless stream of epochs, each a seeded permutation, read in :func:`stream_positions` order.
    """
    indices = []
    for position in stream_positions(micro_step, batch_size, num_processes, process_index):
        epoch, offset = divmod(position, num_items)
        order = torch.randperm(num_items, generator=torch.Generator().manual_seed(derived_seed(seed, 0, epoch)))
        indices.append(int(order[offset]))
    return indices


def sample_noise(scheduler, shape: tuple[int, ...], generator: torch.Generator | list[torch.Generator], device,
                 dtype, timestep_range: tuple[int, int | None] = (0, None)) -> tuple[torch.Tensor, torch.Tensor]:
    """(ε ~ N(0, 1) of ``shape``, t ~ U{low..high-1} per sample), drawn on CPU generators: one for the batch, or,
    as diffusers' ``randn_tensor`` takes them, a list of one per sample (each draws its noise, then its t).
    ``timestep_range`` is ``(low, high)``, ``high`` None for the scheduler's T; the default draws from all of them."""
    low, high = timestep_range
    high = scheduler.config.num_train_timesteps if high is None else high
    if not 0 <= low < high <= scheduler.config.num_train_timesteps:
        raise ValueError(f"Timestep range [{low}, {high}) must lie within [0, {scheduler.config.num_train_timesteps}) "
                         "and hold at least one timestep.")
    if isinstance(generator, torch.Generator):
        noise = torch.randn(shape, generator=generator)
        timesteps = torch.randint(low, high, (shape[0],), generator=generator)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}: give one per sample.")
        draws = [(torch.randn(shape[1:], generator=g), torch.randint(low, high, (1,), generator=g)) for g in generator]
        noise = torch.stack([n for n, _ in draws])
        timesteps = torch.cat([t for _, t in draws])
    return noise.to(device, dtype), timesteps.to(device)


# ---------------------------------------------------------------------------------------------- checkpoints and metrics


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """The ``checkpoints/step-N`` folders of a run, oldest first."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


class MetricsLog:
    """``metrics.jsonl``: one line per step. On resume, lines after the checkpoint's step are dropped."""

    def __init__(self, path: str | Path, resume_step: int | None, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.history: list[dict[str, Any]] = []
        if resume_step is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    if row.get("step", 0) <= resume_step:
                        self.history.append(row)
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            staged = self.path.with_name(f".{self.path.name}.tmp")
            staged.write_text("".join(json.dumps(row) + "\n" for row in self.history), encoding="utf-8")
            os.replace(staged, self.path)

    def write(self, metrics: dict[str, Any]) -> None:
        self.history.append(metrics)
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as stream:
                stream.write(json.dumps(metrics) + "\n")


# ---------------------------------------------------------------------------------------------- push


def push_output(config: TrainingConfig, folder: str | Path) -> tuple[str | None, str | None]:
    """Push ``folder`` (without checkpoints, cache, logs and optimizer states) to ``config.hub_model_id``:
    (url, error). The folder is never touched; a failure comes back as a message, not an exception."""
    from huvidpo.hub import ModelLoadError, push_folder_to_hub

    try:
        url = push_folder_to_hub(folder, config.hub_model_id, private=config.hub_private, token=config.hub_token,
                                 ignore_patterns=PUSH_IGNORE)
        return url, None
    except ModelLoadError as err:
        logger.error("%s", err)
        return None, str(err)
