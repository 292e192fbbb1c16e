"""A real browser on the studio: headless Chromium (Debian's ``chromium``) driven by Playwright, loopback only.

Screenshots of each tab land in ``test-artifacts/``. Playwright never downloads a browser here: it drives
``/usr/bin/chromium``, which ``.ci/run`` installs (apt-get, as root); without it the test skips and says so.
"""

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from huvidpo.data.video import write_video  # noqa: E402
from huvidpo.studio import GeneratedClip, StudioConfig  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PROMPT = "a red circle moving left on a blue background"


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
def studio_url(tiny_model_dir, tmp_path_factory):
    """A maintainer's app on the tiny model, its pool holding three clips of one prompt."""
    from huvidpo.studio.app import build_demo

    tmp = tmp_path_factory.mktemp("browser")
    config = StudioConfig(
        model=str(tiny_model_dir), data_dir=str(tmp / "data"), local_maintainer=True, oauth=False,
        default_frames=4, default_steps=2, sampler_seed=0,
    )
    demo = build_demo(config)
    labeling = demo.services["labeling"]
    clips = []
    for index, shade in enumerate((0.2, 0.5, 0.8)):
        frames = np.zeros((8, 64, 64, 3), dtype=np.float32)
        frames[:, 16:48, 8 + 4 * index : 24 + 4 * index, 0] = shade
        frames[..., 2] = 0.6
        video = write_video(frames, tmp / f"clip{index}.mp4")
        clips.append(GeneratedClip(video, video.with_suffix(".png"), {"prompt": PROMPT, "seed": index, "model": "tiny"}))
    labeling.add_clips(clips)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    yield url, labeling
    demo.close()


def test_tabs_generate_and_label_with_the_keyboard(browser, studio_url):
    url, labeling = studio_url
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector("#gen-run", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "studio-generate.png"), full_page=True)

    # Generate: a video element appears with the clip.
    page.fill("#gen-prompt textarea", PROMPT)
    page.click("#gen-run")
    page.wait_for_selector("#gen-video video[src]", timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "studio-generate-result.png"), full_page=True)

    # Label: a name, the first pair, then the left-arrow shortcut votes.
    page.get_by_role("tab", name="Label").click()
    page.locator("#labeler-name textarea, #labeler-name input").first.fill("ada")
    page.click("#label-next")
    page.wait_for_selector("#label-left-video video[src]", timeout=30_000)
    page.wait_for_selector("#label-right-video video[src]", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "studio-label.png"), full_page=True)
    page.locator("#label-prompt").click()  # focus out of the name box: shortcuts are off while typing
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("document.querySelector('#label-progress').innerText.includes('1/3')", timeout=30_000)
    votes = labeling.store.effective_votes()
    assert [(vote.labeler, vote.choice.value) for vote in votes] == [("ada", "left")]
    page.screenshot(path=str(ARTIFACTS / "studio-label-voted.png"), full_page=True)

    # Train: visible to the (local) maintainer, its settings at their defaults once the page has read them.
    from huvidpo.training import DPOConfig

    default = DPOConfig()
    page.get_by_role("tab", name="Train").click()
    page.wait_for_selector("#train-start", state="visible", timeout=30_000)
    for elem_id, value in (("train-beta", default.beta), ("train-learning-rate", default.learning_rate),
                           ("train-lora-rank", default.lora_rank), ("train-steps", labeling.config.train_steps)):
        page.wait_for_function(
            f"Number(document.querySelector('#{elem_id} input').value) === {value}", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "studio-train.png"), full_page=True)
    assert errors == []
    assert page.get_by_text("Error", exact=True).count() == 0, "an event failed: a component shows an Error badge"
    page.close()
