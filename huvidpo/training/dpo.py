"""Stage 2: video DPO. A LoRA on the stage-1 UNet learns from (winner, loser) pairs.

What is unusual here:
- There is one UNet in memory. The reference model is that UNet with its LoRA switched off
  (``disable_adapters``) under ``no_grad``; since the LoRA starts at zero, policy and reference are
  equal at step 0 and the loss starts at exactly log 2. With ``reference="previous"`` (preference rounds) the
  previous round's LoRA is a second, frozen peft adapter of the same UNet, active during the reference pass, and
  the trained LoRA starts as a copy of it: again equal at step 0, and the output is one LoRA over the base.
- Each step runs winner and loser as one batch of 2B with the same noise and timestep, so their
  MSE difference measures the clips, not the draw. The reference pass goes first: its activations
  are freed before the policy's graph is built.
- VAE latents and text states of the pairs are encoded once before training (``PairCache``); the
  loop never touches the VAE or the text encoder, and runs with the text encoder off the accelerator.
- ``guidance_scale`` > 1 (not in the paper) compares the classifier-free-guided predictions, the ones the
  sampler follows, instead of the conditional ones: Diffusion-DPO's derivation with the guided reverse
  process as the policy. The winners' term (``rpo_alpha``) still anchors the conditional prediction.
- Nothing here knows the model family: the latents, the noisy input and target of a timestep (epsilon,
  v-prediction or flow-matching velocity), the model call, whether frame 0 is a clean condition left out of the
  loss, and the LoRA file's format come from the pipeline's backend (:mod:`huvidpo.backends`). The functions that
  take a bare denoiser find its backend from its class unless given one.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch

from huvidpo.hub import DEFAULT_ADAPTER, restore_lora, save_lora
from huvidpo.locations import is_embedded_default
from huvidpo.backends import Backend, backend_for
from huvidpo.losses import per_sample_mse, video_dpo_loss
from huvidpo.training.config import DPOConfig
from huvidpo.training.data import PairCache, PreferencePairs, build_pair_cache
from huvidpo.training.trainer import (
    CACHE_DIR,
    Callback,
    StopEvent,
    Trainer,
    TrainResult,
    sample_noise,
)


REFERENCE_ADAPTER = "reference"  # the previous round's LoRA, frozen, when DPOConfig.reference is "previous"


def _adapter_layers(unet) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [module for module in unet.modules() if isinstance(module, BaseTunerLayer)]


# The switches below call peft's own layer API (what diffusers' ``disable_adapters`` / ``set_adapter`` loop over)
# directly: diffusers' methods read peft's package metadata on every call, about 1 ms each, which a tiny model's
# DPO step (two switches per step, ~10 ms) paid in full.
@contextlib.contextmanager
def adapters_disabled(unet):
    """The UNet without its LoRA (the DPO reference), restored afterwards even on error."""
    layers = _adapter_layers(unet)
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield unet
    finally:
        for layer in layers:
            layer.enable_adapters(True)


@contextlib.contextmanager
def reference_model(unet, reference_adapter: str | None = None):
    """The DPO reference: ``unet`` without its LoRA, or with only the frozen adapter ``reference_adapter`` active.
    The trained adapter is active again afterwards (and the only trainable one), even on error."""
    if reference_adapter is None:
        with adapters_disabled(unet):
            yield unet
        return
    from peft.functional import set_adapter

    trained = [name for name in unet.peft_config if name != reference_adapter]
    set_adapter(unet, reference_adapter, inference_mode=True)
    try:
        yield unet
    finally:
        set_adapter(unet, trained)


def add_dpo_lora(unet, config: DPOConfig, adapter_name: str) -> None:
    """Freeze ``unet`` (the pipeline's denoiser: a UNet or a transformer) and give it the LoRA DPO trains: a fresh one (B = 0) with reference "base"; with reference
    "previous", a copy of ``config.previous_lora`` next to a frozen copy (``REFERENCE_ADAPTER``) that the reference
    pass uses. Either way the policy starts equal to the reference."""
    from peft import LoraConfig

    from huvidpo.hub import restore_lora

    if getattr(unet, "peft_config", None):
        raise ValueError(
            f"The model already carries LoRA adapter(s) {sorted(unet.peft_config)}: unload them first "
            "(huvidpo.hub.unload_lora(pipe)); DPO trains a fresh LoRA on the bare model."
        )
    unet.requires_grad_(False)

    backend = backend_for(unet)

    def lora() -> LoraConfig:
        return LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          init_lora_weights="gaussian", target_modules=backend.lora_targets(config.lora_target_modules))

    names = [adapter_name] if config.reference == "base" else [REFERENCE_ADAPTER, adapter_name]
    for name in names:  # the trained adapter last: add_adapter makes it the active, trainable one
        try:
            unet.add_adapter(lora(), adapter_name=name)
        except ValueError as err:
            presets = sorted(backend.lora_target_presets())
            presets = f" or one of its presets {presets}" if presets else ""
            raise ValueError(f"lora_target_modules {config.lora_target_modules} do not fit this {backend.title} model: "
                             f"give module names{presets}. ({err})") from err
        if config.reference == "previous":
            check_previous_lora(config, backend)
            restore_lora(unet, config.previous_lora, adapter_name=name)
    unet.set_adapter(adapter_name)


def check_previous_lora(config: DPOConfig, backend: Backend) -> None:
    """The previous round's LoRA must have this run's alpha (rank and targets are checked when it is loaded)."""
    _, metadata = backend.read_lora(config.previous_lora)
    alpha = metadata.get("lora_alpha")
    if alpha is not None and alpha != config.lora_alpha:
        raise ValueError(f"previous_lora {config.previous_lora} was trained with lora_alpha {alpha}, this run with "
                         f"{config.lora_alpha}: train the next round with the previous round's LoRA settings.")


def dpo_step(
    model: torch.nn.Module,
    reference: torch.nn.Module,
    noise_scheduler,
    latents_w: torch.Tensor,
    latents_l: torch.Tensor,
    prompt_embeds: torch.Tensor,
    generator: torch.Generator | list[torch.Generator],
    beta: float,
    loss_type: str = "sigmoid",
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
    rpo_alpha: float = 0.0,
    negative_embeds: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    timestep_range: tuple[int, int | None] = (0, None),
    reference_adapter: str | None = None,
    backend: Backend | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The DPO loss of one batch of pairs (``b c f h w`` latents each, ``b l d`` text states).

    ``model`` is the trained UNet as the optimizer sees it (possibly DDP-wrapped); ``reference`` is the
    same module unwrapped, run with its adapters disabled (or with only ``reference_adapter`` active). ``generator``
    draws each pair's noise and timestep: one for the batch, or one per pair
    (:func:`~huvidpo.training.trainer.sample_noise`). With ``guidance_scale`` > 1 both are compared by their
    classifier-free-guided predictions, ``negative_embeds`` (``1 l d``, the empty prompt) giving the unconditional
    one. Timesteps are drawn from ``timestep_range`` (``DPOConfig.min_timestep/max_timestep``). ``backend``: the
    model family's (default: found from ``reference``'s class); ``noise_scheduler`` is its training scheduler.
    """
    batch = latents_w.shape[0]
    model_mse, ref_mse, model_cond_mse = _pair_mses(
        model, reference, noise_scheduler, latents_w, latents_l, prompt_embeds, generator, autocast, negative_embeds, guidance_scale,
        timestep_range,
        reference_adapter,
        backend,
    )
    return video_dpo_loss(model_mse[:batch], model_mse[batch:], ref_mse[:batch], ref_mse[batch:], beta, loss_type, rpo_alpha,
                          anchor_mse_w=model_cond_mse[:batch])


def guided_prediction(unet, noisy, timesteps, embeds, negative_embeds=None, guidance_scale: float = 1.0,
                      return_conditional: bool = False, backend: Backend | None = None):
    """``unet``'s prediction for ``noisy``: conditional, or with ``guidance_scale`` > 1 the sampler's
    classifier-free-guided ``u + w (c - u)``, ``u`` from ``negative_embeds`` (``1 l d``), in one batch.
    ``return_conditional``: return ``(prediction, conditional prediction)``. ``backend`` makes the model call
    (default: the one ``unet``'s class belongs to)."""
    predict = (backend or backend_for(unet)).predict
    if guidance_scale == 1.0:
        cond = predict(unet, noisy, timesteps, embeds)
        return (cond, cond) if return_conditional else cond
    if negative_embeds is None:
        raise ValueError("A guided DPO prediction needs the empty prompt's text states (negative_embeds).")
    n = noisy.shape[0]
    negatives = negative_embeds.to(embeds.dtype).expand(n, -1, -1)
    both = predict(unet, torch.cat([noisy, noisy]), timesteps.repeat(2), torch.cat([negatives, embeds]))
    uncond, cond = both.chunk(2)
    guided = uncond + guidance_scale * (cond - uncond)
    return (guided, cond) if return_conditional else guided


def _pair_mses(model, reference, noise_scheduler, latents_w, latents_l, prompt_embeds, generator, autocast=contextlib.nullcontext,
               negative_embeds=None, guidance_scale: float = 1.0, timestep_range: tuple[int, int | None] = (0, None),
               reference_adapter: str | None = None, backend: Backend | None = None):
    """Per-sample MSEs ``(2b,)`` (winners, then losers) of the policy and of the reference, one noise and
    timestep per pair shared by its winner and loser (of the guided predictions with ``guidance_scale`` > 1),
    and the policy's MSEs of its conditional prediction (the same tensor when not guiding)."""
    backend = backend or backend_for(reference)
    latents = torch.cat([latents_w, latents_l])  # (2b) c f h w
    noise, timesteps = sample_noise(noise_scheduler, tuple(latents_w.shape), generator, latents.device, latents.dtype,
                                    timestep_range)
    noise, timesteps = noise.repeat(2, 1, 1, 1, 1), timesteps.repeat(2)  # winner and loser share both
    noisy, target, timesteps = backend.noisy_input_and_target(noise_scheduler, latents, noise, timesteps)
    embeds = prompt_embeds.repeat(2, 1, 1)
    exclude = backend.first_frame_condition  # a clean frame 0 is the condition, not a prediction

    def prediction(unet, return_conditional=False):
        return guided_prediction(unet, noisy, timesteps, embeds, negative_embeds, guidance_scale, return_conditional, backend)

    with torch.no_grad(), reference_model(reference, reference_adapter), autocast():
        ref_mse = per_sample_mse(prediction(reference), target, exclude)
    guided, cond = prediction(model, return_conditional=True)
    model_mse = per_sample_mse(guided, target, exclude)
    return model_mse, ref_mse, (model_mse if cond is guided else per_sample_mse(cond, target, exclude))


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


class DPOTrainer(Trainer):
    """What DPO trains: a fresh LoRA on the (stage-1) UNet, on pairs encoded once, with the video DPO loss;
    checkpoints and the output are the LoRA in the diffusers format."""

    name = "dpo"
    data_kind = "preference pairs"
    card_title = "HuViDPO LoRA"
    card_tags = ("text-to-video", "lora", "dpo", "huvidpo")
    card_metrics = ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")
    card_license = "openrail"

    def load_data(self, source: Any) -> PreferencePairs:
        config = self.config
        return PreferencePairs.load(source, config.prompt_column, config.chosen_column, config.rejected_column,
                                    config.data_format, **config.reader_options)

    def prepare(self, pipe) -> None:
        config = self.config
        self.backend.check_num_frames(config.num_frames, pipe, name="num_frames")
        total = self.noise_scheduler.config.num_train_timesteps
        if max(config.min_timestep + 1, config.max_timestep or 0) > total:
            raise ValueError(f"min_timestep/max_timestep ({config.min_timestep}/{config.max_timestep}) go past the "
                             f"model's {total} training timesteps: keep them within [0, {total}].")
        pipe.vae.to(self.device)
        pipe.text_encoder.to(self.device)
        self.cache: PairCache = build_pair_cache(
            pipe, self.data, config.num_frames, self.size, self.device,
            cache_dir=Path(config.output_dir) / CACHE_DIR if config.cache_latents else None, accelerator=self.accelerator,
        )
        self.negative_embeds = None
        if config.guidance_scale > 1:  # the empty prompt, as the sampler's unconditional branch
            with torch.no_grad():
                self.negative_embeds = self.backend.encode_prompt(pipe, [""], self.device).to(self.dtype)
        add_dpo_lora(self.denoiser, config, DEFAULT_ADAPTER)

    def compute_loss(self, micro_step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        config = self.config
        latents_w, latents_l, embeds = self.cache.batch(self.micro_batch(len(self.cache), micro_step), self.device, self.dtype)
        return dpo_step(
            self.model, self.denoiser, self.noise_scheduler, latents_w, latents_l, embeds, self.generators(micro_step),
            config.beta, config.loss_type, autocast=self.accelerator.autocast, rpo_alpha=config.rpo_alpha,
            negative_embeds=self.negative_embeds, guidance_scale=config.guidance_scale,
            timestep_range=(config.min_timestep, config.max_timestep),
            reference_adapter=REFERENCE_ADAPTER if config.reference == "previous" else None, backend=self.backend,
        )

    def save_trainable(self, directory: Path) -> None:
        save_lora(self.denoiser, directory, adapter_name=DEFAULT_ADAPTER)

    def load_trainable(self, directory: Path) -> None:
        restore_lora(self.denoiser, directory, adapter_name=DEFAULT_ADAPTER)

    def save_outputs(self, output_dir: Path) -> Path:
        return save_lora(self.denoiser, output_dir, adapter_name=DEFAULT_ADAPTER)

    def card_text(self, base_name: str, data_name: str) -> str:
        model_flag = "" if is_embedded_default(self.config.model) else f"--model <{base_name}> "
        return (
            f"A LoRA for the {self.backend.denoiser_name} of a {self.backend.title} video model, trained with the video DPO of\n"
            f"[HuViDPO](https://arxiv.org/abs/2502.01690) on human (or oracle) preference pairs from `{data_name}`, on top\n"
            f"of `{base_name}`; it loads with diffusers' `{self.backend.pipeline_class.__name__}.load_lora_weights`.\n\n"
            f'Load it with HuViDPO Studio: `python -m huvidpo.generate {model_flag}--lora <this repo> --prompt "..."`.'
        )

    def card_settings(self, steps: int) -> dict[str, Any]:
        config = self.config
        return {
            "beta": config.beta,
            "loss_type": config.loss_type,
            "reference (and start)": "the base model" if config.reference == "base" else
            f"the previous round's LoRA ({Path(config.previous_lora).name})",
            **({"rpo_alpha (winner denoising weight)": config.rpo_alpha} if config.rpo_alpha else {}),
            **({"guidance_scale (DPO on guided predictions)": config.guidance_scale} if config.guidance_scale > 1 else {}),
            **({"timesteps": f"[{config.min_timestep}, {config.max_timestep or 'T'})"}
               if config.min_timestep or config.max_timestep is not None else {}),
            "steps": steps,
            "optimizer": f"AdamW, eps {config.adam_epsilon:g}, weight decay {config.weight_decay:g} "
                         f"(preset {config.preset})",
            "learning_rate": config.learning_rate,
            "batch_size (pairs)": config.batch_size,
            "lora_dropout": config.lora_dropout,
            "gradient_accumulation_steps": config.gradient_accumulation_steps,
            "num_frames": config.num_frames,
            "lora_rank / alpha": f"{config.lora_rank} / {config.lora_alpha}",
            "lora_target_modules": ", ".join(config.lora_target_modules),
            "pairs": len(self.data),
            "seed": config.seed,
        }


def train_dpo(
    config: DPOConfig,
    callbacks: list[Callback] | None = None,
    stop_event: StopEvent | None = None,
    pipe=None,
    dataset: Any = None,
) -> TrainResult:
    """Train a DPO LoRA; write ``pytorch_lora_weights.safetensors``, ``README.md``, ``metrics.jsonl``,
    ``config.yaml`` and ``checkpoints/step-N`` to ``config.output_dir``. ``pipe``'s UNet (default: loaded
    from ``config.model``) gets the LoRA and keeps it; the other arguments are :class:`Trainer`'s."""
    return DPOTrainer(config, callbacks, stop_event, pipe, dataset).train()
