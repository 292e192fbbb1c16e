"""Votes as append-only JSON lines that survive crashes and concurrent writers.

What is unusual here:
- One vote is one line, written by a single `os.write` of the whole line on an `O_APPEND` descriptor and
  fsynced, under a `threading.Lock` (threads of one app) *and* a `filelock.FileLock` on the sibling
  `<log>.lock` file (several processes; the OS drops it when a holder dies, even by kill -9). Readers take
  the same lock, so they never see a line being written. Lines therefore never interleave and a returned
  `append` is on disk. A log nobody here can write to (a read-only copy) is read without the lock.
- A record counts only when its whole line, newline included, is on disk: a write cut short (a full disk, a
  kill -9 mid-write) never counts, even when the bytes before the newline parse, since its writer was told it
  failed. A writer whose write fails truncates the file back to where it started; a torn tail left by a dead
  writer is truncated, with a logged count of the bytes dropped, when a `VoteStore` opens the log and before
  the next append (both under the lock, so no writer is mid-line). Plain readers never modify the file: they
  skip a torn tail and count it, with any other unparsable line, in `skipped_lines`.
- Undo is a record too (`choice="undo"` with `undone_vote_id`): nothing is ever rewritten or deleted, and
  `effective_votes()` replays the log with the undos applied.
- Reads are incremental: only bytes appended since the previous read are parsed.
- A vote on a gold pair (a clip against a degraded copy of itself) carries ``gold``, the clip that should win:
  it measures the labeler and is never counted as data (`data_votes`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Generic, TypeVar

from filelock import FileLock

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_SCORE = 10
LOCK_SUFFIX = ".lock"
# A waiter polls a held FileLock; its 50 ms default would dominate a vote, which holds the lock for one fsync.
LOCK_POLL_SECONDS = 0.002

RecordT = TypeVar("RecordT")


def utc_now_iso() -> str:
    """Current UTC time as an ISO-8601 string with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def pair_id_for(clip_a: str, clip_b: str) -> str:
    """Canonical id of the unordered pair {clip_a, clip_b}: the same whichever clip is shown on the left."""
    first, second = sorted((clip_a, clip_b))
    return f"{first}|{second}"


def clean_labeler_name(labeler: str | None) -> str:
    """Strip a labeler name, raising a `ValueError` a user can act on when it is empty."""
    name = (labeler or "").strip()
    if not name:
        raise ValueError("labeler name is empty: enter your name (or sign in with Hugging Face) before voting")
    return name


class Choice(str, Enum):
    """What a labeler said about a pair. `UNDO` marks an undo record and is never a judgement."""

    LEFT = "left"
    RIGHT = "right"
    TIE = "tie"
    BOTH_BAD = "both_bad"
    SKIP = "skip"
    UNDO = "undo"

    @classmethod
    def parse(cls, value: "Choice | str") -> "Choice":
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(choice.value for choice in cls.judgements())
            raise ValueError(f"unknown choice {value!r}: expected one of {valid}") from None

    @classmethod
    def judgements(cls) -> tuple["Choice", ...]:
        """The choices a labeler can click (everything except the internal undo record)."""
        return (cls.LEFT, cls.RIGHT, cls.TIE, cls.BOTH_BAD, cls.SKIP)

    @property
    def is_decisive(self) -> bool:
        return self in (Choice.LEFT, Choice.RIGHT)


def _check_score(name: str, score: Any) -> None:
    if score is None:
        return
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= MAX_SCORE:
        raise ValueError(f"{name} must be an integer from 0 to {MAX_SCORE} (or empty), got {score!r}")


@dataclass(frozen=True, kw_only=True)
class Vote:
    """One labeler judgement (or one undo record) = one JSON line of the vote log."""

    labeler: str
    choice: Choice
    left_clip: str = ""
    right_clip: str = ""
    prompt: str = ""
    session_id: str = ""
    pair_id: str = ""
    left_settings: dict[str, Any] = field(default_factory=dict)
    right_settings: dict[str, Any] = field(default_factory=dict)
    left_score: int | None = None
    right_score: int | None = None
    response_ms: int | None = None
    served_at: str | None = None
    undone_vote_id: str | None = None
    gold: str | None = None  # on a gold pair (a check, never data): the clip the labeler should prefer
    vote_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: str = field(default_factory=utc_now_iso)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "labeler", clean_labeler_name(self.labeler))
        object.__setattr__(self, "choice", Choice.parse(self.choice))
        _check_score("left_score", self.left_score)
        _check_score("right_score", self.right_score)
        if self.choice is Choice.UNDO:
            if not self.undone_vote_id:
                raise ValueError("an undo record needs undone_vote_id")
            return
        if not self.left_clip or not self.right_clip:
            raise ValueError("a vote needs both left_clip and right_clip")
        if self.left_clip == self.right_clip:
            raise ValueError(f"a vote compares two different clips, got {self.left_clip!r} twice")
        if not self.pair_id:
            object.__setattr__(self, "pair_id", pair_id_for(self.left_clip, self.right_clip))
        if self.gold is not None and self.gold not in (self.left_clip, self.right_clip):
            raise ValueError(f"a gold vote's expected winner {self.gold!r} must be one of its two clips")

    @property
    def winner_clip(self) -> str | None:
        return {Choice.LEFT: self.left_clip, Choice.RIGHT: self.right_clip}.get(self.choice)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["choice"] = self.choice.value
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "Vote":
        """Build a vote from a log record; keys unknown to this schema version are ignored."""
        if not isinstance(record, dict):
            raise ValueError(f"a vote record is a JSON object, got {type(record).__name__}")
        if int(record.get("schema_version", SCHEMA_VERSION)) > SCHEMA_VERSION:
            raise ValueError(f"vote written by a newer schema version {record['schema_version']}")
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in record.items() if key in known})


class JsonLinesLog(Generic[RecordT]):
    """An append-only JSON-lines file safe for many threads and processes; used for votes and the clip manifest.

    `parse` turns one decoded JSON value into a record and raises on bad input; such lines are skipped and
    counted in `skipped_lines` (the file itself is never modified by reading).
    """

    def __init__(self, path: str | os.PathLike, parse: Callable[[Any], RecordT]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + LOCK_SUFFIX)
        self._parse = parse
        self._thread_lock = threading.Lock()
        self._cached_records: list[RecordT] = []
        self._cached_offset = 0
        self._cached_skipped = 0
        self._cached_file_identity: tuple[int, int] | None = None
        self._resets = 0  # times the cache started over (a new file, or one cut shorter)
        self.skipped_lines = 0

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records as lines: one write, fsynced, never interleaved with another writer."""
        with self.transaction() as transaction:
            transaction.append(records)

    def read(self) -> list[RecordT]:
        """All parsable records in file order (a torn or bad line is skipped, see `skipped_lines`)."""
        return self.read_versioned()[0]

    def read_versioned(self) -> tuple[list[RecordT], tuple[int, int]]:
        """`read()` and a version of what was read: equal versions mean equal records (the log only grows), so
        a caller may keep what it computed from them."""
        if not self.path.exists():
            self.skipped_lines = 0
            return [], (-1, 0)
        with self._thread_lock, self._process_lock(reading=True):
            fd = os.open(self.path, os.O_RDONLY)
            try:
                records = self._read_locked(fd)
                return records, (self._resets, len(records))
            finally:
                os.close(fd)

    @contextmanager
    def transaction(self) -> Iterator["_LogTransaction[RecordT]"]:
        """Hold the exclusive lock to read and then append atomically (no other writer in between)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, self._process_lock():
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                yield _LogTransaction(self, fd)
            finally:
                os.close(fd)

    @contextmanager
    def _process_lock(self, reading: bool = False) -> Iterator[None]:
        """Hold the lock that orders this log's readers and writers across processes.

        A new `FileLock` each time: one made before a fork refuses to work in the child.
        """
        lock = FileLock(self.lock_path)
        try:
            lock.acquire(poll_interval=LOCK_POLL_SECONDS)
        except OSError:
            if not reading or os.access(self.path, os.W_OK):
                raise
            yield  # no lock file can be made beside a log nobody here can write to, and no writer needs one
            return
        try:
            yield
        finally:
            lock.release()

    def _read_locked(self, fd: int) -> list[RecordT]:
        stat = os.fstat(fd)
        identity = (stat.st_dev, stat.st_ino)
        if identity != self._cached_file_identity or stat.st_size < self._cached_offset:
            self._cached_records, self._cached_offset, self._cached_skipped = [], 0, 0
            self._cached_file_identity = identity
            self._resets += 1
        new_bytes = _pread_all(fd, self._cached_offset, stat.st_size - self._cached_offset)
        complete_end = new_bytes.rfind(b"\n") + 1
        for line in new_bytes[:complete_end].split(b"\n"):
            self._parse_line_into(line, self._cached_records)
        self._cached_offset += complete_end
        tail_skipped = 1 if new_bytes[complete_end:].strip() else 0  # a torn line never counts, even if it parses
        self.skipped_lines = self._cached_skipped + tail_skipped
        return list(self._cached_records)

    def _parse_line_into(self, line: bytes, records: list[RecordT]) -> bool:
        """Append the parsed line to `records`; blank lines are ignored. False if the line is unparsable."""
        if not line.strip():
            return True
        try:
            records.append(self._parse(json.loads(line.decode("utf-8"))))
            return True
        except (ValueError, TypeError, KeyError):
            if records is self._cached_records:
                self._cached_skipped += 1
            return False

    def repair(self) -> int:
        """Truncate a torn last line (left by a writer that died or whose disk filled mid-line); returns the bytes
        dropped (0: the log was whole, missing, or nobody here may write it)."""
        if not self.path.exists() or not os.access(self.path, os.W_OK):
            return 0
        with self.transaction() as transaction:
            return transaction.repair()

    def _repair_locked(self, fd: int) -> int:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return 0
        whole = size
        while whole > 0:  # back to the end of the last complete line
            start = max(0, whole - 65536)
            newline = _pread_all(fd, start, whole - start).rfind(b"\n")
            if newline >= 0:
                whole = start + newline + 1
                break
            whole = start
        os.ftruncate(fd, whole)
        os.fsync(fd)
        logger.warning("%s: dropped a torn last line (%d bytes) that a failed or killed writer left", self.path, size - whole)
        return size - whole

    def _append_locked(self, fd: int, records: list[dict[str, Any]]) -> None:
        payload = b"".join(
            (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8") for record in records
        )
        self._repair_locked(fd)
        size = os.fstat(fd).st_size
        written = 0
        try:
            while written < len(payload):
                count = os.write(fd, payload[written:])
                if count == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
                written += count
            os.fsync(fd)
        except OSError:
            self._undo_append(fd, size)
            raise
        if size == 0:
            _fsync_directory(self.path.parent)

    def _undo_append(self, fd: int, size: int) -> None:
        """After a failed write: cut the file back to ``size``, so a record the caller was told failed never counts."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as err:  # the next append or open truncates the torn tail instead
            logger.error("%s: could not remove a failed write's partial line: %r", self.path, err)


class _LogTransaction(Generic[RecordT]):
    """The view of a `JsonLinesLog` while its exclusive lock is held."""

    def __init__(self, log: JsonLinesLog[RecordT], fd: int) -> None:
        self._log = log
        self._fd = fd

    def records(self) -> list[RecordT]:
        return self._log._read_locked(self._fd)

    def append(self, records: list[dict[str, Any]]) -> None:
        self._log._append_locked(self._fd, records)

    def repair(self) -> int:
        return self._log._repair_locked(self._fd)


def _pread_all(fd: int, offset: int, length: int) -> bytes:
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class VoteStore:
    """The vote log: append-only, crash-safe, shared by threads and processes; a restart resumes from the file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self._log: JsonLinesLog[Vote] = JsonLinesLog(path, Vote.from_dict)
        self._effective: tuple[tuple[int, int] | None, list[Vote]] = (None, [])
        self.repaired_bytes = self._log.repair()  # a torn tail from a crash before this start

    @property
    def path(self) -> Path:
        return self._log.path

    @property
    def skipped_lines(self) -> int:
        """Unparsable lines seen by the last read (a torn last line included)."""
        return self._log.skipped_lines

    def append(self, vote: Vote) -> Vote:
        self._log.append([vote.to_dict()])
        return vote

    def read(self) -> list[Vote]:
        """Every record in the log, undo records included, in write order."""
        return self._log.read()

    def votes(self, labeler: str | None = None) -> list[Vote]:
        """Judgements as written (undo records excluded, votes later undone still included)."""
        return [
            vote
            for vote in self.read()
            if vote.choice is not Choice.UNDO and (labeler is None or vote.labeler == labeler)
        ]

    def effective_votes(self, labeler: str | None = None) -> list[Vote]:
        """Judgements with the undos applied: what the labelers currently stand by (computed once per new record:
        every vote, page and stats view asks for them)."""
        records, version = self._log.read_versioned()
        cached_version, effective = self._effective
        if cached_version != version:
            effective = apply_undos(records, None)
            self._effective = (version, effective)
        return [vote for vote in effective if labeler is None or vote.labeler == labeler]

    def undo_last(self, labeler: str, session_id: str) -> Vote | None:
        """Undo this labeler's latest effective vote in this session; returns the undone vote (None if none)."""
        labeler = clean_labeler_name(labeler)
        with self._log.transaction() as transaction:
            records = transaction.records()
            for vote in reversed(apply_undos(records, labeler)):
                if vote.session_id == session_id:
                    undo = Vote(
                        labeler=labeler,
                        session_id=session_id,
                        choice=Choice.UNDO,
                        undone_vote_id=vote.vote_id,
                        pair_id=vote.pair_id,
                        prompt=vote.prompt,
                        left_clip=vote.left_clip,
                        right_clip=vote.right_clip,
                    )
                    transaction.append([undo.to_dict()])
                    return vote
        return None

    def __len__(self) -> int:
        return len(self.votes())


def data_votes(votes: list[Vote]) -> list[Vote]:
    """The votes that are data: gold checks left out."""
    return [vote for vote in votes if vote.gold is None]


def apply_undos(records: list[Vote], labeler: str | None) -> list[Vote]:
    undone = {record.undone_vote_id for record in records if record.choice is Choice.UNDO}
    return [
        record
        for record in records
        if record.choice is not Choice.UNDO
        and record.vote_id not in undone
        and (labeler is None or record.labeler == labeler)
    ]
