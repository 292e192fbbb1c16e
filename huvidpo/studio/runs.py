"""Training runs on disk, shared by every studio on one data dir: claiming a run folder, the lock a live run holds,
and the record that says how each run ended.

What is unusual here:
- A run folder is claimed by ``mkdir`` itself (it fails if the folder exists), never by "check, then create": two
  studios starting a run in the same second get two folders.
- A live run holds ``<run>/.run.lock`` (a ``filelock.FileLock``) for its whole life. The OS drops the lock when
  the process dies, even by kill -9, so a run whose record says it is active but whose lock is free was
  interrupted; every studio on the data dir sees the same.
- ``run.json`` is rewritten whole (temporary file, then ``os.replace``) at each change of state, so a reader
  never sees half a record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

RECORD_NAME = "run.json"
LOCK_NAME = ".run.lock"
METRICS_NAME = "metrics.jsonl"  # the trainer's (huvidpo.training.trainer.METRICS_NAME), read without torch
LORA_FILE = "pytorch_lora_weights.safetensors"  # a DPO run's LoRA (huvidpo.hub.LORA_WEIGHT_NAME), checked without torch
ACTIVE_STATES = ("starting", "exporting", "loading", "running", "comparing")
INTERRUPTED = "interrupted"


def claim_dir(parent: Path, name: str) -> Path:
    """Create and return ``parent/name`` (or ``name-2``, ``-3``... when taken): the ``mkdir`` is the claim."""
    parent.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        candidate = parent / (name if number == 1 else f"{name}-{number}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1


def hold_run_lock(run_dir: Path) -> FileLock:
    """Take the run's lock (held until ``release()`` or the process ends); a ``ValueError`` if a live run holds it."""
    lock = FileLock(run_dir / LOCK_NAME)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ValueError(f"The run {run_dir.name} is running in another studio on this data dir.") from None
    return lock


def is_live(run_dir: Path) -> bool:
    """Whether a process (this one or another) holds the run's lock."""
    if not (run_dir / LOCK_NAME).exists():
        return False
    lock = FileLock(run_dir / LOCK_NAME)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:  # a read-only data dir: nobody can be training in it
        return False
    lock.release()
    return False


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Replace ``run.json`` atomically."""
    temporary = run_dir / f".{RECORD_NAME}.tmp"
    temporary.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    os.replace(temporary, run_dir / RECORD_NAME)


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's record with its ``state`` as it is now: an active state whose lock nobody holds is 'interrupted'."""
    try:
        record = json.loads((run_dir / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("state") in ACTIVE_STATES and not is_live(run_dir):
        record["state"] = INTERRUPTED
    record["run_id"] = run_dir.name
    return record


def trained_steps(run_dir: Path) -> int:
    """The last step in the run's ``metrics.jsonl`` (0: nothing was trained)."""
    try:
        lines = (run_dir / METRICS_NAME).read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line).get("step", 0))
        except (ValueError, AttributeError, TypeError):
            continue
    return 0


def trained_run(run_dir: Path) -> bool:
    """Whether a run folder's LoRA learnt anything (a run cancelled before its first step saved an untrained one),
    and the run is not training right now."""
    record = read_record(run_dir)
    if record is not None and record.get("state") in ACTIVE_STATES:
        return False
    return trained_steps(run_dir) > 0


def newest_finished_run(runs_dir: Path) -> Path | None:
    """The folder of the newest run that finished with a trained LoRA (the next preference round's model), or None."""
    for record in past_runs(runs_dir):
        folder = runs_dir / record["run_id"]
        if record.get("state") == "finished" and trained_steps(folder) > 0 and (folder / LORA_FILE).is_file():
            return folder
    return None


def past_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """The records of the runs in ``runs_dir``, newest first."""
    if not runs_dir.is_dir():
        return []
    records = [record for folder in runs_dir.iterdir() if folder.is_dir() and (record := read_record(folder))]
    return sorted(records, key=lambda record: record.get("started_at", 0), reverse=True)
