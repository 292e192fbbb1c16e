"""The studio's logic without a browser: settings, who may do what, LoRA paths, services, ZeroGPU shim."""

import copy
import shlex
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from huvidpo.annotation import Choice
from huvidpo.data.video import probe_video, write_video
from huvidpo.generate import GenerationSettings, build_parser
from huvidpo.studio import (
    AccessError,
    AnnotationSync,
    GeneratedClip,
    GenerationService,
    LabelingService,
    SessionState,
    StudioConfig,
    TrainingManager,
    TrainRequest,
    User,
    check_settings,
    gpu,
    list_loras,
    reproduce_command,
    require_labeler,
    require_maintainer,
    resolve_lora,
    resolve_user,
    role_text,
)

PROMPT = "a red circle moving left on a blue background"


def make_config(tmp_path, **overrides) -> StudioConfig:
    return StudioConfig(data_dir=str(tmp_path / "data"), oauth=False, **overrides)


def fake_lora(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pytorch_lora_weights.safetensors").write_bytes(b"not read here")
    return folder


def clip_file(tmp_path, name: str, shade: float) -> GeneratedClip:
    video = write_video(np.full((4, 64, 64, 3), shade, dtype=np.float32), tmp_path / f"{name}.mp4")
    return GeneratedClip(video=video, first_frame=video.with_suffix(".png"), settings={"prompt": PROMPT, "seed": int(shade * 10)})


# ---------------------------------------------------------------------------------------------- config


def test_config_reads_the_environment_and_flags_win(tmp_path, monkeypatch):
    monkeypatch.setenv("HUVIDPO_MAINTAINERS", "Alice, bob carol")
    monkeypatch.setenv("HUVIDPO_VOTES_REPO", "team/votes")
    monkeypatch.setenv("HUVIDPO_TABS", "label,train")
    config = StudioConfig.from_env(data_dir=str(tmp_path), oauth=True, votes_repo=None)
    assert config.maintainers == ["alice", "bob", "carol"]
    assert config.votes_repo == "team/votes"
    assert config.tabs == ["label", "train"]
    assert StudioConfig.from_env(data_dir=str(tmp_path), tabs="generate").tabs == ["generate"]
    assert config.votes_path == tmp_path.resolve() / "votes.jsonl"
    assert {path.name for path in (config.pool_dir, config.runs_dir, config.exports_dir)} == {"pool", "runs", "exports"}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"tabs": "generate,bogus"}, "tabs"),
        ({"local_maintainer": True, "oauth": True}, "HUVIDPO_MAINTAINERS"),
        ({"votes_repo": "not a repo"}, "votes_repo"),
        ({"default_frames": 99}, "default_frames"),
        ({"label_concurrency": 0}, "label_concurrency"),
    ],
)
def test_config_rejects_bad_settings(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        StudioConfig(data_dir=str(tmp_path), **overrides)


def test_oauth_defaults_to_on_only_on_a_space(tmp_path, monkeypatch):
    monkeypatch.delenv("SYSTEM", raising=False)
    assert StudioConfig(data_dir=str(tmp_path)).oauth is False
    monkeypatch.setenv("SYSTEM", "spaces")
    monkeypatch.setenv("SPACE_ID", "team/studio")
    assert StudioConfig(data_dir=str(tmp_path)).oauth is True


def test_presets_default_to_the_model_family_and_generation_settings_within_the_app_limits(tmp_path):
    from huvidpo.backends import HUVIDPO

    spec = GenerationSettings.spec
    config = make_config(tmp_path)
    assert (config.default_frames, config.default_steps) == (HUVIDPO.default_frames, spec("steps").default)
    small = make_config(tmp_path, max_frames=4, max_steps=3)
    assert (small.default_frames, small.default_steps) == (4, 3)
    assert make_config(tmp_path, default_frames=6).default_frames == 6


def test_only_media_folders_are_served_and_they_exist(tmp_path):
    config = make_config(tmp_path)
    config.make_dirs()
    served = config.served_dirs
    assert all(folder.is_dir() for folder in served)
    assert config.generated_dir in served and config.pool_dir / "videos" in served
    for private in (config.votes_path, config.pool_dir / "manifest.jsonl", config.exports_dir):
        assert not any(private.is_relative_to(folder) for folder in served), private


# ---------------------------------------------------------------------------------------------- access


def test_locally_a_typed_name_labels_and_only_the_flag_makes_maintainers(tmp_path):
    visitor = make_config(tmp_path, maintainers=["ada"])
    assert resolve_user(visitor, None, "  ada ") == User(name="ada", signed_in=False, maintainer=False)
    assert resolve_user(visitor, None, "").role == "visitor"
    with pytest.raises(AccessError, match="Type your name"):
        require_labeler(visitor, resolve_user(visitor, None, ""))
    with pytest.raises(AccessError, match="--maintainer"):
        require_maintainer(visitor, resolve_user(visitor, None, "ada"))
    flagged = make_config(tmp_path, local_maintainer=True)
    user = resolve_user(flagged, None, "")
    assert user.maintainer and user.role == "maintainer"
    require_maintainer(flagged, user)


def test_with_oauth_the_username_decides_and_typed_names_are_ignored(tmp_path):
    config = StudioConfig(data_dir=str(tmp_path), oauth=True, maintainers="Ada")
    assert resolve_user(config, None, "ada") == User()
    assert resolve_user(config, "ada", "mallory") == User(name="ada", signed_in=True, maintainer=True)
    bob = resolve_user(config, "bob", "ada")
    assert bob.name == "bob" and bob.role == "labeler"
    with pytest.raises(AccessError, match="signed in as bob"):
        require_maintainer(config, bob)
    with pytest.raises(AccessError, match="Sign in"):
        require_labeler(config, User())


def test_the_role_line_says_who_you_are_and_what_you_may_do(tmp_path):
    local = make_config(tmp_path)
    assert role_text(local, resolve_user(local, None, "")) == "Visitor: type a name to label."
    assert role_text(local, resolve_user(local, None, "ada")) == "**ada** · labeler: you can generate and label."
    flagged = make_config(tmp_path, local_maintainer=True)
    assert role_text(flagged, resolve_user(flagged, None, "")).startswith("Maintainer (local)")
    assert "train and push" in role_text(flagged, resolve_user(flagged, None, "ada"))
    space = StudioConfig(data_dir=str(tmp_path), oauth=True, maintainers="ada")
    assert role_text(space, resolve_user(space, None, "ada")) == "Visitor: sign in to label."


# ---------------------------------------------------------------------------------------------- LoRA paths and settings


def test_lora_references_resolve_inside_the_app_folders_only(tmp_path):
    config = make_config(tmp_path)
    run = fake_lora(config.runs_dir / "dpo-1")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.69}\n')
    fake_lora(config.runs_dir / "dpo-0")  # cancelled before its first step: its LoRA learnt nothing
    mine = fake_lora(config.loras_dir / "mine")
    outside = fake_lora(tmp_path / "elsewhere")
    assert resolve_lora("", config) is None
    assert resolve_lora("runs/dpo-1", config, maintainer=True) == str(run.resolve())
    assert resolve_lora("loras/mine", config) == str(mine.resolve())
    assert resolve_lora("someone/huvidpo-lora", config) == "someone/huvidpo-lora"
    for bad in (str(outside), "runs/../../elsewhere", "runs/", "loras/missing", "../elsewhere", "someone/..", "~/x"):
        with pytest.raises(ValueError):
            resolve_lora(bad, config, maintainer=True)
    with pytest.raises(ValueError, match="maintainers only"):
        resolve_lora("runs/dpo-1", config)
    with pytest.raises(ValueError, match="No trained LoRA"):
        resolve_lora("runs/dpo-0", config, maintainer=True)
    with pytest.raises(ValueError, match="lora must be text"):
        resolve_lora(["runs/dpo-1"], config)
    assert list_loras(config, maintainer=True)[:2] == ["runs/dpo-1", "loras/mine"]
    assert "runs/dpo-0" not in list_loras(config, maintainer=True)
    assert list_loras(config)[0] == "loras/mine" and not any(ref.startswith("runs/") for ref in list_loras(config))


def test_a_bad_lora_reference_says_what_to_pick_in_words_a_browser_shows(tmp_path):
    """The message is shown as HTML: no '<folder>' placeholder for the browser to swallow."""
    config = make_config(tmp_path)
    with pytest.raises(ValueError) as error:
        resolve_lora("/etc", config)
    assert "'loras/' followed by the folder's name" in str(error.value)
    assert "<" not in str(error.value) and ">" not in str(error.value)


def test_the_app_proposes_prompts_the_served_model_draws(tmp_path, tiny_model_dir):
    """The placeholder, the empty-prompt example, the before/after prompts and the examples: canonical world
    prompts for the embedded default (the app's own ones leave the speed to the model, the mode a taste moves),
    the paper's categories for any other model."""
    from huvidpo.annotation.pool import CATEGORY_PRESETS
    from huvidpo.studio.tabs.generate import load_examples
    from huvidpo.world.prompts import parse_prompt, word_prompt

    embedded = make_config(tmp_path)
    assert embedded.serves_embedded_default
    for prompt in (*embedded.suggested_prompts, *(row[0] for row in load_examples(embedded))):
        spec = parse_prompt(prompt)
        assert None not in (spec.shape, spec.color, spec.background, spec.direction), prompt
        assert prompt == word_prompt(spec.shape, spec.color, spec.background, spec.direction, spec.speed), prompt
    assert all(parse_prompt(prompt).speed is None for prompt in embedded.suggested_prompts)
    assert embedded.comparison_prompts == list(embedded.suggested_prompts)
    with pytest.raises(ValueError, match=f"e.g. '{embedded.suggested_prompts[0]}'"):
        check_settings(GenerationSettings(prompt=" "), embedded)

    real = make_config(tmp_path, model=str(tiny_model_dir))
    paper = {prompt for prompts in CATEGORY_PRESETS.values() for prompt in prompts}
    assert not real.serves_embedded_default
    assert set(real.suggested_prompts) <= paper and set(real.comparison_prompts) <= paper
    assert {row[0] for row in load_examples(real)} <= paper and load_examples(real)
    with pytest.raises(ValueError, match=f"e.g. '{real.suggested_prompts[0]}'"):
        check_settings(GenerationSettings(prompt=""), real)
    assert make_config(tmp_path, comparison_prompts=["a blue square"]).comparison_prompts == ["a blue square"]


def _assert_the_oracle_reads_right(settings: list[GenerationSettings]) -> None:
    """Generate each with the embedded default; the oracle reads shape, colour, background and direction right."""
    from huvidpo.generate import generate
    from huvidpo.hub import load_pipeline
    from huvidpo.world.oracle import score_clip

    pipe = load_pipeline()
    for setting in {repr(setting.to_dict()): setting for setting in settings}.values():  # each clip once
        frames, _ = generate(pipe, setting)
        score = score_clip(frames, setting.prompt)
        read = (score.reading.shape, score.reading.color, score.reading.background, score.reading.direction)
        assert (score.shape_match, score.color_match, score.background_match) == (1, 1, 1), (setting, read)
        assert score.direction_match >= 0.5, (setting, read)


def test_the_embedded_default_draws_the_placeholder_and_the_before_after_prompts(tmp_path, one_torch_thread):
    """What a newcomer meets first: the placeholder at the Generate tab's settings, and the Train tab's before/after
    prompts at the comparison's settings, drawn right."""
    config = make_config(tmp_path)
    _assert_the_oracle_reads_right(
        [GenerationSettings(prompt=config.suggested_prompts[0], frames=config.default_frames, steps=config.default_steps)]
        + [GenerationSettings(prompt=prompt, frames=config.comparison_frames, steps=config.comparison_steps,
                              image_steps=config.comparison_steps, seed=config.comparison_seed)
           for prompt in config.comparison_prompts]
    )


@pytest.mark.slow
def test_the_embedded_default_draws_every_example(tmp_path, one_torch_thread):
    from huvidpo.studio.tabs.generate import load_examples

    _assert_the_oracle_reads_right([
        GenerationSettings(prompt=prompt, frames=frames, steps=steps, guidance=guidance, seed=seed)
        for prompt, frames, steps, guidance, seed in load_examples(make_config(tmp_path))
    ])


def test_the_embedded_vocabulary_is_shown_and_unknown_words_get_a_gentle_note(tmp_path, tiny_model_dir):
    from huvidpo.studio.generation import prompt_notes, vocabulary_text
    from huvidpo.world.prompts import COLORS, DIRECTIONS, SHAPES, SPEEDS

    embedded = make_config(tmp_path)
    text = vocabulary_text(embedded)
    for word in (*COLORS, *SHAPES, *DIRECTIONS, *SPEEDS, "64×64", "--model"):
        assert word in text, word
    assert prompt_notes(embedded.suggested_prompts[0], embedded) == []
    [colour_note, shape_note] = prompt_notes("a purple hexagon moving left slowly on a blue background", embedded)
    assert "purple" in colour_note and all(colour in colour_note for colour in COLORS)
    assert "hexagon" in shape_note and all(shape in shape_note for shape in SHAPES)
    # A real model knows more words: no vocabulary, no notes.
    real = make_config(tmp_path, model=str(tiny_model_dir))
    assert vocabulary_text(real) == "" and prompt_notes("a purple hexagon", real) == []


def test_settings_outside_the_limits_are_refused(tmp_path):
    config = make_config(tmp_path, max_frames=8, default_frames=8)
    check_settings(GenerationSettings(prompt=PROMPT, frames=8, steps=2), config)
    for bad, message in [  # the settings refuse what is out of their own range; the app what is over its limits
        (dict(prompt="  "), "prompt is empty"),
        (dict(prompt=PROMPT, frames=9), "frames must be an integer from 2 to 8"),
        (dict(prompt=PROMPT, frames=8, steps=0), "steps"),
        (dict(prompt=PROMPT, frames=8, seed=-1), "seed"),
        (dict(prompt=PROMPT, frames=8, seed=1.5), "seed must be an integer"),
        (dict(prompt=PROMPT, frames=8, lora_scale=5), "lora_scale"),
        (dict(prompt=PROMPT, frames=8, guidance=float("nan")), "guidance"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_settings(GenerationSettings(**bad), config)
    # The bounds are the settings' own (field metadata), read by the check and the sliders alike.
    guidance = GenerationSettings.spec("guidance").metadata
    check_settings(GenerationSettings(prompt=PROMPT, frames=8, guidance=guidance["max"]), config)
    with pytest.raises(ValueError, match=f"guidance must be a number from {guidance['min']:g} to {guidance['max']:g}"):
        GenerationSettings(prompt=PROMPT, frames=8, guidance=guidance["max"] + 0.5)


def test_reproduce_command_lists_only_what_differs_from_the_defaults(tmp_path):
    config = make_config(tmp_path)
    settings = {**GenerationSettings(prompt="it's red", frames=6, adain=False).to_dict(), "model": "tiny"}
    command = reproduce_command(settings, config, server_paths=True)
    assert command.startswith("huvidpo-generate --prompt 'it'\"'\"'s red'")  # the installed command: runs from anywhere
    assert "--frames 6" in command and "--no-adain" in command and "--steps" not in command
    assert "--model" not in command  # the embedded default is the command's default too
    # The CLI reads the command back into the same settings; the clip goes to a folder of the data dir.
    parsed, command_settings, _ = build_parser().parse(shlex.split(command)[1:])
    assert parsed == GenerationSettings(prompt="it's red", frames=6, adain=False)
    assert Path(command_settings.out) == config.root / "reproduced" / "clip.mp4"


def test_reproduce_command_names_the_model_and_the_lora_by_absolute_paths(tmp_path, tiny_model_dir):
    """A run's LoRA is 'runs/<id>' in the app, relative to the data dir: the maintainer's command names it by its
    absolute path, so it is not read as a Hub id from the repository root (nor missing from anywhere else). A
    visitor's command names no server path (issue 24)."""
    config = make_config(tmp_path, model=str(tiny_model_dir))
    run = fake_lora(config.runs_dir / "dpo-1")
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    clip = GeneratedClip(config.generated_dir / "20261202-abc.mp4", config.generated_dir / "20261202-abc.png", {})
    settings = {**GenerationSettings(prompt=PROMPT, lora="runs/dpo-1").to_dict(), "first_frame": "uploaded"}
    words = shlex.split(reproduce_command(settings, config, clip, server_paths=True))
    flags = dict(zip(words[1::2], words[2::2]))
    assert flags["--model"] == str(tiny_model_dir.resolve()) and flags["--lora"] == str(run.resolve())
    assert flags["--image"] == str(clip.first_frame) and flags["--out"] == str(config.root / "reproduced" / "20261202-abc.mp4")
    assert all(Path(flags[flag]).is_absolute() for flag in ("--model", "--lora", "--image", "--out"))
    visitor = reproduce_command({**settings, "lora": "loras/mine"}, config, clip)
    assert str(tmp_path) not in visitor and str(tiny_model_dir) not in visitor
    flags = dict(zip(shlex.split(visitor)[1::2], shlex.split(visitor)[2::2]))
    assert (flags["--model"], flags["--lora"], flags["--out"]) == (tiny_model_dir.name, "loras/mine", "20261202-abc.mp4")


def test_session_state_copies_get_their_own_id():
    template = SessionState()
    first, second = copy.deepcopy(template), copy.deepcopy(template)
    assert first.ensure_id() != second.ensure_id()
    assert first.ensure_id() == first.session_id
    first.serve({"token": "t1", "prompt": PROMPT})
    assert first.pair_token == "t1"
    first.serve(None)
    assert first.pair_token == ""


# ---------------------------------------------------------------------------------------------- ZeroGPU


def test_gpu_is_a_no_op_without_the_spaces_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError

    def work(x):
        return x + 1

    assert gpu(work) is work
    assert gpu(duration=5)(work) is work


def test_gpu_uses_spaces_gpu_when_present(monkeypatch):
    calls = []
    fake = types.ModuleType("spaces")

    def GPU(duration=60):  # noqa: N802 - the package's name
        def wrap(fn):
            calls.append(duration)
            return lambda *args: ("on gpu", fn(*args))

        return wrap

    fake.GPU = GPU
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert gpu(duration=30)(lambda x: x * 2)(3) == ("on gpu", 6)
    assert calls == [30]


# ---------------------------------------------------------------------------------------------- services




def test_generation_writes_clips_into_the_data_dir_and_prunes(tiny_model_dir, tmp_path, one_torch_thread):
    config = make_config(tmp_path, model=str(tiny_model_dir), keep_generated=2)
    service = GenerationService(config)
    steps = []
    settings = GenerationSettings(prompt=PROMPT, frames=4, steps=2, image_steps=2, seed=1)
    clip = service.generate(settings, step_callback=lambda step, total: steps.append((step, total)))
    assert steps == [(1, 2), (2, 2)]
    assert clip.video.parent == config.generated_dir and clip.first_frame.is_file()
    info = probe_video(clip.video)
    assert (info.num_frames, info.codec, info.pix_fmt) == (4, "h264", "yuv420p")
    assert clip.settings["model"] == tiny_model_dir.name and clip.settings["first_frame"] == "generated"
    for seed in (2, 3):
        service.generate(GenerationSettings(prompt=PROMPT, frames=2, steps=1, image_steps=1, seed=seed))
    assert len(list(config.generated_dir.glob("*.mp4"))) == 2
    assert not clip.video.exists()
    with pytest.raises(ValueError, match="pick a LoRA"):
        service.compare(settings)
    with pytest.raises(ValueError, match="not a LoRA this app can use"):
        service.generate(GenerationSettings(prompt=PROMPT, lora="/etc"))


def test_labeling_service_serves_records_undoes_and_survives_a_restart(tmp_path):
    config = make_config(tmp_path, sampler_seed=0)
    labeling = LabelingService(config)
    records = labeling.add_clips([clip_file(tmp_path, "a", 0.2), clip_file(tmp_path, "b", 0.8)])
    assert labeling.add_clips([clip_file(tmp_path, "a", 0.2)]) == records[:1]
    pair = labeling.next_pair("ada", "s1")
    assert pair["prompt"] == PROMPT and {pair["left_clip"], pair["right_clip"]} == {r.clip_id for r in records}
    with pytest.raises(ValueError, match="Next pair"):
        labeling.vote("ada", "s1", "", "left")
    view = labeling.view("ada", pair)
    assert view["headline"] == PROMPT and not view["pair"]["done"] and view["pair"]["token"] == pair["token"]
    assert {Path(view["left_video"]).read_bytes(), Path(view["right_video"]).read_bytes()} == {
        labeling.pool.video_path(r.clip_id).read_bytes() for r in records}
    assert "**0/1** pairs judged" in view["counter"]
    vote = labeling.vote("ada", "s1", pair["token"], "left")
    assert vote["choice"] == "left" and labeling.progress("ada")["your_votes"] == 1
    assert labeling.next_pair("ada", "s1") is None
    done = labeling.view("ada", None, last_vote=vote)
    assert done["pair"]["done"] and done["pair"]["last_vote"] == vote and done["left_video"] is None
    assert done["headline"].startswith("You have judged every pair") and "**1 vote** by ada" in done["counter"]
    again = labeling.undo("ada", "s1")
    assert again["pair_id"] == pair["pair_id"] and labeling.progress("ada")["your_votes"] == 0
    labeling.vote("ada", "s1", again["token"], "right")

    restarted = LabelingService(config)
    votes = restarted.store.effective_votes()
    assert [(v.labeler, v.choice) for v in votes] == [("ada", Choice.RIGHT)]
    assert restarted.stats()["progress"]["pairs_judged"] == 1
    folder, pairs = restarted.export()
    assert pairs == 1 and folder.parent == config.exports_dir


def test_a_skip_is_not_a_vote_and_skipped_pairs_are_not_called_judged(tmp_path):
    config = make_config(tmp_path, sampler_seed=0)
    labeling = LabelingService(config)
    labeling.add_clips([clip_file(tmp_path, name, shade) for name, shade in (("a", 0.2), ("b", 0.5), ("c", 0.8))])
    first = labeling.next_pair("ada", "s1")
    labeling.vote("ada", "s1", first["token"], "left")
    second = labeling.next_pair("ada", "s1")
    labeling.vote("ada", "s1", second["token"], "skip")
    third = labeling.next_pair("ada", "s1")
    labeling.vote("ada", "s1", third["token"], "tie")
    assert labeling.next_pair("ada", "s1") is None
    view = labeling.view("ada", None, session_id="s1")
    assert "**2 votes** by ada (1 skipped)" in view["counter"] and "**2/3** pairs judged" in view["counter"]
    assert "judged every pair" not in view["headline"]
    assert "you judged 2 of the 3 pairs and skipped 1" in view["headline"] and "next session" in view["headline"]
    assert view["pair"]["progress"]["your_votes"] == 2
    # The skipped pair comes back in a new session; judged, it makes the pool complete for ada.
    again = labeling.next_pair("ada", "s2")
    assert again["pair_id"] == second["pair_id"]
    labeling.vote("ada", "s2", again["token"], "right")
    assert labeling.view("ada", None, session_id="s2")["headline"] == "You have judged every pair in the pool. Thank you!"


def test_sending_a_clip_again_says_it_is_already_in_the_pool(tmp_path):
    labeling = LabelingService(make_config(tmp_path))
    first = labeling.send_to_pool([clip_file(tmp_path, "a", 0.2)])
    assert first.startswith("Added to the pool: ") and "1 clip and 0 pairs" in first
    assert "send another seed" in first
    again = labeling.send_to_pool([clip_file(tmp_path, "a", 0.2)])
    assert "Added" not in again and "Already in the pool, not added again" in again and "1 clip and 0 pairs" in again
    both = labeling.send_to_pool([clip_file(tmp_path, "a", 0.2), clip_file(tmp_path, "b", 0.8)])
    assert "Added to the pool" in both and "Already in the pool" in both and "2 clips and 1 pair to judge" in both
    assert len(labeling.pool) == 2


def test_annotation_sync_pushes_votes_and_pool_but_not_runs_or_generated(tmp_path):
    from test_annotation_sync_export import FolderHubApi

    config = make_config(tmp_path)
    labeling = LabelingService(config)
    labeling.add_clips([clip_file(tmp_path, "a", 0.2)])
    config.votes_path.write_text('{"x": 1}\n')
    for private in (config.runs_dir / "dpo-1" / "README.md", config.generated_dir / "clip.mp4", config.exports_dir / "e" / "metadata.jsonl"):
        private.parent.mkdir(parents=True, exist_ok=True)
        private.write_text("stays local")
    api = FolderHubApi(tmp_path / "remote", failures=0)
    sync = AnnotationSync(config.root, "team/votes", hf_api=api, autostart=False, path_in_repo="replicas/one")
    assert sync.push_now()
    pushed = sorted(path for commit in api.commits for path in commit)
    assert "replicas/one/votes.jsonl" in pushed and "replicas/one/pool/manifest.jsonl" in pushed
    assert all(path == "replicas/one/votes.jsonl" or path.startswith("replicas/one/pool/") for path in pushed)


def test_training_is_refused_to_non_maintainers_and_checks_its_inputs(tmp_path):
    config = make_config(tmp_path)
    manager = TrainingManager(config, LabelingService(config))
    with pytest.raises(AccessError, match="maintainers"):
        manager.start(User(name="ada"), TrainRequest())
    with pytest.raises(AccessError):
        manager.push(User(name="ada"), "ada/lora")
    with pytest.raises(AccessError):
        manager.cancel(User(name="ada"))
    boss = User(maintainer=True)
    with pytest.raises(ValueError, match="No decided pairs"):
        manager.start(boss, TrainRequest())
    with pytest.raises(ValueError, match="beta"):
        manager.start(boss, TrainRequest(beta=-1))
    with pytest.raises(ValueError, match="neither"):
        manager.resolve_dataset("/etc")
    with pytest.raises(ValueError, match="No export"):
        manager.resolve_dataset("exports/../../x")
    assert manager.resolve_dataset("team/pairs") == "team/pairs"
    assert manager.resolve_dataset("team/pairs", "genai-bench") == "team/pairs"
    with pytest.raises(ValueError, match="studio's own format: set the format to 'studio'"):
        manager.resolve_dataset("votes", "pickapic")
    with pytest.raises(ValueError, match="data_format must be one of"):
        manager.start(boss, TrainRequest(dataset="team/pairs", data_format="csv"))
    assert manager.status() == {"state": "idle"}
    view = manager.view()
    assert (view["summary"], view["log"], view["running"]) == ("No run yet.", "", False)
    assert view["comparison"] == [(None, None)] * len(config.comparison_prompts)
    assert list(view["metrics"].columns) == ["step", "loss", "accuracy", "margin"] and view["metrics"].empty
    with pytest.raises(ValueError, match="Nothing to push"):
        manager.push(boss, "ada/lora")
    with pytest.raises(ValueError, match="No run in progress"):
        manager.cancel(boss)


def test_models_are_built_one_thread_at_a_time(tmp_path, monkeypatch):
    """Loading patches torch globally (meta-device init): the serving load holds the build lock, and a run's load
    happens in the run's own process, so the two never overlap."""
    import os
    import re

    from worker_loads import failing_load

    from huvidpo.studio import generation

    seen = []

    def fake_load(config):
        seen.append(generation.MODEL_BUILD_LOCK.locked())
        return object()

    monkeypatch.setattr(generation, "load_studio_pipeline", fake_load)
    GenerationService(make_config(tmp_path)).pipeline()

    config = make_config(tmp_path)
    manager = TrainingManager(config, LabelingService(config), load_pipeline=failing_load)
    manager.start(User(maintainer=True), TrainRequest(dataset="team/pairs", steps=2, lora_rank=4))
    assert manager.wait(600)
    status = manager.status()
    assert (status["state"], status["error"]) == ("failed", "no model here")
    assert seen == [True] and not generation.MODEL_BUILD_LOCK.locked()
    [pid] = re.findall(r"\(training process (\d+)\)", manager.view()["log"])
    assert int(pid) != os.getpid()
    # What the request left out is DPOConfig's default (beta) or, on the embedded default, the taste plan (lr, frames).
    from huvidpo.training import DPOConfig
    from huvidpo.world.taste import TASTE_DPO

    default = DPOConfig()
    assert status["settings"] == {
        "dataset": "team/pairs", "data_format": "studio", "exclude_flagged": False, "model": "", "beta": default.beta,
        "learning_rate": TASTE_DPO["learning_rate"], "steps": 2, "lora_rank": 4, "frames": TASTE_DPO["num_frames"],
        "seed": default.seed, "preset": "ours", "reference": "base", "previous_lora": None,
    }
    # The plan's settings the tab does not show reach the run too, and its log says so.
    from huvidpo.studio.runs import read_record

    run_config = read_record(config.runs_dir / status["run_id"])["dpo_config"]  # what a resume would train with
    assert (run_config["min_timestep"], run_config["rpo_alpha"]) == (TASTE_DPO["min_timestep"], TASTE_DPO["rpo_alpha"])
    assert "and the taste plan's min_timestep 800, rpo_alpha 10" in manager.view()["log"]
    assert manager.view()["summary"].startswith(f"**{status['run_id']}** · failed")
    # The Train tab's optimizer preset reaches the run's DPOConfig: the original code's AdamW eps, decay, dropout.
    manager.start(User(maintainer=True), TrainRequest(dataset="team/pairs", steps=2, preset="huvidpo"))
    assert manager.wait(600) and manager.status()["settings"]["preset"] == "huvidpo"
    from huvidpo.studio.runs import read_record

    run_config = read_record(config.runs_dir / manager.status()["run_id"])["dpo_config"]  # what the run trains with
    assert (run_config["adam_epsilon"], run_config["weight_decay"], run_config["lora_dropout"]) == (1e-3, 1e-4, 0.1)
    assert run_config["learning_rate"] == TASTE_DPO["learning_rate"]  # what the tab shows applies to either preset
    assert manager.setting_defaults() == {"beta": default.beta, "learning_rate": TASTE_DPO["learning_rate"],
                                          "lora_rank": default.lora_rank, "steps": TASTE_DPO["max_steps"],
                                          "frames": TASTE_DPO["num_frames"]}
    # Another model keeps DPOConfig's defaults and the studio's short-run presets.
    other = TrainingManager(make_config(tmp_path, model="some/model"), LabelingService(config))
    assert other.setting_defaults() == {"beta": default.beta, "learning_rate": default.learning_rate,
                                        "lora_rank": default.lora_rank, "steps": config.train_steps,
                                        "frames": config.train_frames}
    assert other.plan_settings() == {}


def test_before_clips_are_made_once_per_model_and_cancel_stops_a_run_at_any_point(tmp_path, tiny_model_dir,
                                                                                    monkeypatch, one_torch_thread):
    from worker_loads import slowed_load

    from huvidpo.studio import training as training_module

    config = make_config(tmp_path, model=str(tiny_model_dir), train_frames=4, comparison_frames=4, comparison_steps=2,
                         sampler_seed=0)
    labeling = LabelingService(config)
    labeling.add_clips([clip_file(tmp_path, "a", 0.2), clip_file(tmp_path, "b", 0.8)])
    pair = labeling.next_pair("ada", "s1")
    labeling.vote("ada", "s1", pair["token"], "left")
    manager, boss = TrainingManager(config, labeling), User(maintainer=True)

    def run(patches: dict | None = None, on: TrainingManager = manager) -> dict:
        with monkeypatch.context() as patched:
            for (owner, name), value in (patches or {}).items():
                patched.setattr(owner, name, value)
            on.start(boss, TrainRequest(steps=1, lora_rank=4))
            assert on.wait(300)
        status = on.status()
        status["log"] = on.view()["log"]
        return status

    first = run()
    assert first["state"] == "finished" and "4/4 made" in first["log"]  # two prompts: before and after each
    second = run()  # same model, same settings: the "before" clips are the first run's
    assert second["state"] == "finished" and "2/2 made" in second["log"] and "before, prompt" not in second["log"]
    for old, new in zip(first["comparison"], second["comparison"]):
        assert Path(old["before"]).read_bytes() == Path(new["before"]).read_bytes() and old["after"] != new["after"]

    # The run's process reports to the app, which cancels as it hears of a stage; the slowed model's UNet calls
    # last long enough for the cancel to land inside that stage.
    slowed = TrainingManager(config, labeling, load_pipeline=slowed_load)
    real_set_state = training_module.TrainingRun.set_state

    # Cancel pressed while a before/after clip is being drawn: the clip stops at its next step, the run ends cancelled.
    def comparing_then_cancel(run_self, state):
        real_set_state(run_self, state)
        if state == "comparing":
            slowed.cancel(boss)

    third = run({(training_module.TrainingRun, "set_state"): comparing_then_cancel}, on=slowed)
    assert third["state"] == "cancelled" and third["comparison"] == [] and third["lora"]
    assert "cancelled during the before/after clips" in third["log"]

    # Cancel pressed during the last step: the step ends, the LoRA is saved, no before/after clip is made.
    real_on_metrics = training_module.TrainingRun.on_metrics

    def metrics_then_cancel(run_self, row):
        real_on_metrics(run_self, row)
        slowed.cancel(boss)

    fourth = run({(training_module.TrainingRun, "on_metrics"): metrics_then_cancel}, on=slowed)
    assert fourth["state"] == "cancelled" and fourth["comparison"] == [] and fourth["step"] == 1
    assert "made" not in fourth["log"]
