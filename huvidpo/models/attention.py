"""SparseCausal self-attention and per-block temporal attention.

Inside the UNet every tensor is laid out as ``(b f) n c``: the 2-D layers see frames as extra batch
items. The two modules here are the only places (with the temporal conv and, optionally, the
video-pooled GroupNorm of ``temporal.py``) that look across frames, and they learn the frame count
from a shared :class:`FrameContext` that :class:`VideoUNet` sets at the top of each forward, so
diffusers' block signatures stay untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn


@dataclass
class FrameContext:
    """How many frames the current forward carries; one instance is shared by a model's video layers."""

    num_frames: int = 1


def first_and_previous_frames(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(b f) n d -> (b f) 2n d``: for frame i the tokens of frame 0 followed by those of frame max(i-1, 0)."""
    x = x.unflatten(0, (-1, num_frames))  # b f n d
    previous = torch.cat([x[:, :1], x[:, :-1]], dim=1)
    first = x[:, :1].expand_as(x)
    return torch.cat([first, previous], dim=2).flatten(0, 1)


def first_frame(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(b f) n d -> (b f) n d``: for every frame the tokens of frame 0."""
    x = x.unflatten(0, (-1, num_frames))  # b f n d
    return x[:, :1].expand_as(x).flatten(0, 1)


class SparseCausalAttnProcessor:
    """Self-attention where frame i's queries attend to the keys/values of a few earlier frames.

    ``frames="first_and_previous"`` (HuViDPO's and ours): frame 0 and frame max(i-1, 0); frame 0 attends
    to itself (its key set is frame 0 twice, which gives the same softmax as once). ``frames="first"``
    (LAMP's): frame 0 only. Either way a one-frame video reproduces the image model's self-attention
    exactly and the cost grows linearly with the number of frames. A drop-in for ``attn1`` of diffusers'
    ``BasicTransformerBlock``, in the spirit of ``CrossFrameAttnProcessor`` from the text-to-video-zero
    pipeline.
    """

    KEY_FRAMES = {"first_and_previous": first_and_previous_frames, "first": first_frame}

    def __init__(self, context: FrameContext, frames: str = "first_and_previous"):
        if frames not in self.KEY_FRAMES:
            raise ValueError(f"Unknown SparseCausal key frames {frames!r}: use one of {list(self.KEY_FRAMES)}.")
        self.context = context
        self.frames = frames

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("SparseCausalAttnProcessor is for self-attention (attn1); it got encoder_hidden_states.")
        num_frames = self.context.num_frames
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_frames, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_frames, channel, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        batch_frames = hidden_states.shape[0]
        if batch_frames % num_frames:
            raise ValueError(f"Batch of {batch_frames} frame images is not a multiple of num_frames={num_frames}.")

        key_frames = self.KEY_FRAMES[self.frames]
        query = attn.to_q(hidden_states)
        key = key_frames(attn.to_k(hidden_states), num_frames)
        value = key_frames(attn.to_v(hidden_states), num_frames)

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_frames, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_frames, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_frames, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if attention_mask is not None:
            # A self-attention mask covers one frame's tokens; the key set is one or two frames long.
            repeats = key.shape[2] // query.shape[2]
            attention_mask = attn.prepare_attention_mask(attention_mask, key.shape[2] // repeats, batch_frames)
            attention_mask = attention_mask.view(batch_frames, attn.heads, -1, attention_mask.shape[-1])
            attention_mask = attention_mask.repeat(1, 1, 1, repeats)

        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_frames, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)

        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_frames, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def sinusoidal_frame_embedding(num_frames: int, dim: int, device, dtype) -> torch.Tensor:
    """``f c``: the transformer's sine/cosine position code over frame indices."""
    position = torch.arange(num_frames, device=device, dtype=torch.float32)[:, None]
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    angles = position * freqs[None]
    embedding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding.to(dtype)


class TemporalAttention(nn.Module):
    """Attention over frames at each spatial position, added residually after a transformer block.

    The output projection starts at zero, so an untrained inflation equals the image model frame by
    frame. With ``position_code`` (ours), frame order enters through a sinusoidal code added to the
    normalised input of the attention, so it reaches the queries, the keys and the values alike (the
    values then carry the frame index into the output too). Without it (LAMP's and HuViDPO's
    ``attn_temp``), the attention cannot tell frames apart except by their content.
    """

    def __init__(self, dim: int, heads: int, context: FrameContext, position_code: bool = True):
        super().__init__()
        self.context = context
        self.position_code = position_code
        self.norm = nn.LayerNorm(dim)
        self.attn = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, out_bias=True)
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        num_frames = self.context.num_frames
        batch_frames, tokens, dim = hidden_states.shape
        x = self.norm(hidden_states)
        x = x.unflatten(0, (-1, num_frames)).transpose(1, 2).flatten(0, 1)  # (b n) f c
        if self.position_code:
            x = x + sinusoidal_frame_embedding(num_frames, dim, x.device, x.dtype)
        x = self.attn(x)
        x = x.unflatten(0, (-1, tokens)).transpose(1, 2).reshape(batch_frames, tokens, dim)
        return hidden_states + x
