"""Tiny real components for every test: the same classes as Stable Diffusion, at laptop size, no downloads."""

import os

# Tests never reach the network: fail fast instead of retrying a Hub that is not there.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from huvidpo.world.tiny import build_tiny_image_pipeline, build_tiny_pipeline  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models with one intra-op thread: with two, a CPU shared with other jobs makes OpenMP's barriers wait
    (seconds per tiny step instead of milliseconds). Modules that want it for every test say
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def quiet(pipe):
    for pipeline in (pipe, getattr(pipe, "image_pipeline", None)):
        if pipeline is not None:
            pipeline.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def tiny_pipe():
    """A fresh random-initialised tiny HuViDPO pipeline (with its first-frame text-to-image model)."""
    return quiet(build_tiny_pipeline(seed=0))


@pytest.fixture
def tiny_image_pipe():
    """A tiny Stable Diffusion text-to-image pipeline, the layout of SD 1.x on the Hub."""
    return quiet(build_tiny_image_pipeline(seed=0))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny pipeline saved with save_pretrained, as the app and CLIs load it."""
    path = tmp_path_factory.mktemp("tiny-model")
    build_tiny_pipeline(seed=0).save_pretrained(path)
    return path


def randomize_temporal_layers(unet, std=0.05, seed=0):
    """Give the zero-initialised temporal layers non-zero weights, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if unet.is_temporal_parameter_name(name):
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    return unet
