"""VideoUNet: a Stable Diffusion 1.x ``UNet2DConditionModel`` inflated to video, LAMP-style.

Nothing of the UNet is copied: the subclass builds the 2-D network with diffusers' own blocks and then
(1) swaps every ``attn1`` processor for :class:`SparseCausalAttnProcessor`, (2) hangs a
:class:`TemporalAttention` on every ``BasicTransformerBlock`` (run by a forward hook after the block,
where LAMP and Tune-A-Video put ``attn_temp``), (3) replaces each ResNet ``conv1``/``conv2`` (or, as the
original does, every conv it inflates) by a :class:`TemporalGatedConv2d` that keeps the conv's weight
names and (4) optionally pools GroupNorm statistics over the frames of a video. Spatial parameter names
are those of Stable Diffusion, so 2-D checkpoints and 2-D LoRAs keep their keys. Which of the original's
behaviours a model has is in its config (``models/presets.py`` names the sets: ours, huvidpo, lamp).

Input and output are ``b c f h w``; inside, frames travel as batch items ``(b f) c h w``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from diffusers.utils import BaseOutput
from torch import nn

from .attention import FrameContext, SparseCausalAttnProcessor, TemporalAttention
from .presets import OURS, video_unet_options
from .temporal import TemporalGatedConv2d, VideoGroupNorm

# DiffusionPipeline.from_pretrained resolves a custom component's loader by looking up base classes
# (ModelMixin, ...) by name in the component's module; keep ModelMixin importable from here.
__all__ = ["ModelMixin", "VideoUNet", "VideoUNetOutput"]


@dataclass
class VideoUNetOutput(BaseOutput):
    """``sample``: the predicted noise, ``b c f h w``."""

    sample: torch.Tensor


def _run_temporal_attention(block: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    return block.temporal_attention(output)


class VideoUNet(UNet2DConditionModel):
    """An inflated SD 1.x UNet. All ``UNet2DConditionModel`` config keys apply, plus the video ones.

    The defaults are ours (preset ``"ours"``); ``models/presets.py`` lists the original LAMP and HuViDPO values.

    Args:
        temporal_kernel_size: frames seen by each causal temporal conv (the original uses 3).
        temporal_gate: ``"spatial"`` (one gate per position, the default and the original's) or ``"channel"``
            (one per channel): see :class:`TemporalGatedConv2d`.
        temporal_convs: which convs get a gated temporal conv: ``"resnet"`` (ResNet ``conv1``/``conv2``, ours) or
            ``"all"`` (also ``conv_in``, ``conv_out``, ResNet ``conv_shortcut`` and the down/upsampler convs,
            as the original inflates them).
        group_norm: ``"per_frame"`` (each frame's own statistics, ours) or ``"per_video"`` (ResNet norms and
            ``conv_norm_out`` pool all frames of a video, as the original).
        temporal_position_code: add a sinusoidal frame-index code before the temporal attention (ours; it
            reaches queries, keys and values) or not (the original).
        sparse_causal: ``attn1`` keys/values from ``"first_and_previous"`` (frames 0 and i-1: HuViDPO and
            ours) or ``"first"`` (frame 0 only: LAMP).
        **unet_kwargs: the ``UNet2DConditionModel`` config.
    """

    ignore_for_config = ["unet_kwargs"]
    TEMPORAL_CONVS = ("resnet", "all")
    GROUP_NORMS = ("per_frame", "per_video")

    @register_to_config
    def __init__(
        self,
        temporal_kernel_size: int = 3,
        temporal_gate: str = "spatial",
        temporal_convs: str = "resnet",
        group_norm: str = "per_frame",
        temporal_position_code: bool = True,
        sparse_causal: str = "first_and_previous",
        **unet_kwargs,
    ):
        super().__init__(**unet_kwargs)
        if temporal_kernel_size < 1:
            raise ValueError(f"temporal_kernel_size must be >= 1, got {temporal_kernel_size}.")
        if temporal_convs not in self.TEMPORAL_CONVS:
            raise ValueError(f"temporal_convs must be one of {list(self.TEMPORAL_CONVS)}, got {temporal_convs!r}.")
        if group_norm not in self.GROUP_NORMS:
            raise ValueError(f"group_norm must be one of {list(self.GROUP_NORMS)}, got {group_norm!r}.")
        self.frame_context = FrameContext()
        every_conv = temporal_convs == "all"

        def inflate(module: nn.Module, name: str) -> None:
            conv = getattr(module, name)
            if isinstance(conv, nn.Conv2d):
                setattr(module, name, TemporalGatedConv2d.inflate(conv, self.frame_context, temporal_kernel_size, temporal_gate))

        def pool_over_frames(module: nn.Module, name: str) -> None:
            if group_norm == "per_video" and isinstance(getattr(module, name), nn.GroupNorm):
                setattr(module, name, VideoGroupNorm.inflate(getattr(module, name), self.frame_context))

        for module in list(self.modules()):
            if isinstance(module, BasicTransformerBlock):
                self._inflate_transformer_block(module, sparse_causal, temporal_position_code)
            elif isinstance(module, ResnetBlock2D):
                for name in ("conv1", "conv2", *(("conv_shortcut",) if every_conv else ())):
                    inflate(module, name)
                for name in ("norm1", "norm2"):
                    pool_over_frames(module, name)
            elif every_conv and isinstance(module, (Downsample2D, Upsample2D)):
                inflate(module, "conv")
        if every_conv:
            for name in ("conv_in", "conv_out"):
                inflate(self, name)
        pool_over_frames(self, "conv_norm_out")

    def _inflate_transformer_block(self, block: BasicTransformerBlock, sparse_causal: str, position_code: bool) -> None:
        block.attn1.set_processor(SparseCausalAttnProcessor(self.frame_context, sparse_causal))
        block.temporal_attention = TemporalAttention(block.attn1.query_dim, block.attn1.heads, self.frame_context, position_code)
        block.register_forward_hook(_run_temporal_attention)

    @staticmethod
    def _get_init_keys(input_class):
        # The config carries the parent's keys too: let from_config/from_pretrained pass them through **unet_kwargs.
        keys = ConfigMixin._get_init_keys(input_class)
        if issubclass(input_class, UNet2DConditionModel):
            keys |= ConfigMixin._get_init_keys(UNet2DConditionModel)
        return keys

    @classmethod
    def from_unet2d(cls, unet: UNet2DConditionModel, preset: str = OURS, **options) -> "VideoUNet":
        """Inflate a 2-D UNet (e.g. Stable Diffusion 1.5's): spatial weights copied, temporal layers fresh.

        ``preset`` (``"ours"``, ``"huvidpo"`` or ``"lamp"``) sets the video options; ``options`` (e.g.
        ``temporal_gate="channel"``) override single ones.
        """
        config = {k: v for k, v in unet.config.items() if not k.startswith("_")}
        model = cls.from_config({**config, **video_unet_options(preset, **options)})
        missing, unexpected = model.load_state_dict(unet.state_dict(), strict=False)
        not_temporal = [k for k in missing if not cls.is_temporal_parameter_name(k)]
        if unexpected or not_temporal:
            raise ValueError(
                f"Cannot inflate this UNet: unexpected keys {unexpected[:5]}, missing spatial keys {not_temporal[:5]}."
            )
        model.to(unet.device)
        return model if unet.dtype == model.dtype else model.to(unet.dtype)

    @staticmethod
    def is_temporal_parameter_name(name: str) -> bool:
        """True for parameters that inflation adds (temporal convs, their gates, temporal attention)."""
        return ".temporal_attention." in name or ".temporal." in name or ".gate." in name

    def stage1_parameters(self) -> dict[str, nn.Parameter]:
        """Stage-1 trainable set of the original recipe: temporal convs + gates, temporal attention, ``attn1.to_q``."""
        trainable = {}
        for name, param in self.named_parameters():
            if self.is_temporal_parameter_name(name) or ".attn1.to_q." in name:
                trainable[name] = param
        return trainable

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        cross_attention_kwargs: dict | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> VideoUNetOutput | tuple[torch.Tensor]:
        """Predict noise for a video latent ``b c f h w`` from per-video text states ``b l d``."""
        if sample.ndim != 5:
            raise ValueError(f"VideoUNet expects latents shaped (batch, channels, frames, height, width); got {tuple(sample.shape)}.")
        batch, _, num_frames, _, _ = sample.shape
        self.frame_context.num_frames = num_frames
        sample = sample.transpose(1, 2).flatten(0, 1)  # (b f) c h w
        encoder_hidden_states = encoder_hidden_states.repeat_interleave(num_frames, dim=0)
        if torch.is_tensor(timestep) and timestep.ndim == 1 and timestep.shape[0] == batch:
            timestep = timestep.repeat_interleave(num_frames)
        out = super().forward(
            sample,
            timestep,
            encoder_hidden_states,
            cross_attention_kwargs=cross_attention_kwargs,
            return_dict=False,
            **kwargs,
        )[0]
        out = out.unflatten(0, (batch, num_frames)).transpose(1, 2)  # b c f h w
        if not return_dict:
            return (out,)
        return VideoUNetOutput(sample=out)
