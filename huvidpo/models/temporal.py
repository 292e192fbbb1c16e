"""The gated temporal 1-D convolution that follows an inflated conv, and GroupNorm pooled over frames.

Both subclass the ``nn`` layer they replace rather than wrapping it, so the spatial weights keep their
Stable Diffusion names (``conv1.weight``, ``norm1.weight``) and a 2-D checkpoint loads straight into
the inflated model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import FrameContext


class TemporalGatedConv2d(nn.Conv2d):
    """``y = conv2d(x);  y + sigmoid(gate(y)) * causal_conv1d_over_frames(y)``.

    The temporal conv is causal (frame i sees frames i-k+1..i, zero-padded before frame 0) and starts
    at zero, so the inflated model equals the image model until training moves it; the gate is
    zero-initialised, so it opens at 0.5 and learns where motion should flow. ``gate="spatial"`` (a 3x3
    conv to one channel) scales all channels of a position together; ``gate="channel"`` (a 1x1 conv to
    every channel) opens each channel separately, so features that carry the prompt can choose which
    temporal filters act, e.g. a shift to the left or to the right.
    """

    GATES = ("spatial", "channel")

    def __init__(self, *args, context: FrameContext, temporal_kernel_size: int = 3, gate: str = "spatial", **kwargs):
        super().__init__(*args, **kwargs)
        if gate not in self.GATES:
            raise ValueError(f"Unknown temporal gate {gate!r}: use one of {list(self.GATES)}.")
        self.context = context
        self.temporal_kernel_size = temporal_kernel_size
        channels = self.out_channels
        self.temporal = nn.Conv1d(channels, channels, temporal_kernel_size)
        self.gate = nn.Conv2d(channels, 1, 3, padding=1) if gate == "spatial" else nn.Conv2d(channels, channels, 1)
        for layer in (self.temporal, self.gate):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @classmethod
    def inflate(cls, conv: nn.Conv2d, context: FrameContext, temporal_kernel_size: int = 3, gate: str = "spatial") -> "TemporalGatedConv2d":
        """A temporal conv around ``conv``, sharing nothing with it but a copy of its weights."""
        inflated = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            context=context,
            temporal_kernel_size=temporal_kernel_size,
            gate=gate,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        inflated.weight.data.copy_(conv.weight.data)
        if conv.bias is not None:
            inflated.bias.data.copy_(conv.bias.data)
        return inflated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # (b f) c h w
        num_frames = self.context.num_frames
        batch_frames, channels, height, width = y.shape
        t = y.unflatten(0, (-1, num_frames)).permute(0, 3, 4, 2, 1).reshape(-1, channels, num_frames)  # (b h w) c f
        t = self.temporal(F.pad(t, (self.temporal_kernel_size - 1, 0)))
        t = t.reshape(-1, height, width, channels, num_frames).permute(0, 4, 3, 1, 2).reshape(y.shape)
        return y + torch.sigmoid(self.gate(y)) * t


class VideoGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics pool all frames of a video, as in LAMP and HuViDPO.

    The 2-D layer normalises each ``(b f)`` frame on its own; here each group's mean and variance are
    taken over its channels, every frame, height and width of one video (a ``b c f h w`` GroupNorm), so
    frames keep their brightness and contrast relative to each other.
    """

    def __init__(self, *args, context: FrameContext, **kwargs):
        super().__init__(*args, **kwargs)
        self.context = context

    @classmethod
    def inflate(cls, norm: nn.GroupNorm, context: FrameContext) -> "VideoGroupNorm":
        """A video-pooled copy of ``norm`` (same groups, eps and affine weights)."""
        pooled = cls(norm.num_groups, norm.num_channels, eps=norm.eps, affine=norm.affine, context=context)
        pooled.load_state_dict(norm.state_dict())
        return pooled.to(device=norm.weight.device, dtype=norm.weight.dtype) if norm.affine else pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        video = x.unflatten(0, (-1, self.context.num_frames)).transpose(1, 2)  # b c f h w
        video = F.group_norm(video, self.num_groups, self.weight, self.bias, self.eps)
        return video.transpose(1, 2).flatten(0, 1)  # (b f) c h w
