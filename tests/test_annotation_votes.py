"""VoteStore: nothing lost, nothing duplicated, under threads, processes, kills, torn lines and restarts."""

import errno
import json
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

from huvidpo.annotation.votes import LOCK_SUFFIX, Choice, Vote, VoteStore, pair_id_for

REPO_ROOT = Path(__file__).resolve().parent.parent


def make_vote(labeler: str = "alice", index: int = 0, choice: str = "left", session_id: str = "s1") -> Vote:
    return Vote(
        labeler=labeler,
        session_id=session_id,
        prompt="a horse running on the grassland",
        left_clip=f"clip{index}a",
        right_clip=f"clip{index}b",
        left_settings={"model": "tiny", "seed": index},
        right_settings={"model": "tiny", "lora": "dpo", "seed": index},
        choice=choice,
    )


def append_votes_worker(path: str, worker: int, count: int) -> None:
    store = VoteStore(path)
    for index in range(count):
        store.append(make_vote(labeler=f"process{worker}", index=index))


def append_forever_worker(path: str, twenty_written) -> None:
    store = VoteStore(path)
    index = 0
    while True:
        store.append(make_vote(labeler="doomed", index=index))
        index += 1
        if index == 20:
            twenty_written.set()


def raw_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line]


def test_vote_is_one_json_line_and_round_trips(tmp_path):
    vote = make_vote(choice="right")
    assert vote.choice is Choice.RIGHT
    assert vote.winner_clip == "clip0b"
    assert vote.pair_id == pair_id_for("clip0b", "clip0a")
    store = VoteStore(tmp_path / "votes.jsonl")
    store.append(vote)
    data = store.path.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert Vote.from_dict(json.loads(data)) == vote
    assert make_vote(choice="tie").winner_clip is None
    assert make_vote(choice="both_bad").winner_clip is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"labeler": "   "}, "labeler name is empty"),
        ({"left_score": 11}, "left_score must be an integer from 0 to 10"),
        ({"right_score": -1}, "right_score must be an integer from 0 to 10"),
        ({"left_score": 7.5}, "left_score must be an integer"),
        ({"choice": "maybe"}, "unknown choice 'maybe'"),
        ({"right_clip": "clip0a"}, "two different clips"),
    ],
)
def test_bad_votes_raise_clear_value_errors(overrides, message):
    fields = make_vote().to_dict() | overrides
    fields.pop("vote_id"), fields.pop("timestamp"), fields.pop("pair_id")
    with pytest.raises(ValueError, match=message):
        Vote(**fields)


def test_eight_threads_never_lose_or_duplicate_a_vote(tmp_path):
    store = VoteStore(tmp_path / "votes.jsonl")

    def vote_fifty_times(worker: int) -> None:
        for index in range(50):
            store.append(make_vote(labeler=f"thread{worker}", index=index))

    threads = [threading.Thread(target=vote_fifty_times, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    votes = store.read()
    assert len(votes) == 400
    assert len({vote.vote_id for vote in votes}) == 400
    assert store.skipped_lines == 0
    assert len([json.loads(line) for line in raw_lines(store.path)]) == 400


def test_three_processes_never_lose_or_duplicate_a_vote(tmp_path):
    path = tmp_path / "votes.jsonl"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=append_votes_worker, args=(str(path), worker, 50)) for worker in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    store = VoteStore(path)
    votes = store.read()
    assert len(votes) == 150
    assert len({vote.vote_id for vote in votes}) == 150
    assert store.skipped_lines == 0
    for worker in range(3):
        assert len(store.votes(labeler=f"process{worker}")) == 50
    assert all(json.loads(line) for line in raw_lines(path))


def test_process_killed_while_writing_leaves_a_readable_log(tmp_path):
    path = tmp_path / "votes.jsonl"
    context = multiprocessing.get_context("spawn")
    twenty_written = context.Event()
    process = context.Process(target=append_forever_worker, args=(str(path), twenty_written))
    process.start()
    assert twenty_written.wait(timeout=60), "the writer never got 20 votes on disk"
    os.kill(process.pid, signal.SIGKILL)
    process.join(timeout=10)

    store = VoteStore(path)
    written = store.read()
    assert len(written) >= 20
    assert store.skipped_lines <= 1
    survivor = store.append(make_vote(labeler="survivor"))
    after = store.read()
    assert len(after) == len(written) + 1
    assert after[-1].vote_id == survivor.vote_id
    assert json.loads(raw_lines(path)[-1])["labeler"] == "survivor"


def test_torn_last_line_is_skipped_by_readers_and_truncated_on_open(tmp_path, caplog):
    path = tmp_path / "votes.jsonl"
    first_store = VoteStore(path)
    kept = [first_store.append(make_vote(index=index)) for index in range(3)]
    data = path.read_bytes()
    last_line_start = data.rstrip(b"\n").rfind(b"\n") + 1
    torn = data[: last_line_start + (len(data) - last_line_start) // 2]
    path.write_bytes(torn)

    assert [vote.vote_id for vote in first_store.read()] == [vote.vote_id for vote in kept[:2]]
    assert first_store.skipped_lines == 1
    assert path.read_bytes() == torn, "a plain read never modifies the file"

    with caplog.at_level(logging.WARNING, logger="huvidpo.annotation.votes"):
        restarted = VoteStore(path)
    assert restarted.repaired_bytes == len(torn) - last_line_start
    assert f"({len(torn) - last_line_start} bytes)" in caplog.text
    assert path.read_bytes() == data[:last_line_start]
    assert [vote.vote_id for vote in restarted.read()] == [vote.vote_id for vote in kept[:2]]
    assert restarted.skipped_lines == 0

    new_vote = restarted.append(make_vote(labeler="bob"))
    votes = VoteStore(path).read()
    assert [vote.vote_id for vote in votes] == [kept[0].vote_id, kept[1].vote_id, new_vote.vote_id]
    assert len(raw_lines(path)) == 3


def test_a_line_cut_just_before_its_newline_never_counts(tmp_path):
    """The whole record but not its newline reached the disk, and the writer was told the write failed."""
    path = tmp_path / "votes.jsonl"
    store = VoteStore(path)
    kept = store.append(make_vote(index=0))
    whole_line = json.dumps(make_vote(index=1).to_dict(), sort_keys=True).encode()
    with open(path, "ab") as log:
        log.write(whole_line)
    assert [vote.vote_id for vote in store.read()] == [kept.vote_id]
    assert store.skipped_lines == 1


class ShortWrites:
    """Fault injection: ``os.write`` that writes ``budget`` bytes in total, then fails as a full disk does."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def __call__(self, fd: int, data: bytes) -> int:
        if self.budget <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = os.write(fd, data[: self.budget])
        self.budget -= written
        return written


@pytest.mark.parametrize("missing", [1, 40])
def test_a_vote_whose_write_fails_leaves_nothing_behind(tmp_path, monkeypatch, missing):
    """A full disk mid-line (``missing`` bytes short, 1: only the newline): the writer gets the error, the file is
    cut back, and neither this store nor a later one counts the vote."""
    from huvidpo.annotation import votes as votes_module

    path = tmp_path / "votes.jsonl"
    store = VoteStore(path)
    kept = store.append(make_vote(index=0))
    before = path.read_bytes()
    failing = make_vote(index=1)
    line_length = len((json.dumps(failing.to_dict(), ensure_ascii=False, sort_keys=True) + "\n").encode())
    fake_os = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
    fake_os.write = ShortWrites(line_length - missing)
    monkeypatch.setattr(votes_module, "os", fake_os)
    with pytest.raises(OSError, match="No space left"):
        store.append(failing)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [vote.vote_id for vote in store.read()] == [kept.vote_id]
    assert [vote.vote_id for vote in VoteStore(path).read()] == [kept.vote_id]


def test_restart_resumes_from_the_file(tmp_path):
    path = tmp_path / "nested" / "votes.jsonl"
    before = [VoteStore(path).append(make_vote(index=index)) for index in range(5)]
    restarted = VoteStore(path)
    assert [vote.vote_id for vote in restarted.read()] == [vote.vote_id for vote in before]
    restarted.append(make_vote(index=5))
    assert len(restarted.read()) == 6
    assert len(VoteStore(path).read()) == 6


def test_undo_is_append_only_and_scoped_to_labeler_and_session(tmp_path):
    store = VoteStore(tmp_path / "votes.jsonl")
    first, second, third = (store.append(make_vote(index=index)) for index in range(3))
    other_session = store.append(make_vote(index=3, session_id="s2"))
    other_labeler = store.append(make_vote(labeler="bob", index=4))
    lines_before = raw_lines(store.path)

    assert store.undo_last("alice", "s1").vote_id == third.vote_id
    assert store.undo_last(" alice ", "s1").vote_id == second.vote_id
    assert store.undo_last("alice", "no-such-session") is None

    effective = {vote.vote_id for vote in store.effective_votes()}
    assert effective == {first.vote_id, other_session.vote_id, other_labeler.vote_id}
    assert len(store.votes()) == 5
    assert len(store.read()) == 7
    assert raw_lines(store.path)[:5] == lines_before, "undo never rewrites earlier lines"
    assert {vote.vote_id for vote in store.effective_votes(labeler="alice")} == {first.vote_id, other_session.vote_id}
    with pytest.raises(ValueError, match="labeler name is empty"):
        store.undo_last("", "s1")


READ_ONLY_PROBE = """
import sys
from huvidpo.annotation.votes import Vote, VoteStore
store = VoteStore(sys.argv[1])
print(len(store.read()), store.skipped_lines)
try:
    store.append(Vote(labeler="bob", left_clip="x", right_clip="y", choice="left"))
except OSError as error:
    print("refused", error.strerror)
"""


def can_mount_privately() -> bool:
    """True if this user may bind-mount in a private mount namespace (util-linux `unshare`)."""
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "--map-root-user", "true"]
    return subprocess.run(probe, capture_output=True, timeout=60).returncode == 0


@pytest.mark.skipif(not can_mount_privately(), reason="needs a private mount namespace for a read-only mount")
def test_a_read_only_copy_of_the_log_is_readable_and_refuses_votes(tmp_path):
    copy = tmp_path / "copy"
    store = VoteStore(copy / "votes.jsonl")
    for index in range(3):
        store.append(make_vote(index=index))
    (copy / f"votes.jsonl{LOCK_SUFFIX}").unlink()
    mount_point = tmp_path / "read-only"
    mount_point.mkdir()
    script = f'mount --bind -o ro "{copy}" "{mount_point}" && exec "{sys.executable}" -c "$0" "$1"'
    result = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", script, READ_ONLY_PROBE, str(mount_point / "votes.jsonl")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["3 0", "refused Read-only file system"]
