from huvidpo.data.video import read_video
from huvidpo.generate import main


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
    code = main(["--model", str(tiny_model_dir), "--prompt", "a", "--frames", "1", "--out", str(tmp_path / "x.mp4")])
    assert code == 2
    assert "num_frames" in capsys.readouterr().err
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
