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
    assert "frames must be an integer of at least 2, got 1" in capsys.readouterr().err
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


def test_sampler_setting_runs_the_pipelines_preset_with_the_settings_on_top(tiny_pipe):
    """--sampler picks the pipeline's preset; shared_noise and adain go on top as pipe(sampler=..., **overrides)
    takes them, and their defaults (0.2, on) give each preset exactly."""
    import numpy as np
    import torch

    from huvidpo.generate import generate

    image = np.full((64, 64, 3), 90, np.uint8)
    image[16:48, 8:40] = (230, 40, 40)
    common = dict(prompt="a red square", frames=4, steps=3, seed=0)

    def clip(**settings):
        return generate(tiny_pipe, GenerationSettings(**common, **settings), image=image)[0]

    def direct(**options):
        return tiny_pipe("a red square", image=image, num_frames=4, num_inference_steps=3, guidance_scale=7.5,
                         generator=torch.Generator("cpu").manual_seed(0), **options).frames[0]

    ours, original = clip(), clip(sampler="huvidpo")
    np.testing.assert_array_equal(ours, direct(sampler="ours"))
    np.testing.assert_array_equal(original, direct(sampler="huvidpo"))
    assert np.abs(original[1:] - ours[1:]).max() > 1e-3
    # adain off turns off the preset's own kind of AdaIN (the original's runs inside the loop).
    np.testing.assert_array_equal(clip(sampler="huvidpo", adain=False), direct(sampler="huvidpo", adain_in_loop=False))
    np.testing.assert_array_equal(clip(adain=False), direct(sampler="ours", adain=False))
    np.testing.assert_array_equal(clip(sampler="huvidpo", shared_noise=0.5), direct(sampler="huvidpo", shared_noise=0.5))


def test_sampler_flag_on_every_generating_command(capsys):
    from huvidpo.eval.__main__ import build_parser as eval_parser
    from huvidpo.pipeline import SAMPLER_PRESETS

    assert GenerationSettings.spec("sampler").metadata["choices"] == tuple(SAMPLER_PRESETS)
    assert GenerationSettings(prompt="p").sampler == "ours"  # what the studio and this CLI always did
    settings, _, _ = build_parser().parse(["--prompt", "p", "--sampler", "huvidpo"])
    assert settings == GenerationSettings(prompt="p", sampler="huvidpo")
    generation = next(s for s in eval_parser().parse(["--out", "x", "--sampler", "huvidpo"]) if hasattr(s, "sampler"))
    assert generation.sampler == "huvidpo"  # the eval and pool-fill CLIs share GenerationFlags
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse(["--prompt", "p", "--sampler", "lamp"])
    assert exit_info.value.code == 2 and "huvidpo" in capsys.readouterr().err
    with pytest.raises(ValueError, match="sampler must be one of"):
        GenerationSettings(prompt="p", sampler="lamp")
