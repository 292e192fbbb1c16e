"""Stage 1 and DPO on tiny real components (CPU, 4-frame 64x64 clips, a few steps)."""

import dataclasses
import math
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch
import yaml
from diffusers import DDPMScheduler
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file

from huvidpo.world.clips import generate_world
from huvidpo.world.tiny import build_tiny_pipeline
from huvidpo.hub import DEFAULT_ADAPTER, LORA_WEIGHT_NAME, load_lora, load_pipeline, unload_lora
from huvidpo.train import parse_command
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
from huvidpo.training.data import TensorShards, build_pair_cache, encode_pairs, write_pair_cache
from huvidpo.training.dpo import add_dpo_lora, guided_prediction, implicit_accuracy, implicit_margins
from huvidpo.training.trainer import PUSH_IGNORE, batch_indices, example_generator, push_output, sample_noise, trainable_parameters

NUM_FRAMES = 4
SIZE = "32"  # pixels: 8x8 latents keep every step well under a second
DPO_METRICS = {
    "step", "loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
    "mse/model_w", "mse/model_l", "mse/ref_w", "mse/ref_l", "lr", "grad_norm",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def lora_file(folder) -> dict[str, torch.Tensor]:
    """A saved LoRA (diffusers format: keys prefixed 'unet.'), keyed as peft names the adapter's weights."""
    return {name.removeprefix("unet."): tensor for name, tensor in load_file(folder / LORA_WEIGHT_NAME).items()}


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
    initial_lora = lora_file(interrupted / "checkpoints" / "step-0")
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


def test_huvidpo_preset_trains_with_the_originals_optimizer_and_lora_dropout(pair_dir, tmp_path):
    """The optimizer a run builds and the LoRA it trains: AdamW eps 1e-3, weight decay 1e-4 and LoRA dropout 0.1
    with preset 'huvidpo'; eps 1e-8, weight decay 1e-2 and no dropout with ours. The card and config.yaml say so."""
    from huvidpo.training.dpo import DPOTrainer

    for preset, (eps, weight_decay, dropout) in {"ours": (1e-8, 1e-2, 0.0), "huvidpo": (1e-3, 1e-4, 0.1)}.items():
        pipe = tiny_pipe()
        out = tmp_path / preset
        trainer = DPOTrainer(dpo_config(pair_dir, out, preset=preset, learning_rate=None, max_steps=1), pipe=pipe)
        trainer.train()
        (group,) = trainer.optimizer.param_groups
        assert (group["eps"], group["weight_decay"], group["lr"]) == (eps, weight_decay, 1e-4), preset
        assert pipe.unet.peft_config[DEFAULT_ADAPTER].lora_dropout == dropout
        layers = [m.lora_dropout[DEFAULT_ADAPTER] for m in pipe.unet.modules() if hasattr(m, "lora_dropout")]
        assert layers and all(getattr(layer, "p", 0.0) == dropout for layer in layers), preset
        assert trainer.model.training  # dropout acts while training (train mode)
        assert f"eps {eps:g}, weight decay {weight_decay:g} (preset {preset})" in (out / "README.md").read_text()
        saved = yaml.safe_load((out / "config.yaml").read_text())
        assert (saved["preset"], saved["adam_epsilon"], saved["lora_dropout"]) == (preset, eps, dropout)



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
    lora = get_peft_model_state_dict(unet, adapter_name=DEFAULT_ADAPTER)
    assert len(lora) == len(trained) and set(lora) == set(dpo_runs.initial_lora)
    unmoved = [name for name, p in lora.items() if torch.equal(p.detach().cpu(), dpo_runs.initial_lora[name])]
    assert unmoved == []
    for name, param in unet.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param.detach(), dpo_runs.base_before[name.replace(".base_layer", "")]), name


def test_the_next_round_with_the_previous_lora_as_reference_starts_from_it_at_log2(dpo_runs, pair_dir, tmp_path):
    previous = dpo_runs.straight.output_dir  # round 1's LoRA (4 steps)
    rounds = {"reference": "previous", "previous_lora": str(previous)}
    stop = threading.Event()
    stop.set()  # cancelled before step 1: the checkpoint holds the LoRA it starts from
    train_dpo(dpo_config(pair_dir, tmp_path / "start", **rounds), stop_event=stop, pipe=tiny_pipe())
    assert lora_file(tmp_path / "start" / "checkpoints" / "step-0").keys() == lora_file(previous).keys()
    assert all(torch.equal(lora_file(tmp_path / "start" / "checkpoints" / "step-0")[name], tensor)
               for name, tensor in lora_file(previous).items())

    first = {}
    for name, extra in {"base": {}, "previous": rounds}.items():
        pipe = tiny_pipe()
        result = train_dpo(dpo_config(pair_dir, tmp_path / name, max_steps=2, **extra), pipe=pipe)
        first[name] = result.metrics_history[0]
    # policy == reference at step 0, and the reference is the previous LoRA, not the base (same pairs and noise)
    assert first["previous"]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["previous"]["mse/model_w"] == first["previous"]["mse/ref_w"]
    assert first["previous"]["mse/ref_w"] != pytest.approx(first["base"]["mse/ref_w"], rel=1e-6)
    # the frozen reference still holds the previous LoRA after training; the trained one moved away from it
    reference = get_peft_model_state_dict(pipe.unet, adapter_name="reference")
    trained = get_peft_model_state_dict(pipe.unet, adapter_name=DEFAULT_ADAPTER)
    saved = lora_file(previous)
    assert all(torch.equal(reference[name].cpu(), saved[name]) for name in saved)
    assert any(not torch.equal(trained[name].detach().cpu(), saved[name]) for name in saved)
    assert set(trainable_parameters(pipe.unet)) == {name for name, _ in pipe.unet.named_parameters()
                                                     if f".{DEFAULT_ADAPTER}." in name}


@pytest.mark.parametrize("overrides, message", [
    ({"reference": "previous"}, "needs previous_lora"),
    ({"previous_lora": "somewhere"}, "only used with reference 'previous'"),
    ({"reference": "previous", "previous_lora": "/no/such/run"}, "no LoRA folder"),
])
def test_the_reference_setting_names_what_is_missing(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        DPOConfig(data="x", output_dir=str(tmp_path), **overrides)


def test_a_previous_lora_with_other_lora_settings_is_refused(dpo_runs, pair_dir, tmp_path):
    rounds = {"reference": "previous", "previous_lora": str(dpo_runs.straight.output_dir)}
    with pytest.raises(ValueError, match="other LoRA settings"):
        train_dpo(dpo_config(pair_dir, tmp_path / "rank", lora_rank=4, **rounds), pipe=tiny_pipe())
    with pytest.raises(ValueError, match="lora_alpha 32, this run with 8"):
        train_dpo(dpo_config(pair_dir, tmp_path / "alpha", lora_alpha=8, **rounds), pipe=tiny_pipe())


def test_dpo_output_folder(dpo_runs):
    out = dpo_runs.straight.output_dir
    assert dpo_runs.straight.lora_path == out / "pytorch_lora_weights.safetensors"
    for name in ("pytorch_lora_weights.safetensors", "README.md", "metrics.jsonl", "config.yaml"):
        assert (out / name).is_file(), name
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 4
    card = (out / "README.md").read_text()
    assert "| beta | 50.0 |" in card and "- dpo" in card and "rewards/accuracies" in card
    # the embedded default has no Hub id: named in the text, no base_model, and no local path anywhere
    assert "huvidpo-tiny (embedded default)" in card and "base_model" not in card and str(out.parent) not in card
    assert "library_name: diffusers" in card and "datasets:" not in card
    _, config, _ = parse_command(["dpo", "--config", str(out / "config.yaml")])  # the saved settings read back
    assert (config.max_steps, config.learning_rate, config.num_frames, config.resolution) == (4, 1e-3, NUM_FRAMES, SIZE)


def test_a_dpo_checkpoint_is_the_lora_not_the_unet(dpo_runs):
    checkpoint = dpo_runs.straight.output_dir / "checkpoints" / "step-4"
    assert lora_file(checkpoint).keys() == lora_file(dpo_runs.straight.output_dir).keys()
    weights = [p for p in checkpoint.iterdir() if p.suffix in (".safetensors", ".bin")]
    assert sorted(p.name for p in weights) == ["optimizer.bin", LORA_WEIGHT_NAME]
    unet_bytes = sum(p.numel() * p.element_size() for p in dpo_runs.straight_pipe.unet.parameters())
    assert sum(p.stat().st_size for p in weights) < unet_bytes / 4
    pipe = tiny_pipe()
    load_lora(pipe, str(checkpoint))  # a checkpoint's LoRA loads like the final one
    assert pipe.get_list_adapters()["unet"] == [DEFAULT_ADAPTER]


def test_cancel_stops_before_the_next_step_and_saves(dpo_runs):
    cancelled = dpo_runs.cancelled
    assert cancelled.cancelled and cancelled.steps == 0
    assert cancelled.lora_path.is_file()
    assert dpo_runs.halfway.cancelled and dpo_runs.halfway.steps == 2
    assert not dpo_runs.resumed.cancelled and dpo_runs.resumed.steps == 4


def test_resume_equals_an_uninterrupted_run(dpo_runs):
    checkpoints = dpo_runs.resumed.output_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-0", "step-2", "step-4"]
    straight = lora_file(dpo_runs.straight.output_dir / "checkpoints" / "step-4")
    resumed = lora_file(checkpoints / "step-4")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    assert dpo_runs.resumed.metrics_history == dpo_runs.straight.metrics_history


def test_resume_with_other_lora_settings_is_refused(dpo_runs, pair_dir, tmp_path):
    checkpoint = dpo_runs.straight.output_dir / "checkpoints" / "step-4"
    with pytest.raises(ValueError, match="other LoRA settings.*lora_rank"):
        train_dpo(dpo_config(pair_dir, tmp_path / "other", resume=str(checkpoint), lora_rank=4), pipe=tiny_pipe())
    with pytest.raises(ValueError, match="not a training checkpoint"):
        train_dpo(dpo_config(pair_dir, tmp_path / "other", resume=str(pair_dir)), pipe=tiny_pipe())


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


def test_the_pair_cache_on_disk_reads_what_was_encoded_and_is_reused(pair_dir, tmp_path, monkeypatch):
    import huvidpo.training.data as data

    pipe, pairs = tiny_pipe(), PreferencePairs.load(pair_dir)
    in_ram = encode_pairs(pipe, pairs, NUM_FRAMES, (32, 32), torch.device("cpu"), show_progress=False)
    on_disk = build_pair_cache(pipe, pairs, NUM_FRAMES, (32, 32), torch.device("cpu"), cache_dir=tmp_path)
    assert isinstance(on_disk.latents, TensorShards) and on_disk.latents.paths[0].suffix == ".safetensors"
    for indices in ([0], [1, 0, 1]):
        for ram, disk in zip(in_ram.batch(indices, "cpu", torch.float32), on_disk.batch(indices, "cpu", torch.float32)):
            assert torch.equal(ram, disk)
    monkeypatch.setattr(data, "read_clip", lambda *args, **kwargs: pytest.fail("the cache was encoded again"))
    again = build_pair_cache(pipe, pairs, NUM_FRAMES, (32, 32), torch.device("cpu"), cache_dir=tmp_path)
    assert torch.equal(again.batch([1], "cpu", torch.float32)[0], in_ram.batch([1], "cpu", torch.float32)[0])


def test_tensor_shards_return_rows_across_shards_in_the_order_asked(tmp_path):
    rows = torch.randn(50, 3, 2, generator=torch.Generator().manual_seed(0))
    cache = write_pair_cache(tmp_path / "cache", rows.split(7), [rows[:4, 0]], torch.arange(25), torch.arange(25, 50),
                             torch.arange(25) % 4, shard_bytes=200)
    assert len(cache.latents.paths) > 3 and len(cache.latents) == 50
    order = torch.tensor([49, 0, 13, 13, 27])
    assert torch.equal(cache.latents[order], rows[order])
    with pytest.raises(IndexError):
        cache.latents[torch.tensor([50])]


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
        return dpo_step(unet, unet, scheduler, latents_w, latents_l, embeds, example_generator(0, 0), beta=50.0 / guidance_scale**2, **guided)

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
        loss, metrics = dpo_step(pipe.unet, pipe.unet, scheduler, latents_w, latents_l, embeds, example_generator(0, 0), beta=2.0,
                                 rpo_alpha=3.0, negative_embeds=negative, guidance_scale=5.0)
        conditional = dpo_step(pipe.unet, pipe.unet, scheduler, latents_w, latents_l, embeds, example_generator(0, 0), beta=2.0)[1]
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
            loss, _ = dpo_step(unet, unet, scheduler, latents_w, latents_l, embeds, example_generator(0, step), beta=50.0,
                               rpo_alpha=rpo_alpha)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        with torch.no_grad():
            after[rpo_alpha] = dpo_step(unet, unet, scheduler, latents_w, latents_l, embeds, example_generator(0, 99), beta=50.0)[1]
    assert after[20.0]["mse/model_w"] < after[0.0]["mse/model_w"]
    assert after[20.0]["rewards/margins"] > 0


def test_dpo_timestep_range_is_where_the_loss_is_taken(pair_dir, tmp_path):
    """min_timestep/max_timestep restrict the noise levels DPO trains at (every draw inside them, the
    default all of them), are written on the model card, and a range past the model's timesteps is refused."""
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    generator = torch.Generator().manual_seed(0)
    drawn = torch.cat([sample_noise(scheduler, (64, 1), generator, "cpu", torch.float32, (700, 900))[1] for _ in range(8)])
    assert drawn.min() >= 700 and drawn.max() < 900 and drawn.unique().numel() > 50
    everything = torch.cat([sample_noise(scheduler, (64, 1), generator, "cpu", torch.float32)[1] for _ in range(8)])
    assert everything.min() < 100 and everything.max() >= 900

    result = train_dpo(dpo_config(pair_dir, tmp_path / "high", max_steps=1, min_timestep=600), pipe=tiny_pipe())
    assert "| timesteps | [600, T) |" in (result.output_dir / "README.md").read_text()
    with pytest.raises(ValueError, match="go past the model's 1000 training timesteps"):
        train_dpo(dpo_config(pair_dir, tmp_path / "past", max_steps=1, max_timestep=2000), pipe=tiny_pipe())


# ---------------------------------------------------------------------------------------------- stage 1


def test_stage1_moves_only_its_trainable_set(world_dir, tmp_path):
    """... and its text encoder encodes the prompts before the first step and never during the steps."""
    pipe = tiny_pipe()
    before = {name: p.detach().clone() for name, p in pipe.unet.named_parameters()}
    calls = []
    pipe.text_encoder.register_forward_hook(lambda *_: calls.append("text"))
    pipe.unet.register_forward_hook(lambda *_: calls.append("unet"))
    stage1_names = set(pipe.unet.stage1_parameters())
    config = Stage1Config(
        data=str(world_dir), output_dir=str(tmp_path / "stage1"), num_frames=NUM_FRAMES, resolution=SIZE, max_steps=3,
        learning_rate=1e-3, gradient_accumulation_steps=2, checkpointing_steps=1, checkpoints_total_limit=2,
    )
    result = train_stage1(config, pipe=pipe)
    moved = {name for name, p in pipe.unet.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert moved == stage1_names
    assert "text" in calls[:calls.index("unet")] and "text" not in calls[calls.index("unet"):]
    assert result.steps == 3 and [row["step"] for row in result.metrics_history] == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "stage1" / "checkpoints").iterdir()) == ["step-2", "step-3"]
    reloaded = load_pipeline(str(tmp_path / "stage1"))
    name = next(iter(stage1_names))
    assert torch.equal(dict(reloaded.unet.named_parameters())[name], dict(pipe.unet.named_parameters())[name].detach())


def test_stage1_resume_equals_an_uninterrupted_run(world_dir, tmp_path):
    """Stage 1's checkpoints hold its trainable set (not the UNet); resumed runs replay the same augmentation."""
    def config(name, **overrides):
        return Stage1Config(data=str(world_dir), output_dir=str(tmp_path / name), num_frames=NUM_FRAMES, resolution=SIZE,
                            max_steps=3, learning_rate=1e-3, checkpointing_steps=0, **overrides)

    straight_pipe = tiny_pipe()
    straight = train_stage1(config("straight"), pipe=straight_pipe)
    stop = threading.Event()
    halfway = train_stage1(config("resumed"), callbacks=[lambda row: row["step"] == 1 and stop.set()], stop_event=stop, pipe=tiny_pipe())
    assert halfway.cancelled and halfway.steps == 1
    assert sorted(load_file(tmp_path / "resumed" / "checkpoints" / "step-1" / "trainable.safetensors")) == sorted(
        straight_pipe.unet.stage1_parameters())
    resumed_pipe = tiny_pipe()
    resumed = train_stage1(config("resumed", resume=True), pipe=resumed_pipe)
    assert resumed.metrics_history == straight.metrics_history
    for name, param in straight_pipe.unet.stage1_parameters().items():
        assert torch.equal(param, resumed_pipe.unet.stage1_parameters()[name]), name


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
        (Stage1Config, {"prompt_dropout": 1.0}, "prompt_dropout"),
        (DPOConfig, {"max_steps": 10**12}, "max_steps must be an integer from 1 to 1000000"),
        (DPOConfig, {"max_steps": 2.5}, "max_steps must be an integer"),
        (DPOConfig, {"seed": True}, "seed must be an integer"),
        (DPOConfig, {"beta": 1e308}, "beta must be a number from"),
        (DPOConfig, {"learning_rate": float("nan")}, "learning_rate"),
        (DPOConfig, {"lora_rank": 10**9}, "lora_rank"),
        (DPOConfig, {"hub_model_id": "a/b/c"}, "hub_model_id"),
    ],
)
def test_bad_configs_name_the_field(config_class, settings, message):
    with pytest.raises(ValueError, match=message):
        config_class(**settings)


def test_every_range_in_the_metadata_is_enforced():
    """The ranges the CLI shows and the studio reads are the ones the config checks: the bounds pass, beyond fails."""
    bounded = [f for f in dataclasses.fields(DPOConfig) if "min" in f.metadata]
    assert {"max_steps", "learning_rate", "beta", "lora_rank", "seed", "num_frames"} <= {f.name for f in bounded}
    for f in bounded:
        low, high = f.metadata["min"], f.metadata["max"]
        extra = {"lr_scheduler": "constant_with_warmup"} if f.name == "lr_warmup_steps" else {}
        DPOConfig(**{f.name: low, **extra})
        DPOConfig(**{f.name: high, **extra})
        above = high + 1 if isinstance(high, int) else high * 2
        with pytest.raises(ValueError, match=rf"^{f.name} must be .* from .* to .*, got"):
            DPOConfig(**{f.name: above, **extra})


def test_yaml_round_trip_and_unknown_keys(tmp_path, capsys):
    path = tmp_path / "dpo.yaml"
    path.write_text(yaml.safe_dump(DPOConfig(data="pairs", beta=10.0, hub_token="hf_secret", lora_target_modules=["to_q"]).to_dict()))
    assert "hf_secret" not in path.read_text()
    _, loaded, _ = parse_command(["dpo", "--config", str(path), "--max_steps", "7"])
    assert (loaded.beta, loaded.max_steps, loaded.lora_target_modules, loaded.hub_token) == (10.0, 7, ["to_q"], None)
    path.write_text("betta: 3\n")
    with pytest.raises(SystemExit):
        parse_command(["dpo", "--config", str(path)])
    assert "unknown settings ['betta']" in capsys.readouterr().err
    path.write_text("learning_rate: 1e-4\nmax_steps: '12'\n")  # YAML reads 1e-4 as text
    _, loaded, _ = parse_command(["dpo", "--config", str(path)])
    assert (loaded.learning_rate, loaded.max_steps) == (1e-4, 12)
    path.write_text("beta: high\n")
    with pytest.raises(SystemExit):
        parse_command(["dpo", "--config", str(path)])
    assert "--beta: invalid float value: 'high'" in capsys.readouterr().err


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


def test_pair_sources_read_through_datasets_agree(tmp_path, pair_dir):
    """A folder (relative paths, extra columns, as the studio exports), its .jsonl, a Dataset, a DatasetDict and a
    list of rows (a video column as datasets' Video feature stores it) give the same pairs."""
    import datasets

    from_folder = PreferencePairs.load(pair_dir)
    assert len(from_folder) == 2 and all(p.is_absolute() and p.is_file() for p in from_folder.videos_w + from_folder.videos_l)
    assert PreferencePairs.load(pair_dir / "metadata.jsonl") == from_folder
    rows = [{"prompt": p, "video_w": str(w), "video_l": str(l)} for p, w, l in zip(*vars(from_folder).values())]
    assert PreferencePairs.load(datasets.Dataset.from_list(rows)) == from_folder
    assert PreferencePairs.load(datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})) == from_folder
    assert PreferencePairs.load([{**row, "video_w": {"path": row["video_w"], "bytes": None}} for row in rows]) == from_folder
    renamed = [{"caption": r["prompt"], "chosen": r["video_w"], "rejected": r["video_l"]} for r in rows]
    assert PreferencePairs.load(renamed, "caption", "chosen", "rejected") == from_folder


def test_unreadable_pair_files_and_unreachable_hub_datasets_are_explained(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "metadata.jsonl").write_text('{"prompt": "a", "video_w": "w.mp4", "video_l": "l.mp4"}\nnot json\n')
    with pytest.raises(ValueError, match=r"metadata.jsonl is not valid JSON lines"):
        PreferencePairs.load(folder)
    (folder / "metadata.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty"):
        PreferencePairs.load(folder)
    with pytest.raises(ValueError, match="Hub dataset 'someone/not-cached-pairs' could not be loaded.*hf download"):
        PreferencePairs.load("someone/not-cached-pairs")  # tests run offline


def test_unreadable_or_short_videos_fail_before_training(tmp_path, pair_dir):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    rows = _write_pair_rows(tmp_path, pair_dir, video_l=str(broken))
    with pytest.raises(ValueError, match="Pair 0, loser: Could not read video"):
        train_dpo(dpo_config(pair_dir, tmp_path / "out"), pipe=tiny_pipe(), dataset=rows)
    assert not (tmp_path / "out" / "checkpoints").exists()
    with pytest.raises(ValueError, match="has 4 frames but num_frames is 8"):
        train_dpo(dpo_config(pair_dir, tmp_path / "out2", num_frames=8), pipe=tiny_pipe())


def test_push_uploads_the_result_without_checkpoints_caches_or_logs(tmp_path, monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    calls = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: calls.setdefault("create", (repo_id, kwargs)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kwargs: calls.setdefault("upload", kwargs))
    for name in ("pytorch_lora_weights.safetensors", "README.md", "metrics.jsonl", "config.yaml",
                 "checkpoints/step-1/optimizer.bin", "checkpoints/step-1/pytorch_lora_weights.safetensors",
                 "checkpoints/step-1/random_states_0.pkl", "cache/pairs-0123.pt", "logs/huvidpo-dpo/events"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    config = DPOConfig(push_to_hub=True, hub_model_id="someone/huvidpo-lora", hub_token="hf_x", hub_private=False, output_dir=str(tmp_path))
    assert push_output(config, tmp_path) == ("https://huggingface.co/someone/huvidpo-lora", None)
    assert calls["create"] == ("someone/huvidpo-lora", {"repo_type": "model", "private": False, "exist_ok": True})
    assert calls["upload"]["ignore_patterns"] == PUSH_IGNORE and calls["upload"]["folder_path"] == str(tmp_path)
    files = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()]
    uploaded = sorted(filter_repo_objects(files, ignore_patterns=PUSH_IGNORE))  # upload_folder's own filter
    assert uploaded == ["README.md", "config.yaml", "metrics.jsonl", "pytorch_lora_weights.safetensors"]


def test_push_without_a_token_says_how_to_log_in(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    config = DPOConfig(push_to_hub=True, hub_model_id="someone/huvidpo-lora", output_dir=str(tmp_path))
    url, error = push_output(config, tmp_path)
    assert url is None and "no Hub token" in error and "hf auth login" in error and "local files are intact" in error


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
