"""Expected-value regression tests (diffusers style): stored numbers of the pipeline, the UNet and the DPO loss.

What is unusual here: the expected values were computed once with the code as it stood and pasted in. The
models are the real classes at tiny size, built under `torch.manual_seed(0)`; the zero-initialised temporal
layers and LoRA get seeded non-zero weights so that they count. A change that moves any number fails here;
when a change is meant to move them, paste the new values (the failure message prints them) and say why in
the commit.
"""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from huvidpo.losses import LOSS_TYPES, video_dpo_loss
from huvidpo.models import VideoUNet
from huvidpo.training import DPOConfig, dpo_step
from huvidpo.training.dpo import add_dpo_lora
from huvidpo.training.trainer import example_generator
from huvidpo.world.tiny import sd_ddim_scheduler, tiny_unet_config

from conftest import randomize_temporal_layers

MODEL_ATOL = 1e-4  # model outputs: float32 sums ordered differently by other CPUs and thread counts


def assert_values(actual, expected, atol=MODEL_ATOL, rtol=0.0):
    actual = np.asarray(actual.detach() if isinstance(actual, torch.Tensor) else actual, dtype=np.float64)
    np.testing.assert_allclose(actual, np.asarray(expected), atol=atol, rtol=rtol,
                               err_msg=f"new values: {np.array2string(actual, precision=6, separator=', ')}")


def tiny_video_unet() -> VideoUNet:
    """The tiny SD-layout UNet inflated to video, temporal layers randomised (seed 0)."""
    torch.manual_seed(0)
    return randomize_temporal_layers(VideoUNet.from_unet2d(UNet2DConditionModel(**tiny_unet_config())))


def test_pipeline_frames_for_a_fixed_prompt_seed_and_steps(tiny_pipe):
    randomize_temporal_layers(tiny_pipe.unet)
    frames = tiny_pipe(
        "a red circle moving left", generator=torch.Generator().manual_seed(0), num_frames=4, num_inference_steps=3,
        image_pipeline_kwargs={"num_inference_steps": 2},
    ).frames
    assert frames.shape == (1, 4, 64, 64, 3)
    # the bottom-right 3x3 of the last channel in the three generated frames
    assert_values(frames[0, 1:, -3:, -3:, -1], [
        [[0.548784, 0.539367, 0.569077], [0.563163, 0.486762, 0.544589], [0.515468, 0.474104, 0.470282]],
        [[0.656650, 0.427757, 0.461593], [0.484652, 0.536224, 0.518227], [0.436677, 0.495706, 0.539445]],
        [[0.586019, 0.637508, 0.479600], [0.512059, 0.564983, 0.520861], [0.378781, 0.498628, 0.560298]],
    ])


def test_video_unet_forward_on_a_fixed_input():
    unet = tiny_video_unet()
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 4, 16, 16, generator=generator)  # b c f h w
    text = torch.randn(1, 8, 64, generator=generator)  # b l d
    with torch.no_grad():
        out = unet(sample, 10, text).sample
    assert out.shape == sample.shape
    # the bottom-right 3x3 of the last channel in the first and the last frame
    assert_values(out[0, -1, ::3, -3:, -3:], [
        [[-0.406833, -0.123694, -0.155608], [-0.260042, -0.433803, -0.050163], [-0.190408, 0.011661, 0.057687]],
        [[-0.504568, 0.189321, -0.234187], [-0.469395, 0.064223, 0.207862], [0.087543, -0.362707, -0.122746]],
    ])


MSE_W, MSE_L = [0.10, 0.20, 0.30], [0.15, 0.18, 0.40]
REF_W, REF_L = [0.12, 0.19, 0.33], [0.11, 0.21, 0.35]
EXPECTED_LOSS = {
    ("sigmoid", 0.0): 0.54720092,
    ("sigmoid", 2.0): 0.94720095,
    ("hinge", 0.0): 0.66666657,
    ("hinge", 2.0): 1.0666666,
    ("ipo", 0.0): 0.00073333341,
    ("ipo", 2.0): 0.40073335,
}
EXPECTED_METRICS = {
    "rewards/chosen": 0.33333325,
    "rewards/rejected": -0.50000024,
    "rewards/accuracies": 0.66666669,
    "rewards/margins": 0.83333349,
    "mse/model_w": 0.2,
    "mse/model_l": 0.24333334,
    "mse/ref_w": 0.21333332,
    "mse/ref_l": 0.22333331,
}


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("rpo_alpha", [0.0, 2.0])
def test_video_dpo_loss_and_metrics_on_fixed_mses(loss_type, rpo_alpha):
    loss, metrics = video_dpo_loss(*map(torch.tensor, (MSE_W, MSE_L, REF_W, REF_L)), beta=50.0, loss_type=loss_type,
                                   rpo_alpha=rpo_alpha)
    # pure float32 arithmetic: exact to rounding, so a relative tolerance (the IPO loss is ~1e-3)
    assert_values(loss, EXPECTED_LOSS[loss_type, rpo_alpha], atol=1e-7, rtol=1e-5)
    assert_values([metrics[name] for name in EXPECTED_METRICS], list(EXPECTED_METRICS.values()), atol=1e-7, rtol=1e-5)


def test_dpo_step_on_the_tiny_model():
    unet = tiny_video_unet()
    torch.manual_seed(0)
    add_dpo_lora(unet, DPOConfig(), "dpo")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a LoRA that has trained a little: B != 0, so the policy is not the reference
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    generator = torch.Generator().manual_seed(0)
    latents_w, latents_l = (torch.randn(1, 4, 4, 8, 8, generator=generator) for _ in range(2))
    prompt_embeds = torch.randn(1, 8, 64, generator=generator)
    scheduler = DDPMScheduler.from_config(sd_ddim_scheduler().config)  # as the trainer builds it
    with torch.no_grad():
        loss, metrics = dpo_step(unet, unet, scheduler, latents_w, latents_l, prompt_embeds, example_generator(0, 0), beta=50.0)
    assert_values(loss, 0.699578)
    assert_values([metrics[name] for name in EXPECTED_DPO_STEP_METRICS], list(EXPECTED_DPO_STEP_METRICS.values()))


EXPECTED_DPO_STEP_METRICS = {
    "rewards/chosen": 0.111568,
    "rewards/rejected": 0.124389,
    "rewards/accuracies": 0.0,
    "rewards/margins": -0.012821,
    "mse/model_w": 1.120114,
    "mse/model_l": 1.092234,
    "mse/ref_w": 1.124576,
    "mse/ref_l": 1.097209,
}
