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
    Callback,
    StopEvent,
    Trainer,
    TrainResult,
    place,
    sample_noise,
)


def freeze_all_but_stage1(unet) -> None:
    """Only the stage-1 set of the original recipe requires grad."""
    unet.requires_grad_(False)
    for param in unet.stage1_parameters().values():
        param.requires_grad_(True)


class Stage1Trainer(Trainer):
    """What stage 1 trains: the UNet's stage-1 set, on clips encoded in the step (or once, with
    ``cache_latents``) and prompts encoded once, with the plain denoising loss; the output is the pipeline."""

    name = "stage1"
    data_kind = "videos"
    card_title = "HuViDPO stage-1 video model"
    card_tags = ("text-to-video", "huvidpo")

    def load_data(self, source: Any) -> VideoPromptData:
        return VideoPromptData.load(source, self.config.video_column, self.config.prompt_column)

    def prepare(self, pipe) -> None:
        if not hasattr(self.denoiser, "stage1_parameters"):
            raise ValueError(f"Stage 1 teaches an image model inflated to video its motion; this is a {self.backend.title} "
                             "model, a video model already: train DPO on it directly (huvidpo-train dpo --model ...).")
        place(pipe.vae, self.device, self.dtype)
        pipe.text_encoder.to(self.device)
        prompts = list(dict.fromkeys(self.data.prompts)) + [""]  # the empty prompt last, for prompt_dropout
        with torch.no_grad():
            self.embeds = torch.cat(
                [self.backend.encode_prompt(pipe, prompts[i : i + 64], self.device).float().cpu() for i in range(0, len(prompts), 64)]
            )
        self.prompt_index = torch.tensor([prompts.index(p) for p in self.data.prompts])
        self.latent_cache: dict[int, torch.Tensor] = {}
        freeze_all_but_stage1(self.denoiser)

    def encode_clips(self, indices: list[int], generators: list[torch.Generator]) -> torch.Tensor:
        """The latents of clips ``indices``, each augmented by its own generator."""
        config = self.config
        clips = []
        for i, generator in zip(indices, generators):
            start = generator if config.random_start_frame else 0
            clip = read_clip(self.data.videos[i], config.num_frames, self.size, start=start, where=f"Row {i}: ")
            if config.horizontal_flip and bool(torch.rand(1, generator=generator) < 0.5):
                clip = clip.flip(-1)
            clips.append(clip)
        with torch.no_grad():
            return self.backend.encode_video(self.pipe, torch.stack(clips).to(self.device, self.dtype)).to(self.dtype)

    def compute_loss(self, micro_step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        config = self.config
        indices = self.micro_batch(len(self.data), micro_step)
        generators = self.generators(micro_step)  # one per clip: its augmentation, noise, timestep, dropout
        if config.cache_latents:  # no augmentation (checked by the config): the generators are not needed here
            missing = [i for i in dict.fromkeys(indices) if i not in self.latent_cache]
            if missing:
                self.latent_cache.update(zip(missing, self.encode_clips(missing, generators)))
            latents = torch.stack([self.latent_cache[i] for i in indices])
        else:
            latents = self.encode_clips(indices, generators)
        noise, timesteps = sample_noise(self.noise_scheduler, tuple(latents.shape), generators, self.device, self.dtype)
        noisy, target, timesteps = self.backend.noisy_input_and_target(self.noise_scheduler, latents, noise, timesteps)
        rows = self.prompt_index[indices]
        if config.prompt_dropout > 0:  # drawn last, so the noise and timesteps are those of a run without dropout
            dropped = torch.cat([torch.rand(1, generator=g) for g in generators]) < config.prompt_dropout
            rows = torch.where(dropped, len(self.embeds) - 1, rows)
        text = self.embeds[rows].to(self.device, self.dtype)
        return denoising_loss(self.backend.predict(self.model, noisy, timesteps, text), target), {}

    def save_outputs(self, output_dir: Path) -> None:
        for part in (self.denoiser, self.pipe.vae, self.pipe.text_encoder):  # a bf16 run loaded them in bf16
            place(part, part.device, torch.float32)
        self.pipe.save_pretrained(output_dir)

    def card_text(self, base_name: str, data_name: str) -> str:
        return (
            f"The inflated video UNet of `{base_name}` after stage 1 of\n[HuViDPO](https://arxiv.org/abs/2502.01690) on "
            f"`{data_name}` ({len(self.data)} videos): temporal convs and\ngates, temporal attention and `attn1.to_q` "
            "trained, everything else frozen."
        )

    def card_settings(self, steps: int) -> dict[str, Any]:
        config = self.config
        return {
            "steps": steps,
            "learning_rate": config.learning_rate,
            "batch_size x accumulation": f"{config.batch_size} x {config.gradient_accumulation_steps}",
            "num_frames": config.num_frames,
            "seed": config.seed,
        }


def train_stage1(
    config: Stage1Config,
    callbacks: list[Callback] | None = None,
    stop_event: StopEvent | None = None,
    pipe=None,
    dataset: Any = None,
) -> TrainResult:
    """Train stage 1 and save the whole pipeline (``model_index.json`` and components) to ``config.output_dir``,
    with ``metrics.jsonl``, ``config.yaml``, a model card and ``checkpoints/step-N`` (the stage-1 set only).
    ``dataset`` may also be a list of (path, prompt) tuples; the other arguments are :class:`Trainer`'s."""
    return Stage1Trainer(config, callbacks, stop_event, pipe, dataset).train()
