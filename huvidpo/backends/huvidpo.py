"""The HuViDPO backend: today's first-frame-conditioned video UNet (:class:`~huvidpo.pipeline.HuViDPOPipeline`)
behind the :class:`~huvidpo.backends.base.Backend` interface, as a thin adapter over the pipeline and ``hub``.

Its folders are HuViDPO pipelines, and what ``hub`` turns into one on load: a Stable Diffusion 1.x pipeline
(inflated) or an original LAMP/HuViDPO checkpoint (converted). Frame 0 is the clean condition everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from huvidpo.backends.base import Backend

if TYPE_CHECKING:
    import torch


class HuViDPOBackend(Backend):
    name = "huvidpo"
    title = "HuViDPO"
    pipeline_class_names = ("HuViDPOPipeline",)
    denoiser_name = "unet"
    first_frame_condition = True

    @property
    def pipeline_class(self) -> type:
        from huvidpo.pipeline import HuViDPOPipeline

        return HuViDPOPipeline

    def denoiser_classes(self) -> tuple[type, ...]:
        from huvidpo.models import VideoUNet

        return (VideoUNet,)

    def load(self, model: str, index: dict, torch_dtype: torch.dtype, image_pipeline=None):
        from huvidpo.hub import load_huvidpo_pipeline

        return load_huvidpo_pipeline(model, index, torch_dtype, image_pipeline)

    def tiny_pipeline(self, seed: int = 0):
        from huvidpo.world.tiny import build_tiny_pipeline

        return build_tiny_pipeline(seed=seed)

    def default_size(self, pipe) -> tuple[int, int]:
        return pipe.default_size

    def size_multiple(self, pipe) -> int:
        return pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)

    def generate(self, pipe, settings, image=None, step_callback: Callable[[int, int], None] | None = None, video=None,
                 strength: float = 1.0):
        import torch

        from huvidpo.pipeline import denoising_steps
        from huvidpo.sampling import ADAIN_OPTIONS

        total = denoising_steps(settings.steps, strength)

        def on_step_end(pipeline, step, timestep, callback_kwargs):
            step_callback(step + 1, total)
            return callback_kwargs

        out = pipe(
            prompt=settings.prompt,
            negative_prompt=settings.negative_prompt or None,
            image=image,
            video=video,
            strength=strength,
            num_frames=None if video is not None else settings.frames,  # None: the pipeline follows the clip
            height=settings.height,
            width=settings.width,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            sampler=settings.sampler,
            shared_noise=settings.shared_noise,
            **({} if settings.adain else dict.fromkeys(ADAIN_OPTIONS, False)),  # off: neither kind of AdaIN
            generator=torch.Generator("cpu").manual_seed(settings.seed),
            image_pipeline_kwargs={"num_inference_steps": settings.image_steps},
            callback_on_step_end=on_step_end if step_callback else None,
        )
        return out.frames[0], out.first_frames[0]

    def encode_video(self, pipe, frames: torch.Tensor) -> torch.Tensor:
        return pipe.encode_video(frames)

    def encode_prompt(self, pipe, prompts: list[str], device: torch.device) -> torch.Tensor:
        return pipe.encode_prompt(prompts, device)
