import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from huvidpo import TORCHVISION_FALLBACK_NOTICE
from huvidpo.pipeline import HuViDPOPipeline

from conftest import quiet

FAST = dict(num_frames=4, num_inference_steps=3, image_pipeline_kwargs={"num_inference_steps": 2})


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def gradient_image(size=64):
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    rgb = np.stack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)), np.full((size, size), 90, np.uint8)], -1)
    return PIL.Image.fromarray(rgb)


def test_output_shape_and_range(tiny_pipe):
    frames = tiny_pipe("a red circle moving left", generator=seeded(), **FAST).frames
    assert frames.shape == (1, 4, 64, 64, 3)
    assert frames.min() >= 0 and frames.max() <= 1


def test_first_frame_is_the_decoded_conditioning_image(tiny_pipe):
    image = gradient_image()
    out = tiny_pipe("a red circle", image=image, generator=seeded(), adain=False, **FAST)
    with torch.no_grad():
        pixels = tiny_pipe.image_processor.preprocess(image, height=64, width=64)
        latent = tiny_pipe.encode_first_frames(pixels)
        expected = tiny_pipe.decode_latents(latent)[0, 0]
    expected = (expected / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out.frames[0, 0], expected, atol=1e-5)
    assert out.first_frames[0].size == (64, 64)


def test_first_frame_comes_from_the_text_to_image_model(tiny_pipe):
    out = tiny_pipe("a red circle", generator=seeded(3), **FAST)
    image = tiny_pipe.image_pipeline("a red circle", num_inference_steps=2, generator=seeded(3)).images[0]
    assert np.array_equal(np.asarray(out.first_frames[0]), np.asarray(image))


def test_same_seed_same_video_and_other_seed_differs(tiny_pipe):
    a = tiny_pipe("a blue square", generator=seeded(1), **FAST).frames
    b = tiny_pipe("a blue square", generator=seeded(1), **FAST).frames
    c = tiny_pipe("a blue square", generator=seeded(2), **FAST).frames
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_shared_noise_and_adain_change_later_frames_only(tiny_pipe):
    image = gradient_image()
    plain = tiny_pipe("a", image=image, generator=seeded(), **FAST).frames
    shared = tiny_pipe("a", image=image, generator=seeded(), shared_noise=0.5, **FAST).frames
    adain = tiny_pipe("a", image=image, generator=seeded(), adain=True, **FAST).frames
    for other in (shared, adain):
        np.testing.assert_allclose(other[:, 0], plain[:, 0], atol=1e-4)
        assert np.abs(other[:, 1:] - plain[:, 1:]).max() > 1e-4


def test_callback_runs_every_step_and_can_edit_latents(tiny_pipe):
    seen = []

    def callback(pipe, step, timestep, kwargs):
        seen.append((step, kwargs["latents"].shape))
        return {"latents": kwargs["latents"] * 0}

    out = tiny_pipe(
        "a", generator=seeded(), callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"],
        output_type="latent", **FAST,
    )
    assert [s for s, _ in seen] == [0, 1, 2]
    assert seen[0][1] == (1, 4, 4, 16, 16)
    assert out.frames[:, :, 1:].abs().max() == 0  # the callback's latents were used



def test_callback_can_interrupt_the_loop_and_the_next_call_runs_in_full(tiny_pipe):
    """The diffusers way to stop early: a step-end callback sets `pipe._interrupt`."""
    seen = []

    def stop_after_first_step(pipe, step, timestep, kwargs):
        seen.append(step)
        pipe._interrupt = True
        return kwargs

    tiny_pipe("a", generator=seeded(), callback_on_step_end=stop_after_first_step, output_type="latent", **FAST)
    assert seen == [0] and tiny_pipe.interrupt
    seen.clear()
    tiny_pipe("a", generator=seeded(), callback_on_step_end=lambda pipe, step, t, kwargs: seen.append(step) or kwargs,
              output_type="latent", **FAST)
    assert seen == [0, 1, 2]

@pytest.mark.parametrize("output_type, check", [
    ("pt", lambda f: tuple(f.shape) == (1, 4, 3, 64, 64)),
    ("pil", lambda f: len(f[0]) == 4 and f[0][0].size == (64, 64)),
    ("latent", lambda f: tuple(f.shape) == (1, 4, 4, 16, 16)),
])
def test_output_types(tiny_pipe, output_type, check):
    assert check(tiny_pipe("a", generator=seeded(), output_type=output_type, **FAST).frames)


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt=""), "prompt is empty"),
    (dict(prompt="   "), "prompt is empty"),
    (dict(num_frames=1), "num_frames"),
    (dict(height=62), "multiple of 4"),
    (dict(width=30), "multiple of 4"),
    (dict(num_inference_steps=0), "num_inference_steps"),
    (dict(guidance_scale=1.0, negative_prompt="blurry"), "negative prompt"),
    (dict(guidance_scale=-1.0), "guidance_scale"),
    (dict(shared_noise=1.5), "shared_noise"),
    (dict(output_type="gif"), "output_type"),
    (dict(prompt=["a", "b"], negative_prompt=["x"]), "negative prompts"),
])
def test_bad_inputs_raise_clear_errors(tiny_pipe, kwargs, message):
    args = {"prompt": "a red circle", "num_frames": 4, "num_inference_steps": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        tiny_pipe(**args)


def test_missing_first_frame_source_is_explained(tiny_pipe):
    tiny_pipe.image_pipeline = None
    with pytest.raises(ValueError, match="No first frame"):
        tiny_pipe("a red circle", num_frames=4, num_inference_steps=2)


def test_save_and_load_pipeline_round_trip(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path)
    loaded = quiet(HuViDPOPipeline.from_pretrained(tmp_path))
    assert type(loaded.unet).__name__ == "VideoUNet" and loaded.image_pipeline is not None
    a = tiny_pipe("a green triangle", generator=seeded(), **FAST).frames
    b = loaded("a green triangle", generator=seeded(), **FAST).frames
    np.testing.assert_allclose(a, b, atol=1e-4)


def random_clip(frames=4, size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)


def clip_latents(pipe, clip):
    with torch.no_grad():
        return pipe.encode_video(torch.from_numpy(clip).float().permute(0, 3, 1, 2)[None] / 127.5 - 1)


def test_video_to_video_stays_closer_to_the_clip_the_lower_the_strength(tiny_pipe):
    clip = random_clip()
    clean = clip_latents(tiny_pipe, clip)
    distances = []
    for strength in (0.1, 0.3, 0.6, 1.0):
        out = tiny_pipe("a red circle", video=clip, strength=strength, num_inference_steps=10, output_type="latent", generator=seeded(1))
        assert torch.equal(out.frames[:, :, :1], clean[:, :, :1])  # the clip's first frame is the condition, untouched
        distances.append((out.frames[:, :, 1:] - clean[:, :, 1:]).abs().mean().item())
    assert distances == sorted(distances) and distances[0] < 0.1 * distances[-1]


@pytest.mark.parametrize("steps, strength, runs", [(10, 0.3, 3), (25, 1 - 0.8, 5), (4, 1.0, 4)])
def test_video_to_video_runs_the_last_strength_of_the_schedule(tiny_pipe, steps, strength, runs):
    seen = []
    tiny_pipe("a", video=random_clip(), strength=strength, num_inference_steps=steps, output_type="latent",
              callback_on_step_end=lambda pipe, i, t, kwargs: seen.append(int(t)) or kwargs)
    tiny_pipe.scheduler.set_timesteps(steps)
    assert seen == tiny_pipe.scheduler.timesteps[steps - runs:].tolist()


def test_video_to_video_needs_no_first_frame_model_and_takes_every_clip_format(tiny_pipe):
    tiny_pipe.image_pipeline = None
    clip = random_clip(frames=3)
    formats = [
        clip,
        [PIL.Image.fromarray(frame) for frame in clip],
        torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 127.5 - 1,
    ]
    outs = [tiny_pipe("a", video=v, strength=0.5, num_inference_steps=4, output_type="latent", generator=seeded(2)) for v in formats]
    assert outs[0].frames.shape == (1, 4, 3, 16, 16)  # num_frames follows the clip
    for out in outs[1:]:
        torch.testing.assert_close(out.frames, outs[0].frames, atol=1e-4, rtol=0)
    assert outs[0].first_frames[0].size == (64, 64)


@pytest.mark.parametrize("kwargs, message", [
    (dict(image=gradient_image()), "both a first-frame image and a video"),
    (dict(num_frames=6), "video has 4 frames but num_frames is 6"),
    (dict(strength=0.0), "strength"),
    (dict(strength=1.5), "strength"),
    (dict(strength=0.1, num_inference_steps=5), "leaves no step"),
    (dict(video=random_clip()[0]), "video must be one clip"),
    (dict(video=None, strength=0.5), "needs a video"),
    (dict(prompt=["a", "b"]), "one prompt per call"),
])
def test_bad_video_to_video_inputs_raise_clear_errors(tiny_pipe, kwargs, message):
    args = {"prompt": "a red circle", "video": random_clip(), "strength": 0.5, "num_inference_steps": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        tiny_pipe(**args)


def test_importing_the_model_stack_shows_no_torchvision_fallback_notice_and_keeps_other_warnings():
    """Without torchvision, transformers warns once per image processor that diffusers imports; huvidpo drops
    exactly that notice (see huvidpo/__init__.py)."""
    result = subprocess.run(
        [sys.executable, "-c", "import huvidpo.world.tiny, huvidpo.hub"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert TORCHVISION_FALLBACK_NOTICE not in result.stderr + result.stdout
    emitter = logging.getLogger("transformers.utils.import_utils")
    other = emitter.makeRecord(emitter.name, logging.WARNING, __file__, 0, "some other notice", None, None)
    assert emitter.filter(other)
