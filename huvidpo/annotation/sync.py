"""Background push of the annotation folder (vote log, pool manifest, videos) to a Hub dataset repo.

Why not `huggingface_hub.CommitScheduler` as is: its constructor calls `create_repo` (so an offline start
fails), its thread only notices `stop()` after a full interval, and it exposes no status. `HubSync` keeps its
upload strategy (append-only folder, upload only files changed since the last successful push, JSON-lines
capped at their size when listed) and adds what maintainers need:
- a push that fails is retried with backoff (after `retry_seconds`, then twice as long each time, up to the
  interval; files are only marked uploaded after a successful commit), and the error is visible in `status()`;
- every Hub request has a timeout (`huvidpo.hub_calls.use_hub_timeouts`) and `stop()` waits for the final push
  at most `stop_timeout` seconds, so a stalled Hub endpoint never hangs the sync nor the app's shutdown;
- local files are only ever read: a `*.jsonl` file is read into memory up to its last complete line, so a
  vote being appended during a push is never uploaded half written;
- the token comes from the argument or the usual login (`HfApi` resolves it) and lives only inside the
  `HfApi` client: it is never logged nor put in `status()`, and error texts go through `scrub_tokens`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from huggingface_hub import CommitOperationAdd, HfApi, get_token

from huvidpo.annotation.votes import utc_now_iso
from huvidpo.hub_calls import scrub_tokens, use_hub_timeouts

logger = logging.getLogger(__name__)

REPO_TYPE = "dataset"
SKIPPED_NAME_PREFIXES = (".", "__pycache__")
SKIPPED_NAME_SUFFIXES = (".lock", ".tmp")
RETRY_SECONDS = 10.0  # first retry after a failed push; doubles up to the interval
STOP_TIMEOUT = 30.0  # the most `stop()` waits for the final push


class CommitApi(Protocol):
    """The two `HfApi` methods `HubSync` uses (a local stand-in in tests)."""

    def create_repo(self, repo_id: str, **kwargs: Any) -> Any: ...

    def create_commit(self, repo_id: str, operations: Any, **kwargs: Any) -> Any: ...


@dataclass
class SyncStatus:
    """What a maintainer wants to know about the sync; contains no secret."""

    repo_id: str
    running: bool = False
    last_push_at: str | None = None
    last_attempt_at: str | None = None
    last_error: str | None = None
    pushes_ok: int = 0
    pushes_failed: int = 0
    pending: int = 0


FileSignature = tuple[int, int]  # (size in bytes, mtime in ns)


class HubSync:
    """Push `folder` to the dataset repo `repo_id` every `every_minutes` (and on `push_now`, `stop` and exit).

    Like `CommitScheduler`, it starts on construction (`autostart=False` to call `start()` yourself).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        repo_id: str,
        every_minutes: float = 5,
        token: str | None = None,
        hf_api: CommitApi | None = None,
        path_in_repo: str = "",
        private: bool = True,
        revision: str | None = None,
        autostart: bool = True,
        retry_seconds: float = RETRY_SECONDS,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        if not every_minutes > 0:
            raise ValueError(f"every_minutes must be positive, got {every_minutes}")
        use_hub_timeouts()
        self.retry_seconds = min(retry_seconds, every_minutes * 60)
        self.stop_timeout = stop_timeout
        self.folder = Path(folder).expanduser().resolve()
        self.repo_id = repo_id
        self.every_minutes = every_minutes
        self.path_in_repo = path_in_repo.strip("/")
        self.private = private
        self.revision = revision
        self._secret = token if token is not None or hf_api is not None else get_token()
        self._api: CommitApi = hf_api if hf_api is not None else HfApi(token=self._secret)
        self._uploaded: dict[str, FileSignature] = {}
        self._repo_ready = False
        self._status = SyncStatus(repo_id=repo_id)
        self._push_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._next_attempt_at = time.monotonic() + every_minutes * 60
        if autostart:
            self.start()

    def start(self) -> "HubSync":
        """Start the background thread (idempotent); pushes happen every interval and once at interpreter exit."""
        if self._thread is None or not self._thread.is_alive():
            self._stop_event.clear()
            self._next_attempt_at = time.monotonic() + self.every_minutes * 60
            self._thread = threading.Thread(target=self._run, name=f"HubSync({self.repo_id})", daemon=True)
            self._thread.start()
            atexit.register(self._final_push)
        return self

    def stop(self, final_push: bool = True) -> bool:
        """Stop the background thread, then push once more (unless `final_push=False`), waiting at most
        `stop_timeout` seconds in all; False if a push was still running then (it ends with its HTTP timeout)."""
        self._stop_event.set()
        atexit.unregister(self._final_push)
        deadline = time.monotonic() + self.stop_timeout
        if self._thread is not None:
            self._thread.join(self.stop_timeout)
            if self._thread.is_alive():
                logger.warning("Hub sync to %s: a push is still running after %.0f s; not waiting for it.",
                               self.repo_id, self.stop_timeout)
                return False
            self._thread = None
        return self._final_push(max(0.0, deadline - time.monotonic())) if final_push else True

    def _final_push(self, timeout: float | None = None) -> bool:
        """One last push in a daemon thread, waited for at most ``timeout`` seconds (default `stop_timeout`)."""
        worker = threading.Thread(target=self.push_now, name=f"HubSync-final({self.repo_id})", daemon=True)
        worker.start()
        worker.join(self.stop_timeout if timeout is None else timeout)
        if worker.is_alive():
            logger.warning("Hub sync to %s: the final push did not finish in time; the votes stay local and are pushed "
                           "at the next start.", self.repo_id)
            return False
        return True

    def __enter__(self) -> "HubSync":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def push_now(self) -> bool:
        """Push the changed files now; True on success (or nothing to push), False if the push failed."""
        with self._push_lock:
            attempt_at = utc_now_iso()
            try:
                pushed = self._push_changed_files()
            except Exception as error:  # any failure (network, auth, quota) is reported and retried with backoff
                message = scrub_tokens(f"{type(error).__name__}: {error}", self._secret, getattr(self._api, "token", None))
                logger.warning("Hub sync of %s to %s failed: %s", self.folder, self.repo_id, message)
                with self._status_lock:
                    self._status.last_attempt_at = attempt_at
                    self._status.pushes_failed += 1
                    self._status.last_error = message
                self._schedule_next(ok=False)
                return False
            self._schedule_next(ok=True)
            with self._status_lock:
                self._status.last_attempt_at = attempt_at
                self._status.last_error = None
                if pushed:
                    self._status.pushes_ok += 1
                    self._status.last_push_at = utc_now_iso()
            return True

    def status(self) -> dict[str, Any]:
        """last_push_at, last_error, pushes_ok, pushes_failed, pending (files not pushed yet), running, ..."""
        with self._status_lock:
            status = SyncStatus(**asdict(self._status))
        status.running = self._thread is not None and self._thread.is_alive()
        status.pending = len(self._changed_files())
        return asdict(status)

    def _run(self) -> None:
        while True:
            wait = self._next_attempt_at - time.monotonic()
            if wait > 0:  # checked every second: a push failing meanwhile (push_now) brings the next attempt forward
                if self._stop_event.wait(min(wait, 1.0)):
                    return
                continue
            if self._stop_event.is_set():
                return
            self.push_now()

    def _schedule_next(self, ok: bool) -> None:
        """After a push: the next one an interval later, or, after ``n`` failures in a row, ``retry_seconds * 2**(n-1)``
        later (at most an interval)."""
        interval = self.every_minutes * 60
        self._failures = 0 if ok else self._failures + 1
        delay = interval if ok else min(interval, self.retry_seconds * 2 ** (self._failures - 1))
        self._next_attempt_at = time.monotonic() + delay

    def _push_changed_files(self) -> bool:
        changed = self._changed_files()
        if not changed:
            return False
        if not self._repo_ready:
            self._api.create_repo(repo_id=self.repo_id, repo_type=REPO_TYPE, private=self.private, exist_ok=True)
            self._repo_ready = True
        operations = []
        signatures = {}
        for relative_path, signature in changed.items():
            operations.append(
                CommitOperationAdd(
                    path_in_repo=f"{self.path_in_repo}/{relative_path}" if self.path_in_repo else relative_path,
                    path_or_fileobj=self._snapshot(self.folder / relative_path, signature),
                )
            )
            signatures[relative_path] = signature
        self._api.create_commit(
            repo_id=self.repo_id,
            operations=operations,
            commit_message=f"HuViDPO annotation sync ({len(operations)} files)",
            repo_type=REPO_TYPE,
            revision=self.revision,
        )
        self._uploaded.update(signatures)
        return True

    def _changed_files(self) -> dict[str, FileSignature]:
        """Files (relative posix path -> signature) that differ from what was last pushed successfully."""
        changed = {}
        if not self.folder.is_dir():
            return changed
        for path in sorted(self.folder.rglob("*")):
            relative = path.relative_to(self.folder)
            if not path.is_file() or _is_skipped(relative):
                continue
            stat = path.stat()
            signature = (stat.st_size, stat.st_mtime_ns)
            if self._uploaded.get(relative.as_posix()) != signature:
                changed[relative.as_posix()] = signature
        return changed

    @staticmethod
    def _snapshot(path: Path, signature: FileSignature) -> str | bytes:
        """A JSON-lines log as bytes up to its last complete line (it may grow meanwhile); other files by path."""
        if path.suffix != ".jsonl":
            return str(path)
        with open(path, "rb") as log:
            data = log.read(signature[0])
        return data[: data.rfind(b"\n") + 1]


def _is_skipped(relative: Path) -> bool:
    return any(part.startswith(SKIPPED_NAME_PREFIXES) for part in relative.parts) or relative.name.endswith(
        SKIPPED_NAME_SUFFIXES
    )
