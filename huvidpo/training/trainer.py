"""The loop both stages share: accelerate setup, seeded sampling, checkpoints, logging, cancel, push.

What is unusual here:
- Randomness is a pure function of (seed, micro-step, process): data order, noise, timesteps and
  augmentation come from a ``torch.Generator`` seeded from those numbers (a CPU generator, so GPU
  and CPU runs draw the same values). A resumed run therefore replays exactly what an uninterrupted
  run would have drawn; the global RNG states are saved and restored too, for anything else.
- A checkpoint holds only what training changes: the trainable parameters (the LoRA, or the stage-1
  set), the optimizer, the LR schedule, the step and the RNG states, not a copy of the frozen UNet.
- Cancelling (a ``threading.Event``-like ``stop_event``) stops before the next step, then saves a
  checkpoint and the outputs, exactly as the end of training does.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from huvidpo.training.config import TrainingConfig

logger = logging.getLogger("huvidpo.training")

CHECKPOINTS_DIR = "checkpoints"
CACHE_DIR = "cache"
LOGS_DIR = "logs"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.yaml"
TRAINABLE_NAME = "trainable.safetensors"
STATE_NAME = "training_state.pt"

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


# ---------------------------------------------------------------------------------------------- setup


def make_accelerator(config: TrainingConfig):
    """An ``Accelerator`` for the config's precision, accumulation and tracker."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import ProjectConfiguration

    if config.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("mixed_precision 'fp16' needs a CUDA GPU; use 'bf16' or 'no' on a CPU.")
    if config.log_with is not None:
        import importlib.util

        packages = ("tensorboard", "tensorboardX") if config.log_with == "tensorboard" else ("wandb",)
        package = packages[0]
        if all(importlib.util.find_spec(name) is None for name in packages):
            raise ValueError(f"log_with={config.log_with!r} needs the {package} package: `pip install {package}`, or leave log_with empty.")
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, config.mixed_precision) and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # A second run in the same process (the app) may use another precision; accelerate keeps the first.
        AcceleratorState._reset_state()
    return Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=config.log_with,
        project_config=ProjectConfiguration(project_dir=config.output_dir, logging_dir=str(Path(config.output_dir) / LOGS_DIR)),
    )


def weight_dtype(accelerator) -> torch.dtype:
    """The dtype of frozen weights under the accelerator's mixed precision (trained weights stay fp32)."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


def place(module: torch.nn.Module, device, dtype: torch.dtype | None = None) -> None:
    """Move a model, casting only when the dtype changes (diffusers warns on every dtype ``.to``)."""
    module.to(device)
    if dtype is not None and next(module.parameters()).dtype != dtype:
        module.to(dtype=dtype)


def load_training_pipeline(model: str):
    """The pipeline to train: ``model`` (path or Hub id) or the embedded default.

    When the embedded default has not been built yet (no ``assets/huvidpo-tiny``), the tiny classes are
    built at random with a warning, so the CLI demo still runs on a fresh checkout.
    """
    from huvidpo.locations import MODEL_ENV_VAR, default_model_path
    from huvidpo.world.tiny import build_tiny_pipeline
    from huvidpo.hub import load_pipeline

    if not model and not os.environ.get(MODEL_ENV_VAR) and not (Path(default_model_path()) / "model_index.json").is_file():
        logger.warning(
            "The embedded default checkpoint %s is not built; training random-initialised tiny components. "
            "Build it with `python -m huvidpo.world.tiny` or pass --model.",
            default_model_path(),
        )
        pipe = build_tiny_pipeline(seed=0)
        pipe.set_progress_bar_config(disable=True)
        return pipe
    return load_pipeline(model or None)


def training_size(config: TrainingConfig, pipe) -> tuple[int, int]:
    """(height, width) in pixels: the config's resolution or the model's, checked against the UNet's strides."""
    size = config.size or pipe.default_size
    multiple = pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
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
    if config.resume is True:
        checkpoint = latest_checkpoint(output_dir)
        if checkpoint is None:
            logger.info("No checkpoint in %s: starting a new run.", output_dir / CHECKPOINTS_DIR)
    elif config.resume:
        checkpoint = Path(config.resume)
        if not (checkpoint / STATE_NAME).is_file():
            raise ValueError(f"{checkpoint} is not a training checkpoint (no {STATE_NAME}).")
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


def init_trackers(config: TrainingConfig, accelerator, project_name: str) -> None:
    if config.log_with is None:
        return
    flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in config.to_dict().items()}
    accelerator.init_trackers(project_name, config=flat)


# ---------------------------------------------------------------------------------------------- randomness


def derived_seed(*numbers: int) -> int:
    """A 63-bit seed from a tuple of non-negative integers (numpy's SeedSequence mixing)."""
    words = np.random.SeedSequence([int(n) for n in numbers]).generate_state(2)
    return (int(words[0]) << 31) ^ int(words[1])


def step_generator(seed: int, micro_step: int, process_index: int = 0) -> torch.Generator:
    """The CPU generator of one micro-step on one process: noise, timesteps and augmentation."""
    return torch.Generator().manual_seed(derived_seed(seed, 1, micro_step, process_index))


def batch_indices(num_items: int, micro_step: int, batch_size: int, seed: int, num_processes: int = 1, process_index: int = 0) -> list[int]:
    """The examples of one micro-step on one process.

    The data is an endless stream of epochs, each a seeded permutation; micro-step k takes the next
    ``batch_size * num_processes`` items and each process its own slice of them.
    """
    start = (micro_step * num_processes + process_index) * batch_size
    indices = []
    for position in range(start, start + batch_size):
        epoch, offset = divmod(position, num_items)
        order = torch.randperm(num_items, generator=torch.Generator().manual_seed(derived_seed(seed, 0, epoch)))
        indices.append(int(order[offset]))
    return indices


def sample_noise(scheduler, shape: tuple[int, ...], generator: torch.Generator, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(ε ~ N(0, 1) of ``shape``, t ~ U{0..T-1} per sample), drawn on the CPU generator."""
    noise = torch.randn(shape, generator=generator).to(device, dtype)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (shape[0],), generator=generator).to(device)
    return noise, timesteps


def noisy_latents_and_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward diffusion of ``b c f h w`` latents with frame 0 left clean, and the regression target."""
    noisy = scheduler.add_noise(latents, noise, timesteps)
    noisy = torch.cat([latents[:, :, :1], noisy[:, :, 1:]], dim=2)  # frame 0 is the clean condition
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noisy, noise
    if prediction_type == "v_prediction":
        return noisy, scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"Training supports epsilon and v_prediction models; the scheduler says {prediction_type!r}.")


# ---------------------------------------------------------------------------------------------- checkpoints


def checkpoint_step(path: Path) -> int:
    return int(path.name.split("-", 1)[1])


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE_NAME).is_file()]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def _rng_states() -> dict[str, Any]:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(output_dir: str | Path, step: int, params: dict[str, torch.nn.Parameter], optimizer, lr_scheduler, accelerator, limit: int | None = None) -> Path:
    """Write ``checkpoints/step-N`` (written aside, then renamed, so a crash never leaves half a checkpoint)."""
    path = Path(output_dir) / CHECKPOINTS_DIR / f"step-{step}"
    staged = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    save_file({name: p.detach().float().cpu().contiguous() for name, p in params.items()}, staged / TRAINABLE_NAME)
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
        "rng": _rng_states(),
    }
    torch.save(state, staged / STATE_NAME)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(staged, path)
    if limit is not None:
        for old in list_checkpoints(output_dir)[:-limit]:
            shutil.rmtree(old)
    return path


def load_checkpoint(path: str | Path, params: dict[str, torch.nn.Parameter], optimizer, lr_scheduler, accelerator) -> int:
    """Restore a :func:`save_checkpoint` into the live parameters, optimizer and schedule; return its step."""
    path = Path(path)
    saved = load_file(path / TRAINABLE_NAME)
    if set(saved) != set(params):
        diff = sorted(set(saved) ^ set(params))[:3]
        raise ValueError(
            f"The checkpoint {path} was made with other trainable parameters (e.g. {diff}); resume with the "
            "settings it was trained with (lora_rank, lora_target_modules, model)."
        )
    with torch.no_grad():
        for name, param in params.items():
            if saved[name].shape != param.shape:
                raise ValueError(f"Checkpoint {path}: {name} has shape {tuple(saved[name].shape)}, the model {tuple(param.shape)}.")
            param.copy_(saved[name])
    state = torch.load(path / STATE_NAME, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    if state.get("scaler") is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(state["scaler"])
    _set_rng_states(state["rng"])
    return int(state["step"])


# ---------------------------------------------------------------------------------------------- metrics


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


# ---------------------------------------------------------------------------------------------- the loop


LossFn = Callable[[int], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def run_training_loop(
    config: TrainingConfig,
    accelerator,
    model: torch.nn.Module,
    params: dict[str, torch.nn.Parameter],
    optimizer,
    lr_scheduler,
    compute_loss: LossFn,
    resume_from: Path | None,
    callbacks: list[Callback] | None = None,
    stop_event: StopEvent | None = None,
    desc: str = "training",
) -> tuple[int, list[dict[str, Any]], bool]:
    """Train until ``max_steps`` or a stop; return (steps done, metrics history, cancelled).

    ``compute_loss(micro_step)`` returns this micro-batch's loss and its metrics (0-dim tensors); one
    optimizer step averages ``gradient_accumulation_steps`` of them. A checkpoint is written every
    ``checkpointing_steps``, at the end, and when cancelled.
    """
    from tqdm.auto import tqdm

    output_dir = Path(config.output_dir)
    start_step = 0
    if resume_from is not None:
        start_step = load_checkpoint(resume_from, params, optimizer, lr_scheduler, accelerator)
        logger.info("Resumed from %s at step %d.", resume_from, start_step)
    log = MetricsLog(output_dir / METRICS_NAME, start_step if resume_from is not None else None, accelerator.is_main_process)
    accumulation = config.gradient_accumulation_steps
    step, cancelled, last_saved = start_step, False, start_step if resume_from is not None else None
    progress = tqdm(total=config.max_steps, initial=start_step, desc=desc, disable=not accelerator.is_local_main_process)
    model.train()
    while step < config.max_steps:
        if stop_event is not None and stop_event.is_set():
            cancelled = True
            break
        totals: dict[str, torch.Tensor] = {}
        for micro in range(accumulation):
            with accelerator.accumulate(model):
                loss, metrics = compute_loss(step * accumulation + micro)
                accelerator.backward(loss)
                for name, value in {"loss": loss.detach(), **metrics}.items():
                    totals[name] = totals.get(name, 0) + value.detach().float() / accumulation
        grad_norm = None
        if config.max_grad_norm > 0:
            grad_norm = accelerator.clip_grad_norm_(list(params.values()), config.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        names = list(totals)
        reduced = accelerator.reduce(torch.stack([totals[n] for n in names]), reduction="mean").tolist()
        row = {"step": step, **dict(zip(names, reduced)), "lr": lr_scheduler.get_last_lr()[0]}
        if grad_norm is not None:
            row["grad_norm"] = float(grad_norm)
        log.write(row)
        if accelerator.is_main_process:
            if config.log_with is not None:
                accelerator.log({k: v for k, v in row.items() if k != "step"}, step=step)
            for callback in callbacks or []:
                callback(dict(row))
        progress.update()
        progress.set_postfix(loss=f"{row['loss']:.4f}")
        if config.checkpointing_steps and step % config.checkpointing_steps == 0 and step < config.max_steps:
            _checkpoint(config, accelerator, step, params, optimizer, lr_scheduler)
            last_saved = step
    progress.close()
    if last_saved != step:
        _checkpoint(config, accelerator, step, params, optimizer, lr_scheduler)
    if cancelled:
        logger.warning("Training cancelled at step %d; checkpoint and outputs saved.", step)
    return step, log.history, cancelled


def _checkpoint(config, accelerator, step, params, optimizer, lr_scheduler) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_checkpoint(config.output_dir, step, params, optimizer, lr_scheduler, accelerator, config.checkpoints_total_limit)
    accelerator.wait_for_everyone()


# ---------------------------------------------------------------------------------------------- output


def push_output(config: TrainingConfig, folder: str | Path) -> tuple[str | None, str | None]:
    """Push ``folder`` (without checkpoints, cache and logs) to ``config.hub_model_id``: (url, error).

    The upload goes through a staging folder of hard links (copies where links are impossible), so the
    output folder itself is never touched; a failure comes back as an error message, not an exception.
    """
    from huvidpo.hub import ModelLoadError, push_folder_to_hub

    folder = Path(folder)
    staging = folder / ".hub-upload"
    shutil.rmtree(staging, ignore_errors=True)
    skip = {CHECKPOINTS_DIR, CACHE_DIR, LOGS_DIR, staging.name}
    try:
        for source in folder.rglob("*"):
            relative = source.relative_to(folder)
            if relative.parts[0] in skip or not source.is_file():
                continue
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        url = push_folder_to_hub(staging, config.hub_model_id, private=config.hub_private, token=config.hub_token)
        return url, None
    except ModelLoadError as err:
        logger.error("%s", err)
        return None, str(err)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def trainable_parameters(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def make_optimizer(config: TrainingConfig, params: dict[str, torch.nn.Parameter]):
    from diffusers.optimization import get_scheduler

    optimizer = torch.optim.AdamW(list(params.values()), lr=config.learning_rate, weight_decay=config.weight_decay)
    lr_scheduler = get_scheduler(
        config.lr_scheduler, optimizer, num_warmup_steps=config.lr_warmup_steps, num_training_steps=config.max_steps
    )
    return optimizer, lr_scheduler
