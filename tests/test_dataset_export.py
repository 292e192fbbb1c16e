"""The studio's dataset as others load it: `datasets.load_dataset` on the export gives Video columns, and its votes
table each vote's side, timing and provenance; the card is a DatasetCard; replicas merge without duplicates."""

import json
import shutil

import datasets
import numpy as np
import pytest
from huggingface_hub import DatasetCard
from PIL import Image

from huvidpo.annotation.export import export_merged, export_preferences, main, merge_replicas
from huvidpo.annotation.pool import CandidatePool
from huvidpo.annotation.provenance import frame_sha256, image_sha256, revision_of, video_first_frame_sha256
from huvidpo.annotation.stats import labeler_pseudonym
from huvidpo.annotation.votes import Vote, VoteStore
from huvidpo.data.video import read_video, write_video
from huvidpo.training import PreferencePairs

PROMPT = "a red circle moving left slowly on a blue background"


def clip(tmp_path, name, shade):
    return write_video(np.full((4, 32, 32, 3), shade, dtype=np.float32), tmp_path / f"{name}.mp4")


def vote(pool, left, right, choice, labeler="alice", **extra):
    left_clip, right_clip = pool.get(left), pool.get(right)
    return Vote(labeler=labeler, session_id="s", prompt=PROMPT, left_clip=left, right_clip=right,
                left_settings=left_clip.settings, right_settings=right_clip.settings, choice=choice, **extra)


@pytest.fixture
def studio_data(tmp_path):
    """A pool of three real clips of one prompt (c carries no provenance: the export decodes its first frame)."""
    pool = CandidatePool(tmp_path / "data" / "pool")
    settings = {"model": "huvidpo-tiny", "model_revision": "m1", "lora": "runs/r1", "lora_revision": "l1", "lora_scale": 1.0}
    pool.add_clip(PROMPT, clip(tmp_path, "a", 0.2), {**settings, "seed": 1, "first_frame_sha256": "f1"}, clip_id="a")
    pool.add_clip(PROMPT, clip(tmp_path, "b", 0.5), {**settings, "seed": 2, "first_frame_sha256": "f2"}, clip_id="b")
    pool.add_clip(PROMPT, clip(tmp_path, "c", 0.8), {"model": "huvidpo-tiny", "seed": 3}, clip_id="c")
    return pool, VoteStore(tmp_path / "data" / "votes.jsonl")


def test_load_dataset_reads_the_export_with_video_features_and_a_votes_config(studio_data, tmp_path):
    pool, store = studio_data
    store.append(vote(pool, "a", "b", "right", response_ms=1200))
    store.append(vote(pool, "c", "a", "left", labeler="bob", response_ms=900))
    store.append(vote(pool, "b", "c", "tie", labeler="bob", response_ms=400))
    store.append(vote(pool, "b", "a", "left", labeler="carol", gold="b"))  # a check, never data
    out = tmp_path / "export"
    exported = export_preferences(store, pool, out, replica="space-one")
    assert sorted((row["clip_w"], row["clip_l"]) for row in exported) == [("b", "a"), ("c", "a")]

    pairs = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert isinstance(pairs.features["video_w"], datasets.Video) and isinstance(pairs.features["video_l"], datasets.Video)
    files = pairs.cast_column("video_w", datasets.Video(decode=False)).cast_column("video_l", datasets.Video(decode=False))
    for row in files:
        assert read_video(row["video_w"]["path"]).shape == (4, 32, 32, 3)
    assert sorted(files["clip_w"]) == ["b", "c"] and set(files["prompt"]) == {PROMPT}

    votes = datasets.load_dataset("json", data_files=str(out / "vote_details.jsonl"), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(votes) == 3  # the gold check is not data
    by_id = {row["left_clip"] + row["right_clip"]: row for row in votes}
    first = by_id["ab"]
    assert (first["choice"], first["chosen_side"], first["response_ms"], first["replica"]) == ("right", "right", 1200, "space-one")
    assert (first["left_seed"], first["right_seed"], first["left_model_revision"], first["right_lora_revision"]) == (1, 2, "m1", "l1")
    assert (first["left_first_frame_sha256"], first["right_first_frame_sha256"]) == ("f1", "f2")
    assert first["labeler"] == labeler_pseudonym("alice") and "alice" not in (out / "vote_details.jsonl").read_text()
    decoded = by_id["ca"]["left_first_frame_sha256"]
    assert decoded == frame_sha256(read_video(pool.video_path("c"))[0]) and by_id["bc"]["chosen_side"] is None

    card = DatasetCard.load(out / "README.md")
    assert card.data.license == "cc-by-4.0" and [c["config_name"] for c in card.data.configs] == ["default"]
    text = card.content
    assert "pairs: 2" in text and "gold checks, never data: 1" in text and labeler_pseudonym("bob") in text
    assert "carol" not in text and "`left_first_frame_sha256`" in text and 'load_dataset("<repo id or folder>"' in text
    assert PreferencePairs.load(out) == PreferencePairs.load(pairs)  # the trainer reads the folder, or what it loads


def test_flagged_labelers_can_be_left_out_of_the_export(studio_data, tmp_path):
    pool, store = studio_data
    store.append(vote(pool, "a", "b", "left"))
    store.append(vote(pool, "a", "c", "left", labeler="mallory"))
    exported = export_preferences(store, pool, tmp_path / "export", exclude_labelers={"mallory"})
    assert [(row["clip_w"], row["clip_l"]) for row in exported] == [("a", "b")]
    assert "left out of this export: 1" in (tmp_path / "export" / "README.md").read_text()


def test_replicas_merge_without_duplicates(studio_data, tmp_path, capsys):
    """Two studios push to replicas/one and replicas/two of one repo; a vote copied into both counts once."""
    pool, store = studio_data
    repo = tmp_path / "repo"
    shared = vote(pool, "a", "b", "left", labeler="ann")
    undone = vote(pool, "a", "c", "left", labeler="ben")
    for name, votes in (("one", [shared, vote(pool, "c", "b", "left", labeler="cy")]), ("two", [shared, undone])):
        replica = repo / "replicas" / name
        shutil.copytree(pool.root, replica / "pool")
        replica_store = VoteStore(replica / "votes.jsonl")
        for record in votes:
            replica_store.append(record)
    VoteStore(repo / "replicas" / "two" / "votes.jsonl").undo_last("ben", "s")
    votes, clips, replicas = merge_replicas(repo)
    assert sorted((v.labeler, v.left_clip, v.right_clip) for v in votes) == [("ann", "a", "b"), ("cy", "c", "b")]
    assert set(clips) == {"a", "b", "c"} and replicas[shared.vote_id] == "one"
    exported = export_merged(repo, tmp_path / "merged")
    assert sorted((row["clip_w"], row["clip_l"], row["n_w"]) for row in exported) == [("a", "b", 1), ("c", "b", 1)]
    rows = [json.loads(line) for line in (tmp_path / "merged" / "vote_details.jsonl").read_text().splitlines()]
    assert sorted(row["replica"] for row in rows) == ["one", "one"]
    with pytest.raises(ValueError, match="no votes.jsonl"):
        merge_replicas(tmp_path / "studio-less")
    assert main([str(repo), str(tmp_path / "from-cli"), "--min-votes", "1"]) == 0
    from_cli, merged = PreferencePairs.load(tmp_path / "from-cli"), PreferencePairs.load(tmp_path / "merged")
    assert [p.name for p in from_cli.videos_w + from_cli.videos_l] == [p.name for p in merged.videos_w + merged.videos_l]
    assert main(["nobody/no-votes-here", str(tmp_path / "x")]) == 2  # tests run offline
    assert "could not be downloaded" in capsys.readouterr().err


def test_provenance_revisions_and_hashes(tmp_path):
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "pytorch_lora_weights.safetensors").write_bytes(b"weights v1")
    first = revision_of(lora)
    assert first and revision_of(lora) == first
    (lora / "pytorch_lora_weights.safetensors").write_bytes(b"weights v2")
    assert revision_of(lora) not in (None, first)
    assert revision_of("nobody/not-in-the-cache") is None and revision_of(None) is None
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "frame.png")
    assert image_sha256(tmp_path / "frame.png") == frame_sha256(pixels) and image_sha256(tmp_path / "none.png") is None
    assert video_first_frame_sha256(tmp_path / "none.mp4") is None
