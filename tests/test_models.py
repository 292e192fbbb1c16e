import math

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from huvidpo.world.tiny import tiny_unet_config
from huvidpo.models import FrameContext, SparseCausalAttnProcessor, TemporalGatedConv2d, VideoUNet

from conftest import randomize_temporal_layers


def reference_sparse_causal(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Plain loops: frame i's queries over frame 0's and frame i-1's keys/values, per head."""
    batch, frames, tokens, dim = x.shape
    heads, head_dim = attn.heads, dim // attn.heads
    out = torch.empty_like(x)
    for b in range(batch):
        for i in range(frames):
            q = attn.to_q(x[b, i])
            context = torch.cat([x[b, 0], x[b, max(i - 1, 0)]])
            k, v = attn.to_k(context), attn.to_v(context)
            per_head = []
            for h in range(heads):
                sl = slice(h * head_dim, (h + 1) * head_dim)
                weights = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(head_dim), dim=-1)
                per_head.append(weights @ v[:, sl])
            out[b, i] = attn.to_out[0](torch.cat(per_head, dim=-1))
    return out


def test_sparse_causal_matches_reference_computation():
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    context = FrameContext(num_frames=5)
    attn.set_processor(SparseCausalAttnProcessor(context))
    x = torch.randn(2, 5, 7, 16)
    with torch.no_grad():
        ours = attn(x.flatten(0, 1)).unflatten(0, (2, 5))
        expected = reference_sparse_causal(attn, x)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)


def test_sparse_causal_frame_zero_is_plain_self_attention():
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    x = torch.randn(1, 4, 7, 16)
    with torch.no_grad():
        plain = attn(x[:, 0])
        attn.set_processor(SparseCausalAttnProcessor(FrameContext(num_frames=4)))
        sparse = attn(x.flatten(0, 1)).unflatten(0, (1, 4))[:, 0]
    torch.testing.assert_close(sparse, plain, atol=1e-6, rtol=1e-5)


def test_sparse_causal_ignores_frames_it_should_not_see():
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    attn.set_processor(SparseCausalAttnProcessor(FrameContext(num_frames=5)))
    x = torch.randn(1, 5, 7, 16)
    changed = x.clone()
    changed[:, 2] += 1.0  # frame 2 feeds only frames 2 (queries) and 3 (as i-1)
    with torch.no_grad():
        a = attn(x.flatten(0, 1)).unflatten(0, (1, 5))
        b = attn(changed.flatten(0, 1)).unflatten(0, (1, 5))
    diff = (a - b).abs().amax(dim=(0, 2, 3))
    assert diff[[0, 1, 4]].max() == 0
    assert diff[2] > 0 and diff[3] > 0


@pytest.mark.parametrize("gate", TemporalGatedConv2d.GATES)
def test_temporal_conv_is_causal_and_starts_as_identity(gate):
    torch.manual_seed(0)
    context = FrameContext(num_frames=5)
    conv = TemporalGatedConv2d.inflate(torch.nn.Conv2d(4, 8, 3, padding=1), context, gate=gate)
    x = torch.randn(5, 4, 6, 6)
    with torch.no_grad():
        spatial = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
        torch.testing.assert_close(conv(x), spatial)  # zero-initialised: no temporal effect yet
        conv.temporal.weight.normal_()
        changed = x.clone()
        changed[2] += 1.0
        diff = (conv(x) - conv(changed)).abs().amax(dim=(1, 2, 3))
    assert diff[:2].max() == 0, "frames before the change must not see it (causal)"
    assert diff[2:].min() > 0


def test_channel_gate_opens_each_channel_separately():
    torch.manual_seed(0)
    conv = TemporalGatedConv2d.inflate(torch.nn.Conv2d(4, 8, 3, padding=1), FrameContext(num_frames=3), gate="channel")
    x = torch.randn(3, 4, 6, 6)
    with torch.no_grad():
        conv.temporal.weight.normal_()
        conv.gate.bias[:4] = -30.0  # channels 0-3 shut, 4-7 open
        spatial = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
        moved = (conv(x) - spatial).abs().amax(dim=(0, 2, 3))
    assert moved[:4].max() < 1e-6 and moved[4:].min() > 0
    with pytest.raises(ValueError, match="temporal gate"):
        TemporalGatedConv2d.inflate(torch.nn.Conv2d(4, 8, 3), FrameContext(), gate="pixel")


def tiny_unet2d(seed=0):
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**tiny_unet_config())
    with torch.no_grad():  # non-trivial weights everywhere, including the zero-initialised conv_out
        for param in unet.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return unet


def test_inflation_equals_image_model_on_one_frame():
    unet = tiny_unet2d()
    video = VideoUNet.from_unet2d(unet)
    x = torch.randn(2, 4, 1, 16, 16)
    text = torch.randn(2, 9, 64)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        image_out = unet(x[:, :, 0], t, text).sample
        video_out = video(x, t, text).sample
    assert video_out.shape == x.shape
    torch.testing.assert_close(video_out[:, :, 0], image_out, atol=1e-5, rtol=1e-4)


def test_untrained_inflation_keeps_frame_zero_and_mixes_later_frames():
    unet = tiny_unet2d()
    video = VideoUNet.from_unet2d(unet)
    x = torch.randn(1, 4, 4, 16, 16)
    text = torch.randn(1, 9, 64)
    with torch.no_grad():
        out = video(x, torch.tensor([500]), text).sample
        frame0 = unet(x[:, :, 0], torch.tensor([500]), text).sample
    torch.testing.assert_close(out[:, :, 0], frame0, atol=1e-5, rtol=1e-4)
    assert out.shape == (1, 4, 4, 16, 16)


@pytest.mark.parametrize("gate", TemporalGatedConv2d.GATES)
def test_save_and_load_round_trip(tmp_path, gate):
    video = randomize_temporal_layers(VideoUNet.from_unet2d(tiny_unet2d(), temporal_gate=gate))
    video.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = VideoUNet.from_pretrained(tmp_path)
    assert list(loaded.config.block_out_channels) == list(video.config.block_out_channels)
    assert loaded.config.temporal_kernel_size == 3 and loaded.config.temporal_gate == gate
    x = torch.randn(1, 4, 3, 16, 16)
    text = torch.randn(1, 9, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 300, text).sample, video(x, 300, text).sample)


def test_stage1_trainable_set_is_the_original_recipe():
    video = VideoUNet.from_unet2d(tiny_unet2d())
    names = set(video.stage1_parameters())
    assert any(".attn1.to_q." in n for n in names)
    assert any(".temporal_attention." in n for n in names)
    assert any(n.endswith("conv1.temporal.weight") for n in names)
    assert any(n.endswith("conv2.gate.weight") for n in names)
    assert not any(".attn2." in n or ".attn1.to_k." in n or n.endswith("conv1.weight") for n in names)


def test_rejects_image_shaped_input():
    video = VideoUNet.from_unet2d(tiny_unet2d())
    with pytest.raises(ValueError, match="frames"):
        video(torch.randn(1, 4, 16, 16), 10, torch.randn(1, 9, 64))
