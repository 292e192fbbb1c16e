"""Importing LAMP/HuViDPO checkpoints: the fixture written by the original code, reproduced through the CLI and the API.

``../shared/fixtures/lamp-tiny`` (beside the repository) holds a LAMP pipeline, HuViDPO's DPO ``.pth`` and the
original code's UNet outputs on fixed inputs; its ``mapping.tsv`` lists every original key with its place here.
"""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import UNet2DConditionModel

from huvidpo import convert, hub
from huvidpo.data.video import read_video
from huvidpo.generate import main as generate_main
from huvidpo.models import TemporalGatedConv2d, VideoUNet

from conftest import randomize_temporal_layers

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE = REPO_ROOT.parent / "shared" / "fixtures" / "lamp-tiny"
pytestmark = pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"the lamp-tiny fixture is not at {FIXTURE}")
LAMP = FIXTURE / "lamp"
DPO_PTH = FIXTURE / "huvidpo-dpo" / "model_weights_epoch_1.pth"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURE / "reference.pt", weights_only=True)


def unet_output(unet, reference):
    inputs = reference["inputs"]
    with torch.no_grad():
        return unet(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"]).sample


def max_diff(unet, reference, name):
    return (unet_output(unet, reference) - reference["outputs"][name]).abs().max().item()


@pytest.fixture(scope="module")
def converted_lamp(tmp_path_factory):
    """The fixture's LAMP pipeline converted by the public CLI, in a fresh interpreter."""
    out = tmp_path_factory.mktemp("converted") / "lamp"
    result = subprocess.run(
        [sys.executable, "-m", "huvidpo.convert", str(LAMP), "--preset", "lamp", "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    return out


@pytest.mark.parametrize("preset,other", [("lamp", "huvidpo"), ("huvidpo", "lamp")])
def test_api_reproduces_the_original_outputs(reference, preset, other):
    unet = convert.convert_unet(LAMP, preset)
    assert max_diff(unet, reference, preset) <= TOLERANCE
    # The documented difference: the files are the same, the attention is not; the wrong preset is another model.
    assert max_diff(unet, reference, other) > 1e-2


def test_cli_pipeline_folder_reproduces_lamp_and_round_trips(converted_lamp, reference):
    index = json.loads((converted_lamp / "model_index.json").read_text())
    assert index["_class_name"] == "HuViDPOPipeline" and index["unet"] == ["huvidpo.models.unet", "VideoUNet"]
    pipe = hub.load_pipeline(str(converted_lamp))
    assert max_diff(pipe.unet, reference, "lamp") <= TOLERANCE
    config = pipe.unet.config
    assert (config.temporal_convs, config.group_norm, config.sparse_causal) == ("all", "per_video", "first")
    assert config.temporal_position_code is False
    # Round trip: what was saved is what was converted, bit for bit.
    in_memory = convert.convert_unet(LAMP, "lamp")
    assert torch.equal(unet_output(pipe.unet, reference), unet_output(in_memory, reference))


def test_converted_lamp_generates_a_clip_through_the_api_and_the_cli(converted_lamp, tmp_path, capsys):
    pipe = hub.load_pipeline(str(converted_lamp))
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:40, 20:44] = (220, 40, 40)
    frames = pipe("a red circle moving left", image=image, num_frames=5, num_inference_steps=2,
                  generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 5, 64, 64, 3) and np.isfinite(frames).all()
    PIL.Image.fromarray(image).save(tmp_path / "first.png")
    out = tmp_path / "clip.mp4"
    code = generate_main([
        "--model", str(converted_lamp), "--image", str(tmp_path / "first.png"), "--prompt", "a red circle moving left",
        "--frames", "4", "--steps", "2", "--out", str(out),
    ])
    assert code == 0 and str(out) in capsys.readouterr().out
    assert read_video(out).shape == (4, 64, 64, 3)


def test_converted_lamp_generates_a_clip_in_the_app_with_the_original_sampler(converted_lamp, tmp_path, monkeypatch):
    """``python app.py --model <converted>``: the Generate tab makes a clip from an uploaded first frame (a LAMP
    pipeline has no first-frame model, and says so when none is given), with the original's sampler if asked."""
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from huvidpo.studio import StudioConfig
    from huvidpo.studio.app import build_demo

    image = np.zeros((64, 64, 3), np.uint8)
    image[16:40, 20:44] = (220, 40, 40)
    PIL.Image.fromarray(image).save(tmp_path / "first.png")
    config = StudioConfig(model=str(converted_lamp), data_dir=str(tmp_path / "data"), oauth=False, default_frames=4,
                          default_steps=2)
    demo = build_demo(config)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(url, verbose=False)
        video, _, _, info, command, _ = client.predict(
            prompt="a red circle moving left", first_frame=handle_file(str(tmp_path / "first.png")), sampler="huvidpo",
            api_name="/generate")
        assert read_video(video).shape == (4, 64, 64, 3)
        assert (info["settings"]["model"], info["settings"]["first_frame"]) == ("lamp", "uploaded")
        assert "--sampler huvidpo" in command and "--image first_frame.png" in command
        with pytest.raises(AppError, match="No first frame"):
            client.predict(prompt="a red circle moving left", api_name="/generate")
    finally:
        demo.close()


def test_cli_lone_unet_folder(tmp_path, reference, capsys):
    out = tmp_path / "huvidpo"
    assert convert.main([str(LAMP / "unet"), "--preset", "huvidpo", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["unet"]
    unet = VideoUNet.from_pretrained(out, subfolder="unet")
    assert max_diff(unet, reference, "huvidpo") <= TOLERANCE


def test_cli_lora_reproduces_huvidpo_with_its_dpo_lora(tmp_path, reference, capsys):
    out = tmp_path / "dpo-lora"
    assert convert.main(["--lora", str(DPO_PTH), "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert "rank 16, alpha 32" in report and "1056 float16" in report and "192 layers" in report
    pipe = convert.convert_pipeline(LAMP, "huvidpo")
    hub.load_lora(pipe, str(out))
    assert max_diff(pipe.unet, reference, "huvidpo_lora") <= TOLERANCE
    assert pipe.unet.peft_config[hub.DEFAULT_ADAPTER].lora_alpha == 32
    assert pipe.unet.peft_config[hub.DEFAULT_ADAPTER].r == 16
    # The .pth straight into load_lora converts on the way; scale 0 is the stage-1 model again.
    hub.load_lora(pipe, str(DPO_PTH))
    assert max_diff(pipe.unet, reference, "huvidpo_lora") <= TOLERANCE
    hub.load_lora(pipe, str(DPO_PTH), scale=0.0)
    assert max_diff(pipe.unet, reference, "huvidpo") <= TOLERANCE


def test_hub_loads_an_original_folder_directly_and_says_so(reference, caplog):
    with caplog.at_level(logging.WARNING, logger="huvidpo.convert"):
        pipe = hub.load_pipeline(str(LAMP))
    assert "converting it in memory with preset 'lamp'" in caplog.text
    assert max_diff(pipe.unet, reference, "lamp") <= TOLERANCE


def test_wrong_or_missing_preset_is_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="not one of the originals"):
        convert.convert(LAMP, tmp_path / "x", "ours")
    with pytest.raises(SystemExit):
        convert.main([str(LAMP), "--preset", "ours", "--out", str(tmp_path / "y")])
    with pytest.raises(SystemExit):
        convert.main([str(LAMP), "--out", str(tmp_path / "z")])
    assert "--preset is required" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert convert.main([str(LAMP), "--preset", "lamp", "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "full" / "keep.txt").read_text() == "mine"


@pytest.fixture
def editable_unet(tmp_path):
    folder = tmp_path / "unet"
    folder.mkdir()
    shutil.copy(LAMP / "unet" / "config.json", folder)
    return folder, torch.load(LAMP / "unet" / "diffusion_pytorch_model.bin", weights_only=True)


def test_unknown_or_missing_keys_fail_loudly(editable_unet):
    folder, state_dict = editable_unet
    extra = {**state_dict, "mid_block.resnets.0.conv1.conv3d.weight": torch.zeros(1)}
    torch.save(extra, folder / "diffusion_pytorch_model.bin")
    with pytest.raises(ValueError, match=r"1 key\(s\) without a place.*conv3d"):
        convert.convert_unet(folder, "lamp")
    missing = {k: v for k, v in state_dict.items() if k != "conv_out.conv1d.bias"}
    torch.save(missing, folder / "diffusion_pytorch_model.bin")
    with pytest.raises(ValueError, match=r"1 missing.*conv_out.temporal.bias"):
        convert.convert_unet(folder, "lamp")


def test_lora_file_with_a_foreign_key_is_refused(tmp_path):
    peft_state = torch.load(DPO_PTH, weights_only=True)
    peft_state["unet.conv_in.weight"] = torch.zeros(1)
    torch.save(peft_state, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="Unknown key 'unet.conv_in.weight'"):
        convert.convert_lora(tmp_path / "odd.pth", tmp_path / "out")


def test_every_key_of_the_mapping_has_its_place():
    rows = [line.split("\t") for line in (FIXTURE / "mapping.tsv").read_text().splitlines()[1:]]
    config = convert.video_unet_config(json.loads((LAMP / "unet" / "config.json").read_text()), "lamp")
    ours = set(VideoUNet.from_config(config).state_dict())
    today = set(VideoUNet.from_config({**config, "temporal_convs": "resnet"}).state_dict())
    converted = {convert.original_key_to_ours(original) for original, _, _ in rows}
    assert converted == ours and len(rows) == len(ours) == 1056
    shapes = {name: str(tuple(t.shape)) for name, t in VideoUNet.from_config(config).state_dict().items()}
    for original, shape, place in rows:
        name = convert.original_key_to_ours(original)
        assert shapes[name] == shape
        assert name == place if place != "-" else name not in today  # '-': no place before the lamp/huvidpo presets


# The original's key layout, written here from mapping.tsv's rules (independently of convert.KEY_RULES): every
# inflated conv X keeps X.conv2d / X.conv_gate / X.conv1d, temporal attention is attn_temp / norm_temp.
def to_original_layout(unet: VideoUNet) -> dict[str, torch.Tensor]:
    inflated = {name for name, module in unet.named_modules() if isinstance(module, TemporalGatedConv2d)}
    original = {}
    for name, tensor in unet.state_dict().items():
        module, leaf = name.rsplit(".", 1)
        if module in inflated:
            name = f"{module}.conv2d.{leaf}"
        elif module.endswith((".gate", ".temporal")) and module.rsplit(".", 1)[0] in inflated:
            parent, part = module.rsplit(".", 1)
            name = f"{parent}.{'conv_gate' if part == 'gate' else 'conv1d'}.{leaf}"
        name = name.replace(".temporal_attention.attn.", ".attn_temp.").replace(".temporal_attention.norm.", ".norm_temp.")
        original[name] = tensor.clone()
    return original


def test_sd15_shaped_original_at_another_width_and_frame_count_converts(tmp_path):
    # SD 1.5's layout (4 down / 4 up blocks, 2 layers, 8 heads, 32 groups, 768-d text) at a tenth of its width.
    torch.manual_seed(0)
    unet2d = UNet2DConditionModel(
        sample_size=16, block_out_channels=(32, 64, 128, 128), layers_per_block=2, cross_attention_dim=768,
        attention_head_dim=8, norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    source = randomize_temporal_layers(VideoUNet.from_unet2d(unet2d, preset="huvidpo"))
    original_keys = json.loads((LAMP / "unet" / "config.json").read_text())
    config = {k: source.config[k] for k in original_keys if k in source.config}
    config.update(
        _class_name="UNet3DConditionModel", use_temp=True, mid_block_type="UNetMidBlock3DCrossAttn",
        down_block_types=[t.replace("2D", "3D") for t in source.config.down_block_types],
        up_block_types=[t.replace("2D", "3D") for t in source.config.up_block_types],
    )
    folder = tmp_path / "sd15-like" / "unet"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    state_dict = to_original_layout(source)
    torch.save(state_dict, folder / "diffusion_pytorch_model.bin")

    converted = convert.convert_unet(folder.parent, "huvidpo")
    assert len(converted.state_dict()) == len(state_dict)
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(1, 4, 9, 16, 16, generator=generator)
    text = torch.randn(1, 7, 768, generator=generator)
    with torch.no_grad():
        expected = source(sample, torch.tensor([400]), text).sample
        torch.testing.assert_close(converted(sample, torch.tensor([400]), text).sample, expected, atol=TOLERANCE, rtol=0)
