"""Stage 2: video DPO. A LoRA on the stage-1 UNet learns from (winner, loser) pairs.

What is unusual here:
- There is one UNet in memory. The reference model is that UNet with its LoRA switched off
  (``disable_adapters``) under ``no_grad``; since the LoRA starts at zero, policy and reference are
  equal at step 0 and the loss starts at exactly log 2.
- Each step runs winner and loser as one batch of 2B with the same noise and timestep, so their
  MSE difference measures the clips, not the draw. The reference pass goes first: its activations
  are freed before the policy's graph is built.
- VAE latents and text states of the pairs are encoded once before training (``PairCache``); the
  loop never touches the VAE or the text encoder.
- ``guidance_scale`` > 1 (not in the paper) compares the classifier-free-guided predictions, the ones the
  sampler follows, instead of the conditional ones: Diffusion-DPO's derivation with the guided reverse
  process as the policy. The winners' term (``rpo_alpha``) still anchors the conditional prediction.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch

from huvidpo.losses import per_sample_mse, video_dpo_loss
from huvidpo.training.config import DPOConfig
from huvidpo.training.data import PairCache, PreferencePairs, build_pair_cache
from huvidpo.training.trainer import (
    CACHE_DIR,
    CONFIG_NAME,
    Callback,
    StopEvent,
    TrainResult,
    batch_indices,
    init_trackers,
    load_training_pipeline,
    make_accelerator,
    make_optimizer,
    noisy_latents_and_target,
    place,
    prepare_output_dir,
    push_output,
    run_training_loop,
    sample_noise,
    step_generator,
    trainable_parameters,
    training_size,
    weight_dtype,
)

CARD_METRICS = ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")


@contextlib.contextmanager
def adapters_disabled(unet):
    """The UNet without its LoRA (the DPO reference), restored afterwards even on error."""
    unet.disable_adapters()
    try:
        yield unet
    finally:
        unet.enable_adapters()


def add_dpo_lora(unet, config: DPOConfig, adapter_name: str) -> None:
    """Freeze ``unet`` and give it a fresh LoRA (B = 0, so the policy starts equal to the reference)."""
    from peft import LoraConfig

    if getattr(unet, "peft_config", None):
        raise ValueError(
            f"The model already carries LoRA adapter(s) {sorted(unet.peft_config)}: unload them first "
            "(huvidpo.hub.unload_lora(pipe)); DPO trains a fresh LoRA on the bare model."
        )
    unet.requires_grad_(False)
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        init_lora_weights="gaussian",
        target_modules=list(config.lora_target_modules),
    )
    try:
        unet.add_adapter(lora, adapter_name=adapter_name)
    except ValueError as err:
        raise ValueError(f"lora_target_modules {config.lora_target_modules} do not fit this UNet: {err}") from err


def dpo_step(
    model: torch.nn.Module,
    reference: torch.nn.Module,
    noise_scheduler,
    latents_w: torch.Tensor,
    latents_l: torch.Tensor,
    prompt_embeds: torch.Tensor,
    generator: torch.Generator,
    beta: float,
    loss_type: str = "sigmoid",
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
    rpo_alpha: float = 0.0,
    negative_embeds: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The DPO loss of one batch of pairs (``b c f h w`` latents each, ``b l d`` text states).

    ``model`` is the trained UNet as the optimizer sees it (possibly DDP-wrapped); ``reference`` is the
    same module unwrapped, run with its adapters disabled. With ``guidance_scale`` > 1 both are compared by
    their classifier-free-guided predictions, ``negative_embeds`` (``1 l d``, the empty prompt) giving the
    unconditional one.
    """
    batch = latents_w.shape[0]
    model_mse, ref_mse, model_cond_mse = _pair_mses(
        model, reference, noise_scheduler, latents_w, latents_l, prompt_embeds, generator, autocast, negative_embeds, guidance_scale
    )
    return video_dpo_loss(model_mse[:batch], model_mse[batch:], ref_mse[:batch], ref_mse[batch:], beta, loss_type, rpo_alpha,
                          anchor_mse_w=model_cond_mse[:batch])


def guided_prediction(unet, noisy, timesteps, embeds, negative_embeds=None, guidance_scale: float = 1.0,
                      return_conditional: bool = False):
    """``unet``'s prediction for ``noisy``: conditional, or with ``guidance_scale`` > 1 the sampler's
    classifier-free-guided ``u + w (c - u)``, ``u`` from ``negative_embeds`` (``1 l d``), in one batch.
    ``return_conditional``: return ``(prediction, conditional prediction)``."""
    if guidance_scale == 1.0:
        cond = unet(noisy, timesteps, embeds).sample
        return (cond, cond) if return_conditional else cond
    if negative_embeds is None:
        raise ValueError("A guided DPO prediction needs the empty prompt's text states (negative_embeds).")
    n = noisy.shape[0]
    negatives = negative_embeds.to(embeds.dtype).expand(n, -1, -1)
    both = unet(torch.cat([noisy, noisy]), timesteps.repeat(2), torch.cat([negatives, embeds])).sample
    uncond, cond = both.chunk(2)
    guided = uncond + guidance_scale * (cond - uncond)
    return (guided, cond) if return_conditional else guided


def _pair_mses(model, reference, noise_scheduler, latents_w, latents_l, prompt_embeds, generator, autocast=contextlib.nullcontext,
               negative_embeds=None, guidance_scale: float = 1.0):
    """Per-sample MSEs ``(2b,)`` (winners, then losers) of the policy and of the reference, one noise and
    timestep per pair shared by its winner and loser (of the guided predictions with ``guidance_scale`` > 1),
    and the policy's MSEs of its conditional prediction (the same tensor when not guiding)."""
    latents = torch.cat([latents_w, latents_l])  # (2b) c f h w
    noise, timesteps = sample_noise(noise_scheduler, tuple(latents_w.shape), generator, latents.device, latents.dtype)
    noise, timesteps = noise.repeat(2, 1, 1, 1, 1), timesteps.repeat(2)  # winner and loser share both
    noisy, target = noisy_latents_and_target(noise_scheduler, latents, noise, timesteps)
    embeds = prompt_embeds.repeat(2, 1, 1)
    with torch.no_grad(), adapters_disabled(reference), autocast():
        ref_mse = per_sample_mse(guided_prediction(reference, noisy, timesteps, embeds, negative_embeds, guidance_scale), target)
    guided, cond = guided_prediction(model, noisy, timesteps, embeds, negative_embeds, guidance_scale, return_conditional=True)
    model_mse = per_sample_mse(guided, target)
    return model_mse, ref_mse, (model_mse if cond is guided else per_sample_mse(cond, target))


@torch.no_grad()
def implicit_margins(unet, noise_scheduler, cache: PairCache, draws: int = 16, seed: int = 0, batch_size: int = 8,
                     negative_embeds: torch.Tensor | None = None, guidance_scale: float = 1.0) -> torch.Tensor:
    """Each pair's implicit reward margin ``z`` (winner minus loser, in units of beta; > 0 when the LoRA favours
    the winner), averaged over ``draws`` (noise, timestep) draws.

    Diffusion-DPO's implicit reward is an expectation over noise and timestep; one draw is dominated by the draw,
    so a single-draw accuracy sits near 0.5 whatever the LoRA learned. ``unet`` carries the LoRA; the
    reference is the same UNet with its adapters disabled. ``guidance_scale`` > 1 (with ``negative_embeds``)
    measures the margins of the guided predictions, as a LoRA trained at that guidance was.
    """
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    total = torch.zeros(len(cache), dtype=torch.float64)
    for draw in range(draws):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + draw)
        for start in range(0, len(cache), batch_size):
            indices = list(range(start, min(start + batch_size, len(cache))))
            latents_w, latents_l, embeds = cache.batch(indices, device, dtype)
            model_mse, ref_mse, _ = _pair_mses(unet, unet, noise_scheduler, latents_w, latents_l, embeds, generator,
                                            negative_embeds=negative_embeds, guidance_scale=guidance_scale)
            n = len(indices)
            margin = -0.5 * ((model_mse[:n] - ref_mse[:n]) - (model_mse[n:] - ref_mse[n:]))
            total[start : start + n] += margin.double().cpu()
    return total / draws


def implicit_accuracy(margins: torch.Tensor) -> float:
    """Share of pairs whose winner the LoRA favours (``margin > 0``), ties counting one half."""
    if margins.numel() == 0:
        raise ValueError("No pairs: implicit accuracy needs at least one (winner, loser) pair.")
    return float(((margins > 0).double() + 0.5 * (margins == 0).double()).mean())


def train_dpo(
    config: DPOConfig,
    callbacks: list[Callback] | None = None,
    stop_event: StopEvent | None = None,
    pipe=None,
    dataset: Any = None,
) -> TrainResult:
    """Train a DPO LoRA; write ``pytorch_lora_weights.safetensors``, ``README.md``, ``metrics.jsonl``,
    ``config.yaml`` and ``checkpoints/step-N`` to ``config.output_dir``.

    Args:
        config: the settings (already validated by construction).
        callbacks: called on the main process with each step's metrics dict (``step``, ``loss``, ``rewards/...``).
        stop_event: checked before every step; once set, training stops, saves and returns ``cancelled=True``.
        pipe: an already-loaded pipeline to train (its UNet gets the LoRA and keeps it afterwards);
            default: load ``config.model``.
        dataset: pairs to use instead of ``config.data`` (a ``datasets.Dataset`` or a list of dicts).
    """
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler
    from diffusers.training_utils import cast_training_params

    from huvidpo.hub import DEFAULT_ADAPTER, save_lora

    # 1. Data: columns and files are checked before any model work
    pairs = PreferencePairs.load(
        dataset if dataset is not None else config.data, config.prompt_column, config.chosen_column, config.rejected_column
    )

    # 2. Devices, output folder, resume point
    accelerator = make_accelerator(config)
    resume_from = prepare_output_dir(config, accelerator)
    output_dir = Path(config.output_dir)
    if accelerator.is_main_process:
        config.to_yaml(output_dir / CONFIG_NAME)
    init_trackers(config, accelerator, "huvidpo-dpo")
    set_seed(config.seed)
    device, dtype = accelerator.device, weight_dtype(accelerator)

    # 3. Model, and the pairs encoded once
    pipe = pipe if pipe is not None else load_training_pipeline(config.model)
    size = training_size(config, pipe)
    pipe.vae.to(device)
    pipe.text_encoder.to(device)
    cache: PairCache = build_pair_cache(
        pipe, pairs, config.num_frames, size, device,
        cache_dir=output_dir / CACHE_DIR if config.cache_latents else None, accelerator=accelerator,
    )

    negative_embeds = None
    if config.guidance_scale > 1:  # the empty prompt, as the sampler's unconditional branch
        with torch.no_grad():
            negative_embeds = pipe.encode_prompt([""], device).to(dtype)

    # 4. LoRA, optimizer
    unet = pipe.unet
    place(unet, device, dtype)
    add_dpo_lora(unet, config, DEFAULT_ADAPTER)
    cast_training_params(unet, dtype=torch.float32)
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    params = trainable_parameters(unet)
    optimizer, lr_scheduler = make_optimizer(config, params)
    model, optimizer = accelerator.prepare(unet, optimizer)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    def compute_loss(micro_step: int):
        indices = batch_indices(
            len(cache), micro_step, config.batch_size, config.seed, accelerator.num_processes, accelerator.process_index
        )
        latents_w, latents_l, embeds = cache.batch(indices, device, dtype)
        generator = step_generator(config.seed, micro_step, accelerator.process_index)
        return dpo_step(
            model, unet, noise_scheduler, latents_w, latents_l, embeds, generator,
            config.beta, config.loss_type, autocast=accelerator.autocast, rpo_alpha=config.rpo_alpha,
            negative_embeds=negative_embeds, guidance_scale=config.guidance_scale,
        )

    # 5. Train
    steps, history, cancelled = run_training_loop(
        config, accelerator, model, params, optimizer, lr_scheduler, compute_loss, resume_from, callbacks, stop_event, desc="dpo"
    )

    # 6. LoRA, model card, push
    result = TrainResult(output_dir=output_dir, lora_path=None, steps=steps, metrics_history=history, cancelled=cancelled)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        result.lora_path = save_lora(unet, output_dir, adapter_name=DEFAULT_ADAPTER)
        write_dpo_model_card(config, output_dir, steps, history, len(pairs), dataset)
        if config.push_to_hub:
            result.hub_url, result.hub_error = push_output(config, output_dir)
    accelerator.end_training()
    return result


def write_dpo_model_card(config: DPOConfig, output_dir: Path, steps: int, history: list[dict], num_pairs: int, dataset: Any) -> Path:
    """README.md: base model, data, DPO settings, and the last steps' mean metrics."""
    from huvidpo.locations import default_model_path
    from huvidpo.hub import write_model_card

    recent = history[-10:]
    metrics = {
        f"final {name} (mean of last {len(recent)} steps)": round(sum(row[name] for row in recent) / len(recent), 4)
        for name in CARD_METRICS
        if recent and name in recent[0]
    }
    settings = {
        "beta": config.beta,
        "loss_type": config.loss_type,
        **({"rpo_alpha (winner denoising weight)": config.rpo_alpha} if config.rpo_alpha else {}),
        **({"guidance_scale (DPO on guided predictions)": config.guidance_scale} if config.guidance_scale > 1 else {}),
        "steps": steps,
        "learning_rate": config.learning_rate,
        "batch_size (pairs)": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "num_frames": config.num_frames,
        "lora_rank / alpha": f"{config.lora_rank} / {config.lora_alpha}",
        "lora_target_modules": ", ".join(config.lora_target_modules),
        "pairs": num_pairs,
        "seed": config.seed,
    }
    data_name = config.data if dataset is None else "custom preference pairs"
    return write_model_card(output_dir, config.model or default_model_path(), data_name or "custom", settings, metrics)
