"""What a public Space and a shared data dir must survive (issue 24): each test is one defect a probe found.

Hub endpoints are local stand-ins on 127.0.0.1 (``fake_hub``: one stalls, one echoes the Authorization header);
kills and two studios on one data dir run in subprocesses.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants

from fake_hub import fake_hub
from huvidpo.annotation.sync import HubSync

REPO_ROOT = Path(__file__).resolve().parent.parent
FAKE_TOKEN = "hf_FakeTokenForTheseTestsOnly123"


@pytest.fixture
def online(monkeypatch):
    """The Hub client allowed to reach the local stand-ins (the suite runs offline), with a 1 s timeout."""
    from huvidpo.hub_calls import DEFAULT_HUB_TIMEOUT, use_hub_timeouts

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    use_hub_timeouts(1.0)
    yield
    use_hub_timeouts(DEFAULT_HUB_TIMEOUT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def data_with_a_vote(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "votes.jsonl").write_text('{"labeler": "ada"}\n', encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------- 3. a stalled Hub endpoint


def test_3_a_stalled_hub_fails_the_push_in_bounded_time_and_stop_returns(online, tmp_path):
    with fake_hub("stall") as url:
        sync = HubSync(data_with_a_vote(tmp_path / "data"), "me/votes", hf_api=HfApi(endpoint=url, token=FAKE_TOKEN),
                       every_minutes=0.01 / 60, stop_timeout=3, autostart=False)
        started = time.monotonic()
        assert sync.push_now() is False
        assert time.monotonic() - started < 10
        assert "timed out" in sync.status()["last_error"].lower()
        sync.start()
        time.sleep(0.5)  # the background thread is now inside a stalled push
        started = time.monotonic()
        sync.stop()
        assert time.monotonic() - started < 8, "stop() waited on the stalled Hub"


def test_3_a_failed_push_is_retried_with_backoff_not_after_the_whole_interval(tmp_path):
    from test_annotation_sync_export import FolderHubApi

    api = FolderHubApi(tmp_path / "remote", failures=2)
    sync = HubSync(data_with_a_vote(tmp_path / "data"), "me/votes", hf_api=api, every_minutes=10, retry_seconds=0.1,
                   autostart=False)
    with sync:
        sync.push_now()  # the first attempt fails now; the thread retries after 0.1 s, then 0.2 s
        assert api.committed.wait(timeout=10), "the retry waited for the 10-minute interval"
    status = sync.status()
    assert status["pushes_failed"] == 2 and status["pushes_ok"] == 1 and status["pending"] == 0


# `python app.py ARGS` as typed in a terminal: Ctrl-C raises KeyboardInterrupt even when the test run itself was started
# as a background job (`pytest &` in a script ignores SIGINT, and a child inherits that), and every thread's stack is
# dumped on SIGUSR1 (what a hang shows)
APP_AS_IN_A_TERMINAL = ("import faulthandler, runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                        "faulthandler.register(signal.SIGUSR1, all_threads=True); "
                        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def test_3_ctrl_c_ends_the_app_promptly_when_the_hub_stalls(tmp_path):
    data = data_with_a_vote(tmp_path / "data")
    with fake_hub("stall") as url:
        env = {**os.environ, "HF_ENDPOINT": url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": FAKE_TOKEN,
               "HUVIDPO_HUB_TIMEOUT": "2", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, "-c", APP_AS_IN_A_TERMINAL, "app.py", "--port", str(free_port()), "--tabs", "label",
             "--data-dir", str(data), "--votes-repo", "me/votes"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        lines: list[str] = []
        serving = threading.Event()

        def read() -> None:
            for line in process.stdout:
                lines.append(line)
                if "serving at" in line:
                    serving.set()
            serving.set()

        threading.Thread(target=read, daemon=True).start()
        try:
            assert serving.wait(timeout=120) and process.poll() is None, "".join(lines)
            process.send_signal(signal.SIGINT)
            started = time.monotonic()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:  # say where it hangs: every thread's stack, then the output
                process.send_signal(signal.SIGUSR1)
                time.sleep(3)
                pytest.fail("the app still runs 60 s after Ctrl-C; its output and stacks:\n" + "".join(lines))
            assert time.monotonic() - started < 45, "".join(lines)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


# ------------------------------------------------------------------------------- 8. tokens in Hub errors


def test_8_scrub_tokens_removes_known_and_token_shaped_secrets(monkeypatch):
    from huvidpo.hub_calls import scrub_tokens

    monkeypatch.setenv("HF_TOKEN", "plain-env-token")
    text = ('{"authorization": "Bearer hf_abcdefghijklmnopqrstuvwxyzABCDEFGH"} Authorization: xyz123 '
            "token plain-env-token and mine-42")
    scrubbed = scrub_tokens(text, "mine-42")
    for secret in ("hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "xyz123", "plain-env-token", "mine-42"):
        assert secret not in scrubbed
    for harmless in ("nothing secret here", "pip install hf_transfer", "unset HF_HUB_OFFLINE"):
        assert scrub_tokens(harmless) == harmless


def test_8_a_push_whose_error_echoes_the_token_shows_and_logs_no_token(online, monkeypatch, tmp_path, caplog):
    from huvidpo.training.config import DPOConfig
    from huvidpo.training.trainer import push_output

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "README.md").write_text("# card\n", encoding="utf-8")
    with fake_hub("echo") as url:
        monkeypatch.setattr(constants, "ENDPOINT", url)
        config = DPOConfig(output_dir=str(folder), hub_model_id="me/lora", hub_token=FAKE_TOKEN)
        with caplog.at_level(logging.INFO):
            hub_url, error = push_output(config, folder)
    assert hub_url is None and "401" in error and "Authorization header" in error
    assert FAKE_TOKEN not in error and FAKE_TOKEN not in caplog.text


def test_8_sync_errors_that_echo_the_token_hide_it(online, tmp_path, caplog):
    with fake_hub("echo") as url:
        sync = HubSync(data_with_a_vote(tmp_path / "data"), "me/votes", hf_api=HfApi(endpoint=url, token=FAKE_TOKEN),
                       autostart=False)
        with caplog.at_level(logging.WARNING):
            assert sync.push_now() is False
    assert "Authorization header" in sync.status()["last_error"]
    assert FAKE_TOKEN not in sync.status()["last_error"] and FAKE_TOKEN not in caplog.text


# ------------------------------------------------------------------------------- a public app: what visitors reach


def launch(config):
    from huvidpo.studio.app import build_demo

    demo = build_demo(config)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    return demo, url


@pytest.fixture(scope="module")
def public_app(tmp_path_factory):
    """A public studio (every tab, nobody a maintainer, a model given by its path but not loaded) whose data dir
    holds a finished run, an export, a published LoRA, a generated clip and a pool clip."""
    from gradio_client import Client

    from huvidpo.studio import StudioConfig

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    root = tmp_path_factory.mktemp("public") / "data"
    model = root.parent / "models" / "secret-model"
    model.mkdir(parents=True)
    config = StudioConfig(model=str(model), data_dir=str(root), oauth=False, preload_model=False)
    config.make_dirs()
    run = config.runs_dir / "dpo-20261202-101500"
    for name in ("pytorch_lora_weights.safetensors", "config.yaml", "metrics.jsonl", "checkpoints/step-2/optimizer.bin",
                 "cache/pairs.pt"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text('{"step": 2}\n')
    (config.exports_dir / "votes-1" / "metadata.jsonl").parent.mkdir(parents=True)
    (config.exports_dir / "votes-1" / "metadata.jsonl").write_text("{}\n")
    (config.loras_dir / "published").mkdir()
    (config.loras_dir / "published" / "pytorch_lora_weights.safetensors").write_text("weights")
    (config.generated_dir / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (config.pool_dir / "videos" / "a.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    config.votes_path.write_text("")
    demo, url = launch(config)
    yield demo, config, Client(url, verbose=False), url
    demo.close()


def test_1_visitors_download_clips_but_nothing_of_runs_votes_or_exports(public_app):
    import httpx

    demo, config, client, url = public_app
    run = config.runs_dir / "dpo-20261202-101500"
    for private in (run / "pytorch_lora_weights.safetensors", run / "config.yaml", run / "metrics.jsonl",
                    run / "checkpoints/step-2/optimizer.bin", run / "cache/pairs.pt", config.votes_path,
                    config.exports_dir / "votes-1" / "metadata.jsonl",
                    config.loras_dir / "published" / "pytorch_lora_weights.safetensors"):
        assert httpx.get(f"{url}gradio_api/file={private}").status_code in (403, 404), private
    for clip in (config.generated_dir / "clip.mp4", config.pool_dir / "videos" / "a.mp4"):
        assert httpx.get(f"{url}gradio_api/file={clip}").status_code == 200, clip


def test_1_9_the_page_names_no_server_path_and_no_run(public_app):
    import httpx

    demo, config, client, url = public_app
    page = httpx.get(f"{url}config").text
    assert str(config.root) not in page and str(REPO_ROOT) not in page and str(Path(config.model).parent) not in page
    assert "secret-model" in page, "the model is named, by its folder's name"
    assert "dpo-20261202-101500" not in page and "votes-1" not in page and "loras/published" in page


def test_7_names_longer_than_64_characters_are_refused_not_cut(public_app):
    from gradio_client.exceptions import AppError

    demo, config, client, url = public_app
    with pytest.raises(AppError, match="keep it to 64"):
        client.predict("a" * 100, api_name="/next_pair")
    assert client.predict("a" * 64, api_name="/next_pair")[0]["done"] is True


def test_7_uploads_are_capped(public_app):
    import httpx

    demo, config, client, url = public_app
    big = b"\x89PNG" + b"\x00" * (config.max_upload_mb * 1024 * 1024 + 1)
    response = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=60)
    assert response.status_code in (400, 413) and "size" in response.text.lower()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seed": 1.5}, "seed must be an integer, got 1.5"),
        ({"steps": 2.5}, "steps must be an integer, got 2.5"),
        ({"frames": "abc"}, "frames must be an integer, got 'abc'"),
        ({"frames": 500}, r"frames must be an integer from 2 to 32"),
        ({"guidance": 99}, r"guidance must be a number from 0 to 30"),
        ({"lora": ["runs/x"]}, "lora must be text"),
        ({"lora": "runs/dpo-20261202-101500"}, "maintainers only"),
        ({"negative_prompt": "blurry " * 200}, "negative prompt is 1399 characters long; keep it to 500"),
    ],
)
def test_7_10_bad_generate_input_gets_a_message_naming_the_field(public_app, kwargs, message, caplog, capfd):
    from gradio_client.exceptions import AppError

    demo, config, client, url = public_app
    with caplog.at_level(logging.INFO):
        with pytest.raises(AppError, match=message):
            client.predict(prompt="a red circle moving left on a blue background", api_name="/generate", **kwargs)
    assert "Traceback" not in caplog.text + capfd.readouterr().err, "bad input is not a server error"


def test_7_vote_tokens_and_choices_are_bounded(public_app):
    from gradio_client.exceptions import AppError

    demo, config, client, url = public_app
    for token, choice, message in (("x" * 100_000, "left", "token is 100000 characters long"),
                                   ("t", "y" * 100_000, "choice is 100000 characters long")):
        with pytest.raises(AppError, match=message):
            client.predict("ada", token, choice, api_name="/vote")


def test_7_10_a_first_frame_that_is_not_an_image_is_refused_with_a_message(public_app, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    demo, config, client, url = public_app
    fake = tmp_path / "frame.png"
    fake.write_text("not an image")
    with pytest.raises(AppError, match="First frame.*not an image"):
        client.predict(prompt="a red circle", first_frame=handle_file(str(fake)), api_name="/generate")


def test_10_nan_and_infinite_seeds_are_refused_naming_the_seed(public_app):
    import httpx

    demo, config, client, url = public_app
    for seed in ("NaN", "Infinity"):
        body = ('{"data": ["a red circle moving left on a blue background", null, null, null, null, null, ' + seed
                + ', null, null, null, null, null, null, null, null]}')
        event = httpx.post(f"{url}gradio_api/call/generate", content=body, headers={"Content-Type": "application/json"})
        assert event.status_code == 200, event.text
        stream = httpx.get(f"{url}gradio_api/call/generate/{event.json()['event_id']}", timeout=60).text
        assert "seed must be an integer" in stream, stream


# ------------------------------------------------------------------------------- 6, 9. disk errors


def test_6_9_a_full_disk_on_vote_is_logged_and_shown_without_server_paths(tmp_path, monkeypatch, caplog):
    import errno
    import types

    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from huvidpo.annotation import votes as votes_module
    from huvidpo.studio import StudioConfig
    from test_studio import clip_file

    config = StudioConfig(data_dir=str(tmp_path / "data"), oauth=False, tabs="label")
    demo, url = launch(config)
    try:
        labeling = demo.services["labeling"]
        labeling.add_clips([clip_file(tmp_path, "a", 0.2), clip_file(tmp_path, "b", 0.6)])
        client = Client(url, verbose=False)
        pair = client.predict("ada", api_name="/next_pair")[0]

        def full_disk(fd, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(config.votes_path))

        fake_os = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
        fake_os.write = full_disk
        monkeypatch.setattr(votes_module, "os", fake_os)
        with caplog.at_level(logging.ERROR):
            with pytest.raises(AppError) as error:
                client.predict("ada", pair["token"], "left", api_name="/vote")
        monkeypatch.undo()
        assert "No space left on device" in str(error.value) and "votes.jsonl" in str(error.value)
        assert str(config.root) not in str(error.value)
        assert "vote" in caplog.text and "No space left on device" in caplog.text and str(config.votes_path) in caplog.text
        assert labeling.store.effective_votes() == []
    finally:
        demo.close()


# ------------------------------------------------------------------------------- 2, 12. runs on a shared data dir

OTHER_STUDIO = """
import sys
sys.path.insert(0, sys.argv[2])  # the tests' folder: the run's process imports the loader from there
from huvidpo.studio import StudioConfig, TrainingManager, TrainRequest, User
from worker_loads import slow_load

manager = TrainingManager(StudioConfig(data_dir=sys.argv[1], oauth=False), None, load_pipeline=slow_load)
manager.start(User(name="grace", maintainer=True), TrainRequest(dataset="team/pairs", steps=3, lora_rank=4))
manager.wait()
"""


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def claim_many(runs_dir: str, start, claimed) -> None:
    from huvidpo.studio.runs import claim_dir

    start.wait()
    claimed.extend([claim_dir(Path(runs_dir), "dpo-20261202-120000").name for _ in range(20)])


def test_2_two_studios_claiming_run_folders_in_the_same_second_get_distinct_folders(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    manager = context.Manager()
    start, claimed = manager.Event(), manager.list()
    workers = [context.Process(target=claim_many, args=(str(tmp_path / "runs"), start, claimed)) for _ in range(2)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=60)
    names = list(claimed)
    assert len(names) == 40 and len(set(names)) == 40


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads process states from /proc")
def test_2_12_a_second_studio_sees_the_run_and_a_killed_run_is_listed_interrupted_and_resumable(tmp_path):
    from worker_loads import failing_load

    from huvidpo.studio import LabelingService, StudioConfig, TrainingManager, TrainRequest, User

    config = StudioConfig(data_dir=str(tmp_path / "data"), oauth=False)
    other = subprocess.Popen([sys.executable, "-c", OTHER_STUDIO, str(config.root), str(Path(__file__).parent)],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        said = other.stdout.readline().split()
        assert said[:1] == ["loading"], said + [other.stdout.read()]
        run_process = int(said[1])  # the other studio's run, in a process of its own
        assert run_process != other.pid
        boss = User(name="ada", maintainer=True)
        manager = TrainingManager(config, LabelingService(config), load_pipeline=failing_load)
        with pytest.raises(ValueError, match="in progress in another studio.*started by grace"):
            manager.start(boss, TrainRequest(dataset="team/pairs", steps=2, lora_rank=4))
        view = manager.view()
        [row] = view["runs"]
        assert row["state"] == "loading" and row["started by"] == "grace"
        assert f"In progress in another studio: {row['run']} (loading, started by grace)" in view["summary"]
        with pytest.raises(ValueError, match="only an interrupted run"):
            manager.resume(boss, row["run"])
    finally:
        other.kill()  # kill -9: the run's lock goes with the process
        other.wait()
    deadline = time.monotonic() + 120  # and the run's process ends with its studio: it writes nothing more
    while process_alive(run_process) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(run_process)

    view = manager.view()
    assert [(r["run"], r["state"]) for r in view["runs"]] == [(row["run"], "interrupted")]
    assert "Interrupted (resumable): " + row["run"] in view["summary"]
    status = manager.resume(boss, row["run"])
    assert status["run_id"] == row["run"] and manager.wait(600)
    run = manager._run
    assert run.output_dir == config.runs_dir / row["run"] and run.dpo_config.resume == "latest"
    assert run.dpo_config.max_steps == 3 and run.dpo_config.lora_rank == 4 and run.error == "no model here"
    assert [r["state"] for r in manager.view()["runs"]] == ["failed"]
    assert sorted(path.name for path in config.runs_dir.iterdir() if path.is_dir()) == [row["run"]]


def test_12_an_export_of_unchanged_votes_is_reused(tmp_path):
    from huvidpo.studio import LabelingService, StudioConfig
    from test_studio import clip_file

    config = StudioConfig(data_dir=str(tmp_path / "data"), oauth=False)
    labeling = LabelingService(config)
    labeling.add_clips([clip_file(tmp_path, "a", 0.2), clip_file(tmp_path, "b", 0.6)])
    pair = labeling.next_pair("ada", "s1")
    labeling.vote("ada", "s1", pair["token"], "left")
    first, pairs = labeling.export()
    assert pairs == 1
    assert labeling.export() == (first, 1), "the same votes were exported again"
    pair = labeling.undo("ada", "s1")
    labeling.vote("ada", "s1", pair["token"], "right")
    second, pairs = labeling.export()
    assert second != first and pairs == 1
    assert len(list(config.exports_dir.iterdir())) == 2


def test_11_train_settings_are_bounded_by_the_configs_metadata(tmp_path):
    from huvidpo.studio import LabelingService, StudioConfig, TrainingManager, TrainRequest, User
    from huvidpo.training.config import DPOConfig

    config = StudioConfig(data_dir=str(tmp_path / "data"), oauth=False)
    manager = TrainingManager(config, LabelingService(config))
    bounds = manager.setting_bounds()
    spec = {f.name: f.metadata for f in __import__("dataclasses").fields(DPOConfig)}
    assert bounds["steps"] == (spec["max_steps"]["min"], spec["max_steps"]["max"])
    assert all(high is not None for _, high in bounds.values())
    boss = User(maintainer=True)
    for request, field_name in ((TrainRequest(dataset="team/pairs", steps=10**12), "max_steps"),
                                (TrainRequest(dataset="team/pairs", beta=1e308), "beta"),
                                (TrainRequest(dataset="team/pairs", learning_rate=1e308), "learning_rate"),
                                (TrainRequest(dataset="team/pairs", lora_rank=10**9), "lora_rank")):
        with pytest.raises(ValueError, match=f"{field_name} must be .* to "):
            manager.start(boss, request)
    assert not any(config.runs_dir.iterdir()) and not any(config.exports_dir.iterdir())


# ------------------------------------------------------------------------------- 4. the sync, for maintainers


def test_4_maintainers_see_the_last_push_pending_votes_and_the_last_error(tmp_path):
    from gradio_client import Client
    from test_annotation_sync_export import FolderHubApi

    from huvidpo.studio import StudioConfig
    from test_studio import clip_file

    for maintainer in (True, False):
        config = StudioConfig(data_dir=str(tmp_path / f"data-{maintainer}"), oauth=False, tabs="label",
                              votes_repo="team/votes", local_maintainer=maintainer)
        demo, url = launch(config)
        try:
            labeling = demo.services["labeling"]
            labeling.add_clips([clip_file(tmp_path, "a", 0.2), clip_file(tmp_path, "b", 0.6)])
            pair = labeling.next_pair("ada", "s1")
            labeling.vote("ada", "s1", pair["token"], "left")
            labeling.sync._api = FolderHubApi(tmp_path / "remote", failures=1)  # a Hub that fails once, then works
            assert labeling.sync.push_now() is False
            client = Client(url, verbose=False)
            shown = client.predict("ada", api_name="/label_stats")[-1]
            if maintainer:
                assert "last push never" in shown and "1 votes not pushed yet" in shown
                assert "Last error" in shown and "simulated network failure" in shown
                assert labeling.sync.push_now() is True
                shown = client.predict("ada", api_name="/label_stats")[-1]
                assert "last push never" not in shown and "0 votes not pushed yet" in shown and "Last error" not in shown
            else:
                assert shown == ""
        finally:
            labeling.close()
            demo.close()


def test_5_unreadable_vote_lines_are_counted_in_the_stats(tmp_path):
    from huvidpo.studio import LabelingService, StudioConfig

    config = StudioConfig(data_dir=str(tmp_path / "data"), oauth=False)
    config.make_dirs()
    config.votes_path.write_text('{"not": "a vote"}\n{"labeler": "ada", "choice": "left", "left_clip": "a", "right_clip": "b"}\n')
    progress = LabelingService(config).stats()["progress"]
    assert progress["unreadable_vote_lines"] == 1


def test_9_a_lora_that_does_not_load_is_named_as_picked_not_by_its_server_path(tmp_path, tiny_model_dir):
    from huvidpo.generate import GenerationSettings
    from huvidpo.studio import GenerationService, StudioConfig

    config = StudioConfig(model=str(tiny_model_dir), data_dir=str(tmp_path / "data"), oauth=False, preload_model=False)
    config.make_dirs()
    broken = config.loras_dir / "broken"
    broken.mkdir()
    (broken / "pytorch_lora_weights.safetensors").write_bytes(b"not safetensors at all")
    service = GenerationService(config)
    for reference in ("loras/broken", "loras/missing"):
        with pytest.raises(ValueError) as error:
            service.generate(GenerationSettings(prompt="a red circle", frames=2, steps=1, image_steps=1, lora=reference))
        assert reference in str(error.value) and str(config.root) not in str(error.value), str(error.value)


# ------------------------------------------------------------------------------- the campaign's vote path


def test_votes_are_not_queued_behind_another_labelers_disk_write_and_stay_single(tmp_path, monkeypatch):
    """A vote's fsync runs outside the sampler's lock (64 labelers would queue behind each other's writes), yet
    the same labeler voting on the same pair from two sessions at once is still refused once, and a write that
    fails leaves the pair on screen to vote again."""
    import errno

    from huvidpo.studio import LabelingService, StudioConfig
    from test_studio import clip_file

    config = StudioConfig(data_dir=str(tmp_path / "data"), oauth=False, sampler_seed=0)
    labeling = LabelingService(config)
    labeling.add_clips([clip_file(tmp_path, "a", 0.2), clip_file(tmp_path, "b", 0.6)])
    store_append = labeling.store.append
    entered, release = threading.Event(), threading.Event()

    def slow_append(vote):
        if vote.labeler == "ada":
            entered.set()
            assert release.wait(10)
        return store_append(vote)

    monkeypatch.setattr(labeling.store, "append", slow_append)
    first = labeling.next_pair("ada", "s1")
    other = labeling.next_pair("bob", "s1")
    results = {}
    writer = threading.Thread(target=lambda: results.setdefault("ada", labeling.vote("ada", "s1", first["token"], "left")))
    writer.start()
    assert entered.wait(10)
    started = time.monotonic()
    assert labeling.vote("bob", "s1", other["token"], "right")["choice"] == "right"  # not behind ada's write
    assert time.monotonic() - started < 5
    second = labeling.next_pair("ada", "s2")  # another tab: the only pair again, its first vote still being written
    assert second["pair_id"] == first["pair_id"]
    with pytest.raises(ValueError, match="already judged"):
        labeling.vote("ada", "s2", second["token"], "right")
    release.set()
    writer.join(10)
    assert [(v.labeler, v.choice.value) for v in labeling.store.effective_votes()] == [("bob", "right"), ("ada", "left")]

    def full_disk(vote):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(labeling.store, "append", full_disk)
    labeling.undo("ada", "s1")
    again = labeling.next_pair("ada", "s1")
    with pytest.raises(OSError):
        labeling.vote("ada", "s1", again["token"], "right")
    monkeypatch.setattr(labeling.store, "append", store_append)
    assert labeling.vote("ada", "s1", again["token"], "right")["choice"] == "right"  # the same pair, still on screen
