"""Build the embedded default from nothing on the synthetic world (``scripts/build_embedded_default.py`` is its CLI).

These are the pieces the real setting downloads (SD's VAE and text encoder, DPO-SDXL for first frames);
in the embedded world we train them ourselves, on CPU, from the world's own frames:

1. ``train_vae``: the tiny ``AutoencoderKL`` on random frames (reconstruction + a small KL), then its
   ``scaling_factor`` set to 1/std of the latents, as SD does.
2. ``pretrain_text_encoder``: the tiny CLIP text encoder learns to tell every attribute a prompt names
   (what CLIP's pretraining gives SD's text encoder), then stays frozen, as in SD.
3. ``train_text_to_image``: the tiny ``UNet2DConditionModel`` on first frames with the plain denoising
   loss and 10% prompt dropout (for classifier-free guidance).

4. ``build``: all of the above, then the inflation to video and stage 1 with the product's own trainer
   (``huvidpo.training.train_stage1``); writes the pipeline folder, ``build.json`` and the model card.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline
from diffusers.optimization import get_cosine_schedule_with_warmup

from ..models import VideoUNet
from ..pipeline import HuViDPOPipeline
from ..training import Stage1Config, train_stage1
from .clips import COLORS, CORNERS, DIRECTIONS, SHAPES, SPEEDS, ClipSpec, generate_world, make_prompt_set, render_clip, sample_specs
from .oracle import matches
from .tiny import EMBEDDED_WORDS, build_tiny_image_pipeline, sd_ddim_scheduler


@dataclass
class WorldImageBatch:
    """First frames ``n 3 h w`` in [-1, 1] and their prompts."""

    pixels: torch.Tensor
    prompts: list[str]


def world_first_frames(num: int, seed: int, num_frames: int = 16, size: int = 64, unstated_speed_prob: float = 0.0,
                       wording_prob: float = 0.0) -> WorldImageBatch:
    """Frame 0 of ``num`` training-split clips (the first frames the video model will be given), with their prompts
    worded and leaving the speed out as :func:`huvidpo.world.clips.sample_clip_spec` says."""
    pixels, prompts = [], []
    for spec in sample_specs(num, seed, "train", num_frames, unstated_speed_prob=unstated_speed_prob, wording_prob=wording_prob):
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


def foreground_weights(pixels: torch.Tensor, weight: float, threshold: float = 0.1) -> torch.Tensor:
    """Per-pixel loss weights ``n 1 h w``: 1 on the background, ``weight`` where a pixel differs from
    its frame's background (the median of the border ring), so the small shapes count as much as the
    large plain backgrounds when an autoencoder learns to reconstruct them."""
    border = torch.cat([pixels[..., 0, :], pixels[..., -1, :], pixels[..., :, 0], pixels[..., :, -1]], dim=-1)
    background = border.median(dim=-1).values[..., None, None]
    differs = (pixels - background).abs().amax(dim=1, keepdim=True) > threshold
    return 1.0 + (weight - 1.0) * differs.float()


def latent_foreground_weights(pixels: torch.Tensor, weight: float, latent_size: tuple[int, int]) -> torch.Tensor:
    """``foreground_weights`` at latent resolution ``n 1 h w``: a latent pixel gets ``weight`` if any
    pixel it covers does (max pooling), so a shape's edges, which tell its kind, count in full."""
    return torch.cat([
        F.adaptive_max_pool2d(foreground_weights(chunk, weight), tuple(latent_size)) for chunk in pixels.split(256)
    ])


def _optimize(
    loss: torch.Tensor, optimizer, schedule, step: int, steps: int, what: str, started: float,
    log: Callable[[str], None], clip_params: list | None = None,
) -> None:
    """One optimizer step of the trainers below (gradients clipped to norm 1 over ``clip_params`` if
    given), logged every 100 steps and at the last."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_params is not None:
        torch.nn.utils.clip_grad_norm_(clip_params, 1.0)
    optimizer.step()
    schedule.step()
    if step % 100 == 0 or step == steps - 1:
        log(f"{what} step {step}/{steps} loss {loss.item():.4f} ({time.time() - started:.0f}s)")


def train_vae(
    vae: AutoencoderKL,
    steps: int = 1500,
    batch_size: int = 32,
    lr: float = 1e-3,
    kl_weight: float = 1e-6,
    foreground_weight: float = 5.0,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> AutoencoderKL:
    """Fit the autoencoder to world frames, then set its ``scaling_factor`` so latents have unit std.

    The reconstruction loss weighs shape pixels ``foreground_weight`` times the background's: the
    shapes are a tenth of each frame, and an unweighted loss gives them blurred, wrongly coloured
    reconstructions that no model downstream can undo.
    """
    torch.manual_seed(seed)
    data = world_random_frames(max(4 * batch_size, min(4096, 64 * steps)), seed=seed)
    weights = foreground_weights(data, foreground_weight)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, min(100, steps // 10), steps)
    vae.train()
    start = time.time()
    for step in range(steps):
        index = torch.randint(len(data), (batch_size,))
        batch, weight = data[index], weights[index]
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample()).sample
        error = recon - batch
        loss = (weight * (error**2 + 0.5 * error.abs())).mean() + kl_weight * posterior.kl().mean()
        _optimize(loss, optimizer, schedule, step, steps, "vae", start, log)
    vae.eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in data[:512].split(64)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    log(f"vae scaling_factor {vae.config.scaling_factor:.4f}")
    return vae


# What a prompt says, as class labels: one head per attribute ("none" where a prompt says nothing).
PROMPT_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "color": COLORS,
    "background": COLORS,
    "direction": tuple(DIRECTIONS),
    "speed": ("none", *SPEEDS),
    "distractor_shape": ("none", *SHAPES),
    "distractor_color": ("none", *COLORS),
    "distractor_corner": ("none", *CORNERS),
}


def prompt_labels(spec: ClipSpec) -> dict[str, int]:
    """The class index of each :data:`PROMPT_ATTRIBUTES` head for ``spec.prompt``."""
    shown = spec.distractor if spec.distractor is not None and spec.distractor.mentioned else None
    values = {
        "shape": spec.shape, "color": spec.color, "background": spec.background,
        "direction": spec.direction, "speed": spec.speed if spec.speed_stated else "none",
        "distractor_shape": shown.shape if shown else "none",
        "distractor_color": shown.color if shown else "none",
        "distractor_corner": shown.corner if shown else "none",
    }
    return {name: PROMPT_ATTRIBUTES[name].index(value) for name, value in values.items()}


def pretrain_text_encoder(
    text_encoder: torch.nn.Module,
    tokenizer,
    steps: int = 600,
    batch_size: int = 128,
    lr: float = 1e-3,
    num_prompts: int = 20000,
    seed: int = 0,
    log: Callable[[str], None] = print,
    unstated_speed_prob: float = 0.0,
    wording_prob: float = 0.0,
) -> dict[str, float]:
    """Teach the text encoder every attribute its prompts name, before any image model sees it.

    SD's text encoder comes from CLIP's pretraining, where "left" and "right" mean different things.
    Ours starts random, and trained only through a text-to-image loss it learns nothing the first
    frame does not show: motion words stay near-identical in its output (measured: flipping "left" to
    "right" moved the states by a 13th of what a colour change did), so no later stage could follow
    them. Here linear heads read each attribute (shape, colours, direction, speed, the distractor)
    from the mean of the prompt's token states and from the pooled state, and the encoder is trained
    with their cross-entropy on training-split prompts, worded as people write them (``wording_prob``) and leaving the
    speed out of some (``unstated_speed_prob``: the speed head then answers "none"). The heads are discarded. Returns
    the final accuracy of each head on a fresh batch.
    """
    torch.manual_seed(seed)
    specs = sample_specs(num_prompts, seed=seed + 2, split="train", distractor_prob=0.3,
                         unstated_speed_prob=unstated_speed_prob, wording_prob=wording_prob)
    encoded = tokenizer(
        [spec.prompt for spec in specs], padding="max_length", max_length=tokenizer.model_max_length,
        truncation=True, return_tensors="pt",
    )
    labels = {name: torch.tensor([prompt_labels(spec)[name] for spec in specs]) for name in PROMPT_ATTRIBUTES}
    width = text_encoder.config.hidden_size
    heads = torch.nn.ModuleDict({
        f"{name}_{where}": torch.nn.Linear(width, len(classes))
        for name, classes in PROMPT_ATTRIBUTES.items() for where in ("mean", "pooled")
    })
    params = [*text_encoder.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    schedule = get_cosine_schedule_with_warmup(optimizer, min(50, steps // 10), steps)

    def heads_logits(index: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = encoded.attention_mask[index]
        out = text_encoder(encoded.input_ids[index])  # unmasked, as the pipelines encode prompts
        mean = (out.last_hidden_state * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return {key: head(mean if key.endswith("_mean") else out.pooler_output) for key, head in heads.items()}

    text_encoder.train()
    start = time.time()
    for step in range(steps):
        index = torch.randint(len(specs), (batch_size,))
        logits = heads_logits(index)
        loss = sum(F.cross_entropy(value, labels[key.rsplit("_", 1)[0]][index]) for key, value in logits.items())
        _optimize(loss, optimizer, schedule, step, steps, "text encoder", start, log, clip_params=params)
    text_encoder.eval()
    with torch.no_grad():
        index = torch.randint(len(specs), (512,))
        logits = heads_logits(index)
        accuracy = {
            name: float((logits[f"{name}_mean"].argmax(-1) == labels[name][index]).float().mean())
            for name in PROMPT_ATTRIBUTES
        }
    log(f"text encoder head accuracy {accuracy}")
    return accuracy


def train_text_to_image(
    pipe: StableDiffusionPipeline,
    steps: int = 4000,
    batch_size: int = 64,
    lr: float = 1e-3,
    text_lr: float = 3e-4,
    prompt_dropout: float = 0.1,
    noise_offset: float = 0.0,
    num_images: int = 20000,
    foreground_weight: float = 1.0,
    seed: int = 0,
    log: Callable[[str], None] = print,
    unstated_speed_prob: float = 0.0,
    wording_prob: float = 0.0,
) -> StableDiffusionPipeline:
    """Train the first-frame model (UNet, and the text encoder at ``text_lr`` unless it is 0; VAE frozen)
    with the plain denoising loss (epsilon or v target, as ``pipe.scheduler`` says).

    Plain backgrounds make SD's schedule a poor fit: its noisiest step still carries a trace of each
    image's mean colour, the model learns to read the background from that trace instead of the
    prompt, and from pure noise it draws backgrounds at random. Give ``pipe`` a zero-terminal-SNR
    v-prediction scheduler (``sd_ddim_scheduler(zero_terminal_snr=True)``) or, with SD's schedule, a
    ``noise_offset`` (a per-channel constant added to the noise, as in diffusers' ``train_text_to_image.py``).

    ``foreground_weight`` > 1 weighs the loss on latent pixels that hold a shape (any part of one) that
    many times the plain background's: the shape covers a tenth of the frame, so with a plain loss the
    model spends most of its fit on backgrounds and learns the shape last.
    """
    torch.manual_seed(seed)
    images = world_first_frames(num_images, seed=seed + 1, unstated_speed_prob=unstated_speed_prob, wording_prob=wording_prob)
    with torch.no_grad():
        latents = torch.cat([pipe.vae.encode(chunk).latent_dist.mode() for chunk in images.pixels.split(256)])
        latents = latents * pipe.vae.config.scaling_factor
        weights = latent_foreground_weights(images.pixels, foreground_weight, latents.shape[-2:])
    token_ids = pipe.tokenizer(
        images.prompts + [""], padding="max_length", max_length=pipe.tokenizer.model_max_length,
        truncation=True, return_tensors="pt",
    ).input_ids
    empty_ids, token_ids = token_ids[-1], token_ids[:-1]
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    unet, text_encoder = pipe.unet, pipe.text_encoder
    train_text = text_lr > 0
    unet.train()
    text_encoder.train(train_text)
    text_encoder.requires_grad_(train_text)
    groups = [{"params": list(unet.parameters()), "lr": lr}]
    if train_text:
        groups.append({"params": list(text_encoder.parameters()), "lr": text_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-2)
    params = [param for group in groups for param in group["params"]]
    schedule = get_cosine_schedule_with_warmup(optimizer, min(100, steps // 10), steps)
    start = time.time()
    for step in range(steps):
        index = torch.randint(len(latents), (batch_size,))
        x0 = latents[index]
        ids = token_ids[index].clone()
        ids[torch.rand(batch_size) < prompt_dropout] = empty_ids
        noise = torch.randn_like(x0)
        if noise_offset:
            noise = noise + noise_offset * torch.randn(batch_size, x0.shape[1], 1, 1)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch_size,))
        noisy = noise_scheduler.add_noise(x0, noise, t)
        with torch.set_grad_enabled(train_text):
            text = text_encoder(ids)[0]
        pred = unet(noisy, t, text).sample
        target = noise if noise_scheduler.config.prediction_type == "epsilon" else noise_scheduler.get_velocity(x0, noise, t)
        loss = (weights[index] * (pred - target) ** 2).mean() / weights[index].mean()
        _optimize(loss, optimizer, schedule, step, steps, "text-to-image", start, log, clip_params=params)
    unet.eval()
    text_encoder.eval()
    return pipe


def first_frame_accuracy(
    pipe: StableDiffusionPipeline, prompts: list[str], seeds: tuple[int, ...] = (0, 1), steps: int = 25
) -> dict[str, float]:
    """How often the first-frame model draws what the prompt asks for, per the oracle: rates of
    shape, colour and background matches over ``prompts`` x ``seeds`` (one image each)."""
    hits: dict[str, list[bool]] = {"shape": [], "color": [], "background": []}
    for seed in seeds:
        images = pipe(
            prompts, num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(seed), output_type="np"
        ).images
        for prompt, image in zip(prompts, images):
            found = matches((image[None] * 255).round().astype(np.uint8), prompt)
            for key in hits:
                hits[key].append(bool(found[key]))
    return {key: float(np.mean(values)) for key, values in hits.items()}


# ---------------------------------------------------------------------------------------------- the whole build


@dataclass
class BuildPlan:
    vae_steps: int = 1500
    vae_foreground_weight: float = 5.0
    zero_terminal_snr: bool = True
    text_steps: int = 1000
    t2i_steps: int = 3000
    t2i_batch: int = 32
    t2i_images: int = 20000
    t2i_foreground_weight: float = 1.0
    # A second first-frame cycle (new batches, its own cosine schedule) at a lower learning rate: the first-frame UNet
    # is also the video UNet's spatial prior, and 3000 steps leave it tying unrelated words to the shape
    # (research/2026-12-03-squares-first-frame-and-motion.md). 0: none.
    t2i_refine_steps: int = 0
    t2i_refine_lr: float = 3e-4
    temporal_gate: str = "channel"
    temporal_kernel_size: int = 3  # frames each causal temporal conv sees (LAMP: 3)
    stage1_steps: int = 2000
    stage1_batch: int = 2
    stage1_lr: float = 1e-3
    stage1_prompt_dropout: float = 0.0
    stage1_speed_twins: bool = False  # each speedless stage-1 clip has a twin at the other speed (world.clips.sample_specs)
    # Shares of training prompts (text encoder, first frames, stage-1 clips) that leave the speed out (the clip then
    # moves slowly or quickly, 50/50: the unprompted mode) and that are worded other than canonically.
    unstated_speed_prob: float = 0.5
    wording_prob: float = 0.5
    world_clips: int = 1200
    num_frames: int = 16
    check_prompts: int = 16


QUICK = BuildPlan(vae_steps=5, text_steps=5, t2i_steps=5, t2i_batch=4, t2i_images=64, stage1_steps=3, stage1_batch=1, world_clips=4,
                  num_frames=4, check_prompts=2)


IMAGE_STAGES = ("vae_steps", "vae_foreground_weight", "zero_terminal_snr", "text_steps", "t2i_steps", "t2i_batch",
                "t2i_images", "t2i_foreground_weight", "t2i_refine_steps", "t2i_refine_lr", "check_prompts", "unstated_speed_prob",
                "wording_prob")  # the plan of build steps 1-3


def reuse_image_stages(image_from: Path, plan: BuildPlan, seed: int):
    """The VAE, text encoder and first-frame model (build steps 1-3) of an earlier build of the same seed and
    plan for those steps, with that build's summary of them; anything else is refused, so a build never mixes two recipes."""
    earlier = json.loads((image_from / "build.json").read_text())
    defaults = BuildPlan()  # a build from before a field existed used its default
    mismatched = [k for k in IMAGE_STAGES if earlier["plan"].get(k, getattr(defaults, k)) != getattr(plan, k)]
    if earlier["seed"] != seed or mismatched or earlier.get("image_from") or earlier.get("vae_from"):
        raise ValueError(f"{image_from} was not built from nothing with this seed and plan for build steps 1-3 (differs in {mismatched or 'seed/origin'}).")
    image_pipe = HuViDPOPipeline.from_pretrained(image_from).image_pipeline
    image_pipe.set_progress_bar_config(disable=True)
    for part in (image_pipe.vae, image_pipe.text_encoder, image_pipe.unet):
        part.requires_grad_(False)  # frozen, as train_image_stages leaves them
    return image_pipe, earlier["text_encoder_head_accuracy"], earlier["first_frame_heldout"]


def stage1_plan(plan: BuildPlan, workdir: Path, seed: int) -> Stage1Config:
    """Build step 5's stage-1 run: the world's clips (written to ``workdir/world``) and the trainer's settings."""
    world = generate_world(workdir / "world", plan.world_clips, seed=seed + 7, num_frames=plan.num_frames,
                           unstated_speed_prob=plan.unstated_speed_prob, wording_prob=plan.wording_prob,
                           speed_twins=plan.stage1_speed_twins)
    return Stage1Config(
        data=str(world),
        output_dir=str(workdir / "stage1"),
        num_frames=plan.num_frames,
        max_steps=plan.stage1_steps,
        batch_size=plan.stage1_batch,
        learning_rate=plan.stage1_lr,
        lr_scheduler="cosine",
        lr_warmup_steps=min(100, plan.stage1_steps // 10),
        random_start_frame=False,
        horizontal_flip=False,
        cache_latents=True,
        checkpointing_steps=0,
        prompt_dropout=plan.stage1_prompt_dropout,
        seed=seed,
    )


def build(out: Path, plan: BuildPlan, seed: int = 0, log=print, vae_from: Path | None = None, image_from: Path | None = None) -> Path:
    """Train every part and write the pipeline folder ``out``. ``vae_from``: take the VAE of an earlier
    build (same plan and seed) instead of training it again; the VAE stage comes first and depends on
    nothing else, so this saves its minutes when only later stages changed. ``image_from``: likewise take
    build steps 1-3 (VAE, text encoder, first-frame model) of an earlier build made from nothing, when only the
    video stages changed (``reuse_image_stages``)."""
    started = time.time()
    if image_from is not None:
        image_pipe, text_accuracy, first_frames = reuse_image_stages(image_from, plan, seed)
        log(f"== 1-3/5 VAE, text encoder and first-frame model taken from {image_from}")
    else:
        image_pipe, text_accuracy, first_frames = train_image_stages(plan, seed, log, vae_from)

    log("== 4/5 inflate to video")
    pipe = HuViDPOPipeline(
        vae=image_pipe.vae,
        text_encoder=image_pipe.text_encoder,
        tokenizer=image_pipe.tokenizer,
        unet=VideoUNet.from_unet2d(image_pipe.unet, temporal_kernel_size=plan.temporal_kernel_size, temporal_gate=plan.temporal_gate),
        scheduler=sd_ddim_scheduler(zero_terminal_snr=plan.zero_terminal_snr),
        image_pipeline=image_pipe,
    )
    log("== 5/5 stage 1 on world clips")
    with tempfile.TemporaryDirectory() as tmp:
        config = stage1_plan(plan, Path(tmp), seed)
        result = train_stage1(config, pipe=pipe, callbacks=[_log_every(100, log)])
        card = out / "README.md"
        old_card = card.read_text() if card.is_file() else None  # its build history outlives the rebuild
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(result.output_dir, out, ignore=shutil.ignore_patterns("checkpoints", "cache", "*.yaml"))
    history = result.metrics_history
    summary = {
        "seed": seed,
        "plan": plan.__dict__,
        "minutes": round((time.time() - started) / 60, 1),
        "vae_from": None if vae_from is None else str(vae_from),
        "image_from": None if image_from is None else str(image_from),
        "stage1_final_loss": history[-1]["loss"] if history else None,
        "text_encoder_head_accuracy": text_accuracy,
        "first_frame_heldout": first_frames,
        "torch": torch.__version__,
    }
    (out / "build.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_card(out, summary, old_card)
    log(f"wrote {out} in {summary['minutes']} min")
    return out


def train_image_stages(plan: BuildPlan, seed: int, log, vae_from: Path | None):
    """Build steps 1-3 from nothing (the VAE optionally from ``vae_from``): the first-frame text-to-image pipeline, the
    text encoder's head accuracy and the first-frame model's held-out accuracy."""
    image_pipe = build_tiny_image_pipeline(seed, words=EMBEDDED_WORDS)
    image_pipe.scheduler = sd_ddim_scheduler(zero_terminal_snr=plan.zero_terminal_snr)
    image_pipe.set_progress_bar_config(disable=True)
    log("== 1/5 VAE")
    if vae_from is not None:
        image_pipe.vae = AutoencoderKL.from_pretrained(vae_from, subfolder="vae")
        log(f"VAE taken from {vae_from}")
    else:
        train_vae(image_pipe.vae, steps=plan.vae_steps, foreground_weight=plan.vae_foreground_weight, seed=seed, log=log)
    image_pipe.vae.requires_grad_(False)
    log("== 2/5 text encoder")
    text_accuracy = pretrain_text_encoder(
        image_pipe.text_encoder, image_pipe.tokenizer, steps=plan.text_steps, seed=seed, log=log,
        unstated_speed_prob=plan.unstated_speed_prob, wording_prob=plan.wording_prob,
    )
    image_pipe.text_encoder.requires_grad_(False)
    log("== 3/5 first-frame text-to-image model")
    cycle = dict(batch_size=plan.t2i_batch, num_images=plan.t2i_images, text_lr=0.0, foreground_weight=plan.t2i_foreground_weight,
                 log=log, unstated_speed_prob=plan.unstated_speed_prob, wording_prob=plan.wording_prob)  # what both cycles share
    train_text_to_image(image_pipe, steps=plan.t2i_steps, seed=seed, **cycle)
    if plan.t2i_refine_steps:
        log(f"first-frame model, second cycle: {plan.t2i_refine_steps} steps at lr {plan.t2i_refine_lr}")
        train_text_to_image(image_pipe, steps=plan.t2i_refine_steps, lr=plan.t2i_refine_lr, seed=seed + 7, **cycle)
    image_pipe.unet.requires_grad_(False)

    first_frames = first_frame_accuracy(image_pipe, make_prompt_set("heldout", plan.check_prompts), steps=25)
    log(f"first-frame model on {plan.check_prompts} held-out prompts x 2 seeds: {first_frames}")
    return image_pipe, text_accuracy, first_frames


def _log_every(every: int, log):
    def callback(metrics: dict) -> None:
        if metrics["step"] % every == 0:
            log(f"stage1 step {metrics['step']} loss {metrics['loss']:.4f} lr {metrics.get('lr', 0):.2e}")

    return callback


HISTORY_HEADING = "## Build history"


def _write_card(out: Path, summary: dict, old_card: str | None = None) -> None:
    """The model card; the ``## Build history`` section of the card it replaces is kept (a rebuild in place adds its
    row there by hand, with what changed and why)."""
    plan = summary["plan"]
    old_card = old_card or ""
    history = old_card[old_card.index(HISTORY_HEADING):] if HISTORY_HEADING in old_card else ""
    (out / "README.md").write_text(f"""---
library_name: diffusers
tags:
- text-to-video
- huvidpo
- synthetic
license: apache-2.0
---
# HuViDPO embedded default (tiny, synthetic world)

A HuViDPO pipeline of Stable Diffusion's classes at laptop size, trained from random weights on CPU by
`scripts/build_embedded_default.py` on the project's synthetic world (coloured shapes moving on plain
backgrounds, 64x64, {plan['num_frames']} frames). It exists so the studio runs with no GPU and no
network; it knows only the world's vocabulary (6 colours, circle/square/triangle, left/right/up/down,
slowly/quickly), in the wordings people use (synonyms such as ball/box, fast/quick, leftward; word orders;
capitals). A prompt that names no speed leaves it to the model: about half its clips move slowly and half
quickly, the unprompted mode a labeler's taste can move with DPO (see the project README).

| part | training |
|---|---|
| VAE (AutoencoderKL, 4x down, 4 latent channels) | {plan['vae_steps']} steps on world frames |
| text encoder (CLIPTextModel, frozen after) | {plan['text_steps']} steps naming each prompt's attributes from its states |
| first-frame model (UNet2DConditionModel) | {plan['t2i_steps']} steps x {plan['t2i_batch']} first frames{_refine(plan)} |
| video UNet (inflated, {plan['temporal_gate']} temporal gates, {plan['temporal_kernel_size']}-frame temporal convs; stage 1: temporal layers + attn1.to_q) | {plan['stage1_steps']} steps x {plan['stage1_batch']} clips, lr {plan['stage1_lr']}{", each speedless clip with its twin at the other speed" if plan.get('stage1_speed_twins') else ""} |

Built in {summary['minutes']} minutes{_reused(summary)} (seed {summary['seed']}, torch {summary['torch']}); stage-1 final loss
{summary['stage1_final_loss']}. The first-frame model alone, on {plan['check_prompts']} held-out prompts x 2
seeds, draws the asked shape / colour / background in {_rates(summary['first_frame_heldout'])} of images
(per the oracle). Video evaluation figures are in the project README.

""" + history)


def _refine(plan: dict) -> str:
    if plan.get("t2i_refine_steps"):
        return f", then {plan['t2i_refine_steps']} more at lr {plan['t2i_refine_lr']}"
    return ""


def _reused(summary: dict) -> str:
    if summary.get("image_from"):
        return (" (video stages only: the VAE, text encoder and first-frame model were taken from an earlier build from nothing "
                "of the same seed and plan, `--image-from`)")
    return ""


def _rates(rates: dict) -> str:
    return " / ".join(f"{100 * rates[key]:.0f}%" for key in ("shape", "color", "background"))
