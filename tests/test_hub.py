import numpy as np
import pytest
import torch
from peft import LoraConfig

from huvidpo import hub
from huvidpo.world.tiny import tiny_vae
from huvidpo.models import VideoUNet

FAST = dict(num_frames=4, num_inference_steps=2, image_pipeline_kwargs={"num_inference_steps": 2})


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_loads_a_saved_huvidpo_pipeline(tiny_model_dir):
    pipe = hub.load_pipeline(str(tiny_model_dir))
    assert isinstance(pipe.unet, VideoUNet)
    assert pipe("a red circle", generator=seeded(), **FAST).frames.shape == (1, 4, 64, 64, 3)


def test_default_model_comes_from_the_environment(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HUVIDPO_MODEL", str(tiny_model_dir))
    assert isinstance(hub.load_pipeline().unet, VideoUNet)


def test_inflates_a_stable_diffusion_folder(tiny_image_pipe, tmp_path):
    tiny_image_pipe.save_pretrained(tmp_path / "sd")
    pipe = hub.load_pipeline(str(tmp_path / "sd"))
    assert isinstance(pipe.unet, VideoUNet) and pipe.image_pipeline is None
    torch.testing.assert_close(
        pipe.unet.conv_in.weight, tiny_image_pipe.unet.conv_in.weight
    )  # spatial weights carried over
    image = np.full((64, 64, 3), 128, np.uint8)
    assert pipe("a red circle", image=image, generator=seeded(), **FAST).frames.shape == (1, 4, 64, 64, 3)


def test_first_frame_model_from_a_unet_only_repo_on_its_base(tiny_model_dir, tiny_image_pipe, tmp_path):
    # The layout of mhdang/dpo-sdxl-text2image-v1: a repo holding only unet/, put on a base pipeline.
    tiny_image_pipe.save_pretrained(tmp_path / "base")
    with torch.no_grad():
        for param in tiny_image_pipe.unet.parameters():
            param.add_(0.01)
    tiny_image_pipe.unet.save_pretrained(tmp_path / "dpo" / "unet")
    pipe = hub.load_pipeline(str(tiny_model_dir), image_model=str(tmp_path / "dpo"), image_model_base=str(tmp_path / "base"))
    torch.testing.assert_close(pipe.image_pipeline.unet.conv_in.weight, tiny_image_pipe.unet.conv_in.weight)
    assert pipe("a red circle", generator=seeded(), **FAST).frames.shape == (1, 4, 64, 64, 3)


def test_offline_hub_id_gives_a_clear_error():
    with pytest.raises(hub.ModelLoadError, match="not in the Hugging Face cache"):
        hub.load_pipeline("someone/not-cached-model")


def test_a_hub_lora_in_offline_mode_says_so(tiny_pipe):
    assert hub.hf_constants.HF_HUB_OFFLINE  # tests run offline (conftest)
    with pytest.raises(hub.ModelLoadError, match="No network: the LoRA 'someone/huvidpo-lora'.*HF_HUB_OFFLINE"):
        hub.load_lora(tiny_pipe, "someone/huvidpo-lora")


def test_a_hub_lora_without_a_network_says_so_and_what_to_do(tiny_model_dir, tmp_path):
    """The real failure, not HF_HUB_OFFLINE: the Hub's address refuses connections (huggingface_hub then lets the
    HTTP client's ConnectError through). huggingface_hub reads HF_ENDPOINT at import: a fresh interpreter."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as sock:  # a port nothing listens on: connections are refused
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    script = (
        "import sys; from huvidpo import hub\n"
        f"pipe = hub.load_pipeline({str(tiny_model_dir)!r})\n"
        "try:\n    hub.load_lora(pipe, 'someone/huvidpo-lora')\n"
        "except hub.ModelLoadError as err:\n    print('ModelLoadError:', err)\n"
    )
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{closed}", "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ModelLoadError: No network: the LoRA 'someone/huvidpo-lora'"), result.stdout
    assert "Use a local folder" in result.stdout and "Traceback" not in result.stderr


def test_missing_local_folder_gives_a_clear_error(tmp_path):
    with pytest.raises(hub.ModelLoadError, match="No model folder"):
        hub.load_pipeline(str(tmp_path / "nope"))


def test_folder_without_a_pipeline_is_refused(tmp_path):
    tiny_vae().save_pretrained(tmp_path)
    with pytest.raises(hub.ModelLoadError, match="model_index.json"):
        hub.load_pipeline(str(tmp_path))


def test_lora_round_trip_scale_and_unload(tiny_pipe, tmp_path):
    base = tiny_pipe("a red circle", generator=seeded(), **FAST).frames
    tiny_pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        for name, param in tiny_pipe.unet.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    trained = tiny_pipe("a red circle", generator=seeded(), **FAST).frames
    hub.save_lora(tiny_pipe.unet, tmp_path / "lora")
    assert (tmp_path / "lora" / hub.LORA_WEIGHT_NAME).is_file()
    tiny_pipe.unet.delete_adapters("default")

    hub.load_lora(tiny_pipe, str(tmp_path / "lora"), scale=1.0)
    loaded = tiny_pipe("a red circle", generator=seeded(), **FAST).frames
    np.testing.assert_allclose(loaded, trained, atol=1e-5)
    assert np.abs(loaded - base).max() > 1e-3
    hub.load_lora(tiny_pipe, str(tmp_path / "lora"), scale=0.0)
    np.testing.assert_allclose(tiny_pipe("a red circle", generator=seeded(), **FAST).frames, base, atol=1e-5)
    hub.unload_lora(tiny_pipe)
    np.testing.assert_allclose(tiny_pipe("a red circle", generator=seeded(), **FAST).frames, base, atol=1e-5)


def test_bad_lora_path_is_explained(tiny_pipe, tmp_path):
    with pytest.raises(hub.ModelLoadError, match="LoRA"):
        hub.load_lora(tiny_pipe, str(tmp_path / "missing-lora"))


def test_failed_push_keeps_local_files_and_says_why(tmp_path):
    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "README.md").write_text("card")
    with pytest.raises(hub.ModelLoadError, match="local files are intact"):
        hub.push_folder_to_hub(folder, "someone/repo", token="hf_invalid")
    assert (folder / "README.md").read_text() == "card"


def test_cards_name_models_by_hub_id_or_name_never_by_local_path(tmp_path):
    stage1 = tmp_path / "my-stage1"
    stage1.mkdir()
    assert hub.card_name("") == (None, "huvidpo-tiny (embedded default)")
    assert hub.card_name("someone/huvidpo-stage1") == ("someone/huvidpo-stage1", "someone/huvidpo-stage1")
    assert hub.card_name(str(stage1)) == (None, "my-stage1")
    card = hub.write_model_card(
        tmp_path, "HuViDPO LoRA", "A LoRA.", {"beta": 50.0}, ["lora", "dpo"],
        base_model="someone/huvidpo-stage1", dataset="someone/votes", license="openrail",
    ).read_text()
    assert card.startswith("---\n") and "base_model: someone/huvidpo-stage1" in card and "- someone/votes" in card
    assert "library_name: diffusers" in card and "# HuViDPO LoRA" in card and "| beta | 50.0 |" in card
    from huggingface_hub import ModelCard

    assert ModelCard.load(tmp_path / "README.md").data.base_model == "someone/huvidpo-stage1"
