"""The original LAMP/HuViDPO behaviours as options: each does what the original does, and the defaults stay ours.

The stored slices below were computed with the code before these options existed (commit cd4f989), so the
default model and sampler are checked against the old code path.
"""

import math

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from huvidpo.locations import DEFAULT_MODEL_DIR
from huvidpo.models import (
    VIDEO_UNET_PRESETS,
    FrameContext,
    SparseCausalAttnProcessor,
    TemporalAttention,
    TemporalGatedConv2d,
    VideoGroupNorm,
    VideoUNet,
)
from huvidpo.pipeline import SAMPLER_PRESETS, adain_in_loop_step, match_histograms_to_first_frame, mix_shared_noise
from huvidpo.world.tiny import build_tiny_pipeline

from conftest import randomize_temporal_layers
from test_models import tiny_unet2d

# VideoUNet.from_unet2d(tiny_unet2d(), temporal_gate="channel") with randomize_temporal_layers, on seeded inputs:
# out[0, :, :, 8, 8] (4 channels x 4 frames), from the code before the options (the embedded default's gate).
OLD_UNET_SLICE = [
    0.347248, -0.766275, 1.080796, 0.17386, -0.44503, -0.519549, -0.364852, 0.178445,
    -0.673324, 0.251912, 0.186138, 0.013113, -0.350441, -0.846437, -0.702316, -0.157122,
]
# The tiny pipeline (seed 0, temporal layers randomised), frames 1..3 at pixel (32, 32): no sampler options, and
# the studio's shared_noise=0.2 + adain=True, from the code before the options.
OLD_FRAMES_PLAIN = [0.397475, 0.496761, 0.60914, 0.126166, 0.451097, 0.587649, 0.538619, 0.329838, 0.541851]
OLD_FRAMES_OURS = [0.58667, 0.593021, 0.507571, 0.570489, 0.492915, 0.496247, 0.545572, 0.520815, 0.43328]


def seeded_inputs(frames=4):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, 4, frames, 16, 16, generator=generator), torch.randn(1, 9, 64, generator=generator)


def test_default_video_unet_is_the_old_model():
    video = randomize_temporal_layers(VideoUNet.from_unet2d(tiny_unet2d(), temporal_gate="channel"))
    x, text = seeded_inputs()
    with torch.no_grad():
        out = video(x, torch.tensor([500]), text).sample
    torch.testing.assert_close(out[0, :, :, 8, 8].flatten(), torch.tensor(OLD_UNET_SLICE), atol=1e-5, rtol=0)
    assert {k: video.config[k] for k in VIDEO_UNET_PRESETS["ours"] if k != "temporal_gate"} == {
        k: v for k, v in VIDEO_UNET_PRESETS["ours"].items() if k != "temporal_gate"
    }


def test_the_embedded_default_loads_with_our_options():
    # Its config.json predates the options: missing keys must mean today's behaviour.
    unet = VideoUNet.from_pretrained(DEFAULT_MODEL_DIR, subfolder="unet")
    assert (unet.config.temporal_convs, unet.config.group_norm) == ("resnet", "per_frame")
    assert unet.config.temporal_position_code is True and unet.config.sparse_causal == "first_and_previous"
    assert isinstance(unet.conv_in, nn.Conv2d) and not isinstance(unet.conv_in, TemporalGatedConv2d)
    assert not any(isinstance(m, VideoGroupNorm) for m in unet.modules())


def test_default_sampler_is_the_old_one():
    pipe = build_tiny_pipeline(seed=0, with_image_pipeline=False)
    randomize_temporal_layers(pipe.unet)
    pipe.set_progress_bar_config(disable=True)
    image = np.zeros((64, 64, 3), np.uint8)
    image[..., 2] = 200
    image[24:40, 24:40] = (220, 30, 30)

    def frames(**kwargs):
        out = pipe("a red circle moving left on a blue background", image=image, num_frames=4, num_inference_steps=3,
                   guidance_scale=7.5, generator=torch.Generator().manual_seed(0), **kwargs).frames
        return out[0, 1:, 32, 32, :].flatten()

    np.testing.assert_allclose(frames(), OLD_FRAMES_PLAIN, atol=1e-5)
    np.testing.assert_allclose(frames(sampler="ours"), OLD_FRAMES_OURS, atol=1e-5)
    np.testing.assert_allclose(frames(shared_noise=0.2, adain=True), OLD_FRAMES_OURS, atol=1e-5)


@pytest.mark.parametrize("preset", list(VIDEO_UNET_PRESETS))
def test_every_preset_inflates_to_the_image_model_on_one_frame(preset):
    unet = tiny_unet2d()
    video = VideoUNet.from_unet2d(unet, preset=preset)
    x, text = seeded_inputs(frames=1)
    with torch.no_grad():
        torch.testing.assert_close(video(x, 300, text).sample[:, :, 0], unet(x[:, :, 0], 300, text).sample, atol=1e-5, rtol=1e-4)


def test_original_presets_inflate_every_conv_and_pool_group_norms():
    lamp = VideoUNet.from_unet2d(tiny_unet2d(), preset="lamp")
    ours = VideoUNet.from_unet2d(tiny_unet2d())
    inflated = {name for name, m in lamp.named_modules() if isinstance(m, TemporalGatedConv2d)}
    plain_convs = {name for name, m in lamp.named_modules() if type(m) is nn.Conv2d and not name.endswith(".gate")}
    assert {"conv_in", "conv_out", "down_blocks.0.downsamplers.0.conv", "up_blocks.0.upsamplers.0.conv"} <= inflated
    assert any(name.endswith("conv_shortcut") for name in inflated)
    # What stays 2-D: the transformers' 1x1 proj_in/proj_out, as in the original.
    assert plain_convs and all(name.endswith(("proj_in", "proj_out")) for name in plain_convs)
    pooled = {name for name, m in lamp.named_modules() if isinstance(m, VideoGroupNorm)}
    assert "conv_norm_out" in pooled and any(n.endswith("norm1") for n in pooled) and any(n.endswith("norm2") for n in pooled)
    assert not any(isinstance(m, VideoGroupNorm) for m in ours.modules())
    assert not isinstance(ours.conv_in, TemporalGatedConv2d)
    # The new temporal parameters are stage-1 trainable, as the original trains every conv1d/conv_gate.
    assert {"conv_in.temporal.weight", "conv_out.gate.weight"} <= set(lamp.stage1_parameters())


def test_preset_options_can_be_overridden_and_are_checked():
    video = VideoUNet.from_unet2d(tiny_unet2d(), preset="lamp", temporal_position_code=True)
    assert video.config.sparse_causal == "first" and video.config.temporal_position_code is True
    with pytest.raises(ValueError, match="Unknown VideoUNet preset"):
        VideoUNet.from_unet2d(tiny_unet2d(), preset="tune-a-video")
    with pytest.raises(ValueError, match="Unknown VideoUNet option"):
        VideoUNet.from_unet2d(tiny_unet2d(), preset="lamp", group_norms="per_video")
    with pytest.raises(ValueError, match="group_norm must be one of"):
        VideoUNet.from_unet2d(tiny_unet2d(), group_norm="per_batch")


def test_video_group_norm_pools_statistics_over_all_frames():
    torch.manual_seed(0)
    context = FrameContext(num_frames=3)
    norm = VideoGroupNorm.inflate(nn.GroupNorm(4, 8), context)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 3, 8, 5, 5) * torch.tensor([1.0, 3.0, 0.5]).view(1, 3, 1, 1, 1)  # b f c h w, frames differ in scale
    groups = x.transpose(1, 2).reshape(2, 4, -1)  # b g (c/g f h w)
    mean, var = groups.mean(-1, keepdim=True), groups.var(-1, unbiased=False, keepdim=True)
    expected = ((groups - mean) / torch.sqrt(var + norm.eps)).reshape(2, 8, 3, 5, 5).transpose(1, 2)
    expected = expected * norm.weight.view(1, 1, 8, 1, 1) + norm.bias.view(1, 1, 8, 1, 1)
    with torch.no_grad():
        out = norm(x.flatten(0, 1)).unflatten(0, (2, 3))
        per_frame = nn.functional.group_norm(x.flatten(0, 1), 4, norm.weight, norm.bias).unflatten(0, (2, 3))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    # Frames keep their relative scale, which per-frame statistics erase.
    assert out[:, 1].std() > 2 * out[:, 0].std()
    assert per_frame[:, 1].std() < 1.5 * per_frame[:, 0].std()


def test_lamp_sparse_causal_attends_to_frame_zero_only():
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    attn.set_processor(SparseCausalAttnProcessor(FrameContext(num_frames=4), frames="first"))
    x = torch.randn(2, 4, 7, 16)
    expected = torch.empty_like(x)
    head_dim = 8
    with torch.no_grad():
        for b in range(2):
            k, v = attn.to_k(x[b, 0]), attn.to_v(x[b, 0])
            for i in range(4):
                q = attn.to_q(x[b, i])
                heads = []
                for h in range(2):
                    sl = slice(h * head_dim, (h + 1) * head_dim)
                    heads.append(torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(head_dim), -1) @ v[:, sl])
                expected[b, i] = attn.to_out[0](torch.cat(heads, -1))
        ours = attn(x.flatten(0, 1)).unflatten(0, (2, 4))
        changed = x.clone()
        changed[:, 2] += 1.0
        moved = (attn(changed.flatten(0, 1)).unflatten(0, (2, 4)) - ours).abs().amax(dim=(0, 2, 3))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)
    assert moved[[0, 1, 3]].max() == 0 and moved[2] > 0  # frame 3 does not read frame 2 (HuViDPO's would)
    with pytest.raises(ValueError, match="SparseCausal key frames"):
        SparseCausalAttnProcessor(FrameContext(), frames="previous")


@pytest.mark.parametrize("position_code", [False, True])
def test_temporal_attention_without_position_code_cannot_tell_frame_order(position_code):
    torch.manual_seed(0)
    attention = TemporalAttention(16, 2, FrameContext(num_frames=5), position_code=position_code)
    with torch.no_grad():
        attention.attn.to_out[0].weight.normal_()
        x = torch.randn(2, 5, 6, 16)  # b f n c
        order = torch.tensor([3, 0, 4, 1, 2])
        out = attention(x.flatten(0, 1)).unflatten(0, (2, 5))
        shuffled = attention(x[:, order].flatten(0, 1)).unflatten(0, (2, 5))
    equivariant = torch.allclose(shuffled, out[:, order], atol=1e-5)
    assert equivariant is (not position_code)


def test_shared_noise_mixes():
    noise = torch.randn(20000, 1, 3, 1, 1, generator=torch.Generator().manual_seed(0))
    ours = mix_shared_noise(noise, 0.2, "variance_preserving")
    original = mix_shared_noise(noise, 0.2, "linear")
    torch.testing.assert_close(original, 0.2 * noise[:, :, :1] + 0.8 * noise)
    torch.testing.assert_close(ours, math.sqrt(0.2) * noise[:, :, :1] + math.sqrt(0.8) * noise)

    def stats(x):
        a, b = x[:, 0, 1, 0, 0], x[:, 0, 2, 0, 0]
        return a.var().item(), torch.corrcoef(torch.stack([a, b]))[0, 1].item()

    assert stats(ours) == pytest.approx((1.0, 0.2), abs=0.03)
    assert stats(original) == pytest.approx((0.68, 0.04 / 0.68), abs=0.03)


def channel_stats(latents, frame):
    x = latents[:, :, frame]
    return x.mean(dim=(2, 3)), x.std(dim=(2, 3))


def test_adain_in_loop_follows_the_original_schedule():
    torch.manual_seed(0)
    latents = torch.randn(1, 4, 4, 8, 8) * torch.tensor([1.0, 2.0, 0.5, 3.0]).view(1, 1, 4, 1, 1) + torch.arange(4.0).view(1, 1, 4, 1, 1)
    early = adain_in_loop_step(latents, step=5, num_steps=10)  # 50 %: frames 2.. toward frame 1
    torch.testing.assert_close(early[:, :, :2], latents[:, :, :2])
    for frame in (2, 3):
        for got, want in zip(channel_stats(early, frame), channel_stats(latents, 1)):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    late = adain_in_loop_step(latents, step=6, num_steps=10)  # 60 % done: every frame toward frame 0
    assert torch.equal(late[:, :, 0], latents[:, :, 0])
    for frame in (1, 2, 3):
        for got, want in zip(channel_stats(late, frame), channel_stats(latents, 0)):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_histogram_matching_gives_every_frame_frame_zeros_colours():
    generator = torch.Generator().manual_seed(0)
    video = torch.rand(1, 3, 3, 6, 6, generator=generator)
    video[:, 2] = video[:, 2] ** 3  # a darker frame
    matched = match_histograms_to_first_frame(video)
    assert torch.equal(matched[:, 0], video[:, 0])
    for frame in (1, 2):
        for c in range(3):
            src, out, ref = video[0, frame, c].flatten(), matched[0, frame, c].flatten(), video[0, 0, c].flatten()
            torch.testing.assert_close(out.sort().values, ref.sort().values)  # frame 0's values...
            assert torch.equal(out.argsort(), src.argsort())  # ...in the frame's own order


def test_huvidpo_sampler_preset_in_the_pipeline(tiny_pipe):
    image = np.full((64, 64, 3), 90, np.uint8)
    image[16:48, 8:40] = (230, 40, 40)
    common = dict(image=image, num_frames=4, num_inference_steps=3, guidance_scale=7.5)

    def run(**kwargs):
        return tiny_pipe("a red square", generator=torch.Generator().manual_seed(0), **common, **kwargs).frames[0]

    original = run(sampler="huvidpo")
    explicit = run(**SAMPLER_PRESETS["huvidpo"])
    plain = run()
    np.testing.assert_array_equal(original, explicit)
    np.testing.assert_allclose(original[0], plain[0], atol=1e-6)  # frame 0 is the condition either way
    assert np.abs(original[1:] - plain[1:]).max() > 1e-3
    quantiles = [5, 25, 50, 75, 95]
    reference = np.percentile(original[0], quantiles, axis=(0, 1))  # per RGB channel
    for frame in range(1, 4):  # histogram matching: every frame has frame 0's colour distribution
        np.testing.assert_allclose(np.percentile(original[frame], quantiles, axis=(0, 1)), reference, atol=1e-2)
    assert any(np.abs(np.percentile(plain[f], quantiles, axis=(0, 1)) - reference).max() > 5e-2 for f in range(1, 4))
    unmatched = run(sampler="huvidpo", histogram_match=False)
    assert np.abs(unmatched - original).max() > 1e-3
    with pytest.raises(ValueError, match="Unknown sampler preset"):
        run(sampler="lamp")
    with pytest.raises(ValueError, match="shared_noise_mix"):
        run(shared_noise=0.2, shared_noise_mix="sqrt")
