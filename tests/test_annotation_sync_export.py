"""Hub sync against a local stand-in for `HfApi` (no network), and the preference export round trip."""

import json
import threading
from pathlib import Path

import pytest

from huvidpo.annotation.export import (
    export_preferences,
    export_raw_votes,
    load_exported_pairs,
    pairs_from_scores,
)
from huvidpo.annotation.pool import CandidatePool
from huvidpo.annotation.sync import HubSync
from huvidpo.annotation.votes import LOCK_SUFFIX, Vote, VoteStore

FAKE_TOKEN = "hf_NotARealTokenButSecretAnyway"


class FolderHubApi:
    """Stands in for `HfApi`: commits land in a local "remote" folder; the first `failures` commits raise."""

    def __init__(self, remote: Path, failures: int = 1, error_detail: str = "") -> None:
        self.remote = remote
        self.failures = failures
        self.error_detail = error_detail
        self.commits: list[list[str]] = []
        self.committed = threading.Event()
        self.created_repos: list[dict] = []

    def create_repo(self, repo_id: str, **kwargs) -> str:
        self.created_repos.append({"repo_id": repo_id, **kwargs})
        return repo_id

    def create_commit(self, repo_id: str, operations, commit_message: str, **kwargs) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError(f"simulated network failure {self.error_detail}")
        for operation in operations:
            destination = self.remote / repo_id / operation.path_in_repo
            destination.parent.mkdir(parents=True, exist_ok=True)
            with operation.as_file() as source:
                destination.write_bytes(source.read())
        self.commits.append([operation.path_in_repo for operation in operations])
        self.committed.set()
        return commit_message


def fake_mp4(tag: str) -> bytes:
    return b"\x00\x00\x00\x18ftypmp42" + tag.encode()


def vote_on(pool: CandidatePool, left: str, right: str, choice: str, labeler: str = "alice", **extra) -> Vote:
    left_clip, right_clip = pool.get(left), pool.get(right)
    return Vote(
        labeler=labeler,
        session_id=f"session-{labeler}",
        prompt=left_clip.prompt,
        left_clip=left,
        right_clip=right,
        left_settings=left_clip.settings,
        right_settings=right_clip.settings,
        choice=choice,
        **extra,
    )


@pytest.fixture
def labeled(tmp_path):
    """A data folder with a pool (clips a, b, c on one prompt, d, e on another) and a vote store."""
    data = tmp_path / "data"
    pool = CandidatePool(data / "pool")
    for clip_id, prompt in [("a", "rain"), ("b", "rain"), ("c", "rain"), ("d", "firework"), ("e", "firework")]:
        pool.add_clip(prompt, fake_mp4(clip_id), {"model": "tiny", "seed": ord(clip_id)}, clip_id=clip_id)
    return data, pool, VoteStore(data / "votes.jsonl")


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """The data files of a folder: everything but the logs' lock files (`*.lock`, which stay local)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.suffix != LOCK_SUFFIX
    }


def test_failed_push_is_reported_retried_and_never_touches_local_data(labeled, tmp_path):
    data, pool, store = labeled
    votes = [store.append(vote_on(pool, "a", "b", "left", labeler=f"labeler{index}")) for index in range(5)]
    local_before = folder_bytes(data)
    api = FolderHubApi(tmp_path / "remote", failures=1, error_detail=f"(Authorization: Bearer {FAKE_TOKEN})")
    sync = HubSync(data, "studio/votes", token=FAKE_TOKEN, hf_api=api, autostart=False)

    assert sync.push_now() is False
    status = sync.status()
    assert "simulated network failure" in status["last_error"]
    assert status["pushes_failed"] == 1 and status["pushes_ok"] == 0 and status["last_push_at"] is None
    assert status["pending"] == len(local_before)
    assert FAKE_TOKEN not in json.dumps(status)
    assert folder_bytes(data) == local_before

    assert sync.push_now() is True
    status = sync.status()
    assert status["last_error"] is None and status["pushes_ok"] == 1 and status["pending"] == 0
    assert status["last_push_at"] is not None
    remote = tmp_path / "remote" / "studio/votes"
    assert folder_bytes(remote) == local_before
    assert list(data.rglob(f"*{LOCK_SUFFIX}")) and not list(remote.rglob(f"*{LOCK_SUFFIX}")), "lock files stay local"
    assert {vote.vote_id for vote in VoteStore(remote / "votes.jsonl").read()} == {vote.vote_id for vote in votes}
    assert api.created_repos[0]["repo_type"] == "dataset"
    assert folder_bytes(data) == local_before

    late_vote = store.append(vote_on(pool, "d", "e", "right"))
    assert sync.status()["pending"] == 1
    assert sync.push_now() is True
    assert api.commits[-1] == ["votes.jsonl"], "only changed files are uploaded again"
    assert late_vote.vote_id in {vote.vote_id for vote in VoteStore(remote / "votes.jsonl").read()}


def test_background_thread_retries_until_the_push_succeeds(labeled, tmp_path):
    data, pool, store = labeled
    store.append(vote_on(pool, "a", "c", "right"))
    api = FolderHubApi(tmp_path / "remote", failures=2)
    sync = HubSync(data, "studio/votes", every_minutes=0.05 / 60, hf_api=api, path_in_repo="round1", autostart=False)
    with sync:
        assert api.committed.wait(timeout=30), "the background thread never pushed"
        assert sync.status()["running"]
    status = sync.status()
    assert status["pushes_failed"] == 2 and status["pushes_ok"] >= 1 and not status["running"]
    assert (tmp_path / "remote" / "studio/votes" / "round1" / "votes.jsonl").is_file()
    assert (tmp_path / "remote" / "studio/votes" / "round1" / "pool" / "videos" / "a.mp4").read_bytes() == fake_mp4("a")


def test_sync_starts_offline_and_pushes_when_stopped(labeled, tmp_path):
    data, pool, store = labeled
    api = FolderHubApi(tmp_path / "remote", failures=0)
    sync = HubSync(data, "studio/votes", hf_api=api)
    assert sync.status()["running"] and api.created_repos == [], "starting needs no network"
    store.append(vote_on(pool, "a", "b", "left"))
    sync.stop()
    assert not sync.status()["running"] and sync.status()["pending"] == 0
    assert len(VoteStore(tmp_path / "remote" / "studio/votes" / "votes.jsonl").read()) == 1


def test_sync_uploads_only_complete_vote_lines(labeled, tmp_path):
    data, pool, store = labeled
    store.append(vote_on(pool, "a", "b", "left"))
    with open(store.path, "ab") as log:
        log.write(b'{"labeler": "half a vo')
    api = FolderHubApi(tmp_path / "remote", failures=0)
    HubSync(data, "studio/votes", hf_api=api, autostart=False).push_now()
    remote_log = (tmp_path / "remote" / "studio/votes" / "votes.jsonl").read_bytes()
    assert remote_log.endswith(b"\n") and b"half a vo" not in remote_log
    assert b"half a vo" in store.path.read_bytes()


def test_export_round_trip_gives_winners_losers_and_video_files(labeled, tmp_path):
    data, pool, store = labeled
    for choice in ["left", "left", "right"]:  # a beats b 2:1 (b is on the right)
        store.append(vote_on(pool, "a", "b", choice))
    store.append(vote_on(pool, "c", "a", "left"))  # a vs c: 1:1 -> a tie in counts
    store.append(vote_on(pool, "a", "c", "left"))
    store.append(vote_on(pool, "b", "c", "tie"))  # only ties and both-bad: never a pair
    store.append(vote_on(pool, "b", "c", "both_bad"))
    store.append(vote_on(pool, "d", "e", "skip"))
    store.append(vote_on(pool, "e", "d", "left", labeler="bob"))  # e beats d, then undone
    store.undo_last("bob", "session-bob")
    store.append(vote_on(pool, "d", "e", "left", labeler="bob"))  # d beats e 1:0

    out_dir = tmp_path / "export"
    exported = export_preferences(store, pool, out_dir)
    rows = {(row["clip_w"], row["clip_l"]): row for row in exported}
    assert set(rows) == {("a", "b"), ("d", "e")}
    assert rows[("a", "b")] | {"settings_w": None, "settings_l": None} == {
        "pair_id": "a|b",
        "prompt": "rain",
        "video_w": "videos/a.mp4",
        "video_l": "videos/b.mp4",
        "clip_w": "a",
        "clip_l": "b",
        "n_w": 2,
        "n_l": 1,
        "n_tie": 0,
        "n_both_bad": 0,
        "agreement": pytest.approx(2 / 3),
        "settings_w": None,
        "settings_l": None,
    }
    assert json.loads(rows[("a", "b")]["settings_w"]) == {"model": "tiny", "seed": ord("a")}

    loaded = load_exported_pairs(out_dir)
    assert len(loaded) == 2 and set(loaded.column_names) >= {"prompt", "video_w", "video_l"}
    for row in loaded:
        assert Path(row["video_w"]).is_absolute() and Path(row["video_l"]).is_file()
        assert Path(row["video_w"]).read_bytes() == fake_mp4(row["clip_w"])
        assert Path(row["video_l"]).read_bytes() == fake_mp4(row["clip_l"])
    assert len((out_dir / "metadata.jsonl").read_text().splitlines()) == 2
    card = (out_dir / "README.md").read_text()
    assert card.startswith("---\n") and "text-to-video" in card and "huvidpo" in card and "- dpo" in card
    assert "- metadata.jsonl" in card and "labelers: 2" in card and "pairs: 2" in card

    with_ties = export_preferences(store, pool, tmp_path / "with_ties", include_ties=True)
    tie_row = next(row for row in with_ties if {row["clip_w"], row["clip_l"]} == {"a", "c"})
    assert (tie_row["n_w"], tie_row["n_l"], tie_row["agreement"]) == (1, 1, 0.5)
    assert len(with_ties) == 3
    assert len(export_preferences(store, pool, tmp_path / "strict", min_votes=3)) == 1

    raw = export_raw_votes(store, out_dir)
    assert len(raw.read_text().splitlines()) == len(store.read()) == 11


def test_empty_export_and_bad_folder(labeled, tmp_path):
    _, pool, store = labeled
    assert len(export_preferences(store, pool, tmp_path / "empty")) == 0
    assert len(load_exported_pairs(tmp_path / "empty")) == 0
    with pytest.raises(ValueError, match="not a preference export"):
        load_exported_pairs(tmp_path / "nowhere")


def test_pairs_from_scores_use_mean_scores_and_min_gap(labeled):
    _, pool, store = labeled
    store.append(vote_on(pool, "a", "b", "left", left_score=9, right_score=4))
    store.append(vote_on(pool, "c", "a", "tie", left_score=8, right_score=7, labeler="bob"))
    store.append(vote_on(pool, "d", "e", "tie", left_score=5, right_score=5))
    rows = pairs_from_scores(store, pool, min_gap=1)
    assert {(row["clip_w"], row["clip_l"]) for row in rows} == {("a", "b"), ("c", "b")}
    a_vs_b = next(row for row in rows if row["clip_l"] == "b" and row["clip_w"] == "a")
    assert (a_vs_b["score_w"], a_vs_b["score_l"], a_vs_b["n_scores_w"]) == (8.0, 4.0, 2)
    assert Path(a_vs_b["video_w"]).read_bytes() == fake_mp4("a")
    assert len(pairs_from_scores(store, pool, min_gap=4)) == 2
    assert pairs_from_scores(store, pool, min_gap=4.5) == []
    with pytest.raises(ValueError, match="min_gap must be positive"):
        pairs_from_scores(store, pool, min_gap=0)
