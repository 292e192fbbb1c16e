"""Background push of the annotation folder (vote log, pool manifest, videos) to a Hub dataset repo.

Why not `huggingface_hub.CommitScheduler` as is: its constructor calls `create_repo` (so an offline start
fails), its thread only notices `stop()` after a full interval, and it exposes no status. `HubSync` keeps its
upload strategy (append-only folder, upload only files changed since the last successful push, JSON-lines
capped at their size when listed) and adds what maintainers need:
- a push that fails is simply retried at the next tick (files are only marked uploaded after a successful
  commit), and the error is visible in `status()`;
- local files are only ever read: a `*.jsonl` file is read into memory up to its last complete line, so a
  vote being appended during a push is never uploaded half written;
- the token comes from the argument or the usual login (`HfApi` resolves it) and lives only inside the
  `HfApi` client: it is never logged nor put in `status()` (it is also scrubbed from error messages).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from huggingface_hub import CommitOperationAdd, HfApi, get_token

from huvidpo.annotation.votes import utc_now_iso

logger = logging.getLogger(__name__)

REPO_TYPE = "dataset"
SKIPPED_NAME_PREFIXES = (".", "__pycache__")
SKIPPED_NAME_SUFFIXES = (".lock", ".tmp")


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
    ) -> None:
        if not every_minutes > 0:
            raise ValueError(f"every_minutes must be positive, got {every_minutes}")
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
        if autostart:
            self.start()

    def start(self) -> "HubSync":
        """Start the background thread (idempotent); pushes happen every interval and once at interpreter exit."""
        if self._thread is None or not self._thread.is_alive():
            self._stop_event.clear()
            self._thread = threading.Thread(target=self._run, name=f"HubSync({self.repo_id})", daemon=True)
            self._thread.start()
            atexit.register(self.push_now)
        return self

    def stop(self, final_push: bool = True) -> None:
        """Stop the background thread, then push once more (unless `final_push=False`)."""
        self._stop_event.set()
        atexit.unregister(self.push_now)
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if final_push:
            self.push_now()

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
            except Exception as error:  # any failure (network, auth, quota) is reported and retried next tick
                message = self._scrub(f"{type(error).__name__}: {error}")
                logger.warning("Hub sync of %s to %s failed: %s", self.folder, self.repo_id, message)
                with self._status_lock:
                    self._status.last_attempt_at = attempt_at
                    self._status.pushes_failed += 1
                    self._status.last_error = message
                return False
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
        while not self._stop_event.wait(self.every_minutes * 60):
            self.push_now()

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

    def _scrub(self, message: str) -> str:
        secret = self._secret or getattr(self._api, "token", None)
        if isinstance(secret, str) and secret:
            message = message.replace(secret, "***")
        return message


def _is_skipped(relative: Path) -> bool:
    return any(part.startswith(SKIPPED_NAME_PREFIXES) for part in relative.parts) or relative.name.endswith(
        SKIPPED_NAME_SUFFIXES
    )
