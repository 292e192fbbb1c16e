"""The AnimateDiff backend: diffusers' ``AnimateDiffPipeline``, a Stable Diffusion 1.x UNet with a ``MotionAdapter``'s
motion modules (``UNetMotionModel``), trained as its scheduler says (epsilon or v-prediction).

Its latents are the image VAE's, frame by frame (as HuViDPO's); there is no first-frame conditioning, so the loss
covers every frame. The model call differs from the others': ``UNetMotionModel`` takes the text states once per
frame (``(b f) l d``), as the pipeline repeats them.

Where the LoRA goes is a choice (``lora_target_modules``): the default targets (``to_q``, ``to_k``, ``to_v``,
``to_out.0``) match the spatial attention and the motion modules' temporal attention alike; the preset ``motion``
takes only the motion modules' attention (a motion LoRA, as AnimateDiff's own motion LoRAs are: what moves and how,
the image model untouched), ``spatial`` only the image UNet's (appearance; the motion modules untouched). The LoRA
is saved with the ``unet.`` prefix that ``AnimateDiffPipeline.load_lora_weights`` reads.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from huvidpo.backends.base import DEFAULT_LORA_TARGETS, TextToVideoBackend

if TYPE_CHECKING:
    import torch

_PROJECTIONS = "(" + "|".join(re.escape(name) for name in DEFAULT_LORA_TARGETS) + ")"
# UNetMotionModel's module names: ``down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q`` (temporal) and
# ``down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`` (spatial); peft full-matches these regexes.
LORA_TARGET_PRESETS = {
    "motion": rf"(.*\.)?motion_modules\..*\.{_PROJECTIONS}",
    "spatial": rf"(?!(.*\.)?motion_modules\.).*\.{_PROJECTIONS}",
}


class AnimateDiffBackend(TextToVideoBackend):
    name = "animatediff"
    title = "AnimateDiff"
    pipeline_class_names = ("AnimateDiffPipeline",)
    denoiser_name = "unet"
    first_frame_condition = False
    default_frames = 16  # the clip length the motion modules were trained on

    @property
    def pipeline_class(self) -> type:
        from diffusers import AnimateDiffPipeline

        return AnimateDiffPipeline

    def denoiser_classes(self) -> tuple[type, ...]:
        from diffusers import UNetMotionModel

        return (UNetMotionModel,)

    def tiny_pipeline(self, seed: int = 0):
        """The embedded default's tiny SD classes (UNet, VAE, CLIP text encoder, local tokenizer) with a
        ``MotionAdapter`` of the same block widths: diffusers makes the ``UNetMotionModel`` from the two."""
        from diffusers import AnimateDiffPipeline, MotionAdapter, UNet2DConditionModel

        from huvidpo.world.tiny import build_tokenizer, sd_ddim_scheduler, tiny_text_encoder, tiny_unet_config, tiny_vae

        import torch

        torch.manual_seed(seed)
        tokenizer = build_tokenizer()
        text_encoder = tiny_text_encoder(tokenizer)
        unet_config = tiny_unet_config(text_encoder.config.hidden_size)
        adapter = MotionAdapter(block_out_channels=unet_config["block_out_channels"],
                                motion_layers_per_block=unet_config["layers_per_block"],
                                motion_norm_num_groups=unet_config["norm_num_groups"], motion_num_attention_heads=4)
        pipe = AnimateDiffPipeline(vae=tiny_vae(), text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=UNet2DConditionModel(**unet_config), motion_adapter=adapter,
                                   scheduler=sd_ddim_scheduler(), feature_extractor=None, image_encoder=None)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def default_size(self, pipe) -> tuple[int, int]:
        size = pipe.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else size
        return height * pipe.vae_scale_factor, width * pipe.vae_scale_factor

    def size_multiple(self, pipe) -> int:
        return pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)

    def most_frames(self, pipe=None) -> int | None:
        """The motion modules' positional table: ``motion_max_seq_length`` frames (32 in the released adapters)."""
        return pipe.unet.config.motion_max_seq_length if pipe is not None else None

    def lora_target_presets(self) -> dict[str, str]:
        return dict(LORA_TARGET_PRESETS)

    def encode_video(self, pipe, frames: torch.Tensor) -> torch.Tensor:
        from huvidpo.pipeline import encode_video_frames

        return encode_video_frames(pipe.vae, frames)

    def encode_prompt(self, pipe, prompts: list[str], device: torch.device) -> torch.Tensor:
        embeds, _ = pipe.encode_prompt(prompts, device, 1, False)
        return embeds

    def predict(self, model, noisy, timesteps, embeds):
        """``UNetMotionModel`` takes text states per frame, ``(b f) l d``, as ``AnimateDiffPipeline`` repeats them."""
        return model(noisy, timesteps, embeds.repeat_interleave(noisy.shape[2], dim=0)).sample
