"""Reproduce the embedded default checkpoint from nothing, on a CPU, with the project's own code.

The real recipe in miniature: (1) a tiny VAE is trained on the synthetic world's frames; (2) a tiny
CLIP text encoder (our locally built tokenizer) is pretrained to tell apart every attribute a world
prompt names, then frozen, as SD's CLIP encoder is; (3) a tiny text-to-image UNet is trained on first
frames; (4) the image UNet is inflated to video and (5) stage 1 trains its temporal layers and
``attn1.to_q`` on world clips with ``huvidpo.training.train_stage1``. The result is a HuViDPO pipeline folder with the text-to-image
pipeline as its first-frame model, plus a model card.

    python scripts/build_embedded_default.py --out assets/huvidpo-tiny          # the shipped one (56 min on 2 cores)
    python scripts/build_embedded_default.py --out /tmp/tiny --quick            # a smoke run in ~1 minute

Departures from the real recipe, because everything here starts from random weights: stage 1 uses a
higher learning rate (1e-3 instead of 3e-5) and no horizontal flip (a flipped "moving left" clip would
show motion to the right); the VAE's loss weighs shape pixels 5x (they are a tenth of a frame); and the
text encoder is pretrained on prompts alone (trained only through the
text-to-image loss, it learned nothing the first frame does not show, motion words included, and stage 1
then could not tell "left" from "right"); and the noise schedule has zero terminal SNR with v-prediction, because with SD's schedule a model of plain
backgrounds reads the background from the noise instead of the prompt (in our runs the first-frame
model drew the asked background on 25% of held-out prompts after 700 steps with SD's schedule, and on
100% after 500 steps with this one).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from huvidpo.data.world import generate_world, make_prompt_set  # noqa: E402
from huvidpo.embedded import build_tiny_image_pipeline, sd_ddim_scheduler  # noqa: E402
from huvidpo.models import VideoUNet  # noqa: E402
from huvidpo.pipeline import HuViDPOPipeline  # noqa: E402
from huvidpo.training import Stage1Config, train_stage1  # noqa: E402
from huvidpo.training.embedded import (  # noqa: E402
    first_frame_accuracy,
    pretrain_text_encoder,
    train_text_to_image,
    train_vae,
)


@dataclass
class BuildPlan:
    vae_steps: int = 1500
    vae_foreground_weight: float = 5.0
    zero_terminal_snr: bool = True
    text_steps: int = 600
    t2i_steps: int = 3000
    t2i_batch: int = 32
    t2i_images: int = 20000
    t2i_foreground_weight: float = 1.0
    temporal_gate: str = "channel"
    temporal_kernel_size: int = 3  # frames each causal temporal conv sees (LAMP: 3)
    stage1_steps: int = 2000
    stage1_batch: int = 2
    stage1_lr: float = 1e-3
    stage1_prompt_dropout: float = 0.0
    world_clips: int = 1200
    num_frames: int = 16
    check_prompts: int = 16


QUICK = BuildPlan(vae_steps=5, text_steps=5, t2i_steps=5, t2i_batch=4, t2i_images=64, stage1_steps=3, stage1_batch=1, world_clips=4,
                  num_frames=4, check_prompts=2)


IMAGE_STAGES = ("vae_steps", "vae_foreground_weight", "zero_terminal_snr", "text_steps", "t2i_steps", "t2i_batch",
                "t2i_images", "t2i_foreground_weight", "check_prompts")  # the plan of build steps 1-3


def reuse_image_stages(image_from: Path, plan: BuildPlan, seed: int):
    """The VAE, text encoder and first-frame model (build steps 1-3) of an earlier build of the same seed and
    plan for those steps, with that build's summary of them; anything else is refused, so a build never mixes two recipes."""
    earlier = json.loads((image_from / "build.json").read_text())
    mismatched = [k for k in IMAGE_STAGES if earlier["plan"].get(k) != getattr(plan, k)]
    if earlier["seed"] != seed or mismatched or earlier.get("image_from") or earlier.get("vae_from"):
        raise ValueError(f"{image_from} was not built from nothing with this seed and plan for build steps 1-3 (differs in {mismatched or 'seed/origin'}).")
    image_pipe = HuViDPOPipeline.from_pretrained(image_from).image_pipeline
    image_pipe.set_progress_bar_config(disable=True)
    for part in (image_pipe.vae, image_pipe.text_encoder, image_pipe.unet):
        part.requires_grad_(False)  # frozen, as train_image_stages leaves them
    return image_pipe, earlier["text_encoder_head_accuracy"], earlier["first_frame_heldout"]


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
        world = generate_world(Path(tmp) / "world", plan.world_clips, seed=seed + 7, num_frames=plan.num_frames)
        config = Stage1Config(
            data=str(world),
            output_dir=str(Path(tmp) / "stage1"),
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
        result = train_stage1(config, pipe=pipe, callbacks=[_log_every(100, log)])
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
    _write_card(out, summary)
    log(f"wrote {out} in {summary['minutes']} min")
    return out


def train_image_stages(plan: BuildPlan, seed: int, log, vae_from: Path | None):
    """Build steps 1-3 from nothing (the VAE optionally from ``vae_from``): the first-frame text-to-image pipeline, the
    text encoder's head accuracy and the first-frame model's held-out accuracy."""
    image_pipe = build_tiny_image_pipeline(seed)
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
        image_pipe.text_encoder, image_pipe.tokenizer, steps=plan.text_steps, seed=seed, log=log
    )
    image_pipe.text_encoder.requires_grad_(False)
    log("== 3/5 first-frame text-to-image model")
    train_text_to_image(
        image_pipe, steps=plan.t2i_steps, batch_size=plan.t2i_batch, num_images=plan.t2i_images, text_lr=0.0,
        foreground_weight=plan.t2i_foreground_weight, seed=seed, log=log,
    )
    image_pipe.unet.requires_grad_(False)

    first_frames = first_frame_accuracy(image_pipe, make_prompt_set("heldout", plan.check_prompts), steps=25)
    log(f"first-frame model on {plan.check_prompts} held-out prompts x 2 seeds: {first_frames}")
    return image_pipe, text_accuracy, first_frames


def _log_every(every: int, log):
    def callback(metrics: dict) -> None:
        if metrics["step"] % every == 0:
            log(f"stage1 step {metrics['step']} loss {metrics['loss']:.4f} lr {metrics.get('lr', 0):.2e}")

    return callback


def _write_card(out: Path, summary: dict) -> None:
    plan = summary["plan"]
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
slowly/quickly).

| part | training |
|---|---|
| VAE (AutoencoderKL, 4x down, 4 latent channels) | {plan['vae_steps']} steps on world frames |
| text encoder (CLIPTextModel, frozen after) | {plan['text_steps']} steps naming each prompt's attributes from its states |
| first-frame model (UNet2DConditionModel) | {plan['t2i_steps']} steps x {plan['t2i_batch']} first frames |
| video UNet (inflated, {plan['temporal_gate']} temporal gates, {plan['temporal_kernel_size']}-frame temporal convs; stage 1: temporal layers + attn1.to_q) | {plan['stage1_steps']} steps x {plan['stage1_batch']} clips, lr {plan['stage1_lr']} |

Built in {summary['minutes']} minutes{_reused(summary)} (seed {summary['seed']}, torch {summary['torch']}); stage-1 final loss
{summary['stage1_final_loss']}. The first-frame model alone, on {plan['check_prompts']} held-out prompts x 2
seeds, draws the asked shape / colour / background in {_rates(summary['first_frame_heldout'])} of images
(per the oracle). Video evaluation figures are in the project README.
""")


def _reused(summary: dict) -> str:
    if summary.get("image_from"):
        return (" (video stages only: the VAE, text encoder and first-frame model were taken from an earlier build from nothing "
                "of the same seed and plan, `--image-from`)")
    return ""


def _rates(rates: dict) -> str:
    return " / ".join(f"{100 * rates[key]:.0f}%" for key in ("shape", "color", "background"))


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the embedded default checkpoint on the synthetic world.")
    parser.add_argument("--out", type=Path, default=Path("assets/huvidpo-tiny"), help="Output pipeline folder.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of every stage.")
    parser.add_argument("--quick", action="store_true", help="A few steps of each stage (smoke test).")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
    parser.add_argument("--image-from", type=Path, default=None,
                        help="Reuse the VAE, text encoder and first-frame model of an earlier build from nothing with the same seed and "
                             "plan for build steps 1-3, and train only the video steps (4-5).")
    parser.add_argument("--vae-from", type=Path, default=None,
                        help="Reuse the VAE of an earlier build with the same plan and seed instead of training it.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    build(args.out, QUICK if args.quick else BuildPlan(), seed=args.seed, log=lambda s: print(s, flush=True), vae_from=args.vae_from,
          image_from=args.image_from)


if __name__ == "__main__":
    main()
