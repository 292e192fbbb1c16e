"""What the studio and the trainers need from a family of video models: the :class:`Backend` interface.

What is unusual here:
- A backend is a stateless object over a diffusers pipeline of its family; it holds no model. Everything that
  differs between families lives behind it: how a pipeline is loaded and generates, how clips become training
  latents and prompts text states, the training target and noisy input of a timestep, the model call, the LoRA's
  component and file format, and a tiny random pipeline for tests. The trainers and the studio call it and never
  ask which family they have.
- Two training objectives cover the families: the DDPM family (epsilon or v-prediction, read from the
  scheduler's ``prediction_type``) and flow matching (``x_t = (1 - sigma) x0 + sigma noise``, the target the
  velocity ``noise - x0``: diffusers' ``FlowMatchEulerDiscreteScheduler`` convention). Both draw the same integer
  ``t`` in ``[0, num_train_timesteps)`` (higher is noisier), so ``min_timestep``/``max_timestep`` mean the same
  part of the schedule in both.
- ``first_frame_condition`` is a capability, not a family name: a backend whose frame 0 is a clean condition (given
  or drawn by a first-frame model) keeps it clean in training and leaves it out of the loss; one without it
  (text-to-video from noise alone) trains on every frame and refuses a first-frame image.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # torch is imported where a model is used: the studio reads a family's settings before it loads
    import numpy as np
    import PIL.Image
    import torch

    from huvidpo.generate import GenerationSettings

SD_UNET_WIDTH = 1280  # Stable Diffusion 1.x's widest UNet block; the embedded default's is a fraction of it

# The attention projections: the paper's LoRA targets, and diffusers' training scripts' for these families; the one
# home of DPOConfig.lora_target_modules' default.
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def diffusion_input_and_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                               clean_first_frame: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DDPM-family forward diffusion of ``b c f h w`` latents at integer ``timesteps``: (noisy input, regression
    target, the model's timesteps). The target is the noise (``epsilon``) or the velocity (``v_prediction``), as
    the scheduler's ``prediction_type`` says; with ``clean_first_frame``, frame 0 stays the clean condition."""
    import torch

    noisy = scheduler.add_noise(latents, noise, timesteps)
    if clean_first_frame:
        noisy = torch.cat([latents[:, :, :1], noisy[:, :, 1:]], dim=2)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noisy, noise, timesteps
    if prediction_type == "v_prediction":
        return noisy, scheduler.get_velocity(latents, noise, timesteps), timesteps
    raise ValueError(f"Training supports epsilon and v_prediction models; the scheduler says {prediction_type!r}.")


def flow_matching_input_and_target(scheduler, latents: torch.Tensor, noise: torch.Tensor,
                                   timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rectified-flow forward process at integer ``timesteps`` ``t`` in ``[0, T)``: (``x_t = (1 - sigma) x0 + sigma
    noise``, the velocity ``noise - x0``, the model's timesteps ``sigma * T``), sigma read from the scheduler's
    (shifted) training table so that ``t = T - 1`` is pure noise and higher ``t`` is noisier, as for DDPM."""
    total = scheduler.config.num_train_timesteps
    index = (total - 1 - timesteps).long().cpu()
    sigma = scheduler.sigmas[index].to(latents.device, latents.dtype).view(-1, 1, 1, 1, 1)
    noisy = (1 - sigma) * latents + sigma * noise
    return noisy, noise - latents, scheduler.timesteps[index].to(latents.device)


class Backend(ABC):
    """One family of video models behind the operations the studio and trainers use.

    Class attributes: ``name`` (as ``--model`` folders are told apart and as logs name it), ``title`` (in
    messages), ``pipeline_class_names`` (the ``_class_name`` of ``model_index.json`` it serves), ``denoiser_name``
    (the pipeline component that is trained and carries the LoRA; also the LoRA file's key prefix),
    and ``first_frame_condition`` (see the module docstring).
    """

    name: str = ""
    title: str = ""
    pipeline_class_names: tuple[str, ...] = ()
    denoiser_name: str = "unet"
    first_frame_condition: bool = False
    default_frames: int = 16  # the paper's clip length
    fps: int = 8  # the frame rate the family's clips are made for (HuViDPO's and AnimateDiff's 8)
    fp32_components: tuple[str, ...] = ()  # pipeline components that stay fp32 when the rest loads in half precision

    # ------------------------------------------------------------------------------------------ models

    @property
    @abstractmethod
    def pipeline_class(self) -> type:
        """The diffusers pipeline class: it loads the family's folders and its LoRAs (``load_lora_weights``)."""

    def denoiser_classes(self) -> tuple[type, ...]:
        """The classes of the trained component (to tell a bare denoiser's family)."""
        return ()

    def load(self, model: str, index: dict, torch_dtype: torch.dtype, image_pipeline=None):
        """The pipeline saved at ``model`` (a folder or Hub id whose ``model_index.json`` is ``index``)."""
        if image_pipeline is not None:
            raise ValueError(f"{self.title} makes videos from text alone and takes no first-frame model: leave the "
                             "image model empty.")
        return self.pipeline_class.from_pretrained(model, dtype=self.component_dtypes(torch_dtype))

    def component_dtypes(self, torch_dtype: torch.dtype) -> torch.dtype | dict[str, torch.dtype]:
        """What ``from_pretrained`` gets as ``dtype`` for ``torch_dtype``: the dtype itself, or, in half precision
        with ``fp32_components``, diffusers' per-component dict that keeps those in fp32."""
        import torch

        if torch_dtype == torch.float32 or not self.fp32_components:
            return torch_dtype
        return {"default": torch_dtype, **dict.fromkeys(self.fp32_components, torch.float32)}

    @abstractmethod
    def tiny_pipeline(self, seed: int = 0):
        """A random-initialised pipeline of the family at laptop size, built without any download (for tests)."""

    def denoiser(self, pipe) -> torch.nn.Module:
        return getattr(pipe, self.denoiser_name)

    def read_denoiser_config(self, model: str) -> dict | None:
        """The config of the denoiser saved at ``model`` (a folder or Hub id) without loading it; None if unreadable
        (loading the model will say what is wrong)."""
        from huvidpo.hub_calls import ModelLoadError, read_model_json

        try:
            return read_model_json(model, f"{self.denoiser_name}/config.json")
        except (ModelLoadError, OSError, ValueError):
            return None

    def full_size(self, denoiser_config: dict) -> bool:
        """Whether a denoiser of this config is Stable Diffusion 1.x-sized or larger, so that 16 frames at the
        model's size train with gradient checkpointing and bf16 on a GPU (``mixed_precision`` 'auto': without
        checkpointing 16 frames of 320x512 do not fit 24 GB; bf16 halves the weights and the activations).
        A UNet by its widest block."""
        return max(denoiser_config.get("block_out_channels") or [0]) >= SD_UNET_WIDTH

    def runs_in_bf16(self, denoiser_config: dict | None, device: Any) -> bool:
        """The precision rule, in one place: a model whose denoiser is full size (:meth:`full_size`) runs in bf16 on a
        CUDA ``device`` (a ``torch.device`` or its name); anything else, and everything on a CPU, in fp32. Loading
        for generation follows it (:meth:`load_dtype`), and so does training's ``mixed_precision`` 'auto'
        (``huvidpo.training.trainer.resolve_auto_precision``). ``denoiser_config`` None (unreadable): fp32."""
        return str(device).startswith("cuda") and bool(denoiser_config) and self.full_size(denoiser_config)

    def load_dtype(self, denoiser_config: dict | None, device: Any) -> tuple[torch.dtype, str | None]:
        """The dtype to load a pipeline in that will run on ``device`` (:meth:`runs_in_bf16`; the
        ``fp32_components`` stay fp32 regardless, see :meth:`component_dtypes`), and, when it is bf16, the sentence
        that says so for the log."""
        import torch

        if not self.runs_in_bf16(denoiser_config, device):
            return torch.float32, None
        kept = f", its {' and '.join(self.fp32_components)} in fp32" if self.fp32_components else ""
        return torch.bfloat16, (f"A {self.title} model of Stable Diffusion's size or larger on a CUDA GPU: loading it "
                                f"in bf16{kept} (half the memory of fp32).")

    @abstractmethod
    def default_size(self, pipe) -> tuple[int, int]:
        """(height, width) in pixels the model makes by default."""

    @abstractmethod
    def size_multiple(self, pipe) -> int:
        """Heights and widths must be multiples of this many pixels."""

    # ------------------------------------------------------------------------------------------ frames
    # The frame rule: counts ``least + k * step`` up to ``most`` (None: no bound), read from the pipeline when there
    # is one; without one (the studio building its page) from the family's usual values.

    def least_frames(self) -> int:
        return 2 if self.first_frame_condition else 1

    def frame_step(self, pipe=None) -> int:
        return 1

    def most_frames(self, pipe=None) -> int | None:
        return None

    def frame_rule(self, pipe=None) -> str:
        """The rule in words, e.g. "Wan 2.1 takes 1 + 4k frames (1, 5, 9, ...)"."""
        least, step, most = self.least_frames(), self.frame_step(pipe), self.most_frames(pipe)
        if step > 1:
            counts = ", ".join(str(least + k * step) for k in range(3))
            return f"{self.title} takes {least} + {step}k frames ({counts}, ...{f', {most}' if most else ''})"
        return f"{self.title} takes {least} to {most} frames" if most else f"{self.title} takes {least} frames or more"

    def takes_frames(self, num_frames: Any, pipe=None) -> bool:
        least, step, most = self.least_frames(), self.frame_step(pipe), self.most_frames(pipe)
        return (isinstance(num_frames, int) and not isinstance(num_frames, bool) and num_frames >= least
                and (num_frames - least) % step == 0 and (most is None or num_frames <= most))

    def frames_within(self, num_frames: int, pipe=None) -> int:
        """The largest count the family takes up to ``num_frames`` (the least it takes when none is that low)."""
        least, step, most = self.least_frames(), self.frame_step(pipe), self.most_frames(pipe)
        num_frames = min(num_frames, most) if most else num_frames
        return least + max(0, (num_frames - least) // step) * step

    def nearest_frames(self, num_frames: int, pipe=None) -> list[int]:
        """The valid counts nearest ``num_frames``: the one below and the one above (one when they agree)."""
        below = self.frames_within(num_frames, pipe)
        above = below if below >= num_frames else below + self.frame_step(pipe)
        return sorted({count for count in (below, above) if self.takes_frames(count, pipe)})

    def check_num_frames(self, num_frames: Any, pipe=None, name: str = "frames") -> None:
        """Raise a ``ValueError`` naming the setting ``name`` and the nearest counts the family takes."""
        if self.takes_frames(num_frames, pipe):
            return
        nearest = ""
        if isinstance(num_frames, int) and not isinstance(num_frames, bool):
            nearest = " Nearest: " + " or ".join(str(count) for count in self.nearest_frames(num_frames, pipe)) + "."
        raise ValueError(f"{name}: {self.frame_rule(pipe)}; got {num_frames}.{nearest}")

    # ------------------------------------------------------------------------------------------ generation

    @abstractmethod
    def generate(self, pipe, settings: GenerationSettings, image: PIL.Image.Image | None = None,
                 step_callback: Callable[[int, int], None] | None = None, video: Any = None,
                 strength: float = 1.0) -> tuple[np.ndarray, PIL.Image.Image]:
        """One clip with ``pipe`` in the state the caller left it (LoRA applied): frames ``(f, h, w, 3)`` float in
        [0, 1] and the first frame. ``image``: a first frame (only with ``first_frame_condition``); ``video`` and
        ``strength``: video-to-video, where the family has it. ``step_callback(step, total)`` after each step."""

    # ------------------------------------------------------------------------------------------ training

    @abstractmethod
    def encode_video(self, pipe, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``b f 3 h w`` in [-1, 1] -> the latents the denoiser is trained on, ``b c f' h' w'``
        (deterministic: the mode of the VAE posterior)."""

    @abstractmethod
    def encode_prompt(self, pipe, prompts: list[str], device: torch.device) -> torch.Tensor:
        """``b l d``: the text states the denoiser is conditioned on, as the pipeline makes them when it generates."""

    def training_scheduler(self, pipe):
        """The scheduler whose forward process the training uses (DDPM family: a ``DDPMScheduler`` of the
        pipeline's betas and prediction type)."""
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(pipe.scheduler.config)

    def noisy_input_and_target(self, scheduler, latents: torch.Tensor, noise: torch.Tensor,
                               timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(noisy input, regression target, timesteps the model is called with) for integer ``timesteps``
        in ``[0, num_train_timesteps)``; frame 0 stays clean with ``first_frame_condition``."""
        return diffusion_input_and_target(scheduler, latents, noise, timesteps, self.first_frame_condition)

    def predict(self, model: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                embeds: torch.Tensor) -> torch.Tensor:
        """The denoiser's prediction ``b c f h w`` (``model`` may be DDP-wrapped: positional arguments only)."""
        return model(noisy, timesteps, embeds).sample

    # ------------------------------------------------------------------------------------------ LoRA

    def lora_target_presets(self) -> dict[str, str]:
        """Named choices of LoRA targets beyond module names: name -> the regex peft full-matches module names with."""
        return {}

    def lora_targets(self, names: list[str]) -> str | list[str]:
        """peft's ``target_modules`` for ``lora_target_modules``: a preset's regex when it is one preset's name,
        else the module names (each matching the modules whose name ends with it)."""
        presets = self.lora_target_presets()
        return presets[names[0]] if len(names) == 1 and names[0] in presets else list(names)

    def save_lora_weights(self, out_dir, state_dict: dict[str, torch.Tensor], metadata: dict) -> None:
        """Write a LoRA of the denoiser in the format the family's pipeline loads (``pipe.load_lora_weights``)."""
        self.pipeline_class.save_lora_weights(
            out_dir, **{f"{self.denoiser_name}_lora_layers": state_dict,
                        f"{self.denoiser_name}_lora_adapter_metadata": metadata}, safe_serialization=True,
        )

    def read_lora(self, path) -> tuple[dict[str, torch.Tensor], dict]:
        """(the denoiser's LoRA weights keyed as peft names them, the adapter's metadata) of a LoRA file or folder
        written by :meth:`save_lora_weights`."""
        out = self.pipeline_class.lora_state_dict(str(path), return_lora_metadata=True)
        state_dict, metadata = out[0], out[-1] or {}
        prefix = f"{self.denoiser_name}."
        metadata = {key.removeprefix(prefix): value for key, value in metadata.items()}
        return {key.removeprefix(prefix): value for key, value in state_dict.items()}, metadata


def first_frame_image(frames: np.ndarray) -> PIL.Image.Image:
    """Frame 0 of ``(f, h, w, 3)`` floats in [0, 1] as an image."""
    import numpy as np
    import PIL.Image

    return PIL.Image.fromarray((np.clip(frames[0], 0, 1) * 255).round().astype("uint8"))


class TextToVideoBackend(Backend):
    """A diffusers text-to-video pipeline used as it is (AnimateDiff, Wan): it generates from noise alone with its
    own sampler, so it takes no first frame, no video to re-draw and none of HuViDPO's sampler options."""

    def call_kwargs(self, pipe) -> dict[str, Any]:
        """Extra arguments of the pipeline's ``__call__`` (what training must match, e.g. the text length)."""
        return {}

    def generate(self, pipe, settings, image=None, step_callback=None, video=None, strength=1.0):
        if image is not None or video is not None:
            raise ValueError(f"{self.title} makes videos from text alone: it takes no first-frame image and no video "
                             "to re-draw. Leave them empty, or serve a HuViDPO model for image-to-video.")
        import torch

        self.check_num_frames(settings.frames, pipe)
        default_height, default_width = self.default_size(pipe)

        def on_step_end(pipeline, step, timestep, callback_kwargs):
            step_callback(step + 1, settings.steps)
            return callback_kwargs

        out = pipe(
            prompt=settings.prompt,
            negative_prompt=settings.negative_prompt or None,
            num_frames=settings.frames,
            height=settings.height or default_height,
            width=settings.width or default_width,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            generator=torch.Generator("cpu").manual_seed(settings.seed),
            output_type="np",
            callback_on_step_end=on_step_end if step_callback else None,
            **self.call_kwargs(pipe),
        )
        frames = out.frames[0]
        return frames, first_frame_image(frames)
