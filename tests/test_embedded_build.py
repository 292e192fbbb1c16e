"""The embedded default is reproducible from nothing with the project's own code."""

import json
from dataclasses import replace

import pytest
import torch

from huvidpo.hub import load_pipeline
from huvidpo.world.build import QUICK, build, train_vae, world_random_frames
from huvidpo.world.tiny import BASE_WORDS, build_tokenizer, tiny_vae


@pytest.fixture(scope="module")
def quick_build(tmp_path_factory):
    """The smoke plan built once from nothing (seed 0); the tests below only read it."""
    return build(tmp_path_factory.mktemp("quick") / "tiny", QUICK, seed=0, log=lambda line: None)


def test_quick_build_produces_a_loadable_pipeline_with_a_card(quick_build):
    out = quick_build
    summary = json.loads((out / "build.json").read_text())
    assert summary["plan"]["stage1_steps"] == QUICK.stage1_steps and summary["stage1_final_loss"] is not None
    assert "synthetic world" in (out / "README.md").read_text()
    pipe = load_pipeline(str(out))
    assert pipe.image_pipeline is not None
    assert abs(pipe.vae.config.scaling_factor - 0.18215) > 1e-6  # set from the trained latents
    frames = pipe("a red circle moving left slowly on a blue background", num_frames=4, num_inference_steps=2,
                  image_pipeline_kwargs={"num_inference_steps": 2}).frames
    assert frames.shape == (1, 4, 64, 64, 3)


def test_a_build_can_take_the_image_stages_of_an_earlier_one_and_retrain_only_the_video_stages(tmp_path, quick_build):
    first = quick_build
    (tmp_path / "again").mkdir()  # a rebuild in place keeps the card's build history
    (tmp_path / "again" / "README.md").write_text("# old card\n\n## Build history\n\n| 2026-11-24 | first |\n")
    again = build(tmp_path / "again", replace(QUICK, stage1_prompt_dropout=0.5, temporal_kernel_size=5), seed=0, log=lambda line: None,
                  image_from=first)
    a, b = load_pipeline(str(first)), load_pipeline(str(again))
    assert (a.unet.config.temporal_kernel_size, b.unet.config.temporal_kernel_size) == (3, 5)  # a video-stage change
    for part in ("unet", "vae", "text_encoder"):
        for (name, x), (_, y) in zip(getattr(a.image_pipeline, part).state_dict().items(), getattr(b.image_pipeline, part).state_dict().items()):
            assert torch.equal(x, y), (part, name)
    summary = json.loads((again / "build.json").read_text())
    assert summary["image_from"] == str(first) and summary["plan"]["stage1_prompt_dropout"] == 0.5
    assert summary["first_frame_heldout"] == json.loads((first / "build.json").read_text())["first_frame_heldout"]
    card = (again / "README.md").read_text()
    assert "taken from an earlier build" in card and "# old card" not in card
    assert card.endswith("## Build history\n\n| 2026-11-24 | first |\n")
    with pytest.raises(ValueError, match="t2i_steps"):
        build(tmp_path / "other", replace(QUICK, t2i_steps=QUICK.t2i_steps + 1), seed=0, log=lambda line: None, image_from=first)
    with pytest.raises(ValueError, match="t2i_refine_steps"):  # a second first-frame cycle is an image-stage change too
        build(tmp_path / "other", replace(QUICK, t2i_refine_steps=2), seed=0, log=lambda line: None, image_from=first)


def test_the_second_first_frame_cycle_trains_the_first_frame_model_on(tmp_path, quick_build):
    plain = quick_build
    lines = []
    refined = build(tmp_path / "refined", replace(QUICK, t2i_refine_steps=2), seed=0, log=lines.append)
    assert any("second cycle: 2 steps" in line for line in lines)
    a, b = load_pipeline(str(plain)).image_pipeline.unet, load_pipeline(str(refined)).image_pipeline.unet
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert "then 2 more at lr 0.0003" in (refined / "README.md").read_text()


def test_a_short_world_training_run_lowers_the_loss():
    torch.manual_seed(0)
    vae = tiny_vae()
    held_out = world_random_frames(16, seed=123)

    def reconstruction_error():
        with torch.no_grad():
            return torch.nn.functional.mse_loss(vae.decode(vae.encode(held_out).latent_dist.mode()).sample, held_out).item()

    before = reconstruction_error()
    train_vae(vae, steps=40, batch_size=8, lr=2e-3, log=lambda line: None)
    assert reconstruction_error() < 0.7 * before


def test_every_world_word_is_one_token_so_the_text_encoder_sees_words_not_letters():
    tokenizer = build_tokenizer()
    split = [w for w in BASE_WORDS if len(tokenizer(w, add_special_tokens=False).input_ids) != 1]
    assert split == []
    # "green" and "black" share prefixes with earlier words ("red", "blue"): still whole words in a prompt.
    tokens = tokenizer.tokenize("a green triangle moving right on a black background")
    assert tokens == ["a</w>", "green</w>", "triangle</w>", "moving</w>", "right</w>", "on</w>", "a</w>", "black</w>", "background</w>"]
    assert tokenizer.tokenize("zq") == ["z", "q</w>"]  # unknown text still tokenizes, into bytes


def test_the_shipped_default_draws_the_background_colour_and_shape_the_prompt_asks_for():
    """The first frame is what a visitor sees first: on held-out prompts the committed checkpoint
    must get the plain background right nearly always and the shape and its colour most of the time
    (the previous default, with smaller shapes, drew the asked shape in about half of them)."""
    from diffusers import StableDiffusionPipeline

    from huvidpo.world.clips import make_prompt_set
    from huvidpo.locations import DEFAULT_MODEL_DIR
    from huvidpo.world.build import first_frame_accuracy

    pipe = StableDiffusionPipeline.from_pretrained(str(DEFAULT_MODEL_DIR / "image_pipeline"), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    rates = first_frame_accuracy(pipe, make_prompt_set("heldout", 8, seed=3), seeds=(0,), steps=25)
    assert rates["background"] >= 0.85, rates
    assert rates["color"] >= 0.6, rates
    assert rates["shape"] >= 0.75, rates


def _state_change(pipe_text_encoder, tokenizer, prompt: str, changed: str) -> float:
    ids = tokenizer([prompt, changed], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        states = pipe_text_encoder(ids)[0]
    return (states[0] - states[1]).norm().item()


PROMPT = "a red circle moving left slowly on a blue background"


def test_pretraining_teaches_the_text_encoder_the_motion_words():
    """Only what the prompt's states tell apart can steer the video model: after pretraining, "left"
    and "right" must be told apart, on prompts the encoder never saw, as surely as colours are."""
    from huvidpo.world.tiny import tiny_text_encoder
    from huvidpo.world.build import pretrain_text_encoder

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    encoder = tiny_text_encoder(tokenizer)
    accuracy = pretrain_text_encoder(encoder, tokenizer, steps=150, batch_size=64, num_prompts=2000, log=lambda line: None)
    assert accuracy["direction"] >= 0.95 and accuracy["shape"] >= 0.95, accuracy
    direction = _state_change(encoder, tokenizer, PROMPT, PROMPT.replace("left", "right"))
    colour = _state_change(encoder, tokenizer, PROMPT, PROMPT.replace("red", "green"))
    assert direction > 0.4 * colour, (direction, colour)


def test_the_shipped_text_encoder_tells_motion_directions_apart():
    """The committed text encoder must give "left", "right", "up" and "down" prompts states as far apart
    as a colour change does; the previous default's did not, and its clips ignored the direction."""
    from transformers import CLIPTextModel, CLIPTokenizer

    from huvidpo.locations import DEFAULT_MODEL_DIR

    tokenizer = CLIPTokenizer.from_pretrained(DEFAULT_MODEL_DIR, subfolder="tokenizer")
    encoder = CLIPTextModel.from_pretrained(DEFAULT_MODEL_DIR, subfolder="text_encoder")
    colour = _state_change(encoder, tokenizer, PROMPT, PROMPT.replace("red", "green"))
    for other in ("right", "up", "down"):
        assert _state_change(encoder, tokenizer, PROMPT, PROMPT.replace("left", other)) > 0.4 * colour, other


def test_the_first_frame_loss_weighs_the_shape_not_the_background():
    """The shape is a tenth of a first frame: with ``foreground_weight`` the text-to-image loss counts the
    latent pixels over the shape (and only those) that many times the plain background."""
    import numpy as np

    from huvidpo.world.clips import ClipSpec, render_clip
    from huvidpo.world.build import latent_foreground_weights

    spec = ClipSpec("square", "red", "blue", "right", "slowly", 16.0, 20.0, 40.0, None)
    frame = torch.from_numpy(render_clip(spec, 1, 64)[0]).permute(2, 0, 1)[None].float() / 127.5 - 1
    weights = latent_foreground_weights(frame, 5.0, (16, 16))[0, 0]
    rows, cols = np.nonzero(weights.numpy() == 5.0)
    # the 16-pixel square centred at x=20, y=40 spans columns 12..28 and rows 32..48: latent 3..7 and 8..12
    assert set(cols) <= set(range(3, 8)) and set(rows) <= set(range(8, 13)) and len(rows) >= 16
    assert ((weights == 1.0) | (weights == 5.0)).all() and (weights == 1.0).sum() >= 16 * 16 - 25
