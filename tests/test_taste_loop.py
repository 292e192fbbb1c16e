"""The taste loop in the studio at test size: a taste labeler votes through the Label tab's API, the Train tab trains on
its votes, and the Generate tab compares base and LoRA on one seed."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402

from huvidpo.data.video import read_video, write_video  # noqa: E402
from huvidpo.studio import StudioConfig  # noqa: E402
from huvidpo.studio.app import build_demo  # noqa: E402
from huvidpo.world.clips import ClipSpec, render_clip  # noqa: E402
from huvidpo.world.labelers import label_through_api, main as labelers_main  # noqa: E402
from huvidpo.world.taste import Taste, read_mode  # noqa: E402

SPECS = [ClipSpec("circle", "red", "blue", "left", speed, 24, 44, 32, speed_stated=False) for speed in ("slowly", "quickly")]
PROMPT = SPECS[0].prompt  # names no speed: the clip's speed is its unprompted mode


@pytest.fixture()
def studio(tiny_model_dir, tmp_path):
    config = StudioConfig(model=str(tiny_model_dir), data_dir=str(tmp_path / "data"), local_maintainer=True, oauth=False,
                          default_frames=4, default_steps=2, comparison_frames=4, comparison_steps=2, sampler_seed=0)
    demo = build_demo(config)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    pool = demo.services["labeling"].pool
    for index, spec in enumerate(SPECS * 2):  # two clips of each mode: one pair per mode is a tie, four are decided
        path = write_video(render_clip(spec, 8, 64), tmp_path / "clips" / f"{index}.mp4")
        pool.add_clip(PROMPT, path, {"model": "world", "seed": index})
    yield demo, config, url
    demo.close()


def test_a_taste_labeler_votes_through_the_api_and_the_lora_trains_on_its_taste(studio):
    demo, config, url = studio
    taste = Taste("speed", "slowly")
    votes = label_through_api(url, taste)
    assert len(votes) == 6  # every pair of the pool, then the pool is done
    assert sum(vote["choice"] == "tie" for vote in votes) == 2  # the two pairs of equal modes
    stored = demo.services["labeling"].store.effective_votes("taste-slowly")
    assert [vote.vote_id for vote in stored] == [vote["vote_id"] for vote in votes]
    pool = demo.services["labeling"].pool
    for vote in stored:  # each decided vote picked the slow clip of its pair
        if vote.choice.value in ("left", "right"):
            chosen = vote.left_clip if vote.choice.value == "left" else vote.right_clip
            assert read_mode(read_video(pool.video_path(chosen))) == "slowly"

    client = Client(url, verbose=False)
    started = client.predict("votes", "", 50.0, 1e-3, 2, 4, 4, "taste-slowly", api_name="/start_training")
    assert demo.services["training"].wait(timeout=600), "the run did not end"
    status = client.predict("taste-slowly", api_name="/training_status")[0]
    assert status["state"] == "finished" and status["run_id"] == started["run_id"], status
    video, base, _, info, _, _ = client.predict(prompt=PROMPT, seed=3, lora=status["lora"], compare=True, api_name="/generate")
    assert info["clips"] == 2 and info["settings"]["seed"] == 3
    assert read_video(video).shape == read_video(base).shape


def test_the_labeler_cli_names_a_bad_taste(capsys):
    with pytest.raises(SystemExit):
        labelers_main(["--url", "http://127.0.0.1:9/", "--taste", "sideways"])
    assert "--taste" in capsys.readouterr().err


def test_fill_puts_clips_of_each_prompt_in_the_studios_pool_sharing_their_first_frame(tiny_model_dir, tmp_path, capsys):
    from huvidpo.annotation import CandidatePool
    from huvidpo.annotation.fill import main as fill_main

    args = ["--data-dir", str(tmp_path / "data"), "--model", str(tiny_model_dir), "--prompts", "train-speedless",
            "--num-prompts", "2", "--clips-per-prompt", "3", "--frames", "4", "--steps", "2", "--image-steps", "2"]
    assert fill_main(args) == 0
    out = capsys.readouterr().out
    assert "6 clips of 2 prompts" in out and "6 pairs to label" in out
    pool = CandidatePool(tmp_path / "data" / "pool")
    clips = pool.clips()
    assert len(clips) == 6 and len({clip.prompt for clip in clips}) == 2
    for prompt in {clip.prompt for clip in clips}:
        assert "slowly" not in prompt and "quickly" not in prompt
        # Clips after the first continue its first frame (through the VAE, so the first clip's own may differ a little).
        firsts = [read_video(pool.video_path(clip.clip_id))[0].astype(int) for clip in clips if clip.prompt == prompt]
        assert abs(firsts[1] - firsts[2]).mean() < 1.0  # the same frame, up to the mp4 codec
        assert len({clip.settings["seed"] for clip in clips if clip.prompt == prompt}) == 3
    assert fill_main(args) == 0 and len(pool.clips()) == 6  # a rerun adds only what is missing: nothing


def test_fill_names_a_bad_setting(tmp_path, capsys):
    from huvidpo.annotation.fill import main as fill_main

    with pytest.raises(SystemExit) as exit_info:
        fill_main(["--data-dir", str(tmp_path), "--clips-per-prompt", "1"])
    assert exit_info.value.code == 2 and "clips_per_prompt" in capsys.readouterr().err
