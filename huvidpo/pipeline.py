"""HuViDPOPipeline: a first frame (from a text-to-image pipeline or the user) -> a video.

The first frame is VAE-encoded into latent frame 0, which stays clean through the whole loop: the
scheduler only steps frames 1..N-1, and frame 0 is written back before every UNet call, exactly as in
training (where frame 0 is excluded from the loss). Two options of the original sampler are here
too: noise shared across frames (a fraction of frame 0's noise mixed into every frame) and AdaIN of
each frame's latent statistics to frame 0's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from .models import VideoUNet

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor


@dataclass
class HuViDPOPipelineOutput(BaseOutput):
    """``frames``: per video, ``np`` (b, f, h, w, 3) in [0, 1], a list of PIL lists, a ``pt`` (b, f, 3, h, w)
    tensor, or latents (b, c, f, h, w); ``first_frames``: the conditioning image of each video (PIL)."""

    frames: Any
    first_frames: list[PIL.Image.Image]


def adain_to_first_frame(latents: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Match each frame's per-channel mean/std (over h, w) to frame 0's. ``b c f h w`` in and out."""
    mean = latents.mean(dim=(3, 4), keepdim=True)
    std = latents.std(dim=(3, 4), keepdim=True) + eps
    normalised = (latents - mean) / std
    return normalised * std[:, :, :1] + mean[:, :, :1]


class HuViDPOPipeline(DiffusionPipeline, StableDiffusionLoraLoaderMixin):
    r"""Text (or image) to video with a first-frame-conditioned :class:`VideoUNet`.

    Args:
        vae: the image autoencoder (SD 1.x's, or the embedded tiny one).
        text_encoder, tokenizer: CLIP text encoder and tokenizer of the video UNet's base model.
        unet: the inflated video UNet.
        scheduler: any diffusers scheduler; DDIM by default.
        image_pipeline: optional text-to-image pipeline that makes the first frame (DPO-SDXL in the paper).
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["image_pipeline"]
    _callback_tensor_inputs = ["latents", "prompt_embeds"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: VideoUNet,
        scheduler: KarrasDiffusionSchedulers | DDIMScheduler,
        image_pipeline: DiffusionPipeline | None = None,
    ):
        super().__init__()
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            image_pipeline=image_pipeline,
        )
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    @property
    def default_size(self) -> tuple[int, int]:
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else size
        return height * self.vae_scale_factor, width * self.vae_scale_factor

    def check_inputs(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None,
        image: ImageInput | list[ImageInput] | None,
        num_frames: int,
        height: int,
        width: int,
        num_inference_steps: int,
        guidance_scale: float,
        shared_noise: float,
        callback_on_step_end_tensor_inputs: list[str] | None,
    ) -> None:
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError("The prompt is empty: describe the video you want, e.g. 'a red circle moving left on a blue background'.")
        if negative_prompt is not None:
            negatives = [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt
            if len(negatives) != len(prompts):
                raise ValueError(f"Got {len(negatives)} negative prompts for {len(prompts)} prompts; give one per prompt.")
            if guidance_scale <= 1.0 and any(n.strip() for n in negatives):
                raise ValueError(
                    f"A negative prompt only has an effect with classifier-free guidance; guidance_scale is {guidance_scale}. "
                    "Raise guidance above 1 or clear the negative prompt."
                )
        if isinstance(image, list) and len(image) != len(prompts):
            raise ValueError(f"Got {len(image)} first-frame images for {len(prompts)} prompts; give one per prompt or a single image.")
        if image is None and self.image_pipeline is None:
            raise ValueError("No first frame: pass an image, or load the pipeline with a first-frame (text-to-image) model.")
        if not isinstance(num_frames, int) or num_frames < 2:
            raise ValueError(f"num_frames must be an integer >= 2 (frame 0 is the first frame), got {num_frames}.")
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value <= 0 or value % self.vae_scale_factor:
                raise ValueError(f"{name} must be a positive multiple of {self.vae_scale_factor} (the VAE factor), got {value}.")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps}.")
        if guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}.")
        if not 0.0 <= shared_noise < 1.0:
            raise ValueError(f"shared_noise is the fraction of frame 0's noise mixed into each frame: use [0, 1), got {shared_noise}.")
        unknown = set(callback_on_step_end_tensor_inputs or []) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs {sorted(unknown)} are not among {self._callback_tensor_inputs}.")

    def encode_prompt(self, prompts: list[str], device: torch.device) -> torch.Tensor:
        """``b l d``: the text encoder's last hidden states."""
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        return self.text_encoder(tokens.input_ids.to(device))[0].to(dtype=self.unet.dtype)

    @torch.no_grad()
    def make_first_frames(
        self,
        prompts: list[str],
        negative_prompts: list[str] | None,
        image: ImageInput | list[ImageInput] | None,
        height: int,
        width: int,
        generator: torch.Generator | list[torch.Generator] | None,
        image_pipeline_kwargs: dict | None,
    ) -> torch.Tensor:
        """The conditioning images, ``b 3 h w`` in [-1, 1], from the user or from the first-frame model."""
        if image is None:
            kwargs = {"negative_prompt": negative_prompts, "generator": generator, **(image_pipeline_kwargs or {})}
            image = self.image_pipeline(prompt=prompts, output_type="pil", **kwargs).images
        images = image if isinstance(image, list) else [image] * len(prompts)
        return self.image_processor.preprocess(images, height=height, width=width, resize_mode="crop")

    def encode_first_frames(self, images: torch.Tensor) -> torch.Tensor:
        """``b 3 h w`` in [-1, 1] -> scaled latents ``b c 1 h w`` (the distribution's mode: deterministic)."""
        latents = self.vae.encode(images.to(self.vae.device, self.vae.dtype)).latent_dist.mode()
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return ((latents - shift) * self.vae.config.scaling_factor).unsqueeze(2)

    def encode_video(self, frames: torch.Tensor, chunk_size: int = 16) -> torch.Tensor:
        """Frames ``b f 3 h w`` in [-1, 1] -> scaled latents ``b c f h w`` (mode of each frame's posterior)."""
        batch, num_frames = frames.shape[:2]
        flat = frames.flatten(0, 1)
        latents = torch.cat([self.encode_first_frames(chunk).squeeze(2) for chunk in flat.split(chunk_size)])
        return latents.unflatten(0, (batch, num_frames)).transpose(1, 2)

    def decode_latents(self, latents: torch.Tensor, chunk_size: int = 16) -> torch.Tensor:
        """Scaled latents ``b c f h w`` -> frames ``b f 3 h w`` in [-1, 1], decoded ``chunk_size`` frames at a time."""
        batch, _, num_frames, _, _ = latents.shape
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        flat = latents.transpose(1, 2).flatten(0, 1) / self.vae.config.scaling_factor + shift
        decoded = [self.vae.decode(chunk.to(self.vae.dtype)).sample for chunk in flat.split(chunk_size)]
        return torch.cat(decoded).unflatten(0, (batch, num_frames))

    def prepare_latents(
        self,
        batch_size: int,
        num_frames: int,
        height: int,
        width: int,
        shared_noise: float,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        shape = (
            batch_size,
            self.unet.config.in_channels,
            num_frames,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
            if shared_noise > 0:
                # Variance-preserving mix of frame 0's noise into every frame (the original sampler uses 0.2).
                latents = (1 - shared_noise) ** 0.5 * latents + shared_noise**0.5 * latents[:, :, :1]
        elif latents.shape != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}.")
        return latents.to(device) * self.scheduler.init_noise_sigma

    @property
    def interrupt(self) -> bool:
        return getattr(self, "_interrupt", False)

    def interrupt_now(self) -> None:
        """Ask a running call to stop after the current step (the app's cancel button)."""
        self._interrupt = True

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        image: ImageInput | list[ImageInput] | None = None,
        num_frames: int = 16,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 12.5,
        shared_noise: float = 0.0,
        adain: bool = False,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        image_pipeline_kwargs: dict | None = None,
        callback_on_step_end: Callable[["HuViDPOPipeline", int, torch.Tensor, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> HuViDPOPipelineOutput | tuple:
        r"""Generate videos.

        Args:
            prompt: what the video shows.
            negative_prompt: what to steer away from (needs ``guidance_scale > 1``).
            image: the first frame (image-to-video); when None, the first-frame model draws it from the prompt.
            num_frames: frames including the first frame (>= 2).
            height, width: in pixels, multiples of the VAE factor; default from the UNet's sample size.
            num_inference_steps: denoising steps (the original uses 50 DDIM steps).
            guidance_scale: classifier-free guidance (the original uses 12.5); <= 1 disables it.
            shared_noise: fraction of frame 0's initial noise mixed into every frame (the original uses 0.2).
            adain: match each frame's latent statistics to frame 0 before decoding.
            generator: seeds the first-frame model and the video noise.
            latents: initial noise ``b c f h w`` instead of sampling it.
            output_type: "np", "pil", "pt" or "latent".
            image_pipeline_kwargs: extra arguments for the first-frame model (steps, guidance, size).
            callback_on_step_end: ``fn(pipe, step, timestep, callback_kwargs) -> dict`` after each step;
                returned tensors named in ``callback_on_step_end_tensor_inputs`` replace the pipeline's.
        """
        # 1. Check inputs
        default_height, default_width = self.default_size
        height = height or default_height
        width = width or default_width
        self.check_inputs(
            prompt, negative_prompt, image, num_frames, height, width, num_inference_steps,
            guidance_scale, shared_noise, callback_on_step_end_tensor_inputs,
        )
        if output_type not in ("np", "pil", "pt", "latent"):
            raise ValueError(f"output_type must be 'np', 'pil', 'pt' or 'latent', got {output_type!r}.")
        self._interrupt = False
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = None
        if negative_prompt is not None:
            negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
        batch_size = len(prompts)
        device = self._execution_device
        do_guidance = guidance_scale > 1.0

        # 2. Encode the prompt (negative first, as one batch with the positive when guiding)
        prompt_embeds = self.encode_prompt(prompts, device)
        if do_guidance:
            negative_embeds = self.encode_prompt(negatives or [""] * batch_size, device)
            prompt_embeds = torch.cat([negative_embeds, prompt_embeds])

        # 3. First frame -> clean latent frame 0
        first_images = self.make_first_frames(prompts, negatives, image, height, width, generator, image_pipeline_kwargs)
        first_latents = self.encode_first_frames(first_images).to(device=device, dtype=prompt_embeds.dtype)

        # 4. Timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps

        # 5. Initial noise for frames 1..N-1 (frame 0 is overwritten by the clean latent)
        latents = self.prepare_latents(
            batch_size, num_frames, height, width, shared_noise, prompt_embeds.dtype, device, generator, latents
        )
        latents = torch.cat([first_latents, latents[:, :, 1:]], dim=2)

        # 6. Denoising loop: only frames 1..N-1 move
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    break
                model_input = torch.cat([latents] * 2) if do_guidance else latents
                model_input = self.scheduler.scale_model_input(model_input, t)
                model_input[:, :, :1] = torch.cat([first_latents] * (2 if do_guidance else 1))
                noise_pred = self.unet(model_input, t, encoder_hidden_states=prompt_embeds).sample
                if do_guidance:
                    noise_uncond, noise_text = noise_pred.chunk(2)
                    noise_pred = noise_uncond + guidance_scale * (noise_text - noise_uncond)
                moving = self.scheduler.step(noise_pred[:, :, 1:], t, latents[:, :, 1:]).prev_sample
                latents = torch.cat([first_latents, moving], dim=2)

                if callback_on_step_end is not None:
                    tensors = {"latents": latents, "prompt_embeds": prompt_embeds}
                    callback_kwargs = {k: tensors[k] for k in callback_on_step_end_tensor_inputs or []}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.get("latents", latents)
                    latents = torch.cat([first_latents, latents[:, :, 1:]], dim=2)  # frame 0 stays the condition
                    prompt_embeds = callback_outputs.get("prompt_embeds", prompt_embeds)
                progress_bar.update()

        # 7. Post-process
        if adain:
            latents = adain_to_first_frame(latents)
        first_frames = self.image_processor.postprocess(first_images, output_type="pil")
        if output_type == "latent":
            frames = latents
        else:
            video = self.decode_latents(latents)  # b f 3 h w in [-1, 1]
            video = (video / 2 + 0.5).clamp(0, 1).float()
            if output_type == "pt":
                frames = video
            else:
                frames = video.permute(0, 1, 3, 4, 2).cpu().numpy()
                if output_type == "pil":
                    frames = [self.image_processor.numpy_to_pil(clip) for clip in frames]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames, first_frames)
        return HuViDPOPipelineOutput(frames=frames, first_frames=first_frames)
