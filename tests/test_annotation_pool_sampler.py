"""Candidate pool (add, import, resumable build) and the pair sampler (coverage, fairness, validation)."""

import json
import threading
from collections import Counter
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from huvidpo.annotation.pool import (
    CATEGORY_PRESETS,
    CandidatePool,
    UnknownClipError,
    build_pool,
    import_folder,
    import_hub_dataset,
    load_prompts,
)
from huvidpo.annotation.sampler import IN_FLIGHT_TTL_S, PairSampler
from huvidpo.annotation.votes import Choice, VoteStore, pair_id_for


def fake_mp4(tag: str) -> bytes:
    """Bytes standing in for an mp4: the annotation code copies videos and never decodes them."""
    return b"\x00\x00\x00\x18ftypmp42" + tag.encode()


def make_pool(root: Path, prompts: list[str], clips_per_prompt: int) -> CandidatePool:
    pool = CandidatePool(root)
    for prompt in prompts:
        for seed in range(clips_per_prompt):
            pool.add_clip(prompt, fake_mp4(f"{prompt}-{seed}"), {"model": "tiny", "seed": seed})
    return pool


def make_sampler(tmp_path: Path, prompts: list[str], clips_per_prompt: int, **kwargs) -> PairSampler:
    pool = make_pool(tmp_path / "pool", prompts, clips_per_prompt)
    return PairSampler(pool, VoteStore(tmp_path / "votes.jsonl"), **kwargs)


def judge_everything(sampler: PairSampler, labeler: str, session_id: str = "s") -> list[str]:
    judged = []
    while (served := sampler.next_pair(labeler, session_id)) is not None:
        sampler.record_vote(labeler, session_id, served.token, "left")
        judged.append(served.pair_id)
    return judged


def test_add_clip_copies_the_video_and_is_idempotent(tmp_path):
    source = tmp_path / "generated.mp4"
    source.write_bytes(fake_mp4("x"))
    pool = CandidatePool(tmp_path / "pool")
    clip = pool.add_clip("a red circle", source, {"model": "tiny", "seed": 3, "size": (64, 64)})

    assert pool.video_path(clip.clip_id).is_absolute()
    assert pool.video_path(clip.clip_id).read_bytes() == fake_mp4("x")
    assert clip.video == f"videos/{clip.clip_id}.mp4"
    assert clip.settings["size"] == [64, 64]
    assert pool.add_clip("a red circle", source, {"model": "tiny", "seed": 3, "size": (64, 64)}) == clip
    from_bytes = pool.add_clip("a red circle", fake_mp4("y"), {"seed": 4})
    assert len(pool) == 2 and pool.prompts() == ["a red circle"]
    assert [c.clip_id for c in pool.clips_for_prompt("a red circle")] == [clip.clip_id, from_bytes.clip_id]
    assert CandidatePool(tmp_path / "pool").get(clip.clip_id) == clip
    assert not [path for path in pool.videos_dir.iterdir() if path.name.startswith(".")]


def test_unknown_clip_and_bad_inputs_raise_clear_errors(tmp_path):
    pool = make_pool(tmp_path, ["a prompt"], 1)
    with pytest.raises(KeyError, match="unknown clip id 'nope'") as raised:
        pool.get("nope")
    assert isinstance(raised.value, UnknownClipError) and isinstance(raised.value, ValueError)
    with pytest.raises(ValueError, match="unknown clip id 'nope'"):
        pool.video_path("nope")
    with pytest.raises(ValueError, match="non-empty prompt"):
        pool.add_clip("  ", fake_mp4("z"))
    with pytest.raises(FileNotFoundError):
        pool.add_clip("a prompt", tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="invalid clip id"):
        pool.add_clip("a prompt", fake_mp4("z"), clip_id="a|b")


def test_manifest_with_a_torn_last_line_still_loads(tmp_path):
    pool = make_pool(tmp_path, ["a prompt"], 3)
    data = pool.manifest_path.read_bytes()
    pool.manifest_path.write_bytes(data[:-20])
    reloaded = CandidatePool(tmp_path)
    assert len(reloaded) == 2
    reloaded.add_clip("a prompt", fake_mp4("late"))
    assert len(CandidatePool(tmp_path)) == 3


def test_build_pool_resumes_after_an_interruption_without_duplicates(tmp_path):
    calls = []
    crash_after = [3]

    def flaky_generate(prompt: str, seed: int, steps: int) -> str:
        if crash_after and len(calls) >= crash_after[0]:
            raise RuntimeError("GPU preempted")
        calls.append((prompt, seed))
        path = tmp_path / "out" / f"{len(calls)}.mp4"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(fake_mp4(f"{prompt}-{seed}-{steps}"))
        return str(path)

    pool = CandidatePool(tmp_path / "pool")
    prompts = ["rain falling on a quiet street", "a waterfall in the tropical forest"]
    with pytest.raises(RuntimeError, match="preempted"):
        build_pool(pool, flaky_generate, prompts, 3, base_seed=10, settings={"steps": 4})
    assert len(pool) == 3

    crash_after.clear()
    progress = []
    built = build_pool(
        pool,
        flaky_generate,
        prompts,
        3,
        base_seed=10,
        settings={"steps": 4},
        progress=lambda done, total: progress.append((done, total)),
    )
    assert len(built) == 6 and progress[-1] == (6, 6)
    assert len(calls) == 6, "the re-run generated only the 3 missing clips"
    jobs = Counter((clip.prompt, clip.settings["seed"]) for clip in CandidatePool(tmp_path / "pool").clips())
    assert jobs == Counter({(prompt, seed): 1 for prompt in prompts for seed in (10, 11, 12)})
    assert all(clip.settings == {"steps": 4, "seed": clip.settings["seed"]} for clip in built)

    calls.clear()
    assert build_pool(pool, flaky_generate, prompts, 3, base_seed=10, settings={"steps": 4}) == built
    assert calls == []
    build_pool(pool, flaky_generate, prompts[:1], 1, base_seed=10, settings={"steps": 8})
    assert len(calls) == 1 and len(pool) == 7, "other settings are another job"
    calls.clear()
    build_pool(pool, flaky_generate, [prompts[0], prompts[0]], 1, base_seed=20, settings={"steps": 4})
    assert len(calls) == 1 and len(pool) == 8, "a repeated prompt is one job"


def test_load_prompts_from_file_list_and_presets(tmp_path):
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text(
        "# birds\na bird flying over the lake\n\n  rain on a window  \na bird flying over the lake\n"
    )
    assert load_prompts(prompt_file) == ["a bird flying over the lake", "rain on a window"]
    assert load_prompts(str(prompt_file)) == ["a bird flying over the lake", "rain on a window"]
    assert load_prompts(["x", " ", "y"]) == ["x", "y"]
    assert load_prompts("horse run") == list(CATEGORY_PRESETS["horse run"])
    assert len(CATEGORY_PRESETS) == 8
    assert len(load_prompts("all")) == sum(len(prompts) for prompts in CATEGORY_PRESETS.values())
    with pytest.raises(ValueError, match="neither a prompt file nor a category preset"):
        load_prompts("unicorns dancing")
    with pytest.raises(ValueError, match="no prompts"):
        load_prompts(["# only a comment"])


def test_import_folder_reads_metadata_or_file_names_and_is_idempotent(tmp_path):
    folder = tmp_path / "incoming"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "clip1.mp4").write_bytes(fake_mp4("1"))
    (folder / "a_horse_running.mp4").write_bytes(fake_mp4("2"))
    (folder / ".cache").mkdir()
    (folder / ".cache" / "ignored.mp4").write_bytes(fake_mp4("3"))
    (folder / "metadata.jsonl").write_text(
        json.dumps({"file_name": "sub/clip1.mp4", "prompt": "fireworks over the river", "lora": "dpo"}) + "\n"
    )
    pool = CandidatePool(tmp_path / "pool")
    imported = import_folder(pool, folder)
    assert sorted(clip.prompt for clip in imported) == ["a horse running", "fireworks over the river"]
    assert next(clip for clip in imported if clip.prompt.startswith("fireworks")).settings == {"lora": "dpo"}
    import_folder(pool, folder)
    assert len(pool) == 2
    with pytest.raises(ValueError, match="not a folder"):
        import_folder(pool, tmp_path / "nowhere")


def test_import_hub_dataset_local_path_hub_id_and_offline_error(tmp_path, monkeypatch):
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "birds_fly.mp4").write_bytes(fake_mp4("bird"))
    pool = CandidatePool(tmp_path / "pool")
    assert [clip.prompt for clip in import_hub_dataset(pool, folder)] == ["birds fly"]

    requested = {}

    def snapshot_from_cache(repo_id, repo_type, **kwargs):
        requested.update(repo_id=repo_id, repo_type=repo_type)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_from_cache)
    import_hub_dataset(pool, "someone/videos")
    assert requested == {"repo_id": "someone/videos", "repo_type": "dataset"}

    def offline(**kwargs):
        raise LocalEntryNotFoundError("offline mode is enabled")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ValueError, match="could not download the dataset 'someone/videos'.*offline"):
        import_hub_dataset(pool, "someone/videos")


def test_sampler_serves_same_prompt_pairs_never_repeats_and_ends(tmp_path):
    sampler = make_sampler(tmp_path, ["prompt one", "prompt two"], 4, seed=0)
    judged = judge_everything(sampler, "alice")
    assert len(judged) == len(set(judged)) == 12
    assert sampler.next_pair("alice", "s") is None
    assert sampler.next_pair("alice", "another tab") is None
    for vote in sampler.store.votes():
        assert sampler.pool.get(vote.left_clip).prompt == sampler.pool.get(vote.right_clip).prompt == vote.prompt
    restarted = PairSampler(CandidatePool(tmp_path / "pool"), VoteStore(tmp_path / "votes.jsonl"))
    assert restarted.next_pair("alice") is None
    assert restarted.next_pair("bob") is not None


def test_sampler_balances_coverage_across_labelers(tmp_path):
    sampler = make_sampler(tmp_path, ["one prompt"], 5, seed=1)
    pair_ids = [pair_id_for(a.clip_id, b.clip_id) for a, b in sampler.candidate_pairs()]
    labelers = ["ann", "ben", "cat"]

    def votes_per_pair() -> list[int]:
        per_pair = Counter(vote.pair_id for vote in sampler.store.votes())
        return [per_pair[pair_id] for pair_id in pair_ids]

    for round_index in range(len(pair_ids)):
        for labeler in labelers:
            served = sampler.next_pair(labeler, "s")
            sampler.record_vote(labeler, "s", served.token, "right")
            counts = votes_per_pair()
            if sum(counts) <= len(pair_ids):
                assert set(counts) <= {0, 1}, "the first sweep covers every pair once before any twice"
            assert max(counts) - min(counts) <= 2, counts
        assert max(counts) - min(counts) <= 1, f"after round {round_index + 1}: {counts}"
    assert set(votes_per_pair()) == {3}
    assert all(sampler.next_pair(labeler, "s") is None for labeler in labelers)


def test_sampler_randomises_sides_and_records_them(tmp_path):
    sampler = make_sampler(tmp_path, ["one prompt"], 2, seed=2)
    sides = Counter()
    for labeler in range(40):
        served = sampler.next_pair(f"labeler{labeler}")
        vote = sampler.record_vote(f"labeler{labeler}", "", served.token, "left")
        assert (vote.left_clip, vote.right_clip) == (served.left.clip_id, served.right.clip_id)
        sides[vote.left_clip < vote.right_clip] += 1
    assert sides[True] >= 8 and sides[False] >= 8


def test_active_mode_serves_the_pair_the_model_is_least_sure_about(tmp_path):
    pool = make_pool(tmp_path / "pool", ["one prompt"], 4)
    clips = pool.clips()
    uncertain = {clips[1].clip_id, clips[3].clip_id}

    def margin(clip_a, clip_b):
        return -0.01 if {clip_a.clip_id, clip_b.clip_id} == uncertain else 3.0

    sampler = PairSampler(pool, VoteStore(tmp_path / "votes.jsonl"), seed=0, active_margin_fn=margin)
    served = sampler.next_pair("alice")
    assert {served.left.clip_id, served.right.clip_id} == uncertain
    sampler.record_vote("alice", "", served.token, "left")
    assert sampler.next_pair("bob").pair_id != served.pair_id, "fewest judgements come before the margin"


def test_record_vote_rejects_bad_inputs_with_clear_messages(tmp_path):
    sampler = make_sampler(tmp_path, ["one prompt"], 3, seed=0)
    served = sampler.next_pair("alice", "s")
    with pytest.raises(ValueError, match="unknown clip id 'nope'"):
        sampler.record_vote("alice", "s", served.token, "left", left_clip="nope")
    with pytest.raises(ValueError, match="stale pair 'not-a-token'.*fetch the next pair"):
        sampler.record_vote("alice", "s", "not-a-token", "left")
    with pytest.raises(ValueError, match="stale pair"):
        sampler.record_vote("bob", "s", served.token, "left")
    with pytest.raises(ValueError, match="stale pair"):
        sampler.record_vote("alice", "s", served.token, "left", left_clip=served.right.clip_id)
    with pytest.raises(ValueError, match="labeler name is empty"):
        sampler.record_vote(" ", "s", served.token, "left")
    with pytest.raises(ValueError, match="labeler name is empty"):
        sampler.next_pair("")
    with pytest.raises(ValueError, match="left_score must be an integer from 0 to 10"):
        sampler.record_vote("alice", "s", served.token, "left", left_score=11)
    with pytest.raises(ValueError, match="unknown choice 'sideways'"):
        sampler.record_vote("alice", "s", served.token, "sideways")

    vote = sampler.record_vote(
        "alice", "s", served.token, "left", left_score=8, right_score=3,
        left_clip=served.left.clip_id, right_clip=served.right.clip_id,
    )
    assert vote.response_ms >= 0 and vote.served_at == served.served_at and vote.left_score == 8
    with pytest.raises(ValueError, match="stale pair.*fetch the next pair"):
        sampler.record_vote("alice", "s", served.token, "right")
    replaced = sampler.next_pair("alice", "s")
    sampler.next_pair("alice", "s")
    with pytest.raises(ValueError, match="stale pair"):
        sampler.record_vote("alice", "s", replaced.token, "left")
    assert len(sampler.store.votes()) == 1


class ManualClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_response_time_comes_from_the_clock_and_an_abandoned_tab_releases_its_pair(tmp_path):
    clock = ManualClock()
    sampler = make_sampler(tmp_path, ["one prompt"], 2, seed=0, clock=clock)  # a single pair
    served = sampler.next_pair("alice", "tab1")
    clock.advance(2.5)
    assert sampler.next_pair("alice", "tab2") is None, "the pair is open in alice's other tab"
    clock.advance(IN_FLIGHT_TTL_S)
    again = sampler.next_pair("alice", "tab2")
    assert again is not None and again.pair_id == served.pair_id, "a tab open that long counts as abandoned"
    clock.advance(1.25)
    assert sampler.record_vote("alice", "tab2", again.token, "left").response_ms == 1250


def test_skipped_pair_returns_only_in_a_later_session(tmp_path):
    sampler = make_sampler(tmp_path, ["one prompt"], 2, seed=0)
    served = sampler.next_pair("alice", "morning")
    sampler.record_vote("alice", "morning", served.token, Choice.SKIP)
    assert sampler.next_pair("alice", "morning") is None
    again = sampler.next_pair("alice", "evening")
    assert again.pair_id == served.pair_id
    sampler.record_vote("alice", "evening", again.token, "tie")
    assert sampler.next_pair("alice", "night") is None


def test_undo_serves_the_same_pair_again(tmp_path):
    sampler = make_sampler(tmp_path, ["one prompt"], 3, seed=0)
    served = sampler.next_pair("alice", "s")
    sampler.record_vote("alice", "s", served.token, "left")
    sampler.next_pair("alice", "s")
    back = sampler.undo_last("alice", "s")
    assert (back.left, back.right) == (served.left, served.right)
    sampler.record_vote("alice", "s", back.token, "right")
    assert [vote.choice for vote in sampler.store.effective_votes()] == [Choice.RIGHT]
    assert sampler.undo_last("alice", "other session") is None


def test_sampler_is_thread_safe_with_many_sessions(tmp_path):
    sampler = make_sampler(tmp_path, ["prompt one", "prompt two"], 5, seed=0)
    errors = []

    def label(labeler: str) -> None:
        try:
            judge_everything(sampler, labeler, session_id=f"session-{labeler}")
        except Exception as error:  # collected and asserted on in the main thread
            errors.append(error)

    threads = [threading.Thread(target=label, args=(f"labeler{index}",)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    votes = sampler.store.votes()
    assert len(votes) == 8 * 20
    per_labeler_pair = Counter((vote.labeler, vote.pair_id) for vote in votes)
    assert set(per_labeler_pair.values()) == {1}


def test_oracle_labels_pairs_through_the_vote_store(tmp_path):
    from huvidpo.annotation import CandidatePool, PairSampler, VoteStore
    from huvidpo.world.labelers import label_with_oracle
    from huvidpo.data.video import write_video
    from huvidpo.world.clips import ClipSpec, render_clip, render_degraded

    spec = ClipSpec(shape="circle", color="red", background="blue", direction="left", speed="slowly",
                    size=16, start_x=44, start_y=32)
    pool = CandidatePool(tmp_path / "pool")
    good = write_video(render_clip(spec, 8, 64), tmp_path / "good.mp4")
    bad = write_video(render_degraded(spec, "wrong_direction", 8, 64), tmp_path / "bad.mp4")
    good_clip = pool.add_clip(spec.prompt, good, {"seed": 0})
    bad_clip = pool.add_clip(spec.prompt, bad, {"seed": 1})
    store = VoteStore(tmp_path / "votes.jsonl")
    votes = label_with_oracle(PairSampler(pool, store, seed=0))
    assert len(votes) == 1
    assert votes[0].winner_clip == good_clip.clip_id
    assert {votes[0].left_clip, votes[0].right_clip} == {good_clip.clip_id, bad_clip.clip_id}
    assert [v.labeler for v in store.read()] == ["oracle"]
