"""Stage 1 and DPO on tiny real components (CPU, 4-frame 64x64 clips, a few steps)."""

import math
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDPMScheduler
from safetensors.torch import load_file

from huvidpo.world.clips import generate_world
from huvidpo.world.tiny import build_tiny_pipeline
from huvidpo.hub import load_lora, load_pipeline, unload_lora
from huvidpo.training import (
    DPOConfig,
    PreferencePairs,
    Stage1Config,
    VideoPromptData,
    dpo_step,
    train_dpo,
    train_stage1,
    write_world_pairs,
)
from huvidpo.training.data import encode_pairs
from huvidpo.training.dpo import add_dpo_lora, guided_prediction, implicit_accuracy, implicit_margins
from huvidpo.training.trainer import batch_indices, push_output, step_generator, trainable_parameters

NUM_FRAMES = 4
SIZE = "32"  # pixels: 8x8 latents keep every step well under a second
DPO_METRICS = {
    "step", "loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
    "mse/model_w", "mse/model_l", "mse/ref_w", "mse/ref_l", "lr", "grad_norm",
}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Other test runs share the cores: OpenMP threads spin-waiting for a busy core make steps 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_pipe():
    pipe = build_tiny_pipeline(seed=0, with_image_pipeline=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def dpo_config(data, output_dir, **overrides) -> DPOConfig:
    settings = dict(
        data=str(data), output_dir=str(output_dir), num_frames=NUM_FRAMES, resolution=SIZE, max_steps=4,
        learning_rate=1e-3, checkpointing_steps=0,
    )
    return DPOConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory) -> Path:
    return write_world_pairs(tmp_path_factory.mktemp("pairs"), 2, num_frames=NUM_FRAMES)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory) -> Path:
    return generate_world(tmp_path_factory.mktemp("world"), 2, num_frames=6)


@pytest.fixture(scope="module")
def dpo_runs(pair_dir, tmp_path_factory):
    """One straight 4-step run, and the same run cancelled before step 1, resumed, stopped at step 2, resumed."""
    root = tmp_path_factory.mktemp("dpo")
    straight_pipe = tiny_pipe()
    base_before = {name: p.detach().clone() for name, p in straight_pipe.unet.named_parameters()}
    rows = []
    straight = train_dpo(dpo_config(pair_dir, root / "straight"), callbacks=[rows.append], pipe=straight_pipe)

    interrupted = root / "interrupted"
    stop = threading.Event()
    stop.set()
    cancelled = train_dpo(dpo_config(pair_dir, interrupted), stop_event=stop, pipe=tiny_pipe())
    initial_lora = load_file(interrupted / "checkpoints" / "step-0" / "trainable.safetensors")
    stop = threading.Event()
    halfway = train_dpo(
        dpo_config(pair_dir, interrupted, resume=True),
        callbacks=[lambda row: row["step"] == 2 and stop.set()],
        stop_event=stop,
        pipe=tiny_pipe(),
    )
    resumed = train_dpo(dpo_config(pair_dir, interrupted, resume=True), pipe=tiny_pipe())
    return SimpleNamespace(
        straight=straight, straight_pipe=straight_pipe, base_before=base_before, rows=rows,
        cancelled=cancelled, initial_lora=initial_lora, halfway=halfway, resumed=resumed,
    )


# ---------------------------------------------------------------------------------------------- DPO


def test_dpo_starts_at_log2_and_logs_every_metric(dpo_runs):
    first = dpo_runs.straight.metrics_history[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/accuracies"] == 0.5
    assert first["mse/model_w"] == first["mse/ref_w"]
    assert [row["step"] for row in dpo_runs.rows] == [1, 2, 3, 4]
    assert all(set(row) == DPO_METRICS for row in dpo_runs.rows)
    assert dpo_runs.straight.metrics_history == dpo_runs.rows


def test_dpo_moves_every_lora_parameter_and_nothing_else(dpo_runs):
    unet = dpo_runs.straight_pipe.unet
    trained = trainable_parameters(unet)
    assert trained and all("lora_" in name for name in trained)
    assert set(trained) == set(dpo_runs.initial_lora)
    unmoved = [name for name, p in trained.items() if torch.equal(p.detach().cpu(), dpo_runs.initial_lora[name])]
    assert unmoved == []
    for name, param in unet.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param.detach(), dpo_runs.base_before[name.replace(".base_layer", "")]), name


def test_dpo_output_folder(dpo_runs):
    out = dpo_runs.straight.output_dir
    assert dpo_runs.straight.lora_path == out / "pytorch_lora_weights.safetensors"
    for name in ("pytorch_lora_weights.safetensors", "README.md", "metrics.jsonl", "config.yaml"):
        assert (out / name).is_file(), name
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 4
    card = (out / "README.md").read_text()
    assert "| beta | 50.0 |" in card and "- dpo" in card and "rewards/accuracies" in card
    assert DPOConfig.from_yaml(out / "config.yaml").max_steps == 4


def test_cancel_stops_before_the_next_step_and_saves(dpo_runs):
    cancelled = dpo_runs.cancelled
    assert cancelled.cancelled and cancelled.steps == 0
    assert cancelled.lora_path.is_file()
    assert dpo_runs.halfway.cancelled and dpo_runs.halfway.steps == 2
    assert not dpo_runs.resumed.cancelled and dpo_runs.resumed.steps == 4


def test_resume_equals_an_uninterrupted_run(dpo_runs):
    straight = load_file(dpo_runs.straight.output_dir / "checkpoints" / "step-4" / "trainable.safetensors")
    resumed = load_file(dpo_runs.resumed.output_dir / "checkpoints" / "step-4" / "trainable.safetensors")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    assert dpo_runs.resumed.metrics_history == dpo_runs.straight.metrics_history


def test_fresh_start_refuses_a_folder_with_checkpoints(dpo_runs, pair_dir):
    with pytest.raises(ValueError, match="earlier run"):
        train_dpo(dpo_config(pair_dir, dpo_runs.straight.output_dir), pipe=tiny_pipe())


def test_saved_lora_reloads_in_the_pipeline_and_changes_its_output(dpo_runs):
    pipe = tiny_pipe()
    image = PIL.Image.new("RGB", (64, 64), (40, 90, 220))

    def generate():
        return pipe(
            "a red circle moving left slowly on a blue background", image=image, num_frames=NUM_FRAMES,
            num_inference_steps=2, guidance_scale=1.0, generator=torch.Generator().manual_seed(0), output_type="latent",
        ).frames.numpy()

    base = generate()
    load_lora(pipe, str(dpo_runs.straight.output_dir))
    with_lora = generate()
    unload_lora(pipe)
    np.testing.assert_allclose(generate(), base, atol=1e-6)
    assert np.abs(with_lora - base).max() > 1e-4


@pytest.mark.parametrize("guidance_scale", [1.0, 4.0])
def test_dpo_raises_implicit_accuracy_on_a_fixed_pair(pair_dir, guidance_scale):
    pipe = tiny_pipe()
    cache = encode_pairs(pipe, PreferencePairs.load(pair_dir), NUM_FRAMES, (32, 32), torch.device("cpu"), show_progress=False)
    negative = pipe.encode_prompt([""], torch.device("cpu")).detach() if guidance_scale > 1 else None
    guided = {"negative_embeds": negative, "guidance_scale": guidance_scale}
    unet = pipe.unet
    add_dpo_lora(unet, DPOConfig(), "dpo")
    optimizer = torch.optim.AdamW(trainable_parameters(unet).values(), lr=3e-3)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    latents_w, latents_l, embeds = cache.batch([0], torch.device("cpu"), torch.float32)

    def step():  # the same pair, noise and timestep every time
        return dpo_step(unet, unet, scheduler, latents_w, latents_l, embeds, step_generator(0, 0), beta=50.0 / guidance_scale**2, **guided)

    with torch.no_grad():
        loss_before, before = step()
    assert loss_before.item() == pytest.approx(math.log(2), abs=1e-6)
    margins_before = implicit_margins(unet, scheduler, cache, draws=4, **guided)
    for _ in range(3):
        loss, _ = step()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        loss_after, after = step()
    assert before["rewards/accuracies"] == 0.5
    assert after["rewards/accuracies"] == 1.0
    # Averaged over fresh noise and timesteps (not the one draw it trained on), the LoRA still favours the winner.
    assert implicit_accuracy(margins_before) == 0.5 and torch.all(margins_before == 0)
    assert implicit_accuracy(implicit_margins(unet, scheduler, cache, draws=4, **guided)) == 1.0
    assert after["rewards/margins"] > before["rewards/margins"]
    assert loss_after < loss_before


def test_guided_dpo_compares_the_prediction_the_sampler_follows(pair_dir, tmp_path):
    """With guidance_scale w, DPO's MSEs are those of u + w (c - u), u being the empty prompt's prediction
    (the pipeline's classifier-free guidance); w = 1 is the paper's conditional prediction."""
    pipe = tiny_pipe()
    cache = encode_pairs(pipe, PreferencePairs.load(pair_dir), NUM_FRAMES, (32, 32), torch.device("cpu"), show_progress=False)
    latents, _, embeds = cache.batch([0], torch.device("cpu"), torch.float32)
    negative = pipe.encode_prompt([""], torch.device("cpu")).detach()
    timestep = torch.tensor([500])
    with torch.no_grad():
        cond = pipe.unet(latents, timestep, embeds).sample
        uncond = pipe.unet(latents, timestep, negative).sample
        assert torch.equal(guided_prediction(pipe.unet, latents, timestep, embeds), cond)
        torch.testing.assert_close(guided_prediction(pipe.unet, latents, timestep, embeds, negative, 5.0),
                                   uncond + 5.0 * (cond - uncond), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="empty prompt"):
        guided_prediction(pipe.unet, latents, timestep, embeds, None, 5.0)

    # The winners' term anchors the conditional prediction: at step 0 (LoRA off) the loss is log 2 plus
    # rpo_alpha times the winners' conditional error, not their (larger) guided one.
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    latents_w, latents_l, embeds = cache.batch([0], torch.device("cpu"), torch.float32)
    add_dpo_lora(pipe.unet, DPOConfig(), "dpo")
    with torch.no_grad():
        loss, metrics = dpo_step(pipe.unet, pipe.unet, scheduler, latents_w, latents_l, embeds, step_generator(0, 0), beta=2.0,
                                 rpo_alpha=3.0, negative_embeds=negative, guidance_scale=5.0)
        conditional = dpo_step(pipe.unet, pipe.unet, scheduler, latents_w, latents_l, embeds, step_generator(0, 0), beta=2.0)[1]
    assert loss.item() == pytest.approx(math.log(2) + 3.0 * conditional["mse/model_w"].item(), rel=1e-4)
    assert metrics["mse/model_w"].item() != pytest.approx(conditional["mse/model_w"].item(), rel=0.05)  # DPO compares the guided error
    pipe.unet.delete_adapters("dpo")

    result = train_dpo(dpo_config(pair_dir, tmp_path / "guided", max_steps=2, guidance_scale=5.0, beta=2.0), pipe=pipe)
    assert result.metrics_history[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    # the guided MSEs are not the conditional ones: the logged errors are those of the guided prediction
    plain = train_dpo(dpo_config(pair_dir, tmp_path / "plain", max_steps=1), pipe=tiny_pipe())
    assert result.metrics_history[0]["mse/ref_w"] != pytest.approx(plain.metrics_history[0]["mse/ref_w"], rel=1e-3)
    assert "| guidance_scale (DPO on guided predictions) | 5.0 |" in (result.output_dir / "README.md").read_text()


def test_rpo_alpha_keeps_the_winner_denoised(pair_dir):
    """Plain DPO may let the winner's error rise as long as the loser's rises more; with rpo_alpha the
    trained LoRA denoises the winner better than plain DPO's does, and still favours it."""
    after = {}
    for rpo_alpha in (0.0, 20.0):
        pipe = tiny_pipe()
        cache = encode_pairs(pipe, PreferencePairs.load(pair_dir), NUM_FRAMES, (32, 32), torch.device("cpu"), show_progress=False)
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        latents_w, latents_l, embeds = cache.batch([0], torch.device("cpu"), torch.float32)
        unet = pipe.unet
        add_dpo_lora(unet, DPOConfig(), "dpo")
        torch.manual_seed(0)
        optimizer = torch.optim.AdamW(trainable_parameters(unet).values(), lr=3e-3)
        for step in range(6):
            loss, _ = dpo_step(unet, unet, scheduler, latents_w, latents_l, embeds, step_generator(0, step), beta=50.0,
                               rpo_alpha=rpo_alpha)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        with torch.no_grad():
            after[rpo_alpha] = dpo_step(unet, unet, scheduler, latents_w, latents_l, embeds, step_generator(0, 99), beta=50.0)[1]
    assert after[20.0]["mse/model_w"] < after[0.0]["mse/model_w"]
    assert after[20.0]["rewards/margins"] > 0


# ---------------------------------------------------------------------------------------------- stage 1


def test_stage1_moves_only_its_trainable_set(world_dir, tmp_path):
    pipe = tiny_pipe()
    before = {name: p.detach().clone() for name, p in pipe.unet.named_parameters()}
    stage1_names = set(pipe.unet.stage1_parameters())
    config = Stage1Config(
        data=str(world_dir), output_dir=str(tmp_path / "stage1"), num_frames=NUM_FRAMES, resolution=SIZE, max_steps=3,
        learning_rate=1e-3, gradient_accumulation_steps=2, checkpointing_steps=1, checkpoints_total_limit=2,
    )
    result = train_stage1(config, pipe=pipe)
    moved = {name for name, p in pipe.unet.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert moved == stage1_names
    assert result.steps == 3 and [row["step"] for row in result.metrics_history] == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "stage1" / "checkpoints").iterdir()) == ["step-2", "step-3"]
    reloaded = load_pipeline(str(tmp_path / "stage1"))
    name = next(iter(stage1_names))
    assert torch.equal(dict(reloaded.unet.named_parameters())[name], dict(pipe.unet.named_parameters())[name].detach())


def test_stage1_cached_latents_train_the_same_and_read_each_video_once(world_dir, tmp_path, monkeypatch):
    import huvidpo.training.stage1 as stage1

    reads = []
    real_read = stage1.read_clip
    monkeypatch.setattr(stage1, "read_clip", lambda path, *args, **kwargs: reads.append(path) or real_read(path, *args, **kwargs))
    losses = {}
    for cache in (False, True):
        reads.clear()
        config = Stage1Config(
            data=str(world_dir), output_dir=str(tmp_path / f"cache-{cache}"), num_frames=NUM_FRAMES, resolution=SIZE,
            max_steps=4, learning_rate=1e-3, random_start_frame=False, horizontal_flip=False, cache_latents=cache,
            checkpointing_steps=0,
        )
        losses[cache] = [row["loss"] for row in train_stage1(config, pipe=tiny_pipe()).metrics_history]
        count = len(reads)
    assert count == 2  # two videos, each decoded once, over 4 steps
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)


def test_stage1_prompt_dropout_trains_the_empty_prompt_on_its_share_of_clips(world_dir, tmp_path):
    """The unconditional branch that guidance uses sees video in about ``prompt_dropout`` of the clips."""
    seen = {}
    for dropout in (0.0, 0.5):
        pipe = tiny_pipe()
        with torch.no_grad():
            empty = pipe.encode_prompt([""], "cpu")[0]
        states = []
        pipe.unet.register_forward_pre_hook(lambda module, args: states.extend(args[2]))  # model(noisy, t, text)
        config = Stage1Config(
            data=str(world_dir), output_dir=str(tmp_path / f"dropout-{dropout}"), num_frames=NUM_FRAMES, resolution=SIZE,
            max_steps=12, batch_size=2, learning_rate=1e-3, random_start_frame=False, horizontal_flip=False,
            cache_latents=True, checkpointing_steps=0, prompt_dropout=dropout,
        )
        train_stage1(config, pipe=pipe)
        seen[dropout] = sum(torch.allclose(state, empty) for state in states) / len(states)
    assert seen[0.0] == 0 and 0.25 <= seen[0.5] <= 0.75, seen
    with pytest.raises(ValueError, match="prompt_dropout"):
        Stage1Config(data=str(world_dir), prompt_dropout=1.0)


def test_stage1_data_sources(world_dir):
    from_folder = VideoPromptData.load(world_dir)
    assert len(from_folder) == 2 and all(path.is_file() for path in from_folder.videos)
    from_tuples = VideoPromptData.load([(str(v), p) for v, p in zip(from_folder.videos, from_folder.prompts)])
    assert from_tuples == from_folder


def test_batches_cover_each_epoch_once_per_process():
    per_process = [[batch_indices(5, step, 1, seed=3, num_processes=2, process_index=p)[0] for step in range(5)] for p in (0, 1)]
    stream = [i for step in zip(*per_process) for i in step]
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5))


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "config_class, settings, message",
    [
        (DPOConfig, {"num_frames": 1}, "num_frames"),
        (DPOConfig, {"learning_rate": 0}, "learning_rate"),
        (DPOConfig, {"max_steps": 0}, "max_steps"),
        (DPOConfig, {"mixed_precision": "fp8"}, "mixed_precision"),
        (DPOConfig, {"loss_type": "kto"}, "loss_type"),
        (DPOConfig, {"beta": 0}, "beta"),
        (DPOConfig, {"guidance_scale": 0.5}, "guidance_scale"),
        (DPOConfig, {"lora_rank": 0}, "lora_rank"),
        (DPOConfig, {"lora_target_modules": []}, "lora_target_modules"),
        (DPOConfig, {"resolution": "wide"}, "resolution"),
        (DPOConfig, {"resolution": "60"}, "multiples of 8"),
        (DPOConfig, {"log_with": "mlflow"}, "log_with"),
        (DPOConfig, {"push_to_hub": True}, "hub_model_id"),
        (DPOConfig, {"resume": "/nonexistent/checkpoints/step-3"}, "resume"),
        (Stage1Config, {"lr_warmup_steps": 10}, "constant_with_warmup"),
        (Stage1Config, {"seed": -1}, "seed"),
        (Stage1Config, {"gradient_accumulation_steps": 0}, "gradient_accumulation_steps"),
        (Stage1Config, {"cache_latents": True}, "cache_latents"),
    ],
)
def test_bad_configs_name_the_field(config_class, settings, message):
    with pytest.raises(ValueError, match=message):
        config_class(**settings)


def test_yaml_round_trip_and_unknown_keys(tmp_path):
    config = DPOConfig(data="pairs", beta=10.0, hub_token="hf_secret", lora_target_modules=["to_q"])
    path = config.to_yaml(tmp_path / "dpo.yaml")
    assert "hf_secret" not in path.read_text()
    loaded = DPOConfig.from_yaml(path, max_steps=7)
    assert (loaded.beta, loaded.max_steps, loaded.lora_target_modules, loaded.hub_token) == (10.0, 7, ["to_q"], None)
    with pytest.raises(ValueError, match="Unknown DPOConfig settings.*betta"):
        DPOConfig.from_yaml(path, betta=3)
    path.write_text("learning_rate: 1e-4\nmax_steps: '12'\n")  # YAML reads 1e-4 as text
    assert (DPOConfig.from_yaml(path).learning_rate, DPOConfig.from_yaml(path).max_steps) == (1e-4, 12)
    with pytest.raises(ValueError, match="beta must be a number"):
        DPOConfig.from_yaml(path, beta="high")


def _write_pair_rows(tmp_path, pair_dir, **replace):
    pairs = PreferencePairs.load(pair_dir)
    row = {"prompt": pairs.prompts[0], "video_w": str(pairs.videos_w[0]), "video_l": str(pairs.videos_l[0])}
    return [{**row, **replace}]


def test_malformed_pair_datasets_give_clear_errors(tmp_path, pair_dir):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['video_w'\].*--chosen_column"):
        PreferencePairs.load([{"prompt": "p", "winner": "a.mp4", "video_l": "b.mp4"}])
    with pytest.raises(ValueError, match="Pair 0, column 'video_l'.*does not exist"):
        PreferencePairs.load(_write_pair_rows(tmp_path, pair_dir, video_l=str(tmp_path / "gone.mp4")))
    with pytest.raises(ValueError, match="empty"):
        PreferencePairs.load([])
    with pytest.raises(ValueError, match="Pair 0: the prompt is empty"):
        PreferencePairs.load(_write_pair_rows(tmp_path, pair_dir, prompt=" "))
    with pytest.raises(ValueError, match="has no metadata.jsonl"):
        PreferencePairs.load(tmp_path)
    with pytest.raises(ValueError, match="No preference pair"):
        PreferencePairs.load(str(tmp_path / "missing-folder"))


def test_unreadable_or_short_videos_fail_before_training(tmp_path, pair_dir):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    rows = _write_pair_rows(tmp_path, pair_dir, video_l=str(broken))
    with pytest.raises(ValueError, match="Pair 0, loser: Could not read video"):
        train_dpo(dpo_config(pair_dir, tmp_path / "out"), pipe=tiny_pipe(), dataset=rows)
    assert not (tmp_path / "out" / "checkpoints").exists()
    with pytest.raises(ValueError, match="has 4 frames but num_frames is 8"):
        train_dpo(dpo_config(pair_dir, tmp_path / "out2", num_frames=8), pipe=tiny_pipe())


def test_failed_push_keeps_local_files_and_says_why(tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    def offline(*args, **kwargs):
        raise ConnectionError("no network in tests")

    monkeypatch.setattr(HfApi, "create_repo", offline)
    (tmp_path / "checkpoints" / "step-1").mkdir(parents=True)
    (tmp_path / "pytorch_lora_weights.safetensors").write_bytes(b"weights")
    config = DPOConfig(push_to_hub=True, hub_model_id="someone/huvidpo-lora", hub_token="hf_x", output_dir=str(tmp_path))
    url, error = push_output(config, tmp_path)
    assert url is None and "no network in tests" in error and "local files are intact" in error
    assert (tmp_path / "pytorch_lora_weights.safetensors").read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "pytorch_lora_weights.safetensors"]
