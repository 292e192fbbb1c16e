import pytest

from huvidpo.data.video import read_video
from huvidpo.generate import GenerationSettings, build_parser, main


def test_cli_writes_a_playable_mp4(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    code = main([
        "--model", str(tiny_model_dir), "--prompt", "a red circle moving left on a blue background",
        "--frames", "6", "--steps", "2", "--image-steps", "2", "--seed", "0", "--out", str(out), "--preview", "gif",
    ])
    assert code == 0
    assert str(out) in capsys.readouterr().out
    frames = read_video(out)
    assert frames.shape == (6, 64, 64, 3)
    assert out.with_suffix(".gif").is_file()


def test_cli_explains_bad_input(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # refused by the settings' own range, before any model loads
        main(["--model", str(tiny_model_dir), "--prompt", "a", "--frames", "1", "--out", str(tmp_path / "x.mp4")])
    assert exit_info.value.code == 2
    assert "frames must be an integer of at least 2 (default 16), got 1" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_cli_redraws_a_clip_from_part_way(tiny_model_dir, tmp_path, capsys):
    source, out = tmp_path / "clip.mp4", tmp_path / "redrawn.mp4"
    common = ["--model", str(tiny_model_dir), "--prompt", "a red circle moving left on a blue background", "--steps", "4"]
    assert main([*common, "--frames", "5", "--image-steps", "2", "--out", str(source)]) == 0
    assert main([*common, "--video", str(source), "--strength", "0.5", "--out", str(out)]) == 0
    assert read_video(out).shape == (5, 64, 64, 3)  # the clip's length, not the --frames default


def test_cli_strength_without_a_video_is_explained(tiny_model_dir, tmp_path, capsys):
    code = main(["--model", str(tiny_model_dir), "--prompt", "a", "--strength", "0.5", "--out", str(tmp_path / "x.mp4")])
    assert code == 2
    assert "needs --video" in capsys.readouterr().err


def test_flags_in_either_spelling_and_a_yaml_file_parse_into_the_settings(tmp_path, capsys):
    parser = build_parser()
    settings, command, _ = parser.parse([
        "--prompt", "p", "--lora-scale", "0.5", "--image_steps", "3", "--no-adain", "--preview", "gif"])
    assert settings == GenerationSettings(prompt="p", lora_scale=0.5, image_steps=3, adain=False)
    assert (command.preview, command.out, command.strength) == ("gif", "clip.mp4", 1.0)

    config = tmp_path / "clip.yaml"
    config.write_text("prompt: a red circle moving left on a blue background\nseed: 3\nadain: false\n"
                      "shared_noise: 0.5\nout: x.mp4\n")
    settings, command, _ = parser.parse(["--config", str(config), "--seed", "4"])  # flags win over the file
    assert settings == GenerationSettings(
        prompt="a red circle moving left on a blue background", seed=4, adain=False, shared_noise=0.5)
    assert command.out == "x.mp4"

    config.write_text("prompt: p\nsteps_typo: 3\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(config)])
    assert exit_info.value.code == 2 and "steps_typo" in capsys.readouterr().err
