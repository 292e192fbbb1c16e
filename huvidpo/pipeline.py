"""HuViDPOPipeline: a first frame (from a text-to-image pipeline or the user) -> a video.

The first frame is VAE-encoded into latent frame 0, which stays clean through the whole loop: the
scheduler only steps frames 1..N-1, and frame 0 is written back before every UNet call, exactly as in
training (where frame 0 is excluded from the loss). The original sampler's options are here too, each
beside ours: noise shared across frames (frame 0's noise mixed into every frame, variance-preserving or
the original's plain sum), AdaIN of the frames' latent statistics (ours once before decoding, the
original's inside the loop), and the original's RGB histogram matching of every frame to frame 0 after
decoding; a ``sampler`` preset (``SAMPLER_PRESETS`` in :mod:`huvidpo.sampling`: "ours", "huvidpo") sets them all, single
arguments override it, and without one they are off. Given a ``video`` and a ``strength`` below 1, the call is
video-to-video (SDEdit, as in diffusers' img2img and video-to-video pipelines): the clip is noised to
the step that ``strength`` names and denoised from there, its first frame kept as the condition.
"""

from __future__ import annotations

import math
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
from diffusers.video_processor import VideoProcessor
from transformers import CLIPTextModel, CLIPTokenizer

from .models import VideoUNet
from .sampling import SAMPLER_OFF, SAMPLER_PRESETS, SHARED_NOISE_MIXES, sampler_options  # noqa: F401 - re-exported

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor
# One clip: frames as a list of PIL images, ``f h w 3`` numpy (uint8, or float in [0, 1]) or ``f 3 h w`` tensor in [-1, 1].
VideoInput = list[PIL.Image.Image] | np.ndarray | torch.Tensor


def denoising_steps(num_inference_steps: int, strength: float) -> int:
    """How many of ``num_inference_steps`` a call at ``strength`` runs: diffusers' img2img rule (the whole steps in
    ``num_inference_steps * strength``), but ``1 - 0.8`` of 25 steps is 5 steps, not the 4 float rounding gives."""
    return min(math.floor(num_inference_steps * strength + 1e-9), num_inference_steps)


@dataclass
class HuViDPOPipelineOutput(BaseOutput):
    """``frames``: per video, ``np`` (b, f, h, w, 3) in [0, 1], a list of PIL lists, a ``pt`` (b, f, 3, h, w)
    tensor, or latents (b, c, f, h, w); ``first_frames``: the conditioning image of each video (PIL)."""

    frames: Any
    first_frames: list[PIL.Image.Image]


def mix_shared_noise(noise: torch.Tensor, shared_noise: float, mix: str) -> torch.Tensor:
    """Mix frame 0's noise into every frame of ``noise`` (``b c f h w``) with weight ``s = shared_noise``.

    ``"variance_preserving"`` (ours): ``sqrt(1 - s) n_f + sqrt(s) n_0``, unit variance in every frame.
    ``"linear"`` (the original): ``(1 - s) n_f + s n_0``. At s = 0.2 the shared part's amplitude is
    sqrt(0.2) = 0.45 in ours against 0.2 in the original's (about twice as strongly shared): two later
    frames correlate at 0.2 in ours and at 0.04 / 0.68 = 0.06 in the original's, whose frames start with
    variance 0.68 instead of 1.
    """
    if mix == "variance_preserving":
        return (1 - shared_noise) ** 0.5 * noise + shared_noise**0.5 * noise[:, :, :1]
    return (1 - shared_noise) * noise + shared_noise * noise[:, :, :1]


def adain_to_first_frame(latents: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Match each frame's per-channel mean/std (over h, w) to frame 0's. ``b c f h w`` in and out."""
    mean = latents.mean(dim=(3, 4), keepdim=True)
    std = latents.std(dim=(3, 4), keepdim=True) + eps
    normalised = (latents - mean) / std
    return normalised * std[:, :, :1] + mean[:, :, :1]


def adain_in_loop_step(latents: torch.Tensor, step: int, num_steps: int) -> torch.Tensor:
    """The original sampler's AdaIN after step ``step`` (0-based) of a ``num_steps`` schedule: frames 2.. take frame
    1's statistics every step; once 60 % of the steps are done, all frames take frame 0's. Frame 0 is left as it is."""
    if latents.shape[2] > 2:
        latents = torch.cat([latents[:, :, :2], adain_to_first_frame(latents[:, :, 1:])[:, :, 1:]], dim=2)
    if 10 * step >= 6 * num_steps:
        latents = torch.cat([latents[:, :, :1], adain_to_first_frame(latents)[:, :, 1:]], dim=2)
    return latents


def match_histograms_to_first_frame(video: torch.Tensor) -> torch.Tensor:
    """Give every frame of ``video`` (``b f 3 h w`` in [0, 1]) frame 0's histogram, channel by channel (the original
    sampler's last step): each value goes to the value of frame 0 at the same quantile (classic CDF matching)."""
    frames = video.detach().cpu().numpy()
    matched = frames.copy()
    for b in range(frames.shape[0]):
        for c in range(frames.shape[2]):
            template = frames[b, 0, c].ravel()
            template_values, template_counts = np.unique(template, return_counts=True)
            template_quantiles = np.cumsum(template_counts) / template.size
            for f in range(1, frames.shape[1]):
                source = frames[b, f, c].ravel()
                values, inverse, counts = np.unique(source, return_inverse=True, return_counts=True)
                quantiles = np.cumsum(counts) / source.size
                matched[b, f, c] = np.interp(quantiles, template_quantiles, template_values)[inverse].reshape(frames.shape[-2:])
    return torch.from_numpy(matched).to(video.device, video.dtype)


def encode_images(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """``b 3 h w`` in [-1, 1] -> an image VAE's scaled latents ``b c h w`` (the posterior's mode: deterministic)."""
    latents = vae.encode(images.to(vae.device, vae.dtype)).latent_dist.mode()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def encode_video_frames(vae: AutoencoderKL, frames: torch.Tensor, chunk_size: int = 16) -> torch.Tensor:
    """Frames ``b f 3 h w`` in [-1, 1] -> scaled latents ``b c f h w``, each frame by the image VAE, ``chunk_size``
    frames at a time (models whose video latents are per-frame image latents: HuViDPO, AnimateDiff)."""
    batch, num_frames = frames.shape[:2]
    flat = frames.flatten(0, 1)
    latents = torch.cat([encode_images(vae, chunk) for chunk in flat.split(chunk_size)])
    return latents.unflatten(0, (batch, num_frames)).transpose(1, 2)


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
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor)

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
        video: VideoInput | None = None,
        strength: float = 1.0,
    ) -> None:
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError("The prompt is empty: describe the video you want, e.g. 'a red circle moving left slowly on a blue background'.")
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
        if video is not None:
            one_clip = (isinstance(video, (np.ndarray, torch.Tensor)) and video.ndim == 4) or (
                isinstance(video, list) and bool(video) and all(isinstance(f, PIL.Image.Image) for f in video)
            )
            if not one_clip:
                raise ValueError(
                    "video must be one clip: a list of PIL images, an (f, h, w, 3) array or an (f, 3, h, w) tensor; "
                    f"got {type(video).__name__}{tuple(getattr(video, 'shape', ()))}."
                )
            if image is not None:
                raise ValueError("Got both a first-frame image and a video: the video's first frame is the condition, so pass one of them.")
            if len(prompts) != 1:
                raise ValueError(f"Video-to-video takes one prompt per call, got {len(prompts)}.")
            if len(video) != num_frames:
                raise ValueError(f"The video has {len(video)} frames but num_frames is {num_frames}: leave num_frames out or trim the video.")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength is the share of the steps that re-draw the video: use (0, 1], got {strength}.")
        if strength < 1.0 and video is None:
            raise ValueError(f"strength {strength} needs a video to start from; without one, leave strength at 1.")
        if video is not None and isinstance(num_inference_steps, int) and denoising_steps(num_inference_steps, strength) < 1:
            raise ValueError(
                f"strength {strength} of {num_inference_steps} steps leaves no step to run: raise strength to at least "
                f"{1 / num_inference_steps:.3g} or use more steps."
            )
        if image is None and video is None and self.image_pipeline is None:
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
        return encode_images(self.vae, images).unsqueeze(2)

    def encode_video(self, frames: torch.Tensor, chunk_size: int = 16) -> torch.Tensor:
        """Frames ``b f 3 h w`` in [-1, 1] -> scaled latents ``b c f h w`` (mode of each frame's posterior)."""
        return encode_video_frames(self.vae, frames, chunk_size)

    def decode_latents(self, latents: torch.Tensor, chunk_size: int = 16) -> torch.Tensor:
        """Scaled latents ``b c f h w`` -> frames ``b f 3 h w`` in [-1, 1], decoded ``chunk_size`` frames at a time."""
        batch, _, num_frames, _, _ = latents.shape
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        flat = latents.transpose(1, 2).flatten(0, 1) / self.vae.config.scaling_factor + shift
        decoded = [self.vae.decode(chunk.to(self.vae.dtype)).sample for chunk in flat.split(chunk_size)]
        return torch.cat(decoded).unflatten(0, (batch, num_frames))

    def preprocess_video(self, video: VideoInput, height: int, width: int) -> torch.Tensor:
        """One clip -> frames ``1 f 3 h w`` in [-1, 1], resized and cropped like a first-frame image."""
        if isinstance(video, np.ndarray) and video.dtype == np.uint8:
            video = video.astype(np.float32) / 255.0
        if isinstance(video, torch.Tensor):
            video = (video.float() / 2 + 0.5).clamp(0, 1)  # VaeImageProcessor takes tensors in [0, 1]
        return self.video_processor.preprocess_video(video, height=height, width=width, resize_mode="crop").transpose(1, 2)

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
        video_latents: torch.Tensor | None = None,
        timestep: torch.Tensor | None = None,
        shared_noise_mix: str = "variance_preserving",
    ) -> torch.Tensor:
        """Initial noise ``b c f h w`` (``latents``, or sampled with ``shared_noise`` mixed as ``shared_noise_mix``:
        see :func:`mix_shared_noise`); with ``video_latents``, the clip noised to ``timestep`` with it instead."""
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
                latents = mix_shared_noise(latents, shared_noise, shared_noise_mix)
        elif latents.shape != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}.")
        if video_latents is not None:
            return self.scheduler.add_noise(video_latents, latents.to(device), timestep.reshape(1))
        return latents.to(device) * self.scheduler.init_noise_sigma

    @property
    def interrupt(self) -> bool:
        return getattr(self, "_interrupt", False)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        image: ImageInput | list[ImageInput] | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 12.5,
        sampler: str | None = None,
        shared_noise: float | None = None,
        shared_noise_mix: str | None = None,
        adain: bool | None = None,
        adain_in_loop: bool | None = None,
        histogram_match: bool | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        video: VideoInput | None = None,
        strength: float = 1.0,
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
            num_frames: frames including the first frame (>= 2); default 16, or the video's length.
            height, width: in pixels, multiples of the VAE factor; default from the UNet's sample size.
            num_inference_steps: denoising steps (the original uses 50 DDIM steps).
            guidance_scale: classifier-free guidance (the original uses 12.5); <= 1 disables it.
            sampler: a preset of the five options below: "ours" or "huvidpo" (the original's), see ``SAMPLER_PRESETS``;
                None: all off. An option given explicitly overrides the preset.
            shared_noise: weight of frame 0's initial noise mixed into every frame (both presets: 0.2).
            shared_noise_mix: "variance_preserving" (ours) or "linear" (the original's ``0.2 n0 + 0.8 n_f``).
            adain: match each frame's latent statistics to frame 0 once, before decoding (ours).
            adain_in_loop: the original's AdaIN after every step: frames 2.. to frame 1, and after 60 % of the
                schedule all frames to frame 0.
            histogram_match: after decoding, give every frame frame 0's RGB histogram (the original's); not
                applied to ``output_type="latent"``, which stops before decoding.
            generator: seeds the first-frame model and the video noise.
            latents: initial noise ``b c f h w`` instead of sampling it.
            video: a clip to re-draw (video-to-video): its first frame is the condition, frames 1..N-1 are noised to
                the step ``strength`` names and denoised from there; one prompt per call.
            strength: with ``video``, the share of the ``num_inference_steps`` schedule that runs (1: all of it, from
                as much noise as text-to-video; 0.2: the last fifth, small changes).
            output_type: "np", "pil", "pt" or "latent".
            image_pipeline_kwargs: extra arguments for the first-frame model (steps, guidance, size).
            callback_on_step_end: ``fn(pipe, step, timestep, callback_kwargs) -> dict`` after each step;
                returned tensors named in ``callback_on_step_end_tensor_inputs`` replace the pipeline's.
        """
        # 1. Check inputs
        default_height, default_width = self.default_size
        height = height or default_height
        width = width or default_width
        if num_frames is None:
            num_frames = len(video) if video is not None else 16
        options = sampler_options(
            sampler, shared_noise=shared_noise, shared_noise_mix=shared_noise_mix, adain=adain,
            adain_in_loop=adain_in_loop, histogram_match=histogram_match,
        )
        shared_noise = options["shared_noise"]
        self.check_inputs(
            prompt, negative_prompt, image, num_frames, height, width, num_inference_steps,
            guidance_scale, shared_noise, callback_on_step_end_tensor_inputs, video, strength,
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

        # 3. First frame -> clean latent frame 0 (a video's own first frame in video-to-video)
        video_latents = None
        if video is not None:
            frames = self.preprocess_video(video, height, width)
            video_latents = self.encode_video(frames).to(device=device, dtype=prompt_embeds.dtype)
            first_images = frames[:, 0]
            first_latents = video_latents[:, :, :1]
        else:
            first_images = self.make_first_frames(prompts, negatives, image, height, width, generator, image_pipeline_kwargs)
            first_latents = self.encode_first_frames(first_images).to(device=device, dtype=prompt_embeds.dtype)

        # 4. Timesteps: the last ``strength`` of the schedule
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        t_start = num_inference_steps - denoising_steps(num_inference_steps, strength)
        timesteps = self.scheduler.timesteps[t_start * self.scheduler.order :]
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(t_start * self.scheduler.order)

        # 5. Initial latents for frames 1..N-1 (frame 0 is overwritten by the clean latent): noise, or the video noised
        latents = self.prepare_latents(
            batch_size, num_frames, height, width, shared_noise, prompt_embeds.dtype, device, generator, latents,
            video_latents, timesteps[:1], options["shared_noise_mix"],
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
                if options["adain_in_loop"]:
                    latents = adain_in_loop_step(latents, t_start + i, num_inference_steps)

                if callback_on_step_end is not None:
                    tensors = {"latents": latents, "prompt_embeds": prompt_embeds}
                    callback_kwargs = {k: tensors[k] for k in callback_on_step_end_tensor_inputs or []}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.get("latents", latents)
                    latents = torch.cat([first_latents, latents[:, :, 1:]], dim=2)  # frame 0 stays the condition
                    prompt_embeds = callback_outputs.get("prompt_embeds", prompt_embeds)
                progress_bar.update()

        # 7. Post-process
        if options["adain"]:
            latents = adain_to_first_frame(latents)
        first_frames = self.image_processor.postprocess(first_images, output_type="pil")
        if output_type == "latent":
            frames = latents
        else:
            video = self.decode_latents(latents)  # b f 3 h w in [-1, 1]
            video = (video / 2 + 0.5).clamp(0, 1).float()
            if options["histogram_match"]:
                video = match_histograms_to_first_frame(video)
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
