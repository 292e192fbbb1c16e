"""The HuViDPO video model: a UNet2DConditionModel inflated to video by composition (no copied UNet)."""

from .attention import FrameContext, SparseCausalAttnProcessor, TemporalAttention
from .temporal import TemporalGatedConv2d
from .unet import VideoUNet, VideoUNetOutput

__all__ = [
    "FrameContext",
    "SparseCausalAttnProcessor",
    "TemporalAttention",
    "TemporalGatedConv2d",
    "VideoUNet",
    "VideoUNetOutput",
]
