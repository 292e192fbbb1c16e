"""Every model family behind one interface (huvidpo.backends), each on a tiny random pipeline built in code.

One table of cases feeds every generic test (peft's habit): a clip that plays, a DPO run that moves only the LoRA,
and the saved LoRA loaded back by diffusers' own loader of the family's pipeline, changing what it generates.
"""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from peft.utils import get_peft_model_state_dict

from huvidpo.backends import ANIMATEDIFF, BACKENDS, HUVIDPO, WAN, backend_for
from huvidpo.backends.base import diffusion_input_and_target, flow_matching_input_and_target
from huvidpo.data.video import probe_video, read_video, write_video
from huvidpo.generate import GenerationSettings, generate
from huvidpo.hub import DEFAULT_ADAPTER, LORA_WEIGHT_NAME, load_pipeline
from huvidpo.training import DPOConfig, train_dpo, write_world_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 32
# Frames per clip: Wan's causal VAE takes 1 + 4k frames (5 -> 2 latent frames); the others take any count.
FRAMES = {"huvidpo": 4, "wan": 5, "animatediff": 4}
CASES = [pytest.param(backend, id=name) for name, backend in BACKENDS.items()]


def clip_settings(backend, **overrides) -> GenerationSettings:
    values = dict(prompt="a red circle moving left on a blue background", frames=FRAMES[backend.name], steps=2,
                  image_steps=2, guidance=4.0, seed=0, height=SIZE, width=SIZE)
    return GenerationSettings(**{**values, **overrides})


@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory) -> dict[int, Path]:
    return {frames: write_world_pairs(tmp_path_factory.mktemp(f"pairs{frames}"), 2, num_frames=frames)
            for frames in set(FRAMES.values())}


@pytest.fixture(scope="module")
def dpo_runs(pair_dirs, tmp_path_factory):
    """Per backend: the denoiser's weights before, a 2-step DPO run's result, its pipeline, its metrics rows, and
    the order its text encoder and denoiser were called in ("text" / "denoiser", one entry per call)."""
    runs = {}
    for name, backend in BACKENDS.items():
        pipe = backend.tiny_pipeline(seed=0)
        before = {key: p.detach().clone() for key, p in backend.denoiser(pipe).named_parameters()}
        calls = []
        pipe.text_encoder.register_forward_hook(lambda *_: calls.append("text"))
        backend.denoiser(pipe).register_forward_hook(lambda *_: calls.append("denoiser"))
        config = DPOConfig(data=str(pair_dirs[FRAMES[name]]), output_dir=str(tmp_path_factory.mktemp(f"dpo-{name}")),
                           num_frames=FRAMES[name], resolution=str(SIZE), max_steps=2, learning_rate=1e-2,
                           checkpointing_steps=0, lora_rank=4, lora_alpha=4)
        rows = []
        result = train_dpo(config, callbacks=[rows.append], pipe=pipe)
        runs[name] = (before, result, pipe, rows, calls)
    return runs


def test_backend_for_reads_model_index_pipelines_and_denoisers(tmp_path):
    """One rule picks the family: the saved folder's model_index.json, the pipeline's class, the denoiser's class;
    load_pipeline gives each folder its own pipeline class."""
    for name, backend in BACKENDS.items():
        pipe = backend.tiny_pipeline(seed=0)
        folder = tmp_path / name
        pipe.save_pretrained(folder)
        assert backend_for(folder) is backend
        assert backend_for(pipe) is backend
        assert backend_for(backend.denoiser(pipe)) is backend
        assert type(load_pipeline(str(folder))) is backend.pipeline_class
    assert backend_for({"_class_name": "StableDiffusionPipeline", "unet": [], "vae": []}) is HUVIDPO  # inflated on load


@pytest.mark.parametrize("backend", CASES)
def test_generates_a_playable_clip(backend, tmp_path):
    pipe = backend.tiny_pipeline(seed=0)
    frames, first = generate(pipe, clip_settings(backend))
    assert frames.shape == (FRAMES[backend.name], SIZE, SIZE, 3)
    assert np.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1
    assert first.size == (SIZE, SIZE)
    video = write_video(frames, tmp_path / "clip.mp4", fps=8)
    assert read_video(video).shape == (FRAMES[backend.name], SIZE, SIZE, 3)
    again, _ = generate(pipe, clip_settings(backend))
    assert np.array_equal(frames, again)  # the seed decides the clip


@pytest.mark.parametrize("backend", [WAN, ANIMATEDIFF], ids=["wan", "animatediff"])
def test_text_to_video_families_refuse_a_first_frame_and_say_why(backend):
    import PIL.Image

    pipe = backend.tiny_pipeline(seed=0)
    with pytest.raises(ValueError, match="text alone"):
        generate(pipe, clip_settings(backend), image=PIL.Image.new("RGB", (SIZE, SIZE)))


def test_wan_frame_counts_are_one_plus_multiples_of_four():
    pipe = WAN.tiny_pipeline(seed=0)
    with pytest.raises(ValueError, match=r"^frames: Wan 2\.1 takes 1 \+ 4k frames .*got 4\. Nearest: 1 or 5\.$"):
        generate(pipe, clip_settings(WAN, frames=4))


def test_each_family_declares_its_frame_rule_and_default():
    """The rule each family states (and the pipeline confirms), its default, and the nearest valid counts."""
    assert [(b.name, b.default_frames) for b in BACKENDS.values()] == [("huvidpo", 16), ("wan", 33), ("animatediff", 16)]
    assert all(backend.takes_frames(backend.default_frames) for backend in BACKENDS.values())
    assert (WAN.nearest_frames(8), WAN.nearest_frames(9), WAN.frames_within(32)) == ([5, 9], [9], 29)
    assert HUVIDPO.nearest_frames(1) == [2] and not HUVIDPO.takes_frames(1)
    adapter_pipe = ANIMATEDIFF.tiny_pipeline(seed=0)
    most = adapter_pipe.unet.config.motion_max_seq_length
    assert ANIMATEDIFF.nearest_frames(most + 5, adapter_pipe) == [most]
    with pytest.raises(ValueError, match=rf"^num_frames: AnimateDiff takes 1 to {most} frames; got {most + 1}\. "
                                         rf"Nearest: {most}\.$"):
        ANIMATEDIFF.check_num_frames(most + 1, adapter_pipe, name="num_frames")


@pytest.mark.parametrize("backend", CASES)
def test_dpo_moves_only_the_lora(backend, dpo_runs):
    before, result, pipe, rows, _ = dpo_runs[backend.name]
    denoiser = backend.denoiser(pipe)
    assert result.steps == 2 and rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy == reference at 0
    moved, lora_moved = [], []
    for key, param in denoiser.named_parameters():
        if "lora_" in key:
            lora_moved.append(not torch.equal(param.detach(), torch.zeros_like(param)) if "lora_B" in key else True)
        elif not torch.equal(param.detach(), before[key.replace(".base_layer", "")]):  # peft wraps the layers
            moved.append(key)
    assert moved == []
    assert lora_moved and all(lora_moved)  # every B (zero at the start) took a step


# The fixture's 2-step runs before the text encoder left the accelerator during training (2892f54, one thread): the
# losses and the summed |LoRA| after the run. Moving the text encoder changes no number, on any device.
DPO_REGRESSION = {
    "huvidpo": ([0.6931471824645996, 0.7017640471458435], 3710.353528407759, 203.5948450830765),
    "wan": ([0.6931471824645996, 0.6974973082542419], 212.17273743404076, 12.444287491496652),
    "animatediff": ([0.6931471824645996, 0.6942087411880493], 6300.104626755463, 405.7034958046861),
}


@pytest.mark.parametrize("backend", CASES)
def test_the_text_encoder_only_encodes_before_the_steps_and_the_lora_is_unchanged(backend, dpo_runs):
    """The text encoder runs while the pairs are encoded, then never again: no call once the denoiser's first
    call (step 1) has happened; the run trains the LoRA it trained before the encoder left the accelerator."""
    _, _, pipe, rows, calls = dpo_runs[backend.name]
    first_step = calls.index("denoiser")
    assert "text" in calls[:first_step] and "text" not in calls[first_step:]
    losses, lora_sum, lora_b_sum = DPO_REGRESSION[backend.name]
    lora = {key: p.detach().double() for key, p in backend.denoiser(pipe).named_parameters() if "lora_" in key}
    assert [row["loss"] for row in rows] == pytest.approx(losses, rel=1e-5)
    # Adam steps a parameter by about the learning rate (1e-2) whatever its gradient's size, so a gradient within
    # float noise of zero steps either way on another CPU (Wan's sum moved by 0.035 on one, its losses not at all):
    # the sums may differ by a few such steps, 0.1 in all, beside the relative 1e-4.
    assert sum(p.abs().sum() for p in lora.values()).item() == pytest.approx(lora_sum, rel=1e-4, abs=0.1)
    assert sum(p.abs().sum() for key, p in lora.items() if "lora_B" in key).item() == pytest.approx(lora_b_sum, rel=1e-4, abs=0.1)


def test_training_steps_run_with_the_text_encoder_in_cpu_memory_and_it_comes_back(monkeypatch):
    """What the trainer wraps its loop in: on an accelerator (a CUDA device here, by name: nothing runs on it) the
    text encoder goes to the CPU for the loop and back where it was after it, even when the loop fails; on a CPU
    nothing moves."""
    from huvidpo.training.trainer import text_encoder_offloaded

    pipe = WAN.tiny_pipeline(seed=0)
    moves = []
    move = pipe.text_encoder.to
    monkeypatch.setattr(pipe.text_encoder, "to", lambda device: moves.append(str(device)) or move(device))
    with text_encoder_offloaded(pipe, torch.device("cuda")):
        assert moves == ["cpu"]
    assert moves == ["cpu", "cpu"]  # back to its device before the loop (the CPU here)
    with pytest.raises(RuntimeError, match="step failed"), text_encoder_offloaded(pipe, torch.device("cuda", 1)):
        raise RuntimeError("step failed")
    assert len(moves) == 4
    with text_encoder_offloaded(pipe, torch.device("cpu")):
        pass
    assert len(moves) == 4


@pytest.mark.parametrize("backend", CASES)
def test_saved_lora_loads_with_the_familys_own_diffusers_loader(backend, dpo_runs):
    _, result, trained_pipe, *_ = dpo_runs[backend.name]
    assert result.lora_path == Path(result.output_dir) / LORA_WEIGHT_NAME
    pipe = backend.tiny_pipeline(seed=0)
    base, _ = generate(pipe, clip_settings(backend))
    pipe.load_lora_weights(str(result.output_dir), adapter_name="dpo")  # diffusers' loader, e.g. WanPipeline's
    loaded = get_peft_model_state_dict(backend.denoiser(pipe), adapter_name="dpo")
    trained = get_peft_model_state_dict(backend.denoiser(trained_pipe), adapter_name=DEFAULT_ADAPTER)
    assert loaded.keys() == trained.keys()
    assert all(torch.equal(loaded[key], trained[key]) for key in trained)
    frames, _ = backend.generate(pipe, clip_settings(backend))  # as loaded (huvidpo.generate applies settings.lora)
    assert np.abs(frames - base).max() > 1e-4


def test_animatediff_lora_on_the_motion_modules_only_trains_and_loads_as_a_motion_lora(pair_dirs, tmp_path):
    """lora_target_modules ['motion']: a LoRA on every motion module's attention and nowhere else, trained (every B
    moved, nothing else), and loaded back by AnimateDiffPipeline.load_lora_weights onto the motion modules alone;
    'spatial' is the complement, and the default covers both."""
    from huvidpo.training.dpo import add_dpo_lora

    def lora_modules(pipe) -> set[str]:
        return {key.split(".lora_")[0] for key in get_peft_model_state_dict(pipe.unet, adapter_name=DEFAULT_ADAPTER)}

    pipe = ANIMATEDIFF.tiny_pipeline(seed=0)
    before = {key: p.detach().clone() for key, p in pipe.unet.named_parameters()}
    config = DPOConfig(data=str(pair_dirs[FRAMES["animatediff"]]), output_dir=str(tmp_path / "motion"),
                       num_frames=FRAMES["animatediff"], resolution=str(SIZE), max_steps=2, learning_rate=1e-2,
                       checkpointing_steps=0, lora_rank=4, lora_alpha=4, lora_target_modules=["motion"])
    result = train_dpo(config, pipe=pipe)
    motion = lora_modules(pipe)
    projections = {name for name, _ in pipe.unet.named_modules() if name.endswith(("to_q", "to_k", "to_v", "to_out.0"))
                   and "lora_" not in name and "base_layer" not in name}
    assert motion == {name for name in projections if "motion_modules." in name} and motion
    for key, param in pipe.unet.named_parameters():
        if "lora_B" in key:
            assert "motion_modules." in key and torch.count_nonzero(param)
        elif "lora_" not in key:
            assert torch.equal(param.detach(), before[key.replace(".base_layer", "")])

    loaded = ANIMATEDIFF.tiny_pipeline(seed=0)
    loaded.load_lora_weights(str(result.output_dir), adapter_name="motion")
    weights = get_peft_model_state_dict(loaded.unet, adapter_name="motion")
    trained = get_peft_model_state_dict(pipe.unet, adapter_name=DEFAULT_ADAPTER)
    assert weights.keys() == trained.keys() and all(torch.equal(weights[key], trained[key]) for key in trained)
    assert all("motion_modules." in key for key in weights)

    spatial = ANIMATEDIFF.tiny_pipeline(seed=0)
    add_dpo_lora(spatial.unet, DPOConfig(output_dir=str(tmp_path), lora_target_modules=["spatial"]), DEFAULT_ADAPTER)
    assert lora_modules(spatial) == projections - motion and lora_modules(spatial)
    both = ANIMATEDIFF.tiny_pipeline(seed=0)
    add_dpo_lora(both.unet, DPOConfig(output_dir=str(tmp_path)), DEFAULT_ADAPTER)
    assert lora_modules(both) == projections  # the default: today's behaviour
    with pytest.raises(ValueError, match=r"give module names or one of its presets \['motion', 'spatial'\]"):
        add_dpo_lora(ANIMATEDIFF.tiny_pipeline(seed=0).unet,
                     DPOConfig(output_dir=str(tmp_path), lora_target_modules=["temporal"]), DEFAULT_ADAPTER)


def test_flow_matching_input_is_the_straight_path_and_the_target_its_velocity():
    scheduler = WAN.training_scheduler(WAN.tiny_pipeline(seed=0))
    x0, noise = torch.randn(3, 4, 2, 4, 4), torch.randn(3, 4, 2, 4, 4)
    t = torch.tensor([999, 500, 0])
    noisy, target, model_t = flow_matching_input_and_target(scheduler, x0, noise, t)
    sigma = scheduler.sigmas[torch.tensor([0, 499, 999])].view(-1, 1, 1, 1, 1)
    assert torch.allclose(noisy, (1 - sigma) * x0 + sigma * noise)
    assert torch.equal(noisy[0], noise[0])  # t = T - 1 is pure noise
    assert torch.allclose(target, noise - x0)
    assert torch.allclose(model_t, sigma.flatten() * 1000)
    assert model_t[0] > model_t[1] > model_t[2]  # higher t is noisier, as for DDPM


def test_only_a_first_frame_conditioned_family_keeps_frame_zero_clean():
    pipe = ANIMATEDIFF.tiny_pipeline(seed=0)
    scheduler = ANIMATEDIFF.training_scheduler(pipe)
    x0, noise, t = torch.randn(1, 4, 3, 4, 4), torch.randn(1, 4, 3, 4, 4), torch.tensor([900])
    clean, _, _ = HUVIDPO.noisy_input_and_target(scheduler, x0, noise, t)
    free, _, _ = ANIMATEDIFF.noisy_input_and_target(scheduler, x0, noise, t)
    assert torch.equal(clean[:, :, :1], x0[:, :, :1]) and torch.equal(clean[:, :, 1:], free[:, :, 1:])
    assert torch.equal(free, diffusion_input_and_target(scheduler, x0, noise, t, clean_first_frame=False)[0])
    assert not torch.allclose(free[:, :, :1], x0[:, :, :1])


# Denoiser configs at their released widths: SD 1.x's UNet (and so AnimateDiff's), Wan 2.1 1.3B's transformer.
FULL_SIZE = {"huvidpo": {"block_out_channels": [320, 640, 1280, 1280]},
             "animatediff": {"block_out_channels": [320, 640, 1280, 1280]},
             "wan": {"num_attention_heads": 12, "attention_head_dim": 128}}


@pytest.mark.parametrize("backend", CASES)
def test_auto_precision_is_bf16_with_checkpointing_only_for_a_full_size_denoiser_on_cuda(backend, model_dirs,
                                                                                        tmp_path, monkeypatch):
    """Each family answers "SD-sized or larger?" from its own denoiser's config (unet/ or transformer/)."""
    from huvidpo.training.trainer import resolve_auto_precision

    config = DPOConfig(output_dir=str(tmp_path))
    assert config.mixed_precision == "auto" and config.gradient_checkpointing is False
    tiny = backend.read_denoiser_config(str(model_dirs[backend.name]))
    assert tiny is not None and not backend.full_size(tiny)
    full = {**tiny, **FULL_SIZE[backend.name]}
    for cuda in (True, False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        chosen, said = resolve_auto_precision(config, backend, full)
        expected = ("bf16", True) if cuda else ("no", False)
        assert (chosen.mixed_precision, chosen.gradient_checkpointing) == expected
        assert (said is not None and backend.title in said and "bf16" in said) == cuda
        for small in (tiny, None):
            chosen, said = resolve_auto_precision(config, backend, small)
            assert (chosen.mixed_precision, chosen.gradient_checkpointing, said) == ("no", False, None)
    explicit = dataclasses.replace(config, mixed_precision="no")
    assert resolve_auto_precision(explicit, backend, full, cuda=True) == (explicit, None)


@pytest.mark.parametrize("backend", CASES)
def test_a_full_size_model_loads_in_bf16_on_cuda_and_in_fp32_on_a_cpu(backend, model_dirs):
    """The precision rule as a pure function of the denoiser's config and the device (no GPU needed): bf16 for a
    full-size denoiser on any CUDA device, with a sentence for the log; fp32 on a CPU, for a small model, or when the
    config cannot be read. Training's 'auto' asks the same rule."""
    tiny = backend.read_denoiser_config(str(model_dirs[backend.name]))
    full = {**tiny, **FULL_SIZE[backend.name]}
    for device in ("cuda", "cuda:1", torch.device("cuda", 0)):
        dtype, said = backend.load_dtype(full, device)
        assert dtype == torch.bfloat16 and backend.title in said and "bf16" in said
        assert backend.runs_in_bf16(full, device)
    for config, device in ((full, "cpu"), (full, torch.device("cpu")), (full, None), (tiny, "cuda"), (None, "cuda")):
        assert backend.load_dtype(config, device) == (torch.float32, None)
        assert not backend.runs_in_bf16(config, device)


def test_wan_keeps_its_vae_in_fp32_when_the_rest_loads_in_bf16(model_dirs, monkeypatch, caplog):
    """diffusers' Wan docs load the VAE in fp32 and the pipeline in bf16; load_pipeline does so when the rule says
    bf16 for the device the model runs on (here a tiny folder made to count as full size), and says so in the log;
    the other families take one dtype, and nothing changes on a CPU."""
    assert WAN.component_dtypes(torch.bfloat16) == {"default": torch.bfloat16, "vae": torch.float32}
    assert WAN.component_dtypes(torch.float32) == torch.float32
    assert HUVIDPO.component_dtypes(torch.bfloat16) == ANIMATEDIFF.component_dtypes(torch.bfloat16) == torch.bfloat16

    def dtypes(pipe):
        return {name: pipe.components[name].dtype for name in ("transformer", "text_encoder", "vae")}

    folder = str(model_dirs["wan"])
    assert set(dtypes(load_pipeline(folder)).values()) == {torch.float32}
    monkeypatch.setattr(WAN, "full_size", lambda config: True)
    assert set(dtypes(load_pipeline(folder)).values()) == {torch.float32}  # no device: the CPU
    with caplog.at_level("WARNING", logger="huvidpo.hub"):
        pipe = load_pipeline(folder, runs_on="cuda")  # loaded for a CUDA GPU, left on the CPU
    assert dtypes(pipe) == {"transformer": torch.bfloat16, "text_encoder": torch.bfloat16, "vae": torch.float32}
    assert "Wan 2.1" in caplog.text and "bf16, its vae in fp32" in caplog.text
    frames, _ = generate(pipe, clip_settings(WAN))  # the pipeline runs with its VAE in fp32 (here on the CPU)
    assert frames.shape == (FRAMES["wan"], SIZE, SIZE, 3) and np.isfinite(frames).all()
    assert load_pipeline(folder, torch_dtype=torch.float32, runs_on="cuda").transformer.dtype == torch.float32


# ---------------------------------------------------------------------------------------------- the studio


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Each family's tiny pipeline saved with save_pretrained, as ``--model`` and the studio load it."""
    dirs = {}
    for name in BACKENDS:
        dirs[name] = tmp_path_factory.mktemp(f"model-{name}")
        BACKENDS[name].tiny_pipeline(seed=0).save_pretrained(dirs[name])
    return dirs


@pytest.mark.parametrize("name", ["wan", "animatediff"])
def test_the_generate_tab_serves_a_folder_of_each_family(name, model_dirs, tmp_path):
    from huvidpo.studio import GenerationService, StudioConfig

    config = StudioConfig(data_dir=str(tmp_path / "data"), oauth=False, model=str(model_dirs[name]))
    service = GenerationService(config)
    steps = []
    clip = service.generate(clip_settings(BACKENDS[name]), step_callback=lambda step, total: steps.append((step, total)))
    assert type(service.pipeline()) is BACKENDS[name].pipeline_class
    assert steps == [(1, 2), (2, 2)]
    assert read_video(clip.video).shape == (FRAMES[name], SIZE, SIZE, 3)
    assert clip.settings["model"] == model_dirs[name].name


def test_a_wan_folder_generates_with_the_familys_frame_count_and_refuses_eight_frames(model_dirs, tmp_path, capsys):
    """Nobody chose a frame count or rate: the Generate tab's preset and the CLI take Wan's (the studio's 8-frame
    habit is gone) and write its 16 fps; 8 frames, as a user would type them, are refused in words that name the
    setting and the nearest counts."""
    from huvidpo.generate import main
    from huvidpo.studio import GenerationService, StudioConfig

    config = StudioConfig(data_dir=str(tmp_path / "data"), oauth=False, model=str(model_dirs["wan"]))
    assert (config.default_frames, config.train_frames, config.comparison_frames) == (29, 33, 33)  # 29: within max 32
    service = GenerationService(config)
    tab_sends = dict(prompt="a red circle", frames=config.default_frames, steps=2, height=SIZE, width=SIZE)
    clip = service.generate(GenerationSettings(**tab_sends)).video
    assert read_video(clip).shape[0] == 29 and probe_video(clip).fps == 16  # Wan's clips play at 16 fps, not 8
    with pytest.raises(ValueError, match=r"^frames: Wan 2\.1 takes 1 \+ 4k frames .*got 8\. Nearest: 5 or 9\.$"):
        service.generate(GenerationSettings(**{**tab_sends, "frames": 8}))
    with pytest.raises(ValueError, match=r"^train_frames: Wan 2\.1 takes .*got 8\. Nearest: 5 or 9\.$"):
        StudioConfig(data_dir=str(tmp_path / "data"), oauth=False, model=str(model_dirs["wan"]), train_frames=8)

    cli = ["--model", str(model_dirs["wan"]), "--prompt", "a red circle", "--steps", "2", "--height", str(SIZE),
           "--width", str(SIZE)]
    assert main([*cli, "--out", str(tmp_path / "default.mp4")]) == 0
    assert read_video(tmp_path / "default.mp4").shape[0] == WAN.default_frames
    assert probe_video(tmp_path / "default.mp4").fps == 16
    assert main([*cli, "--frames", "5", "--fps", "12", "--out", str(tmp_path / "twelve.mp4")]) == 0
    assert probe_video(tmp_path / "twelve.mp4").fps == 12  # a frame rate given is the one written
    capsys.readouterr()
    assert main([*cli, "--frames", "8", "--out", str(tmp_path / "eight.mp4")]) == 2
    said = capsys.readouterr().err
    assert said.startswith("error: frames: Wan 2.1 takes 1 + 4k frames") and "Nearest: 5 or 9." in said
    assert "Traceback" not in said and not (tmp_path / "eight.mp4").exists()


@pytest.mark.parametrize("name", ["wan", "animatediff"])
def test_the_train_tab_runs_a_two_step_run_on_each_family(name, model_dirs, tmp_path):
    """A Train tab run on a Wan or AnimateDiff folder at the studio's train_resolution (Wan's native 480x832 is
    too slow on a CPU): its own process loads it by model_index.json, trains 2 DPO steps, and makes the before/after
    clips at that size with the LoRA loaded back as the Generate tab's picker loads it; the family's own pipeline
    class loads the LoRA."""
    from huvidpo.studio import LabelingService, StudioConfig, TrainingManager, TrainRequest, User
    from huvidpo.studio.generation import GeneratedClip

    backend, frames = BACKENDS[name], FRAMES[name]
    config = StudioConfig(data_dir=str(tmp_path / "data"), oauth=False, model=str(model_dirs[name]),
                          train_frames=frames, comparison_frames=frames, comparison_steps=2, sampler_seed=0,
                          train_resolution=str(SIZE))
    labeling = LabelingService(config)
    clips = []
    for shade in (0.2, 0.8):
        video = write_video(np.full((frames, 64, 64, 3), shade, dtype=np.float32), tmp_path / f"{shade}.mp4")
        clips.append(GeneratedClip(video=video, first_frame=video.with_suffix(".png"),
                                   settings={"prompt": "a red circle moving left on a blue background", "seed": 0}))
    labeling.add_clips(clips)
    pair = labeling.next_pair("ada", "s1")
    labeling.vote("ada", "s1", pair["token"], "left")
    manager, boss = TrainingManager(config, labeling), User(maintainer=True)
    manager.start(boss, TrainRequest(steps=2, lora_rank=4))
    assert manager.wait(600)
    status = manager.status()
    assert status["state"] == "finished", manager.view()["log"]
    assert status["step"] == 2 and len(status["comparison"]) == len(config.comparison_prompts)
    assert status["settings"]["frames"] == frames
    for row in status["comparison"]:
        for clip in (row["before"], row["after"]):
            assert read_video(clip).shape == (frames, SIZE, SIZE, 3)
    lora = config.runs_dir / status["lora"].removeprefix("runs/") / LORA_WEIGHT_NAME
    pipe = backend.pipeline_class.from_pretrained(model_dirs[name])
    pipe.load_lora_weights(str(lora.parent), adapter_name="round")  # WanPipeline's or AnimateDiffPipeline's loader
    loaded = get_peft_model_state_dict(backend.denoiser(pipe), adapter_name="round")
    assert loaded and all(torch.count_nonzero(value) for key, value in loaded.items() if "lora_B" in key)
    if name == "animatediff":  # the default targets include the motion modules' attention
        assert any(key.startswith("down_blocks") and "motion_modules" in key for key in loaded)
