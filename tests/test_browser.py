"""A real browser on the studio: headless Chromium (Debian's ``chromium``) driven by Playwright, loopback only.

The app serves the embedded default, as a newcomer meets it. Screenshots of each tab at 1400 and 420 pixels wide land
in ``test-artifacts/``. Playwright never downloads a browser here: it drives ``/usr/bin/chromium``, which ``.ci/run``
installs (apt-get, as root); without it the tests skip and say so.
"""

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from huvidpo.data.video import read_video, write_video  # noqa: E402
from huvidpo.locations import DEFAULT_MODEL_DIR  # noqa: E402
from huvidpo.studio import GeneratedClip, StudioConfig  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WIDE, NARROW = 1400, 420
POOL_PROMPT = "a green square moving up quickly on a black background"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip(f"needs {CHROMIUM} (Debian package 'chromium'; .ci/run installs it as root)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """A maintainer's app on the embedded default at its own settings, its pool holding three clips of one prompt."""
    import torch

    from huvidpo.studio.app import build_demo

    # One intra-op thread: on a CPU shared with other jobs, two make OpenMP's barriers wait (a clip takes minutes).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("browser")
    config = StudioConfig(
        model=str(DEFAULT_MODEL_DIR), data_dir=str(tmp / "data"), local_maintainer=True, oauth=False, sampler_seed=0,
    )
    demo = build_demo(config)
    labeling = demo.services["labeling"]
    clips = []
    for index, shade in enumerate((0.2, 0.5, 0.8)):
        frames = np.zeros((8, 64, 64, 3), dtype=np.float32)
        frames[:, 16:48, 8 + 4 * index : 24 + 4 * index, 1] = shade
        video = write_video(frames, tmp / f"clip{index}.mp4")
        clips.append(GeneratedClip(video, video.with_suffix(".png"), {"prompt": POOL_PROMPT, "seed": index, "model": "x"}))
    labeling.add_clips(clips)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    yield url, config, labeling
    demo.close()
    torch.set_num_threads(threads)


def open_page(browser, url: str, width: int):
    page = browser.new_page(viewport={"width": width, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector("#gen-run", timeout=60_000)
    return page, errors


def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / f"studio-{name}.png"), full_page=True)


def test_the_placeholder_draws_right_and_labeling_works_with_the_keyboard(browser, studio):
    from huvidpo.world.oracle import score_clip

    url, config, labeling = studio
    page, errors = open_page(browser, url, WIDE)
    placeholder = page.get_attribute("#gen-prompt textarea", "placeholder")
    assert placeholder == config.suggested_prompts[0]
    # The embedded model says what it can draw, and a word outside that gets a gentle note (not an error).
    vocabulary = page.inner_text("#gen-vocabulary")
    assert "circle, square, triangle" in vocabulary and "--model" in vocabulary
    page.fill("#gen-prompt textarea", "a purple circle")
    page.wait_for_function("document.querySelector('#gen-prompt-notes').innerText.includes('purple')", timeout=30_000)
    assert "red, green, blue" in page.inner_text("#gen-prompt-notes")
    shoot(page, f"generate-{WIDE}")

    # A newcomer types the placeholder: the clip shows what it says (the oracle reads the pixels).
    page.fill("#gen-prompt textarea", placeholder)
    page.click("#gen-run")
    page.wait_for_selector("#gen-video video[src]", timeout=300_000)
    [clip] = list(config.generated_dir.glob("*.mp4"))
    reading = score_clip(read_video(clip).astype(np.float32) / 255, placeholder).reading
    assert (reading.background, reading.shape, reading.color) == ("blue", "circle", "red")
    assert page.inner_text("#gen-prompt-notes").strip() == ""
    shoot(page, f"generate-result-{WIDE}")

    # Label: a name, the first pair, then the left-arrow shortcut votes.
    page.get_by_role("tab", name="Label").click()
    page.locator("#labeler-name textarea, #labeler-name input").first.fill("ada")
    page.click("#label-next")
    page.wait_for_selector("#label-left-video video[src]", timeout=30_000)
    page.wait_for_selector("#label-right-video video[src]", timeout=30_000)
    shoot(page, f"label-{WIDE}")
    page.locator("#label-prompt").click()  # focus out of the name box: shortcuts are off while typing
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("document.querySelector('#label-progress').innerText.includes('1/3')", timeout=30_000)
    votes = labeling.store.effective_votes()
    assert [(vote.labeler, vote.choice.value) for vote in votes] == [("ada", "left")]

    # The stats panel, once open, follows the votes without a Refresh click.
    page.get_by_text("Labelers, agreement and leaderboard").click()
    page.wait_for_function("document.querySelector('#label-labelers').innerText.includes('ada')", timeout=30_000)
    page.locator("#label-prompt").click()
    page.keyboard.press("s")  # a skip: not a vote
    page.wait_for_function("document.querySelector('#label-progress').innerText.includes('(1 skipped)')", timeout=30_000)
    page.keyboard.press("ArrowRight")
    page.wait_for_function("document.querySelector('#label-progress').innerText.includes('2 votes')", timeout=30_000)
    # ada's row, refreshed by the open panel: 2 votes (left, right) and the skip apart
    page.wait_for_function("""() => document.querySelector('#label-labelers').innerText.replace(/\\s+/g, ' ')
        .includes('ada 2 1 1 0 0 1')""", timeout=30_000)  # labeler, votes, left, right, tie, both bad, skip
    shoot(page, f"label-stats-{WIDE}")
    assert errors == []
    assert page.get_by_text("Error", exact=True).count() == 0, "an event failed: a component shows an Error badge"
    page.close()


def test_a_train_run_shows_its_last_log_line_and_a_bad_setting_leaves_the_plots(browser, studio):
    from huvidpo.training import DPOConfig

    url, config, labeling = studio
    if not labeling.store.effective_votes():  # the pair the first test voted on; alone, vote here
        served = labeling.next_pair("ada", "browser")
        labeling.vote("ada", "browser", served["token"], "left")
    page, errors = open_page(browser, url, WIDE)
    page.get_by_role("tab", name="Train").click()
    page.wait_for_selector("#train-start", state="visible", timeout=30_000)
    from huvidpo.world.taste import TASTE_DPO

    default = DPOConfig()  # on the embedded default the taste plan sets the learning rate, steps and frames
    for elem_id, value in (("train-beta", default.beta), ("train-learning-rate", TASTE_DPO["learning_rate"]),
                           ("train-lora-rank", default.lora_rank), ("train-steps", TASTE_DPO["max_steps"]),
                           ("train-frames", TASTE_DPO["num_frames"])):
        page.wait_for_function(f"Number(document.querySelector('#{elem_id} input').value) === {value}", timeout=60_000)
    shoot(page, f"train-{WIDE}")

    page.fill("#train-steps input", "2")
    page.fill("#train-frames input", "4")
    page.click("#train-start")
    page.wait_for_function("document.querySelector('#train-status').innerText.includes('· finished')", timeout=600_000)
    # The log follows its newest line: the last line is in view.
    page.wait_for_function("""() => { const box = document.querySelector('#train-log textarea');
        return box.value.trim().split('\\n').pop().includes('finished')
            && box.scrollTop + box.clientHeight >= box.scrollHeight - 2; }""", timeout=30_000)
    assert page.locator("#train-log textarea").evaluate("box => box.scrollHeight > box.clientHeight"), "a log to scroll"
    plot = page.locator("#train-loss-plot")
    plot_before = plot.inner_text()
    shoot(page, f"train-finished-{WIDE}")

    # A bad setting: the message names it, the last run's status and plots stay as they were.
    page.fill("#train-steps input", "0")
    page.click("#train-start")
    toast = page.locator(".toast-body").filter(has_text="max_steps")
    toast.first.wait_for(timeout=30_000)
    assert "max_steps must be an integer from 1" in toast.first.inner_text()
    page.wait_for_timeout(1000)
    assert "· finished" in page.inner_text("#train-status")
    assert plot.inner_text() == plot_before and plot.get_by_text("Error", exact=True).count() == 0
    assert "step" in plot_before  # the x-axis keeps its title
    shoot(page, f"train-refused-{WIDE}")
    assert errors == []
    page.close()


def test_the_narrow_layout_keeps_the_title_on_one_line(browser, studio):
    url, _, _ = studio
    page, errors = open_page(browser, url, NARROW)
    one_line = """() => { const title = document.querySelector('#studio-title h1');
        return title.getBoundingClientRect().height < 1.6 * parseFloat(getComputedStyle(title).lineHeight); }"""
    assert page.evaluate(one_line), "the title breaks over several lines at 420 px"
    seed, random_button = page.locator("#gen-seed").bounding_box(), page.locator("#gen-random-seed").bounding_box()
    assert seed["x"] <= random_button["x"] and random_button["x"] + random_button["width"] <= seed["x"] + seed["width"] + 1
    shoot(page, f"generate-{NARROW}")
    for tab in ("Label", "Train"):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(1500)
        shoot(page, f"{tab.lower()}-{NARROW}")
    assert errors == []
    page.close()
