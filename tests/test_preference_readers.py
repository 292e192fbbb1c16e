"""Public preference schemas into DPO pairs: a few rows of each format built locally (no download), the pairs
checked, ties / both-bad dropped or kept only by the option, equal scores never paired, and one DPO step through
the CLI for every format."""

import csv
import json

import datasets
import pytest
import torch

from huvidpo.data.preferences import PREFERENCE_FORMATS, read_preference_pairs
from huvidpo.train import main
from huvidpo.training import PreferencePairs, write_world_pairs


@pytest.fixture
def clips(tmp_path):
    """Four empty files standing in for clips (the readers check paths, they never decode)."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in "abcd":
        (folder / f"{name}.mp4").write_bytes(b"")
    return tmp_path


def pairs_of(rows):
    return [(row["prompt"], row["video_w"], row["video_l"]) for row in rows]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_pickapic_labels_decide_and_ties_follow_the_option(clips):
    rows = [
        {"caption": "p1", "label_0": 1.0, "label_1": 0.0, "video_0": "videos/a.mp4", "video_1": "videos/b.mp4", "has_label": True},
        {"caption": "p2", "label_0": 0.0, "label_1": 1.0, "video_0": "videos/a.mp4", "video_1": "videos/b.mp4", "has_label": True},
        {"caption": "p3", "label_0": 0.5, "label_1": 0.5, "video_0": "videos/c.mp4", "video_1": "videos/d.mp4", "has_label": True},
        {"caption": "p4", "label_0": 0.0, "label_1": 0.0, "video_0": "videos/c.mp4", "video_1": "videos/d.mp4", "has_label": False},
        {"caption": "p5", "label_0": 1.0, "label_1": 0.0, "video_0": "videos/c.mp4", "video_1": "videos/c.mp4", "has_label": True,
         "are_different": False},
    ]
    write_jsonl(clips / "metadata.jsonl", rows)
    found, origin, report = read_preference_pairs(clips, "pickapic")
    assert pairs_of(found) == [("p1", "videos/a.mp4", "videos/b.mp4"), ("p2", "videos/b.mp4", "videos/a.mp4")]
    assert origin == clips.resolve()
    assert report.dropped == {"tie": 1, "no label": 1, "the same clip twice": 1}
    assert "2 pairs from 5 pickapic rows" in report.summary()
    kept, _, report = read_preference_pairs(clips, "pickapic", ties="keep")
    assert pairs_of(kept)[2:] == [("p3", "videos/c.mp4", "videos/d.mp4"), ("p3", "videos/d.mp4", "videos/c.mp4")]
    assert report.kept == {"tie": 1}
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['video_0', 'video_1'\].*jpg_0"):
        read_preference_pairs([{"caption": "p", "label_0": 1.0, "label_1": 0.0, "jpg_0": b"", "jpg_1": b""}], "pickapic")


def test_videoreward_criterion_and_majority(clips):
    with open(clips / "data.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, ["path_A", "path_B", "prompt", "VQ", "MQ", "TA", "fps_A", "num_frames_A"])
        writer.writeheader()
        writer.writerow({"path_A": "./videos/a.mp4", "path_B": "./videos/b.mp4", "prompt": "p1", "VQ": "A", "MQ": "B",
                         "TA": "B", "fps_A": 8, "num_frames_A": 16})
        writer.writerow({"path_A": "./videos/c.mp4", "path_B": "./videos/d.mp4", "prompt": "p2", "VQ": "same", "MQ": "A",
                         "TA": "same", "fps_A": 8, "num_frames_A": 16})
    majority, _, _ = read_preference_pairs(clips, "videoreward")
    assert pairs_of(majority) == [("p1", "./videos/b.mp4", "./videos/a.mp4"), ("p2", "./videos/c.mp4", "./videos/d.mp4")]
    visual, _, report = read_preference_pairs(clips / "data.csv", "videoreward", criterion="VQ")
    assert pairs_of(visual) == [("p1", "./videos/a.mp4", "./videos/b.mp4")] and report.dropped == {"tie": 1}
    assert len(PreferencePairs.load(clips, data_format="videoreward", criterion="MQ")) == 2


def test_videodpo_pair_json_through_metadata(clips):
    videos = [{"basic": {"clip_path": f"videos/{name}.mp4", "globalidx": i}, "misc": {"frame_caption": ["p"]}}
              for i, name in enumerate("abcd")]
    (clips / "metadata.json").write_text(json.dumps(videos))
    pairs = [{"video1": 0, "video2": 1, "label": 0, "frame_caption": "p1"},
             {"video1": 2, "video2": 3, "label": 1, "frame_caption": "p2"}]
    (clips / "pair.json").write_text(json.dumps(pairs))
    found, _, _ = read_preference_pairs(clips, "videodpo")
    assert pairs_of(found) == [("p1", "videos/a.mp4", "videos/b.mp4"), ("p2", "videos/d.mp4", "videos/c.mp4")]
    (clips / "pair.json").write_text(json.dumps([{"video1": 0, "video2": 9, "label": 0, "frame_caption": "p"}]))
    with pytest.raises(ValueError, match="video index 9 is not in .*metadata.json"):
        read_preference_pairs(clips, "videodpo")


def test_genai_bench_votes_ties_and_both_bad(clips):
    rows = [
        {"prompt": "p1", "left_model": "m1", "left_video": "videos/a.mp4", "right_model": "m2", "right_video": "videos/b.mp4", "vote_type": "rightvote"},
        {"prompt": "p2", "left_model": "m1", "left_video": "videos/c.mp4", "right_model": "m2", "right_video": "videos/d.mp4", "vote_type": "tievote"},
        {"prompt": "p3", "left_model": "m1", "left_video": "videos/a.mp4", "right_model": "m2", "right_video": "videos/d.mp4", "vote_type": "bothbad_vote"},
        {"prompt": "p4", "left_model": "m1", "left_video": "videos/b.mp4", "right_model": "m2", "right_video": "videos/c.mp4", "vote_type": "leftvote"},
    ]
    dataset = datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
    found, _, report = read_preference_pairs(dataset, "genai-bench", split="test")
    assert pairs_of(found) == [("p1", "videos/b.mp4", "videos/a.mp4"), ("p4", "videos/b.mp4", "videos/c.mp4")]
    assert report.dropped == {"tie": 1, "both bad": 1}
    found, _, report = read_preference_pairs(rows, "genai-bench", both_bad="keep")
    assert ("p3", "videos/d.mp4", "videos/a.mp4") in pairs_of(found) and len(found) == 4 and report.dropped == {"tie": 1}
    with pytest.raises(ValueError, match="web address"):
        PreferencePairs.load([{**rows[0], "right_video": "https://example.org/b.mp4"}], data_format="genai-bench")


def test_scores_pair_by_prompt_and_never_equal_scores(clips):
    rows = [{"prompt": "p1", "video": "videos/a.mp4", "score": 8}, {"prompt": "p1", "video": "videos/b.mp4", "score": 8},
            {"prompt": "p1", "video": "videos/c.mp4", "score": 3}, {"prompt": "p2", "video": "videos/d.mp4", "score": 9}]
    write_jsonl(clips / "metadata.jsonl", rows)
    found, _, report = read_preference_pairs(clips, "scores")
    assert pairs_of(found) == [("p1", "videos/a.mp4", "videos/c.mp4"), ("p1", "videos/b.mp4", "videos/c.mp4")]
    assert report.dropped == {"clip pairs with equal scores": 1}
    assert [(row["score_w"], row["score_l"]) for row in found] == [(8, 3), (8, 3)]


def test_scores_gap_and_bad_scores(clips):
    rows = [{"prompt": "p1", "video": "videos/a.mp4", "score": 8}, {"prompt": "p1", "video": "videos/c.mp4", "score": 3}]
    with pytest.raises(ValueError, match=r"No preference pairs .*1 dropped \(clip pairs less than 6 apart\)"):
        read_preference_pairs(rows, "scores", min_score_gap=6)
    with pytest.raises(ValueError, match="min_score_gap must be above 0"):
        read_preference_pairs(rows, "scores", min_score_gap=0)
    with pytest.raises(ValueError, match="Row 1: score is 11"):
        read_preference_pairs([rows[0], {**rows[1], "score": 11}], "scores")


@pytest.fixture(scope="module")
def world_clips(tmp_path_factory):
    """Two real 4-frame clips of one prompt (a winner and its degraded copy) that the trainer can encode."""
    folder = write_world_pairs(tmp_path_factory.mktemp("world-pairs"), 1, num_frames=4)
    row = json.loads((folder / "metadata.jsonl").read_text().splitlines()[0])
    return folder, row["prompt"], row["video_w"], row["video_l"]


def write_format(folder, data_format, prompt, good, bad):
    """The one pair (good over bad) in the given public schema, in `folder` beside the clips."""
    if data_format == "pickapic":
        write_jsonl(folder / "metadata.jsonl", [{"caption": prompt, "label_0": 0.0, "label_1": 1.0, "video_0": bad, "video_1": good}])
    elif data_format == "videoreward":
        (folder / "metadata.jsonl").unlink()
        (folder / "data.csv").write_text(f"path_A,path_B,prompt,VQ,MQ,TA\n{good},{bad},{prompt},A,A,same\n")
    elif data_format == "videodpo":
        (folder / "pair.json").write_text(json.dumps([{"video1": bad, "video2": good, "label": 1, "frame_caption": prompt}]))
    elif data_format == "genai-bench":
        write_jsonl(folder / "metadata.jsonl", [{"prompt": prompt, "left_video": good, "right_video": bad, "vote_type": "leftvote"}])
    elif data_format == "scores":
        write_jsonl(folder / "metadata.jsonl", [{"prompt": prompt, "video": good, "score": 9}, {"prompt": prompt, "video": bad, "score": 2}])


@pytest.mark.parametrize("data_format", [name for name in PREFERENCE_FORMATS if name != "studio"])
def test_every_format_trains_one_dpo_step_through_the_cli(world_clips, tmp_path, data_format, capsys):
    source, prompt, good, bad = world_clips
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "videos").symlink_to(source / "videos")
    (folder / "metadata.jsonl").write_text("")
    write_format(folder, data_format, prompt, good, bad)
    pairs = PreferencePairs.load(folder, data_format=data_format)
    assert pairs.prompts == [prompt]
    assert [(w.name, l.name) for w, l in zip(pairs.videos_w, pairs.videos_l)] == [("00000_w.mp4", "00000_l.mp4")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["dpo", "--data", str(folder), "--data_format", data_format, "--output_dir", str(tmp_path / "out"),
                     "--num_frames", "4", "--resolution", "32", "--max_steps", "1", "--no-cache_latents"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0, capsys.readouterr().err
    assert "dpo done after 1 steps" in capsys.readouterr().out


def test_the_train_tab_trains_a_public_format_from_the_imports_folder(world_clips, tmp_path, tiny_model_dir):
    from huvidpo.studio.access import User
    from huvidpo.studio.config import StudioConfig
    from huvidpo.studio.training import TrainingManager, TrainRequest

    config = StudioConfig(model=str(tiny_model_dir), data_dir=str(tmp_path / "data"), oauth=False, comparison_frames=4,
                          comparison_steps=1, comparison_prompts=["a red circle moving right on a blue background"])
    source, prompt, good, bad = world_clips
    folder = config.root / "imports" / "arena"
    folder.mkdir(parents=True)
    (folder / "videos").symlink_to(source / "videos")
    write_format(folder, "genai-bench", prompt, good, bad)
    manager = TrainingManager(config)
    assert "imports/arena" in manager.dataset_choices()
    with pytest.raises(ValueError, match="No folder 'imports/../x'"):
        manager.resolve_dataset("imports/../x", "genai-bench")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        manager.start(User(maintainer=True), TrainRequest(dataset="imports/arena", data_format="genai-bench", steps=1,
                                                          frames=4, lora_rank=4))
        assert manager.wait(300)
    finally:
        torch.set_num_threads(threads)
    status = manager.status()
    assert status["state"] == "finished", status
    assert status["settings"]["data_format"] == "genai-bench" and status["dataset"] == "imports/arena"
    assert any("1 pairs from 1 genai-bench rows" in line for line in manager.view()["log"].splitlines())
