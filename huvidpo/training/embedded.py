"""Train the embedded default's image parts on the synthetic world: the VAE, then the first-frame model.

These are the pieces the real setting downloads (SD's VAE and text encoder, DPO-SDXL for first frames);
in the embedded world we train them ourselves, on CPU, from the world's own frames:

1. ``train_vae``: the tiny ``AutoencoderKL`` on random frames (reconstruction + a small KL), then its
   ``scaling_factor`` set to 1/std of the latents, as SD does.
2. ``train_text_to_image``: the tiny ``UNet2DConditionModel`` and CLIP text encoder on first frames with
   the plain denoising loss and 10% prompt dropout (for classifier-free guidance).

The video stages that follow (inflation, stage 1, DPO) are the product's own trainers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline

from ..data.world import render_clip, sample_specs


@dataclass
class WorldImageBatch:
    """First frames ``n 3 h w`` in [-1, 1] and their prompts."""

    pixels: torch.Tensor
    prompts: list[str]


def world_first_frames(num: int, seed: int, num_frames: int = 16, size: int = 64) -> WorldImageBatch:
    """Frame 0 of ``num`` training-split clips (the first frames the video model will be given)."""
    pixels, prompts = [], []
    for spec in sample_specs(num, seed, "train", num_frames):
        pixels.append(render_clip(spec, 1, size)[0])
        prompts.append(spec.prompt)
    array = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return WorldImageBatch(array, prompts)


def world_random_frames(num: int, seed: int, num_frames: int = 16, size: int = 64) -> torch.Tensor:
    """Any frame of ``num`` clips, ``n 3 h w`` in [-1, 1]: what the VAE must reconstruct."""
    rng = np.random.default_rng(seed)
    frames = []
    for spec in sample_specs(num, seed, "train", num_frames):
        frame = int(rng.integers(num_frames))
        frames.append(render_clip(spec, frame + 1, size)[frame])  # the path does not depend on the clip length
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _cosine_lr(step: int, total: int, base: float, warmup: int = 100) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_vae(
    vae: AutoencoderKL,
    steps: int = 1500,
    batch_size: int = 32,
    lr: float = 1e-3,
    kl_weight: float = 1e-6,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> AutoencoderKL:
    """Fit the autoencoder to world frames, then set its ``scaling_factor`` so latents have unit std."""
    torch.manual_seed(seed)
    data = world_random_frames(max(4 * batch_size, min(2048, 64 * steps)), seed=seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    start = time.time()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = _cosine_lr(step, steps, lr)
        batch = data[torch.randint(len(data), (batch_size,))]
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(recon, batch) + 0.5 * F.l1_loss(recon, batch) + kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"vae step {step}/{steps} loss {loss.item():.4f} ({time.time() - start:.0f}s)")
    vae.eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in data[:512].split(64)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    log(f"vae scaling_factor {vae.config.scaling_factor:.4f}")
    return vae


def train_text_to_image(
    pipe: StableDiffusionPipeline,
    steps: int = 4000,
    batch_size: int = 64,
    lr: float = 1e-3,
    text_lr: float = 3e-4,
    prompt_dropout: float = 0.1,
    num_images: int = 20000,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> StableDiffusionPipeline:
    """Train the first-frame model (UNet + text encoder; VAE frozen) with the plain denoising loss."""
    torch.manual_seed(seed)
    images = world_first_frames(num_images, seed=seed + 1)
    with torch.no_grad():
        latents = torch.cat([pipe.vae.encode(chunk).latent_dist.mode() for chunk in images.pixels.split(256)])
        latents = latents * pipe.vae.config.scaling_factor
    token_ids = pipe.tokenizer(
        images.prompts + [""], padding="max_length", max_length=pipe.tokenizer.model_max_length,
        truncation=True, return_tensors="pt",
    ).input_ids
    empty_ids, token_ids = token_ids[-1], token_ids[:-1]
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    unet, text_encoder = pipe.unet, pipe.text_encoder
    unet.train()
    text_encoder.train()
    optimizer = torch.optim.AdamW(
        [{"params": unet.parameters(), "lr": lr}, {"params": text_encoder.parameters(), "lr": text_lr}], weight_decay=1e-2
    )
    base_lrs = [lr, text_lr]
    start = time.time()
    for step in range(steps):
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = _cosine_lr(step, steps, base)
        index = torch.randint(len(latents), (batch_size,))
        x0 = latents[index]
        ids = token_ids[index].clone()
        ids[torch.rand(batch_size) < prompt_dropout] = empty_ids
        noise = torch.randn_like(x0)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch_size,))
        noisy = noise_scheduler.add_noise(x0, noise, t)
        pred = unet(noisy, t, text_encoder(ids)[0]).sample
        loss = F.mse_loss(pred, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*unet.parameters(), *text_encoder.parameters()], 1.0)
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"text-to-image step {step}/{steps} loss {loss.item():.4f} ({time.time() - start:.0f}s)")
    unet.eval()
    text_encoder.eval()
    return pipe
