"""Stage 1: the inflated UNet learns motion from videos with one prompt each.

Trained, as in the original recipe: the temporal convs and their gates, the temporal attention and
``attn1.to_q`` (:meth:`VideoUNet.stage1_parameters`); everything else is frozen. With ``prompt_dropout``
a share of clips is trained with the empty prompt, which classifier-free guidance uses. Clips start at a
seeded random frame and half of them are flipped left-right; they are VAE-encoded in the step
(augmentation changes them every time) unless ``cache_latents`` (no augmentation) encodes each once.
The prompts are encoded once. The output is a full
HuViDPO pipeline folder, which DPO's ``--model`` can point at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from huvidpo.losses import denoising_loss
from huvidpo.training.config import Stage1Config
from huvidpo.training.data import VideoPromptData, read_clip
from huvidpo.training.trainer import (
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


def freeze_all_but_stage1(unet) -> None:
    """Only the stage-1 set of the original recipe requires grad."""
    unet.requires_grad_(False)
    for param in unet.stage1_parameters().values():
        param.requires_grad_(True)


def train_stage1(
    config: Stage1Config,
    callbacks: list[Callback] | None = None,
    stop_event: StopEvent | None = None,
    pipe=None,
    dataset: Any = None,
) -> TrainResult:
    """Train stage 1 and save the whole pipeline (``model_index.json`` and components) to ``config.output_dir``,
    with ``metrics.jsonl``, ``config.yaml``, a model card and ``checkpoints/step-N``.

    Args:
        config: the settings.
        callbacks: called on the main process with each step's metrics dict (``step``, ``loss``, ``lr``).
        stop_event: checked before every step; once set, training stops, saves and returns ``cancelled=True``.
        pipe: an already-loaded pipeline whose UNet is trained in place; default: load ``config.model``.
        dataset: videos to use instead of ``config.data`` (``datasets.Dataset``, dicts or (path, prompt) tuples).
    """
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler
    from diffusers.training_utils import cast_training_params

    # 1. Data: columns and files are checked before any model work
    data = VideoPromptData.load(dataset if dataset is not None else config.data, config.video_column, config.prompt_column)

    # 2. Devices, output folder, resume point
    accelerator = make_accelerator(config)
    resume_from = prepare_output_dir(config, accelerator)
    output_dir = Path(config.output_dir)
    if accelerator.is_main_process:
        config.to_yaml(output_dir / CONFIG_NAME)
    init_trackers(config, accelerator, "huvidpo-stage1")
    set_seed(config.seed)
    device, dtype = accelerator.device, weight_dtype(accelerator)

    # 3. Model; prompts encoded once
    pipe = pipe if pipe is not None else load_training_pipeline(config.model)
    size = training_size(config, pipe)
    place(pipe.vae, device, dtype)
    pipe.text_encoder.to(device)
    prompts = list(dict.fromkeys(data.prompts)) + [""]  # the empty prompt last, for prompt_dropout
    with torch.no_grad():
        embeds = torch.cat([pipe.encode_prompt(prompts[i : i + 64], device).float().cpu() for i in range(0, len(prompts), 64)])
    prompt_index = torch.tensor([prompts.index(p) for p in data.prompts])

    # 4. Trainable set, optimizer
    unet = pipe.unet
    place(unet, device, dtype)
    freeze_all_but_stage1(unet)
    cast_training_params(unet, dtype=torch.float32)
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    params = trainable_parameters(unet)
    optimizer, lr_scheduler = make_optimizer(config, params)
    model, optimizer = accelerator.prepare(unet, optimizer)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    latent_cache: dict[int, torch.Tensor] = {}

    def encode_clips(indices: list[int], generator: torch.Generator) -> torch.Tensor:
        clips = []
        for i in indices:
            start = generator if config.random_start_frame else 0
            clip = read_clip(data.videos[i], config.num_frames, size, start=start, where=f"Row {i}: ")
            if config.horizontal_flip and bool(torch.rand(1, generator=generator) < 0.5):
                clip = clip.flip(-1)
            clips.append(clip)
        with torch.no_grad():
            return pipe.encode_video(torch.stack(clips).to(device, dtype)).to(dtype)

    def compute_loss(micro_step: int):
        indices = batch_indices(
            len(data), micro_step, config.batch_size, config.seed, accelerator.num_processes, accelerator.process_index
        )
        generator = step_generator(config.seed, micro_step, accelerator.process_index)
        if config.cache_latents:  # no augmentation (checked by the config): the generator is not needed here
            missing = [i for i in dict.fromkeys(indices) if i not in latent_cache]
            if missing:
                latent_cache.update(zip(missing, encode_clips(missing, generator)))
            latents = torch.stack([latent_cache[i] for i in indices])
        else:
            latents = encode_clips(indices, generator)
        noise, timesteps = sample_noise(noise_scheduler, tuple(latents.shape), generator, device, dtype)
        noisy, target = noisy_latents_and_target(noise_scheduler, latents, noise, timesteps)
        rows = prompt_index[indices]
        if config.prompt_dropout > 0:  # drawn last, so the noise and timesteps are those of a run without dropout
            rows = torch.where(torch.rand(len(rows), generator=generator) < config.prompt_dropout, len(prompts) - 1, rows)
        text = embeds[rows].to(device, dtype)
        return denoising_loss(model(noisy, timesteps, text).sample, target), {}

    # 5. Train
    steps, history, cancelled = run_training_loop(
        config, accelerator, model, params, optimizer, lr_scheduler, compute_loss, resume_from, callbacks, stop_event, desc="stage1"
    )

    # 6. The pipeline, its card, push
    result = TrainResult(output_dir=output_dir, lora_path=None, steps=steps, metrics_history=history, cancelled=cancelled)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        place(unet, unet.device, torch.float32)
        place(pipe.vae, pipe.vae.device, torch.float32)
        pipe.save_pretrained(output_dir)
        write_stage1_model_card(config, output_dir, steps, history, len(data), dataset)
        if config.push_to_hub:
            result.hub_url, result.hub_error = push_output(config, output_dir)
    accelerator.end_training()
    return result


def write_stage1_model_card(config: Stage1Config, output_dir: Path, steps: int, history: list[dict], num_videos: int, dataset: Any) -> Path:
    from huggingface_hub import ModelCard

    from huvidpo.locations import default_model_path

    recent = history[-10:]
    loss = f"{sum(row['loss'] for row in recent) / len(recent):.4f}" if recent else "n/a"
    data_name = config.data if dataset is None else "custom videos"
    content = f"""---
library_name: diffusers
tags:
- text-to-video
- huvidpo
---
# HuViDPO stage-1 video model

The inflated video UNet of `{config.model or default_model_path()}` after stage 1 of
[HuViDPO](https://arxiv.org/abs/2502.01690) on `{data_name}` ({num_videos} videos): temporal convs and
gates, temporal attention and `attn1.to_q` trained, everything else frozen.

| setting / metric | value |
|---|---|
| steps | {steps} |
| learning_rate | {config.learning_rate} |
| batch_size x accumulation | {config.batch_size} x {config.gradient_accumulation_steps} |
| num_frames | {config.num_frames} |
| seed | {config.seed} |
| final loss (mean of last {len(recent)} steps) | {loss} |
"""
    path = output_dir / "README.md"
    ModelCard(content).save(path)
    return path
