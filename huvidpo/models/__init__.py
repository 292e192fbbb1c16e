"""The HuViDPO video model: a UNet2DConditionModel inflated to video by composition (no copied UNet)."""

from .attention import FrameContext, SparseCausalAttnProcessor, TemporalAttention
from .presets import VIDEO_UNET_PRESETS, video_unet_options
from .temporal import TemporalGatedConv2d, VideoGroupNorm
from .unet import VideoUNet, VideoUNetOutput

__all__ = [
    "FrameContext",
    "SparseCausalAttnProcessor",
    "TemporalAttention",
    "TemporalGatedConv2d",
    "VIDEO_UNET_PRESETS",
    "VideoGroupNorm",
    "VideoUNet",
    "VideoUNetOutput",
    "video_unet_options",
]
