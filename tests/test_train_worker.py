"""A Train tab run in its own process: its death (SIGKILL, a segfault, CUDA out of memory) becomes a readable
status while the app trains on; and generation and training on one GPU take turns (refused, or waited for)."""

import os
import signal
import time

import numpy as np
import pytest
from worker_loads import failing_load, out_of_memory_load, segfault_load, slow_load

from huvidpo.data.video import write_video
from huvidpo.generate import GenerationSettings
from huvidpo.studio import (
    GeneratedClip,
    GenerationService,
    GpuTurns,
    LabelingService,
    StudioConfig,
    TrainingManager,
    TrainRequest,
    User,
    list_loras,
)
from huvidpo.studio.gpu_turns import same_cuda_device
from huvidpo.studio.runs import read_record
from huvidpo.studio.train_worker import exit_message

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPT = "a red circle moving left on a blue background"
BOSS = User(name="ada", maintainer=True)
ELSEWHERE = TrainRequest(dataset="team/pairs", steps=2, lora_rank=4)  # a Hub id: no votes needed to start


def make_config(tmp_path, **overrides) -> StudioConfig:
    return StudioConfig(data_dir=str(tmp_path / "data"), oauth=False, **overrides)


def voted_labeling(config: StudioConfig, tmp_path) -> LabelingService:
    """A pool of two clips and one decided vote: a 'votes' run has one pair."""
    labeling = LabelingService(config)
    clips = []
    for name, shade in (("a", 0.2), ("b", 0.8)):
        video = write_video(np.full((4, 64, 64, 3), shade, dtype=np.float32), tmp_path / f"{name}.mp4")
        clips.append(GeneratedClip(video=video, first_frame=video.with_suffix(".png"),
                                   settings={"prompt": PROMPT, "seed": int(shade * 10)}))
    labeling.add_clips(clips)
    pair = labeling.next_pair("ada", "s1")
    labeling.vote("ada", "s1", pair["token"], "left")
    return labeling


def wait_until(condition, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def started_process(manager: TrainingManager) -> int:
    wait_until(lambda: manager._run.pid is not None)
    return manager._run.pid


def test_a_killed_training_process_fails_its_run_in_words_and_the_app_trains_on(tmp_path, tiny_model_dir):
    config = make_config(tmp_path, model=str(tiny_model_dir), train_frames=4, comparison_frames=4, comparison_steps=2,
                         sampler_seed=0)
    manager = TrainingManager(config, voted_labeling(config, tmp_path))
    manager.start(BOSS, TrainRequest(steps=500, lora_rank=4))
    pid = started_process(manager)
    wait_until(lambda: manager.status()["step"] >= 1)  # mid-run: training
    os.kill(pid, signal.SIGKILL)  # what the kernel's out-of-memory killer sends
    assert manager.wait(600)
    status = manager.status()
    assert status["state"] == "failed" and 1 <= status["step"] < 500
    assert status["error"].startswith("The training process was killed (signal 9, SIGKILL), most often by the "
                                      "system's out-of-memory killer: lower 'Frames per clip'")
    assert "--gradient_checkpointing" in status["error"] and "The app is fine" in status["error"]
    assert f"**Error:** {status['error']}" in manager.view()["summary"]
    assert read_record(config.runs_dir / status["run_id"])["state"] == "failed"  # its locks are free: not "interrupted"

    # The same app starts the next run, which finishes with its before/after clips and its LoRA in the picker.
    manager.start(BOSS, TrainRequest(steps=1, lora_rank=4))
    assert manager.wait(600)
    status = manager.status()
    assert status["state"] == "finished" and status["error"] is None, status
    assert [sorted(row) for row in status["comparison"]] == [["after", "before", "prompt", "seed"]] * 2
    assert f"runs/{status['run_id']}" in list_loras(config, maintainer=True)
    assert manager._run.pid != pid and not manager.gpu._holder


def test_out_of_memory_and_a_crash_in_the_run_are_said_in_words(tmp_path, caplog):
    config = make_config(tmp_path)
    manager = TrainingManager(config, None, load_pipeline=out_of_memory_load)
    manager.start(BOSS, ELSEWHERE)
    assert manager.wait(600)
    status = manager.status()
    assert status["state"] == "failed"
    assert status["error"].startswith("The run ran out of GPU memory (CUDA out of memory): lower 'Frames per clip', "
                                      "or train from the command line (huvidpo-train dpo) with a smaller --resolution")
    assert "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB" in caplog.text  # the traceback: the log

    crashing = TrainingManager(config, None, load_pipeline=segfault_load)
    crashing.start(BOSS, ELSEWHERE)
    assert crashing.wait(600)
    status = crashing.status()
    assert status["state"] == "failed"
    assert status["error"].startswith("The training process crashed (signal 11, SIGSEGV)")


def test_the_status_names_how_a_silent_process_ended():
    assert exit_message(-signal.SIGTERM).startswith("The training process was stopped by signal 15 (SIGTERM)")
    assert exit_message(3).startswith("The training process ended (exit code 3) without reporting an error")


def test_on_one_gpu_generation_is_refused_during_a_run_and_is_back_when_it_ends(tmp_path, tiny_model_dir):
    config = make_config(tmp_path, model=str(tiny_model_dir))
    gpu = GpuTurns(config, same_device=lambda: True)  # the decision a CUDA machine makes with one device
    generation = GenerationService(config, gpu=gpu)
    manager = TrainingManager(config, None, load_pipeline=slow_load, gpu=gpu)
    settings = GenerationSettings(prompt=PROMPT, frames=4, steps=2, image_steps=2)
    status = manager.start(BOSS, ELSEWHERE)
    with pytest.raises(ValueError, match=f"The GPU is busy with the training run {status['run_id']} \\(started by ada\\), "
                                         "so generation is paused: it is back when that ends \\(a maintainer can cancel"):
        generation.generate(settings)
    os.kill(started_process(manager), signal.SIGKILL)
    assert manager.wait(600) and manager.status()["state"] == "failed"
    assert generation.generate(settings).video.is_file()


def test_on_a_cpu_or_another_gpu_generation_and_a_run_go_together(tmp_path, tiny_model_dir):
    config = make_config(tmp_path, model=str(tiny_model_dir))
    gpu = GpuTurns(config, same_device=lambda: False)
    generation = GenerationService(config, gpu=gpu)
    manager = TrainingManager(config, None, load_pipeline=slow_load, gpu=gpu)
    manager.start(BOSS, ELSEWHERE)
    pid = started_process(manager)
    assert generation.generate(GenerationSettings(prompt=PROMPT, frames=4, steps=2, image_steps=2)).video.is_file()
    assert manager.active()  # the run goes on meanwhile
    os.kill(pid, signal.SIGKILL)
    assert manager.wait(600)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the default decision on a machine without CUDA")
def test_without_cuda_the_default_decision_shares_nothing(tmp_path):
    config = make_config(tmp_path)
    assert not same_cuda_device(config) and not GpuTurns(config).shared()


def test_a_run_started_during_a_generation_waits_for_that_clip(tmp_path):
    config = make_config(tmp_path)
    gpu = GpuTurns(config, same_device=lambda: True)
    manager = TrainingManager(config, None, load_pipeline=failing_load, gpu=gpu)
    with gpu.generating():  # a clip being made
        manager.start(BOSS, ELSEWHERE)
        wait_until(lambda: "waiting for the clip being generated on the GPU" in manager.view()["log"])
        time.sleep(0.5)
        assert manager.status()["state"] == "starting" and manager._run.pid is None
        with pytest.raises(ValueError, match="The GPU is busy with the training run"):  # no new clip meanwhile
            with gpu.generating():
                pass
    assert manager.wait(600)
    assert (manager.status()["state"], manager.status()["error"]) == ("failed", "no model here")  # it ran once free

    with gpu.generating():  # cancel while it waits: nothing starts
        manager.start(BOSS, ELSEWHERE)
        wait_until(lambda: "waiting for the clip" in manager.view()["log"])
        manager.cancel(BOSS)
        assert manager.wait(600)
    status = manager.status()
    assert status["state"] == "cancelled" and manager._run.pid is None
    assert "cancelled before it started; nothing was trained" in manager.view()["log"]
    with gpu.generating():  # the run gave the GPU back
        pass
