"""A Train tab run in its own process: load the model, ``train_dpo``, the before/after clips, and what it tells the
studio on the way.

What is unusual here:
- :func:`run_job` is the target of a ``spawn`` process that :class:`huvidpo.studio.training.TrainingManager` starts
  for each run: a fresh interpreter with nothing of the app in it (no served model, no threads, no patched torch
  globals), so a crash, a segfault or the out-of-memory killer ends this process and never the app. Its exit
  frees all it held, GPU memory included (CUDA's caching allocator keeps freed blocks until the process ends); the
  app itself never loads the model it trains.
- It reports over a one-way pipe, in messages ``(kind, *values)`` the studio's monitor thread applies to the run:
  ``state`` (loading, running, comparing), ``say`` (a log line), ``metrics`` (a step's row), ``lora`` (where the
  LoRA was saved), ``clips`` (before/after clips made, of how many), ``comparison`` (one prompt's before/after
  row), and last ``ended`` (finished or cancelled) or ``failed`` (a readable error and the traceback for the log).
  The studio keeps the run's locks and writes its ``run.json``; this process writes what the trainer writes
  (metrics, checkpoints, the LoRA) and the clips.
- Cancel is a ``multiprocessing`` Event: the trainer checks it before every step, the clips at every denoising step.
- A watchdog thread ends the process as soon as the studio's process is gone (kill -9 included): a run never goes
  on writing into a folder the other studios already list as interrupted, and may resume. Ctrl-C in the studio's
  terminal reaches this process too; it ignores it and ends with the studio, so the run is interrupted, not failed.
- Running out of memory is said in words, with what to change (:data:`MEMORY_ADVICE`): a CUDA out-of-memory error
  raised here, and a death by SIGKILL (what the kernel's out-of-memory killer sends) seen by the studio
  (:func:`exit_message`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from huvidpo.data.video import write_video
from huvidpo.generate import GenerationSettings, clip_fps, generate

MEMORY_ADVICE = ("lower 'Frames per clip', or train from the command line (huvidpo-train dpo) with a smaller "
                 "--resolution and --gradient_checkpointing (docs/real-scale.md)")
PARENT_GONE_EXIT = 75  # the code the process ends with when the studio's process has gone


@dataclass
class RunJob:
    """What a run's process needs, all of it picklable: the trainer's config, the loader of the model (a module-level
    function, so the new interpreter imports it by name) and the before/after clips to make."""

    run_id: str
    dpo_config: Any  # huvidpo.training.DPOConfig
    load_pipeline: Callable[[str], Any]
    model_name: str  # how the log names the model when the config leaves it empty
    clips_dir: Path  # generated/comparison/<run>/
    comparison: list[tuple[GenerationSettings, Path]]  # per prompt: its settings and where its "before" clip is kept
    torch_threads: int | None = None  # the studio's torch.get_num_threads(): a process's thread count is its own


class Cancelled(Exception):
    """A cancel request reached the run while it was making its before/after clips."""


class Reporter:
    """Sends messages to the studio; one at a time (the log handler may send from another thread)."""

    def __init__(self, channel) -> None:
        self.channel = channel
        self._lock = threading.Lock()

    def __call__(self, kind: str, *values: Any) -> None:
        with self._lock:
            self.channel.send((kind, *values))

    def say(self, line: str) -> None:
        self("say", line)


class _ReportingLogHandler(logging.Handler):
    """Sends the library's log records to the run's log tail."""

    def __init__(self, report: Reporter) -> None:
        super().__init__(level=logging.INFO)
        self.report = report

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.report.say(f"{record.levelname.lower()}: {record.getMessage()}")
        except OSError:  # the studio has gone: the watchdog ends the process
            pass


def run_job(job: RunJob, channel, stop_event) -> None:
    """The run, in its own process (see the module docstring); every failure is reported, never raised."""
    _exit_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    report = Reporter(channel)
    console = logging.StreamHandler()  # the studio's console is the server log: warnings go there too
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(console)
    library_logger = logging.getLogger("huvidpo")
    library_logger.addHandler(_ReportingLogHandler(report))
    library_logger.setLevel(logging.INFO)
    config = job.dpo_config
    try:
        from huvidpo.studio.generation import import_model_stack

        import_model_stack(training=True)
        import torch

        if job.torch_threads:
            torch.set_num_threads(job.torch_threads)
        report("state", "loading")
        report.say(f"loading {config.model or job.model_name} (training process {os.getpid()})")
        pipe = job.load_pipeline(config.model)
        report("state", "running")
        from huvidpo.training import train_dpo

        result = train_dpo(config, callbacks=[lambda row: report("metrics", row)], stop_event=stop_event, pipe=pipe)
        report("lora", str(result.lora_path))
        if result.cancelled or stop_event.is_set():  # a cancel during the last step counts too
            report.say(f"cancelled at step {result.steps}; " + (
                f"the LoRA so far is saved in runs/{job.run_id}" if result.steps else "nothing was trained"))
            report("ended", "cancelled")
            return
        report.say(f"trained {result.steps} steps; LoRA saved in runs/{job.run_id}")
        report("state", "comparing")
        try:
            compare(job, pipe, stop_event, report)
        except Cancelled:
            report.say(f"cancelled during the before/after clips; the LoRA is saved in runs/{job.run_id}")
            report("ended", "cancelled")
            return
        report.say("finished: the LoRA is in the Generate tab's picker")
        report("ended", "finished")
    except Exception as err:  # noqa: BLE001 - the studio shows every failure in the run's status
        report("failed", failure_text(err), "".join(traceback.format_exception(err)))
    finally:
        channel.close()


def compare(job: RunJob, pipe, stop_event, report: Reporter) -> None:
    """Before/after clips on the fixed prompts and seed, written to ``job.clips_dir`` (served like generated clips;
    the run folder is not); "before" clips come from the per-model cache when made already. Raises ``Cancelled`` as
    soon as a cancel is requested."""
    job.clips_dir.mkdir(parents=True, exist_ok=True)
    total = len(job.comparison) + sum(1 for _, cached in job.comparison if not cached.is_file())
    made = 0
    report("clips", made, total)

    def check(_step: int = 0, _total: int = 0) -> None:
        if stop_event.is_set():
            raise Cancelled()

    def one_more(what: str) -> None:
        nonlocal made
        made += 1
        report("clips", made, total)
        report.say(f"before/after clips: {made}/{total} made ({what})")

    for index, (settings, cached) in enumerate(job.comparison):
        row = {"prompt": settings.prompt, "seed": settings.seed}
        check()
        frames, _ = generate(pipe, replace(settings, lora=str(job.dpo_config.output_dir)), step_callback=check)
        row["after"] = str(write_video(frames, job.clips_dir / f"{index}-after.mp4", fps=clip_fps(settings, pipe)))
        one_more(f"after, prompt {index + 1}")
        if not cached.is_file():
            check()
            frames, _ = generate(pipe, settings, step_callback=check)
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = write_video(frames, cached.with_name(f"{cached.stem}-{job.run_id}.mp4"), fps=clip_fps(settings, pipe))
            partial.replace(cached)  # whole or absent: a crash never leaves a broken clip to reuse
            one_more(f"before, prompt {index + 1}")
        row["before"] = str(shutil.copyfile(cached, job.clips_dir / f"{index}-before.mp4"))
        report("comparison", row)


def failure_text(err: BaseException) -> str:
    """What the run's status says of an error: memory in words, a user's mistake as its message, else its type too."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(err, torch.cuda.OutOfMemoryError):
        return f"The run ran out of GPU memory (CUDA out of memory): {MEMORY_ADVICE}."
    if isinstance(err, MemoryError):
        return f"The run ran out of memory: {MEMORY_ADVICE}."
    return str(err) if isinstance(err, (ValueError, OSError)) else f"{type(err).__name__}: {err}"


def exit_message(exitcode: int | None) -> str:
    """What the run's status says when its process ended without reporting how (killed, crashed, or exited)."""
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        if number == signal.SIGKILL:
            return (f"The training process was killed (signal {number}, {name}), most often by the system's "
                    f"out-of-memory killer: {MEMORY_ADVICE}. The app is fine; start a new run when ready.")
        crashes = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE}
        if number in crashes:
            return (f"The training process crashed (signal {number}, {name}); the server's log may say more. The app "
                    "is fine; start a new run, and if it crashes again, try fewer frames or another model.")
        return (f"The training process was stopped by signal {number} ({name}) from outside the app. The app is fine; "
                "start a new run when ready.")
    if exitcode == PARENT_GONE_EXIT:
        return "The training process ended because the studio's process had gone."
    return (f"The training process ended (exit code {exitcode}) without reporting an error; the server's log may say "
            "more. The app is fine; start a new run when ready.")


def _exit_with_parent() -> None:
    """End this process when the studio's process ends (the parent's sentinel becomes ready, however it ended)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(PARENT_GONE_EXIT)

    threading.Thread(target=watch, name="exit-with-studio", daemon=True).start()
