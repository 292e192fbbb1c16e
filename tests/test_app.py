"""The Gradio app through its named endpoints, as scripts and browsers reach it (``gradio_client``, loopback only)."""

import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from huvidpo.annotation import Choice  # noqa: E402
from huvidpo.data.video import probe_video, read_video  # noqa: E402
from huvidpo.generate import GenerationSettings  # noqa: E402
from huvidpo.generate import build_parser as generate_parser  # noqa: E402
from huvidpo.studio import StudioConfig  # noqa: E402
from huvidpo.studio.app import build_demo, build_parser, config_from_args, main  # noqa: E402
from huvidpo.studio.training import ACTIVE_STATES  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a red circle moving left on a blue background"


def launch(config: StudioConfig):
    demo = build_demo(config)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    return demo, url


@pytest.fixture(scope="module")
def studio(tiny_model_dir, tmp_path_factory):
    """A maintainer's app on the tiny model with small presets (4 frames, 2 steps)."""
    config = StudioConfig(
        model=str(tiny_model_dir), data_dir=str(tmp_path_factory.mktemp("studio-data")), local_maintainer=True,
        oauth=False, default_frames=4, default_steps=2, comparison_frames=4, comparison_steps=2, sampler_seed=0,
    )
    demo, url = launch(config)
    yield demo, config, Client(url, verbose=False)
    demo.close()


@pytest.fixture(scope="module")
def voted(studio):
    """Two clips of one prompt sent to the pool from the Generate tab, and one vote on them."""
    demo, config, client = studio
    for seed in (1, 2):
        client.predict(prompt=PROMPT, seed=seed, api_name="/generate")
        client.predict("ada", api_name="/send_to_pool")
    pair = client.predict("ada", api_name="/next_pair")[0]
    after = client.predict("ada", pair["token"], "left", api_name="/vote")[0]
    return pair, after


def test_generate_returns_a_playable_mp4(studio):
    demo, config, client = studio
    video, base, first_frame, info, command, _ = client.predict(prompt=PROMPT, seed=7, api_name="/generate")
    assert base is None
    frames = read_video(video)
    assert frames.shape == (4, 64, 64, 3)
    probe = probe_video(video)
    assert (probe.codec, probe.pix_fmt) == ("h264", "yuv420p")
    assert Path(first_frame).is_file()
    assert info["settings"]["seed"] == 7 and info["settings"]["frames"] == 4
    assert info["settings"]["model"] == Path(config.model).name
    assert command.startswith("huvidpo-generate --prompt") and info["notes"] == []
    assert list(config.generated_dir.glob("*.mp4")), "clips are written into the data dir"


def test_generate_takes_its_defaults_from_the_generation_settings(studio):
    """What a script leaves out is what the page shows: GenerationSettings' defaults (frames and steps: the app's
    presets), so the endpoint and the CLI make the same clip from the same settings."""
    demo, config, client = studio
    parameters = {p["parameter_name"]: p for p in client.view_api(print_info=False, return_format="dict")[
        "named_endpoints"]["/generate"]["parameters"]}
    for spec in fields(GenerationSettings):
        if spec.name in ("guidance", "seed", "lora_scale", "shared_noise", "adain", "sampler"):
            assert parameters[spec.name]["parameter_default"] == spec.default, spec.name
    assert parameters["frames"]["parameter_default"] == config.default_frames
    assert parameters["image_steps"]["parameter_default"] == config.default_steps


def test_generate_with_the_original_sampler_records_it_and_its_command(studio):
    demo, config, client = studio
    video, _, _, info, command, _ = client.predict(prompt=PROMPT, seed=7, sampler="huvidpo", api_name="/generate")
    assert read_video(video).shape == (4, 64, 64, 3)
    assert info["settings"]["sampler"] == "huvidpo"
    settings, _, _ = generate_parser().parse(shlex.split(command)[1:])  # the command makes the same clip again
    assert settings.sampler == "huvidpo" and settings.seed == 7
    with pytest.raises(AppError, match="lamp is not in the list of choices"):  # the dropdown refuses it
        client.predict(prompt=PROMPT, sampler="lamp", api_name="/generate")


def test_examples_state_only_what_differs_from_the_defaults_and_fit_the_app(tmp_path):
    from huvidpo.studio.tabs.generate import load_examples

    config = StudioConfig(data_dir=str(tmp_path), oauth=False, max_steps=30, default_frames=4)
    rows = {row[0]: row[1:] for row in load_examples(config)}
    guidance = GenerationSettings.spec("guidance").default
    assert rows["a red circle moving left slowly on a blue background"] == [4, config.default_steps, guidance, 0]
    assert "a horse running on the grassland" not in rows  # the embedded default cannot draw the paper's prompts
    real = StudioConfig(data_dir=str(tmp_path), oauth=False, max_steps=30, default_frames=4, model=str(tmp_path))
    rows = {row[0]: row[1:] for row in load_examples(real)}
    assert rows["a horse running on the grassland"] == [4, 30, 12.5, 42]  # 50 steps, clamped to this app's 30
    assert "a red circle moving left slowly on a blue background" not in rows


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": PROMPT, "lora": "/etc"}, "not a LoRA this app can use"),
        ({"prompt": PROMPT, "negative_prompt": "blurry", "guidance": 1.0}, "negative prompt"),
        ({"prompt": PROMPT, "frames": 3.5}, "frames must be an integer"),
    ],
)
def test_generate_explains_bad_input_without_a_traceback(studio, kwargs, message):
    client = studio[2]
    with pytest.raises(AppError, match=message) as error:
        client.predict(**kwargs, api_name="/generate")
    assert "Traceback" not in str(error.value)


def test_a_vote_lands_in_the_store_and_undo_serves_the_pair_again(studio, voted):
    demo, config, client = studio
    pair, after = voted
    assert pair["prompt"] == PROMPT and pair["token"]
    assert after["last_vote"]["choice"] == "left" and after["done"] is True
    store = demo.services["labeling"].store
    [vote] = store.effective_votes()
    assert (vote.labeler, vote.choice, vote.pair_id) == ("ada", Choice.LEFT, pair["pair_id"])
    assert vote.session_id and vote.left_clip == pair["left_clip"]

    with pytest.raises(AppError, match="stale pair"):
        client.predict("ada", pair["token"], "right", api_name="/vote")
    with pytest.raises(AppError, match="Type your name"):
        client.predict("", api_name="/next_pair")
    with pytest.raises(AppError, match="unknown choice"):
        client.predict("ada", pair["token"], "maybe", api_name="/vote")

    again, left_video, right_video, prompt_md, progress_md = client.predict("ada", api_name="/undo")
    assert again["pair_id"] == pair["pair_id"] and again["left_clip"] == pair["left_clip"]
    assert read_video(left_video).shape[0] == 4 and Path(right_video).is_file()
    assert PROMPT in prompt_md and "0/1" in progress_md
    assert store.effective_votes() == []
    client.predict("ada", again["token"], "left", api_name="/vote")
    assert [v.choice for v in store.effective_votes()] == [Choice.LEFT]
    stats = client.predict("ada", api_name="/label_stats")
    assert stats[0]["pairs_judged"] == 1
    floats = [value for value in (*stats[0].values(), *stats[1].values()) if isinstance(value, float)]
    assert floats and all(value == round(value, 3) for value in floats)  # 0.667, not 16 digits


def test_a_tiny_run_from_the_train_tab_makes_a_loadable_lora(studio, voted, tiny_model_dir, tmp_path_factory):
    from huvidpo.hub import load_lora, load_pipeline

    demo, config, client = studio
    client.predict("ada", api_name="/label_stats")  # the vote is in (voted), so the export has one pair
    for bad, message in ((2.5, "max_steps must be an integer, got 2.5"), (0, "max_steps must be an integer from 1")):
        with pytest.raises(AppError, match=message):  # named as in the CLI and the tab's label, never rounded
            client.predict("votes", "", 50.0, 1e-3, bad, 4, 4, "ada", api_name="/start_training")
    with pytest.raises(AppError, match="num_frames must be an integer from 2"):
        client.predict("votes", "", 50.0, 1e-3, 2, 4, 1, "ada", api_name="/start_training")
    with pytest.raises(AppError, match=r"preset must be one of \['ours', 'huvidpo'\], got 'lamp'"):
        client.predict("votes", "", 50.0, 1e-3, 2, 4, 4, "ada", "studio", False, "lamp", api_name="/start_training")
    started = client.predict("votes", "", 50.0, 1e-3, 2, 4, 4, "ada", api_name="/start_training")
    assert started["state"] in ACTIVE_STATES and started["started_by"] == "ada"
    assert started["settings"]["learning_rate"] == 1e-3 and started["settings"]["lora_rank"] == 4
    with pytest.raises(AppError, match="already in progress"):
        client.predict("votes", "", 50.0, 1e-3, 2, 4, 4, "ada", api_name="/start_training")
    assert client.predict("ada", api_name="/training_status")[0]["run_id"] == started["run_id"]
    assert demo.services["training"].wait(timeout=600), "the run did not end"
    outputs = client.predict("ada", api_name="/training_status")
    status = outputs[0]
    assert status["state"] == "finished", status
    assert status["step"] == 2 and len(status["last_metrics"]) > 0
    assert outputs[2]["data"][0][0] == 1.0  # the loss plot starts at step 1
    assert "step 2/2" in outputs[5]
    before, after = outputs[6], outputs[7]
    assert read_video(before).shape == read_video(after).shape == (4, 64, 64, 3)

    lora_dir = config.root / status["lora"]
    assert (lora_dir / "pytorch_lora_weights.safetensors").is_file() and (lora_dir / "README.md").is_file()
    card = (lora_dir / "README.md").read_text(encoding="utf-8")
    assert str(config.root) not in card and str(REPO_ROOT) not in card, "the model card names no server path"
    pipe = load_pipeline(str(tiny_model_dir))
    load_lora(pipe, str(lora_dir))
    assert pipe.get_list_adapters()["unet"] == ["huvidpo"]

    # The new LoRA is usable from the Generate tab, in compare mode too.
    video, base, _, info, command, _ = client.predict(prompt=PROMPT, lora=status["lora"], compare=True, api_name="/generate")
    assert info["settings"]["lora"] == status["lora"] and info["clips"] == 2
    assert read_video(video).shape == read_video(base).shape

    # Its command line makes the same clip from another folder ('huvidpo-generate' is `python -m huvidpo.generate`).
    words = shlex.split(command)
    assert words[0] == "huvidpo-generate"
    out = Path(generate_parser().parse(words[1:])[1].out)
    assert out.parent == config.root / "reproduced"
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "huvidpo.generate", *words[1:]], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    reproduced, tuned, untuned = (read_video(path).astype(np.float32) for path in (out, video, base))
    print("reproduced vs LoRA / base clip:", np.abs(reproduced - tuned).mean(), np.abs(reproduced - untuned).mean())
    assert np.abs(reproduced - tuned).mean() < 1.0 < np.abs(reproduced - untuned).mean()  # 0-255; CPU threads differ
    assert list(elsewhere.iterdir()) == []

    # Without a token, a push says so, and the run folder is untouched.
    from huggingface_hub import get_token

    files_before = sorted(p.relative_to(lora_dir) for p in lora_dir.rglob("*"))
    with pytest.raises(AppError, match="no Hub token. Set HF_TOKEN" if get_token() is None else "failed"):
        client.predict("ada/huvidpo-lora", True, "ada", api_name="/push_lora")
    with pytest.raises(AppError, match="model repo 'a/b/c' is not a Hub repo id"):
        client.predict("a/b/c", True, "ada", api_name="/push_lora")
    assert sorted(p.relative_to(lora_dir) for p in lora_dir.rglob("*")) == files_before


def test_a_non_maintainer_cannot_train_or_push(tmp_path):
    config = StudioConfig(data_dir=str(tmp_path / "data"), oauth=False, tabs="label,train")
    demo, url = launch(config)
    try:
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match="Training is for maintainers"):
            client.predict("votes", "", 50.0, 1e-4, 2, 4, 4, "mallory", api_name="/start_training")
        with pytest.raises(AppError, match="maintainers"):
            client.predict("mallory", api_name="/training_status")
        with pytest.raises(AppError, match="maintainers"):
            client.predict("mallory/x", True, "mallory", api_name="/push_lora")
        assert demo.services["training"].status() == {"state": "idle"}
        assert not any(config.runs_dir.iterdir())
        tabs = [block for block in demo.blocks.values() if getattr(block, "id", None) == "train"]
        assert len(tabs) == 1 and tabs[0].visible is False
    finally:
        demo.close()


def test_only_media_folders_are_served(studio, voted):
    demo, config, client = studio
    base = client.src
    for secret in (config.votes_path, config.pool_dir / "manifest.jsonl", REPO_ROOT / "app.py"):
        assert secret.is_file()
        response = httpx.get(f"{base}gradio_api/file={secret}")
        assert response.status_code in (403, 404), secret


def test_cli_flags_map_to_the_config(tmp_path, capsys):
    args = build_parser().parse_args([
        "--host", "127.0.0.1", "--port", "7999", "--model", "/m", "--data-dir", str(tmp_path), "--maintainer",
        "--tabs", "generate,label", "--no-preload",
    ])
    config = config_from_args(args)
    assert (config.model, config.root, config.local_maintainer, config.tabs, config.preload_model) == (
        "/m", tmp_path.resolve(), True, ["generate", "label"], False)
    assert args.port == 7999 and args.share is False
    assert main(["--tabs", "bogus", "--data-dir", str(tmp_path)]) == 2
    assert "tabs must be" in capsys.readouterr().err


def test_python_app_py_serves_and_keeps_its_data(tiny_model_dir, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HUVIDPO_MODEL": str(tiny_model_dir), "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    data_dir = tmp_path / "data"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    serving = threading.Event()

    loaded = threading.Event()

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            if "serving at" in line:
                serving.set()
            if "Loaded the video model" in line:
                loaded.set()
        serving.set()  # the process ended: stop waiting
        loaded.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        serving.wait(timeout=300)
        print(f"python app.py served after {time.monotonic() - started:.1f} s")  # 30 s is the target on 2 idle cores
        assert any(f"serving at http://127.0.0.1:{port}" in line for line in lines), "".join(lines)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        for folder in ("pool", "runs", "exports"):
            assert (data_dir / folder).is_dir()
        # The console stays readable: the model loads without progress bars or library warnings.
        assert loaded.wait(timeout=300) and any("Loaded the video model" in line for line in lines), "".join(lines)
        noise = [line for line in lines if "it/s" in line or "%|" in line or "warn" in line.lower()]
        assert noise == [], "".join(noise)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_help_answers_at_once_without_gradio_or_the_model_stack():
    """`python app.py --help` lists the flags and imports neither Gradio, torch nor datasets (seconds each)."""
    result = subprocess.run([sys.executable, "app.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--model" in result.stdout and "--maintainer" in result.stdout
    assert result.stderr == ""
    script = ("import sys; from huvidpo.studio.cli import build_parser; build_parser().format_help(); "
              "print(sorted(m for m in ('gradio', 'torch', 'diffusers', 'datasets') if m in sys.modules))")
    imported = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert imported.stdout.strip().splitlines()[-1] == "[]", imported.stderr


def test_the_page_is_built_without_the_model_stack(tmp_path):
    """The page is served before torch loads: building every tab imports neither torch nor the trainers (the
    Train tab reads DPOConfig's defaults when a page loads)."""
    script = (
        "import sys; from huvidpo.studio import StudioConfig; from huvidpo.studio.app import build_demo; "
        f"build_demo(StudioConfig(data_dir={str(tmp_path)!r}, local_maintainer=True, oauth=False, preload_model=False)); "
        "print(sorted(m for m in ('torch', 'diffusers', 'huvidpo.training') if m in sys.modules))"
    )
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_space_front_matter_and_entry(tmp_path, monkeypatch):
    import importlib.util

    import gradio
    import yaml

    readme = (REPO_ROOT / "spaces" / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(readme.split("---")[1])
    assert front["sdk"] == "gradio" and front["sdk_version"] == gradio.__version__
    assert front["hf_oauth"] is True and (REPO_ROOT / front["app_file"]).is_file()
    assert "mhdang/dpo-sdxl-text2image-v1" in front["models"] and front["datasets"]
    pins = dict(line.split("==") for line in (REPO_ROOT / "requirements.txt").read_text().splitlines() if "==" in line)
    space_pins = dict(line.split("==") for line in (REPO_ROOT / "spaces" / "requirements.txt").read_text().splitlines() if "==" in line)
    assert {name: version for name, version in space_pins.items() if name in pins} == {
        name: pins[name] for name in space_pins if name in pins}

    monkeypatch.setenv("HUVIDPO_TABS", "label")
    monkeypatch.setenv("HUVIDPO_DATA_DIR", str(tmp_path / "space-data"))
    spec = importlib.util.spec_from_file_location("space_entry", REPO_ROOT / front["app_file"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.demo.studio_config.tabs == ["label"]
    assert module.demo.studio_config.root == (tmp_path / "space-data").resolve()
