"""The Train tab without the browser: one DPO run at a time in its own process, its live status, cancel, a
before/after comparison when it finishes, and the push of its LoRA to the Hub.

What is unusual here:
- The run (loading the model, ``train_dpo``, the before/after clips) is a ``spawn`` child process
  (:mod:`.train_worker`); a thread of the app is its monitor: it applies what the process reports (state, log
  lines, metrics, clips) to the run, writes ``run.json`` and holds the run's locks. A crash, a segfault or the
  out-of-memory killer ends the process, never the app: the run is "failed" with what happened in words and what
  to change, and the next run can start. The process's exit frees all its memory, GPU memory included; the app
  process never loads the model it trains (it imports the trainers, to check a run's settings).
- The run trains its own copy of the model, never the pipeline that serves the Generate tab. When both use one CUDA
  device, they take turns (:class:`~huvidpo.studio.gpu_turns.GpuTurns`): during a run a generation is refused with
  a message, and a run started while a clip is being made waits for that clip. On a CPU both run at once.
- Every entry point checks the user server-side (``require_maintainer``); hiding the tab is cosmetic.
- The before/after clips come from the trained pipeline through ``huvidpo.generate``: "after" loads the
  LoRA back from the run folder exactly as the LoRA picker will, so a LoRA that does not load fails here.
  "Before" clips depend only on the base model and the fixed settings, so they are made once per model and
  kept in ``generated/comparison/before-clips/``. Cancel stops a run at any time, the before/after clips included.
- Hub tokens are never typed into the page: pushes use ``HF_TOKEN`` or the machine's login.
- Preference rounds (``start_round``): the newest finished run's LoRA makes the pool's next round (the base clips'
  prompts and seeds again, :mod:`huvidpo.annotation.rounds`), on the training lock like a run, in the request (the
  pool is small; the Label tab serves the new pairs as soon as they are in). A run may take the previous round as
  its DPO reference (``TrainRequest.reference``): the newest finished run's LoRA.
- Several studios may share one data dir: a run claims its folder by creating it, holds ``runs/.training.lock``
  (one run at a time per data dir) and its own lock for its life (in the app's process, which outlives the run's),
  and keeps ``run.json`` (:mod:`.runs`) up to date, so every studio lists every run with its state, and sees a
  killed studio's run as interrupted and resumable (its training process ends with it).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.util  # noqa: F401 - registers its exit handler before ours (see _closing)
import threading
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from huvidpo.data.preferences import STUDIO
from huvidpo.generate import GenerationSettings
from huvidpo.hub_calls import scrub_tokens
from huvidpo.locations import check_hub_id, default_model_path, is_hub_id
from huvidpo.studio.access import User, require_maintainer
from huvidpo.backends import model_family
from huvidpo.studio.config import StudioConfig
from huvidpo.studio.generation import MODEL_BUILD_LOCK, import_model_stack
from huvidpo.studio.gpu_turns import GpuTurns
from huvidpo.studio.labeling import LabelingService
from huvidpo.studio.runs import (
    ACTIVE_STATES,
    INTERRUPTED,
    claim_dir,
    hold_run_lock,
    newest_finished_run,
    past_runs,
    read_record,
    trained_steps,
    write_record,
)
from huvidpo.studio.train_worker import RunJob, exit_message, run_job

logger = logging.getLogger(__name__)

VOTES_DATASET = "votes"
TRAINING_LOCK = ".training.lock"  # in runs/: held by the studio that is training (one run at a time per data dir)
IMPORTS = "imports"  # data_dir/imports/<name>: public datasets a maintainer downloaded, offered in the dataset box
LOG_LINES = 200
CHECKPOINTS_KEPT = 2  # a studio run keeps its last two checkpoints: enough to resume, little disk
TAB_DPO_SETTINGS = ("beta", "learning_rate", "lora_rank")  # what the Train tab shows with DPOConfig's defaults
# The Train tab's settings and the DPOConfig fields they set.
TAB_SETTING_FIELDS = {"beta": "beta", "learning_rate": "learning_rate", "lora_rank": "lora_rank", "steps": "max_steps",
                      "frames": "num_frames"}
BEFORE_CLIPS_DIR = "before-clips"  # in generated/comparison/: the base model's comparison clips, made once per model
# A run's process: a fresh interpreter (fork would copy the app's threads, locks and CUDA state into it).
SPAWN = multiprocessing.get_context("spawn")
_closing = threading.Event()  # set when the app's process exits: its runs' processes end with it, not as failures
# Registered after multiprocessing's own exit handler, so it runs first (atexit runs handlers last-in first-out):
# the monitors know the app is closing before that handler stops the runs' processes.
atexit.register(_closing.set)


@dataclass
class TrainRequest:
    """What a maintainer chooses in the Train tab. None: ``TrainingManager.setting_defaults()``."""

    dataset: str = VOTES_DATASET
    data_format: str = STUDIO
    exclude_flagged: bool = False  # 'votes': leave out labelers flagged by their gold accuracy
    model: str = ""
    beta: float | None = None
    learning_rate: float | None = None
    steps: int | None = None
    lora_rank: int | None = None
    frames: int | None = None
    seed: int | None = None
    preset: str | None = None  # DPOConfig's optimizer preset (None: its default)
    reference: str = "base"  # DPOConfig.reference; "previous": the newest finished run's LoRA

    def __post_init__(self) -> None:
        for name in ("steps", "lora_rank", "frames", "seed"):
            value = getattr(self, name)
            if isinstance(value, float) and value.is_integer():
                setattr(self, name, int(value))
        self.dataset = (self.dataset or "").strip()
        self.data_format = (self.data_format or STUDIO).strip()
        self.model = (self.model or "").strip()
        self.reference = (self.reference or "base").strip()


@dataclass
class TrainingRun:
    """One run's settings and what it has produced so far."""

    run_id: str
    output_dir: Path
    started_by: str
    request: TrainRequest
    max_steps: int
    state: str = "starting"
    dataset: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    log: deque = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    error: str | None = None
    lora_path: Path | None = None
    comparison: list[dict[str, Any]] = field(default_factory=list)
    hub_url: str | None = None
    dpo_config: Any = None
    stop_event: Any = field(default_factory=SPAWN.Event)  # cancel: shared with the run's process
    clips_done: tuple[int, int] | None = None  # (made, total) before/after clips while comparing
    locks: list = field(default_factory=list)  # released when the run's process has ended
    pid: int | None = None  # the run's process, once started

    def record(self) -> dict[str, Any]:
        """What ``run.json`` keeps: enough to list the run in any studio and to resume it."""
        return {
            "state": self.state, "started_by": self.started_by, "started_at": self.started_at,
            "finished_at": self.finished_at, "max_steps": self.max_steps,
            "step": self.history[-1]["step"] if self.history else 0, "dataset": self.dataset, "error": self.error,
            "request": asdict(self.request), "dpo_config": self.dpo_config.to_dict() if self.dpo_config else None,
        }

    def set_state(self, state: str) -> None:
        self.state = state
        write_record(self.output_dir, self.record())

    def say(self, line: str) -> None:
        self.log.append(f"[{time.strftime('%H:%M:%S')}] {line}")

    def on_metrics(self, row: dict[str, Any]) -> None:
        self.history.append(dict(row))
        write_record(self.output_dir, self.record())
        self.say(
            f"step {row['step']}/{self.max_steps}  loss {row.get('loss', float('nan')):.4f}  "
            f"accuracy {row.get('rewards/accuracies', float('nan')):.2f}  margin {row.get('rewards/margins', float('nan')):.4f}"
        )


def _load_training_pipeline(model: str):
    """The run's model (in the run's process): module-level, so the process imports it by name."""
    from huvidpo.training.trainer import load_training_pipeline

    return load_training_pipeline(model)


class TrainingManager:
    """Starts, watches, cancels and pushes DPO runs (at most one at a time) in ``data_dir/runs``.

    ``load_pipeline(model)`` loads the model a run trains, in the run's process (and the model that makes a round's
    clips, in the app's): a module-level function, which the run's new interpreter imports by name. ``gpu``: the turns this app's generations and runs take on a shared GPU (the
    one the app's ``GenerationService`` has; by default one of its own)."""

    def __init__(
        self,
        config: StudioConfig,
        labeling: LabelingService | None = None,
        load_pipeline: Callable[[str], Any] = _load_training_pipeline,
        gpu: GpuTurns | None = None,
    ) -> None:
        self.config = config
        self.labeling = labeling
        self._load_pipeline = load_pipeline
        self.gpu = gpu or GpuTurns(config)
        self._lock = threading.Lock()
        self._run: TrainingRun | None = None
        self._thread: threading.Thread | None = None
        self._filling: str | None = None  # the round whose clips are being made

    # ------------------------------------------------------------------------------------------ choices

    @property
    def imports_dir(self) -> Path:
        return self.config.imports_dir

    def dataset_choices(self) -> list[str]:
        """'votes' (export the current votes now), the exports already in the data dir, newest first, and the
        public datasets in ``data_dir/imports``."""
        exports = []
        if self.config.exports_dir.is_dir():
            folders = [f for f in self.config.exports_dir.iterdir() if (f / "metadata.jsonl").is_file()]
            folders.sort(key=lambda folder: folder.stat().st_mtime, reverse=True)
            exports = [f"exports/{folder.name}" for folder in folders]
        imports = sorted(f"{IMPORTS}/{f.name}" for f in self.imports_dir.iterdir() if f.is_dir()) if self.imports_dir.is_dir() else []
        return [VOTES_DATASET, *exports, *imports]

    def resolve_dataset(self, dataset: str, data_format: str = STUDIO, exclude_flagged: bool = False) -> str:
        """A dataset choice -> the ``data`` the trainer reads: an export folder, or a Hub dataset id (in the studio's
        format or, with ``data_format``, a public schema)."""
        if dataset in ("", VOTES_DATASET) or dataset.startswith("exports/"):
            if data_format != STUDIO:
                raise ValueError(f"'{dataset or VOTES_DATASET}' is in the studio's own format: set the format to "
                                 f"'{STUDIO}', or give the Hub dataset id of a {data_format} dataset.")
        if dataset in ("", VOTES_DATASET):
            if self.labeling is None:
                raise ValueError("This app has no Label tab, so there are no local votes: give a Hub dataset id.")
            folder, pairs = self.labeling.export(exclude_flagged=exclude_flagged)
            if pairs == 0:
                raise ValueError(
                    "No decided pairs to train on yet: a pair needs at least one left/right vote (ties, 'both bad' "
                    "and skips do not make pairs). Label some pairs, or give a Hub dataset id."
                )
            return str(folder)
        if dataset.startswith("exports/"):
            folder = (self.config.exports_dir / dataset.removeprefix("exports/")).resolve()
            if not folder.is_relative_to(self.config.exports_dir.resolve()) or not (folder / "metadata.jsonl").is_file():
                raise ValueError(f"No export '{dataset}' in the data dir's exports/ folder; pick one from the list.")
            return str(folder)
        if dataset.startswith(f"{IMPORTS}/"):
            folder = (self.imports_dir / dataset.removeprefix(f"{IMPORTS}/")).resolve()
            if not folder.is_relative_to(self.imports_dir.resolve()) or not folder.is_dir():
                raise ValueError(f"No folder '{dataset}' in the data dir's {IMPORTS}/ folder; pick one from the list.")
            return str(folder)
        if is_hub_id(dataset):
            return dataset
        raise ValueError(f"'{dataset}' is neither 'votes', an export from the list, a folder of the data dir's {IMPORTS}/, "
                         "nor a Hub dataset id ('user/name').")

    # ------------------------------------------------------------------------------------------ runs

    def start(self, user: User, request: TrainRequest) -> dict[str, Any]:
        """Check, export the votes if asked (or reuse the export of the same votes), claim a run folder and start
        the run in its own process; returns its status."""
        require_maintainer(self.config, user, "Training")
        import_model_stack(training=True)
        from huvidpo.training import DPOConfig

        with self._lock:
            self._check_idle()
            defaults = {f.name: f.default for f in fields(DPOConfig)}
            preset = self.setting_defaults()
            steps = preset["steps"] if request.steps is None else request.steps
            chosen = {"beta": request.beta, "learning_rate": request.learning_rate, "lora_rank": request.lora_rank,
                      "seed": request.seed, "preset": request.preset}
            chosen = {name: preset.get(name) if value is None else value for name, value in chosen.items()}
            chosen = {name: value for name, value in chosen.items() if value is not None}
            if isinstance(request.lora_rank, int):  # alpha follows the rank, at DPOConfig's alpha / rank
                chosen["lora_alpha"] = request.lora_rank * defaults["lora_alpha"] // defaults["lora_rank"]
            if request.reference == "previous":
                previous = newest_finished_run(self.config.runs_dir)
                if previous is None:
                    raise ValueError("reference 'previous' needs a previous round: no run has finished with a trained "
                                     "LoRA yet. Train with reference 'base' first.")
                chosen["previous_lora"] = str(previous)
            dpo_config = DPOConfig(
                model=request.model or self.config.model,
                data="-",  # replaced below once the dataset is resolved; the other settings are checked now
                data_format=request.data_format,
                reference=request.reference,
                output_dir="-",  # replaced by the run folder once it is claimed
                max_steps=steps,
                num_frames=request.frames if request.frames is not None else (
                    model_family(request.model).default_frames if request.model else preset["frames"]),
                checkpointing_steps=(
                    max(1, min(defaults["checkpointing_steps"], steps // 4)) if isinstance(steps, int)
                    else defaults["checkpointing_steps"]
                ),
                checkpoints_total_limit=CHECKPOINTS_KEPT,
                resolution=self.config.train_resolution,
                **self.plan_settings(),
                **chosen,
            )
            training_lock = self._hold_training_lock()
            try:
                data = self.resolve_dataset(request.dataset, request.data_format, request.exclude_flagged)
                output_dir = claim_dir(self.config.runs_dir, f"dpo-{time.strftime('%Y%m%d-%H%M%S')}")
            except BaseException:
                training_lock.release()
                raise
            dpo_config = replace(dpo_config, data=data, output_dir=str(output_dir))
            run = TrainingRun(
                run_id=output_dir.name, output_dir=output_dir, started_by=user.name or "local maintainer",
                request=request, max_steps=steps, dataset=dpo_config.data, dpo_config=dpo_config,
            )
            plan = ", ".join(f"{name} {value:g}" for name, value in self.plan_settings().items())
            run.say(f"run {run.run_id} started by {run.started_by}: {steps} steps on {self._shown(dpo_config.data)}"
                    + (f" (and the taste plan's {plan})" if plan else ""))
            self._launch(run, training_lock)
        return self.status()

    def resume(self, user: User, run_id: str) -> dict[str, Any]:
        """Continue an interrupted run (its process was killed) from its last checkpoint, in its own folder."""
        require_maintainer(self.config, user, "Resuming training")
        import_model_stack(training=True)
        from huvidpo.training import DPOConfig
        from huvidpo.training.config import LATEST

        with self._lock:
            self._check_idle()
            folder = (self.config.runs_dir / (run_id or "").strip()).resolve()
            record = read_record(folder) if folder.parent == self.config.runs_dir.resolve() else None
            if record is None or not record.get("dpo_config"):
                raise ValueError(f"No run '{run_id}' to resume; pick an interrupted run from the list.")
            if record["state"] != INTERRUPTED:
                raise ValueError(f"The run {run_id} is {record['state']}; only an interrupted run can be resumed.")
            settings = {**record["dpo_config"], "output_dir": str(folder), "resume": LATEST}
            dpo_config = DPOConfig(**{name: value for name, value in settings.items() if name in {f.name for f in fields(DPOConfig)}})
            training_lock = self._hold_training_lock()
            known = {f.name for f in fields(TrainRequest)}
            request = TrainRequest(**{name: value for name, value in record.get("request", {}).items() if name in known})
            run = TrainingRun(
                run_id=folder.name, output_dir=folder, started_by=user.name or "local maintainer", request=request,
                max_steps=dpo_config.max_steps, dataset=dpo_config.data, dpo_config=dpo_config,
            )
            run.say(f"run {run.run_id} resumed by {run.started_by} from its last checkpoint (step {trained_steps(folder)})")
            self._launch(run, training_lock)
        return self.status()

    def start_round(self, user: User, progress: Callable[[int, int], None] | None = None) -> str:
        """Start the pool's next preference round: the newest finished run's LoRA makes its clips of the base clips'
        prompts and seeds (``huvidpo.annotation.rounds.fill_round``); returns what was added; ``progress(done,
        total)`` after each clip. Runs in the request, holding the training lock (no run meanwhile) and, on a GPU the
        Generate tab shares, the GPU (a clip being generated is waited for; new ones are refused meanwhile)."""
        require_maintainer(self.config, user, "Starting a round")
        if self.labeling is None:
            raise ValueError("This app has no Label tab, so no pool to start a round in.")
        from huvidpo.annotation.rounds import fill_round
        from huvidpo.annotation.stats import pool_progress

        with self._lock:
            self._check_idle()
            run_dir = newest_finished_run(self.config.runs_dir)
            if run_dir is None:
                raise ValueError("No finished run with a trained LoRA yet: train on the votes first; the newest run's "
                                 "LoRA makes the next round's clips.")
            training_lock = self._hold_training_lock()
            self._filling = f"round clips of runs/{run_dir.name}"
            try:
                self.gpu.hold(f"the next preference round's clips ({self._filling})")
            except BaseException:
                self._filling = None
                training_lock.release()
                raise
        try:
            import_model_stack(training=True)
            self.gpu.wait_for_generations()
            pairs_before = pool_progress(self.labeling.pool, self.labeling.store)["pairs_total"]
            with MODEL_BUILD_LOCK:
                pipe = self._load_pipeline(self.config.model)
            number, clips = fill_round(pipe, self.labeling.pool, run_dir, lora_name=f"runs/{run_dir.name}",
                                       progress=progress)
            if self.config.gold_rate > 0:
                self.labeling.make_gold_copies()
        finally:
            self._filling = None
            self.gpu.release()
            training_lock.release()
        pairs = pool_progress(self.labeling.pool, self.labeling.store)["pairs_total"] - pairs_before
        logger.info("Round %d started by %s: %d clips of runs/%s", number, user.name or "local maintainer", len(clips),
                    run_dir.name)
        return (f"**Round {number}**: {len(clips)} clips of `runs/{run_dir.name}` in the pool, {pairs} new pairs to "
                "label (against earlier rounds too).")

    def round_view(self) -> dict[str, Any]:
        """The rounds for the Train tab: the pool's rounds, the next round's number and the LoRA that would make it."""
        from huvidpo.annotation.provenance import revision_of
        from huvidpo.annotation.rounds import pool_rounds, round_summary

        if self.labeling is None:
            return {"next_round": None, "lora": None, "summary": ""}
        rounds = pool_rounds(self.labeling.pool)
        run_dir = newest_finished_run(self.config.runs_dir)
        newest = rounds[-1] if rounds else None
        next_round = (newest.round if newest else 0) + 1
        if run_dir is None:
            source = "no finished run yet: train on the votes first"
        elif newest is not None and newest.round and newest.lora_revision == revision_of(run_dir):
            next_round = newest.round  # starting it again completes it
            source = f"`runs/{run_dir.name}`, which made it: train the next LoRA to start round {newest.round + 1}"
        else:
            source = f"`runs/{run_dir.name}`"
        return {"next_round": next_round, "lora": f"runs/{run_dir.name}" if run_dir else None,
                "summary": f"{round_summary(self.labeling.pool)} Round {next_round}: {source}."}

    def _check_idle(self) -> None:
        if self._filling is not None:
            raise ValueError(f"The next round's clips are being made ({self._filling}): wait for them.")
        if self._run is not None and self._run.state in ACTIVE_STATES:
            raise ValueError(
                f"A run is already in progress ({self._run.run_id}, started by {self._run.started_by}): "
                "wait for it or cancel it first."
            )

    def _hold_training_lock(self):
        """The data dir's training lock, or a ValueError naming the run another studio is training."""
        from filelock import FileLock, Timeout

        self.config.runs_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.config.runs_dir / TRAINING_LOCK, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            active = [record for record in past_runs(self.config.runs_dir) if record["state"] in ACTIVE_STATES]
            which = f" ({active[0]['run_id']}, started by {active[0].get('started_by')})" if active else ""
            raise ValueError(f"A run is already in progress in another studio on this data dir{which}: wait for it "
                             "or cancel it there.") from None
        return lock

    def _launch(self, run: TrainingRun, training_lock) -> None:
        """Hold the run's locks for its life, record it, take the GPU, and start its monitor (which starts its process)."""
        try:
            run.locks = [training_lock, hold_run_lock(run.output_dir)]
            run.set_state("starting")
            job = self._job(run)
            self.gpu.hold(f"the training run {run.run_id} (started by {run.started_by})")
        except BaseException:
            for lock in reversed(run.locks or [training_lock]):
                lock.release()
            raise
        self._run = run
        self._thread = threading.Thread(target=self._watch, args=(run, job), name=f"train-{run.run_id}", daemon=True)
        self._thread.start()

    def cancel(self, user: User) -> dict[str, Any]:
        require_maintainer(self.config, user, "Cancelling training")
        run = self._run
        if run is None or run.state not in ACTIVE_STATES:
            raise ValueError("No run in progress to cancel.")
        run.stop_event.set()
        run.say(f"cancel requested by {user.name or 'local maintainer'}; stopping after the current step")
        return self.status()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current run has ended and released its locks (for scripts and tests); True if it ended."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def push(self, user: User, repo_id: str, private: bool = True) -> str:
        """Push the last run's LoRA and model card to a Hub model repo; returns its URL."""
        require_maintainer(self.config, user, "Pushing to the Hub")
        import_model_stack(training=True)
        from huvidpo.training.trainer import push_output

        run = self._run
        if run is None or run.lora_path is None or run.state in ACTIVE_STATES:
            raise ValueError("Nothing to push yet: push when a run has finished (or was cancelled) and saved its LoRA.")
        if trained_steps(run.output_dir) == 0:
            raise ValueError(f"Nothing to push: the run {run.run_id} was cancelled before its first step, so its LoRA "
                             "learnt nothing.")
        repo_id = check_hub_id(repo_id, "The model repo", own_namespace=True)
        url, error = push_output(replace(run.dpo_config, hub_model_id=repo_id, hub_private=bool(private)), run.output_dir)
        if error:
            raise ValueError(error)
        run.hub_url = url
        run.say(f"pushed to {url}")
        return url

    def status(self) -> dict[str, Any]:
        """The current (or last) run, as plain values; ``state`` is 'idle' before the first run."""
        run = self._run
        if run is None:
            return {"state": "idle"}
        history = list(run.history)
        return {
            "state": run.state,
            "run_id": run.run_id,
            "started_by": run.started_by,
            "started_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at)),
            "seconds": round((run.finished_at or time.time()) - run.started_at, 1),
            "step": history[-1]["step"] if history else 0,
            "max_steps": run.max_steps,
            "dataset": self._shown(run.dataset),
            "settings": self._settings(run),
            "last_metrics": history[-1] if history else None,
            "lora": f"runs/{run.run_id}" if run.lora_path is not None else None,
            "error": run.error,
            "hub_url": run.hub_url,
            "comparison": list(run.comparison),
        }

    def active(self) -> bool:
        """Whether a run is in progress (the Train tab then polls its status)."""
        return self._run is not None and self._run.state in ACTIVE_STATES

    def view(self) -> dict[str, Any]:
        """What the Train tab shows, as plain data: ``status`` (what scripts read), a summary line, the metrics
        for the plots, the log tail, (before, after) clips per comparison prompt, and whether a run is active."""
        run = self._run
        status = self.status()
        runs = self.past_runs()
        if status["state"] == "idle":
            interrupted = [row["run"] for row in runs if row["state"] == INTERRUPTED]
            elsewhere = [f"{row['run']} ({row['state']}, started by {row['started by']})" for row in runs
                         if row["state"] in ACTIVE_STATES]
            summary = "No run yet." if not runs else f"No run in this session; the data dir's {len(runs)} runs are listed below."
            if elsewhere:
                summary += f" In progress in another studio: {', '.join(elsewhere)}."
            if interrupted:
                summary += f" Interrupted (resumable): {', '.join(interrupted)}."
        else:
            summary = (f"**{status['run_id']}** · {status['state']} · step {status['step']}/{status['max_steps']} · "
                       f"{status['seconds']:.0f} s · data `{status['dataset']}` · started by {status['started_by']}")
            if run.state == "comparing" and run.clips_done is not None:
                summary += f"\n\nBefore/after clips: {run.clips_done[0]}/{run.clips_done[1]} made"
            if status["error"]:
                summary += f"\n\n**Error:** {status['error']}"
            if status["lora"] and status["step"] > 0 and status["state"] in ("finished", "cancelled"):
                summary += f"\n\nLoRA: `{status['lora']}` (pick it in the Generate tab)"
        rows = status.get("comparison", [])
        comparison = [(rows[i]["before"], rows[i]["after"]) if i < len(rows) else (None, None)
                      for i in range(len(self.config.comparison_prompts))]
        return {
            "status": status,
            "summary": summary,
            "metrics": metrics_frame(list(run.history) if run is not None else []),
            "log": "\n".join(run.log) if run is not None else "",
            "comparison": comparison,
            "running": status["state"] in ACTIVE_STATES,
            "runs": runs,
        }

    def past_runs(self) -> list[dict[str, Any]]:
        """Every run in the data dir (this studio's and others'), newest first: its state (finished, cancelled,
        failed, interrupted, or an active one), steps and who started it."""
        return [
            {"run": record["run_id"], "state": record.get("state"), "steps": f"{record.get('step', 0)}/{record.get('max_steps')}",
             "started by": record.get("started_by"),
             "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(record.get("started_at") or 0))}
            for record in past_runs(self.config.runs_dir)
        ]

    def setting_defaults(self) -> dict[str, Any]:
        """Where the Train tab's inputs start, and what a request that leaves a setting out trains with:
        ``DPOConfig``'s beta, learning rate and LoRA rank, the studio's step and frame presets, and on the embedded
        default the world's taste plan over them (``huvidpo.world.taste.TASTE_DPO``, what ``bench/taste.py``
        measures). Imports the trainers (torch): call it once the page is up."""
        import_model_stack(training=True)
        from huvidpo.training import DPOConfig

        dpo_defaults = DPOConfig()  # its preset's values in place of the fields the preset fills
        defaults = {name: getattr(dpo_defaults, name) for name in TAB_DPO_SETTINGS}
        defaults.update(steps=self.config.train_steps, frames=self.config.train_frames)
        if self.config.serves_embedded_default:
            from huvidpo.world.taste import TASTE_DPO

            tab_names = {field_name: name for name, field_name in TAB_SETTING_FIELDS.items()}
            defaults.update({tab_names[name]: value for name, value in TASTE_DPO.items() if name in tab_names})
        return defaults

    def plan_settings(self) -> dict[str, Any]:
        """The DPOConfig fields of the embedded default's taste plan that the tab does not show (where the DPO loss is
        taken, the winners' anchor): every run on the embedded default trains with them; none on another model."""
        if not self.config.serves_embedded_default:
            return {}
        from huvidpo.world.taste import TASTE_DPO

        return {name: value for name, value in TASTE_DPO.items() if name not in TAB_SETTING_FIELDS.values()}

    def setting_bounds(self) -> dict[str, tuple[float, float | None]]:
        """(lowest, highest) of each setting the Train tab shows, from ``DPOConfig``'s field metadata (the Train
        tab's names: steps is max_steps, frames num_frames)."""
        import_model_stack(training=True)
        from huvidpo.training import DPOConfig

        metadata = {f.name: f.metadata for f in fields(DPOConfig)}
        return {name: (metadata[field_name]["min"], metadata[field_name].get("max"))
                for name, field_name in TAB_SETTING_FIELDS.items()}

    @staticmethod
    def _settings(run: TrainingRun) -> dict[str, Any]:
        """The request with what the run trains with in place of what it left out (None)."""
        dpo = run.dpo_config
        effective = {"beta": dpo.beta, "learning_rate": dpo.learning_rate, "steps": dpo.max_steps,
                     "lora_rank": dpo.lora_rank, "frames": dpo.num_frames, "seed": dpo.seed, "preset": dpo.preset,
                     "reference": dpo.reference, "previous_lora": Path(dpo.previous_lora).name if dpo.previous_lora else None}
        return {**asdict(run.request), **effective}

    # ------------------------------------------------------------------------------------------ worker

    def _shown(self, data: str) -> str:
        """A data path as shown to users: relative to the data dir when inside it."""
        path = Path(data)
        if path.is_absolute() and path.is_relative_to(self.config.root):
            return str(path.relative_to(self.config.root))
        return data

    def _job(self, run: TrainingRun) -> RunJob:
        """What the run's process needs: the trainer's config, the loader, and the before/after clips to make."""
        import torch

        comparison = []
        height, width = self.config.train_size or (None, None)  # the size the LoRA was trained at
        for prompt in self.config.comparison_prompts:
            settings = GenerationSettings(
                prompt=prompt,
                height=height,
                width=width,
                frames=self.config.comparison_frames,
                steps=self.config.comparison_steps,
                image_steps=self.config.comparison_steps,
                seed=self.config.comparison_seed,
            )
            comparison.append((settings, self._before_clip_path(run, settings)))
        return RunJob(run_id=run.run_id, dpo_config=run.dpo_config, load_pipeline=self._load_pipeline,
                      model_name=self.config.model_name, clips_dir=self.config.comparisons_dir / run.run_id,
                      comparison=comparison, torch_threads=torch.get_num_threads())

    def _watch(self, run: TrainingRun, job: RunJob) -> None:
        """The app's side of a run, in a thread: wait for the clips being generated on a shared GPU, start the run's
        process, apply what it reports, and say how it ended, also when it died without a word. Releases the GPU and
        the run's locks when the process has ended."""
        reported_end, process = False, None
        try:
            def waiting() -> None:
                run.say("waiting for the clip being generated on the GPU to be done (generation and training share it)")

            if not self.gpu.wait_for_generations(run.stop_event.is_set, waiting):
                run.finished_at = time.time()
                run.set_state("cancelled")
                run.say("cancelled before it started; nothing was trained")
                return
            receiver, sender = SPAWN.Pipe(duplex=False)
            process = SPAWN.Process(target=run_job, args=(job, sender, run.stop_event), name=f"train-{run.run_id}",
                                    daemon=True)  # ended by multiprocessing when the app exits
            process.start()
            sender.close()  # the process holds the only sending end: its end is the end of the messages
            run.pid = process.pid
            with receiver:
                while True:
                    try:
                        message = receiver.recv()
                    except EOFError:
                        break
                    reported_end = self._apply(run, message) or reported_end
            process.join()
            if not reported_end and not _closing.is_set():
                self._fail(run, exit_message(process.exitcode))
            process.close()
        except Exception as err:  # noqa: BLE001 - e.g. a process that could not start; the app stays up
            if process is not None and process.is_alive():  # never a run going on without its locks
                process.kill()
                process.join()
            self._fail(run, scrub_tokens(str(err) if isinstance(err, (ValueError, OSError)) else
                                         f"{type(err).__name__}: {err}"), traceback.format_exc())
        finally:
            run.finished_at = run.finished_at or time.time()
            self.gpu.release()
            for lock in reversed(run.locks):
                lock.release()

    def _apply(self, run: TrainingRun, message: tuple) -> bool:
        """Apply one message of the run's process (:mod:`.train_worker` lists them); True for the last one."""
        kind, *values = message
        if kind == "state":
            run.set_state(values[0])
        elif kind == "say":
            run.say(values[0])
        elif kind == "metrics":
            run.on_metrics(values[0])
        elif kind == "lora":
            run.lora_path = Path(values[0])
        elif kind == "clips":
            run.clips_done = (values[0], values[1])
        elif kind == "comparison":
            run.comparison.append(values[0])
        elif kind == "ended":
            run.finished_at = time.time()
            run.set_state(values[0])
            return True
        elif kind == "failed":
            self._fail(run, values[0], values[1])
            return True
        return False

    @staticmethod
    def _fail(run: TrainingRun, error: str, trace: str | None = None) -> None:
        """End ``run`` as failed with ``error`` in its status and log (a Hub error body may echo the token: scrubbed)."""
        run.error = scrub_tokens(error)
        run.finished_at = time.time()
        try:
            run.set_state("failed")
        except OSError:
            run.state = "failed"
        run.say(f"failed: {run.error}")
        logger.error("Training run %s failed: %s", run.run_id, scrub_tokens(trace) if trace else run.error)

    def _before_clip_path(self, run: TrainingRun, settings: GenerationSettings) -> Path:
        """Where the base model's clip for ``settings`` is kept: named by the model (and, for a folder, the time its
        weights were written, so a rebuilt model gets new clips) and the settings."""
        model = run.dpo_config.model or default_model_path()
        identity = model if is_hub_id(model) else str(Path(model).expanduser().resolve())
        index = Path(identity) / "model_index.json"
        written = index.stat().st_mtime_ns if index.is_file() else None
        key = json.dumps({"model": identity, "written": written, "settings": settings.to_dict()}, sort_keys=True)
        return self.config.comparisons_dir / BEFORE_CLIPS_DIR / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.mp4"


def metrics_frame(history: list[dict[str, Any]]):
    """The metrics history as a DataFrame with the plotted columns (step, loss, accuracy, margin)."""
    import pandas as pd

    columns = {"step": "step", "loss": "loss", "rewards/accuracies": "accuracy", "rewards/margins": "margin"}
    rows = [{new: row.get(old) for old, new in columns.items()} for row in history]
    # float columns even when empty: the plots take their axis types from the first value they get
    return pd.DataFrame(rows, columns=list(columns.values())).astype(float)
