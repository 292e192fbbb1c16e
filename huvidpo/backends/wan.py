"""The Wan 2.1 text-to-video backend: diffusers' ``WanPipeline`` (``WanTransformer3DModel``, ``AutoencoderKLWan``,
a UMT5 text encoder), trained by flow matching.

What is unusual here:
- The training objective is rectified flow (:func:`~huvidpo.backends.base.flow_matching_input_and_target`): the
  transformer predicts the velocity ``noise - x0`` at ``x_t = (1 - sigma) x0 + sigma noise``, sigma from a
  ``FlowMatchEulerDiscreteScheduler`` with the pipeline's shift. The DPO loss is the same loss on velocity errors.
- The VAE is causal in time: ``1 + 4k`` frames become ``1 + k`` latent frames (the first frame alone). There is
  no first-frame conditioning in text-to-video, so the loss covers every latent frame.
- Prompts are encoded for training exactly as the pipeline encodes them to generate: padded to
  ``MAX_SEQUENCE_LENGTH`` tokens, the states past each prompt's end zeroed.
- In half precision the VAE stays fp32 (``fp32_components``), as diffusers' Wan docs load it; ``WanPipeline`` casts
  latents to the VAE's dtype to decode, and :meth:`WanBackend.encode_video` feeds it frames in its dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from huvidpo.backends.base import TextToVideoBackend, flow_matching_input_and_target

if TYPE_CHECKING:
    import torch

MAX_SEQUENCE_LENGTH = 512  # WanPipeline.__call__'s default text length; training encodes prompts the same way
TEMPORAL_STRIDE = 4  # AutoencoderKLWan's frames per latent frame (after the first), as its config says
SMALLEST_WIDTH = 12 * 128  # Wan 2.1 T2V 1.3B's transformer width (heads x head dim); 14B's is 40 x 128
NATIVE_SIZE = (480, 832)  # Wan 2.1 T2V 1.3B's native (height, width); the transformer's config does not say it


class WanBackend(TextToVideoBackend):
    name = "wan"
    title = "Wan 2.1"
    pipeline_class_names = ("WanPipeline",)
    denoiser_name = "transformer"
    first_frame_condition = False
    fps = 16  # Wan 2.1's clips are 16 frames per second (its 81 frames: 5 s)
    default_frames = 33  # 2 s at Wan's 16 fps, as HuViDPO's 16 frames at 8 fps (WanPipeline's own default is 81: 5 s)
    fp32_components = ("vae",)  # diffusers' Wan docs: the VAE in fp32 for better decoding, the rest in bf16

    @property
    def pipeline_class(self) -> type:
        from diffusers import WanPipeline

        return WanPipeline

    def denoiser_classes(self) -> tuple[type, ...]:
        from diffusers import WanTransformer3DModel

        return (WanTransformer3DModel,)

    def tiny_pipeline(self, seed: int = 0):
        """Wan 2.1's classes at a few thousand parameters: a 2-layer transformer, a 4-channel causal VAE (8x space,
        4x time), a 2-layer UMT5 encoder and the embedded default's locally built tokenizer."""
        from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
        from transformers import UMT5Config, UMT5EncoderModel

        from huvidpo.world.tiny import build_tokenizer

        import torch

        torch.manual_seed(seed)
        tokenizer = build_tokenizer()
        text_encoder = UMT5EncoderModel(UMT5Config(
            vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )).eval()  # as from_pretrained leaves it: no dropout in the prompt's states
        vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
            text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
            rope_max_seq_len=1024,  # Wan's own: positions up to its native 480x832 and beyond
        )
        pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                           scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def full_size(self, denoiser_config: dict) -> bool:
        """A transformer as wide as Wan 2.1's smallest (1.3B: 12 heads of 128), which has more parameters than
        Stable Diffusion 1.x's UNet (0.86B)."""
        width = denoiser_config.get("num_attention_heads", 0) * denoiser_config.get("attention_head_dim", 0)
        return width >= SMALLEST_WIDTH

    def default_size(self, pipe) -> tuple[int, int]:
        return NATIVE_SIZE

    def size_multiple(self, pipe) -> int:
        return pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]

    def frame_step(self, pipe=None) -> int:
        """The causal VAE encodes frame 0 alone, then ``step`` frames per latent frame."""
        return pipe.vae_scale_factor_temporal if pipe is not None else TEMPORAL_STRIDE

    def call_kwargs(self, pipe) -> dict:
        return {"max_sequence_length": MAX_SEQUENCE_LENGTH}

    def encode_video(self, pipe, frames: torch.Tensor) -> torch.Tensor:
        import torch

        vae = pipe.vae
        latents = vae.encode(frames.transpose(1, 2).to(vae.device, vae.dtype)).latent_dist.mode()  # b c f' h' w'
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(latents)
        return (latents - mean) / std  # the pipeline decodes latents * std + mean

    def encode_prompt(self, pipe, prompts: list[str], device: torch.device) -> torch.Tensor:
        embeds, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False,
                                       max_sequence_length=MAX_SEQUENCE_LENGTH, device=device)
        return embeds

    def training_scheduler(self, pipe):
        """A ``FlowMatchEulerDiscreteScheduler`` with the pipeline's shift (``shift``, or UniPC's ``flow_shift``)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        config = pipe.scheduler.config
        shift = config.get("shift") or config.get("flow_shift") or 1.0
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=config.get("num_train_timesteps", 1000), shift=shift)

    def noisy_input_and_target(self, scheduler, latents, noise, timesteps):
        return flow_matching_input_and_target(scheduler, latents, noise, timesteps)
