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
from huvidpo.hub_calls import DEFAULT_HUB_TIMEOUT, scrub_tokens, use_hub_timeouts

REPO_ROOT = Path(__file__).resolve().parent.parent
FAKE_TOKEN = "hf_FakeTokenForTheseTestsOnly123"


@pytest.fixture
def online(monkeypatch):
    """The Hub client allowed to reach the local stand-ins (the suite runs offline), with a 1 s timeout."""
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


def test_a_stalled_hub_fails_the_push_in_bounded_time_and_stop_returns(online, tmp_path):
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


def test_a_failed_push_is_retried_with_backoff_not_after_the_whole_interval(tmp_path):
    from test_annotation_sync_export import FolderHubApi

    api = FolderHubApi(tmp_path / "remote", failures=2)
    sync = HubSync(data_with_a_vote(tmp_path / "data"), "me/votes", hf_api=api, every_minutes=10, retry_seconds=0.1,
                   autostart=False)
    with sync:
        sync.push_now()  # the first attempt fails now; the thread retries after 0.1 s, then 0.2 s
        assert api.committed.wait(timeout=10), "the retry waited for the 10-minute interval"
    status = sync.status()
    assert status["pushes_failed"] == 2 and status["pushes_ok"] == 1 and status["pending"] == 0


def test_ctrl_c_ends_the_app_promptly_when_the_hub_stalls(tmp_path):
    data = data_with_a_vote(tmp_path / "data")
    with fake_hub("stall") as url:
        env = {**os.environ, "HF_ENDPOINT": url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": FAKE_TOKEN,
               "HUVIDPO_HUB_TIMEOUT": "2", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(free_port()), "--tabs", "label", "--data-dir", str(data), "--votes-repo", "me/votes"],
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
            process.wait(timeout=60)
            assert time.monotonic() - started < 45, "".join(lines)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


# ------------------------------------------------------------------------------- 8. tokens in Hub errors


def test_scrub_tokens_removes_known_and_token_shaped_secrets(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "plain-env-token")
    text = ('{"authorization": "Bearer hf_abcdefghijklmnop"} Authorization: xyz123 '
            "token plain-env-token and mine-42")
    scrubbed = scrub_tokens(text, "mine-42")
    for secret in ("hf_abcdefghijklmnop", "xyz123", "plain-env-token", "mine-42"):
        assert secret not in scrubbed
    assert "401" not in scrub_tokens("ok") and scrub_tokens("nothing secret here") == "nothing secret here"


def test_a_push_whose_error_echoes_the_token_shows_and_logs_no_token(online, monkeypatch, tmp_path, caplog):
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


def test_sync_errors_that_echo_the_token_hide_it(online, tmp_path, caplog):
    with fake_hub("echo") as url:
        sync = HubSync(data_with_a_vote(tmp_path / "data"), "me/votes", hf_api=HfApi(endpoint=url, token=FAKE_TOKEN),
                       autostart=False)
        with caplog.at_level(logging.WARNING):
            assert sync.push_now() is False
    assert "Authorization header" in sync.status()["last_error"]
    assert FAKE_TOKEN not in sync.status()["last_error"] and FAKE_TOKEN not in caplog.text
