"""Preference rounds at test size: the next round's clips repeat the base clips' prompts, seeds and first frames
with the newest LoRA, pair with the earlier rounds, and the leaderboard ranks the rounds."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
import torch  # noqa: E402

from huvidpo.annotation import CandidatePool, PairSampler, VoteStore  # noqa: E402
from huvidpo.annotation.fill import main as fill_main  # noqa: E402
from huvidpo.annotation.rounds import fill_round, pool_rounds  # noqa: E402
from huvidpo.annotation.stats import version_ranking  # noqa: E402
from huvidpo.data.video import read_video  # noqa: E402

FILL = ["--prompts", "train-speedless", "--num-prompts", "2", "--clips-per-prompt", "2", "--frames", "4", "--steps", "2",
        "--image-steps", "2"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_lora(model_dir, folder, seed: int):
    """A LoRA for the tiny model with visible weights (B random, not zero), saved as a DPO run saves it."""
    from huvidpo.hub import DEFAULT_ADAPTER, load_pipeline, save_lora
    from huvidpo.training import DPOConfig
    from huvidpo.training.dpo import add_dpo_lora

    pipe = load_pipeline(str(model_dir))
    add_dpo_lora(pipe.unet, DPOConfig(data="-", output_dir=str(folder)), DEFAULT_ADAPTER)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in pipe.unet.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    save_lora(pipe.unet, folder, adapter_name=DEFAULT_ADAPTER)
    return folder


def first_frame(pool, clip):
    return read_video(pool.video_path(clip.clip_id))[0].astype(int)


def test_a_round_repeats_the_base_prompts_seeds_and_first_frames_with_the_lora(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "data"
    base_args = ["--data-dir", str(data), "--model", str(tiny_model_dir)]
    assert fill_main(base_args + FILL) == 0
    pool = CandidatePool(data / "pool")
    base = pool.clips()
    assert len(base) == 4 and [version.round for version in pool_rounds(pool)] == [0]

    lora_1 = make_lora(tiny_model_dir, tmp_path / "run-1", seed=1)
    assert fill_main(base_args + ["--lora", str(lora_1)]) == 0
    assert "Round 1: 4 clips" in capsys.readouterr().out
    round_1 = [clip for clip in pool.clips() if clip.settings.get("round") == 1]
    assert len(round_1) == 4
    for clip in round_1:
        twin = next(b for b in base if b.prompt == clip.prompt and b.settings["seed"] == clip.settings["seed"])
        assert clip.settings["lora"] == str(lora_1) and clip.settings["lora_revision"]
        same = {k: v for k, v in clip.settings.items() if k not in ("round", "lora", "lora_revision")}
        assert same == twin.settings  # same model, frames, steps, guidance, seed, first-frame sharing
        # the same first frame (equal before encoding; the mp4 codec, which sees the whole clip, moves it by ~2
        # levels, while another prompt's differs by tens); the LoRA changed the motion after it
        assert abs(first_frame(pool, clip) - first_frame(pool, twin)).mean() < 3.0
        other = next(b for b in base if b.prompt != clip.prompt)
        assert abs(first_frame(pool, clip) - first_frame(pool, other)).mean() > 10.0
        assert abs(read_video(pool.video_path(clip.clip_id))[1:].astype(int)
                   - read_video(pool.video_path(twin.clip_id))[1:].astype(int)).mean() > 1.0

    # the sampler pairs the new clips with the base clips of their prompt (and with each other)
    pairs = PairSampler(pool, VoteStore(tmp_path / "votes.jsonl")).candidate_pairs()
    rounds_of = [tuple(sorted(clip.settings.get("round", 0) for clip in pair)) for pair in pairs]
    assert rounds_of.count((0, 1)) == 2 * 2 * 2 and rounds_of.count((1, 1)) == 2 and rounds_of.count((0, 0)) == 2

    # a rerun adds nothing; the next LoRA is round 2; an earlier round's LoRA is refused
    number, again = fill_round(None, pool, lora_1)
    assert number == 1 and {clip.clip_id for clip in again} == {clip.clip_id for clip in round_1}
    lora_2 = make_lora(tiny_model_dir, tmp_path / "run-2", seed=2)
    assert fill_main(base_args + ["--lora", str(lora_2)]) == 0
    assert [(version.round, version.clips) for version in pool_rounds(pool)] == [(0, 4), (1, 4), (2, 4)]
    assert fill_main(base_args + ["--lora", str(lora_1)]) == 2
    assert "is round 1 of the pool already" in capsys.readouterr().err

    # the leaderboard ranks the rounds: round 2 always preferred, then round 1, then the base
    store = VoteStore(tmp_path / "votes.jsonl")
    sampler = PairSampler(pool, store, seed=0)
    while (pair := sampler.next_pair("taste")) is not None:
        left, right = (pair.left.settings.get("round", 0), pair.right.settings.get("round", 0))
        sampler.record_vote("taste", "", pair.token, "tie" if left == right else ("left" if left > right else "right"))
    ranking = version_ranking(store, pool, min_votes=4, resamples=100)
    assert [row["round"] for row in ranking["rows"]] == [2, 1, 0] and ranking["hidden"] == []


def test_a_round_needs_base_clips_and_a_lora(tmp_path, tiny_model_dir):
    pool = CandidatePool(tmp_path / "pool")
    with pytest.raises(ValueError, match="No LoRA weights"):
        fill_round(None, pool, tmp_path / "nothing")
    lora = make_lora(tiny_model_dir, tmp_path / "run", seed=0)
    with pytest.raises(ValueError, match="no base clips"):
        fill_round(None, pool, lora)


def vote_all(client, name: str, pool, prefer_newer: bool) -> int:
    """Vote on every pair the studio serves to ``name``: the clip of the newer round (or the left one) wins."""
    shown, votes = client.predict(name, api_name="/next_pair"), 0
    while not shown[0].get("done"):
        pair = shown[0]
        left, right = (pool.get(pair[side]).settings.get("round", 0) for side in ("left_clip", "right_clip"))
        choice = "left" if not prefer_newer or left > right else ("right" if right > left else "tie")
        shown, votes = client.predict(name, pair["token"], choice, api_name="/vote"), votes + 1
    return votes


def test_a_maintainer_starts_round_2_from_the_train_tab_and_trains_against_round_1(tiny_model_dir, tmp_path):
    from gradio_client import Client

    from huvidpo.studio import StudioConfig
    from huvidpo.studio.access import AccessError, User
    from huvidpo.studio.app import build_demo

    data = tmp_path / "data"
    assert fill_main(["--data-dir", str(data), "--model", str(tiny_model_dir)] + FILL) == 0  # the base clips
    config = StudioConfig(model=str(tiny_model_dir), data_dir=str(data), local_maintainer=True, oauth=False,
                          default_frames=4, default_steps=2, comparison_frames=4, comparison_steps=2, sampler_seed=0,
                          leaderboard_min_votes=2, leaderboard_resamples=50)
    demo = build_demo(config)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(url, verbose=False)
        training, pool = demo.services["training"], demo.services["labeling"].pool
        with pytest.raises(AppError, match="No finished run"):
            client.predict("maintainer", api_name="/start_round")
        assert vote_all(client, "ada", pool, prefer_newer=False) == 2  # two prompts, two clips each

        first = client.predict("votes", "", 50.0, 1e-3, 2, 4, 4, "maintainer", api_name="/start_training")
        assert training.wait(timeout=600)
        assert training.status()["state"] == "finished", training.status()
        shown = client.predict("maintainer", api_name="/rounds_status")  # (the button's label follows, not in the API)
        assert f"Round 1: `runs/{first['run_id']}`." in shown

        message = client.predict("maintainer", api_name="/start_round")
        assert "**Round 1**: 4 clips" in message and "which made it: train the next LoRA to start round 2" in message
        assert [(version.round, version.clips) for version in pool_rounds(pool)] == [(0, 4), (1, 4)]
        with pytest.raises(AccessError):
            training.start_round(User(name="bob"))

        # the Label tab serves the new pairs at once: round 1 against the base, and round 1 against itself
        assert vote_all(client, "ada", pool, prefer_newer=True) == 2 * (4 * 3 // 2) - 2
        stats = client.predict("ada", api_name="/label_stats")
        board, note = stats[3], stats[4]
        assert [row[board["headers"].index("round")] for row in board["data"]] == [1, 0]
        assert "relative to" in note and "bootstrap" in note

        second = client.predict("votes", "", 50.0, 1e-3, 2, 4, 4, "maintainer", "studio", False, "ours", "previous",
                                api_name="/start_training")
        assert training.wait(timeout=600)
        status = training.status()
        assert status["state"] == "finished" and status["run_id"] == second["run_id"], status
        assert status["settings"]["reference"] == "previous" and status["settings"]["previous_lora"] == first["run_id"]
        assert status["last_metrics"] is not None
        shown = client.predict("maintainer", api_name="/rounds_status")
        assert f"Round 2: `runs/{second['run_id']}`." in shown
    finally:
        demo.services["labeling"].close()
        demo.close()
