"""The training CLI: flags and YAML build the same config; a one-step run end to end, resumed for a second."""

import json

import pytest
import yaml

from huvidpo.train import main, parse_command
from huvidpo.training import DPOConfig, Stage1Config, write_world_pairs


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def parse_config(argv):
    return parse_command(argv)[1]


def test_flags_override_yaml_which_overrides_defaults(tmp_path):
    path = tmp_path / "dpo.yaml"
    path.write_text(yaml.safe_dump({"beta": 10.0, "max_steps": 7, "lora_rank": 8}))
    config = parse_config(
        ["dpo", "--config", str(path), "--max-steps", "3", "--lora_target_modules", "to_q", "to_v",
         "--no-cache_latents", "--resume"]
    )
    assert (config.beta, config.max_steps, config.lora_rank) == (10.0, 3, 8)
    assert config.lora_target_modules == ["to_q", "to_v"]
    assert config.cache_latents is False and config.resume == "latest"
    assert config.learning_rate == 1e-4  # the recipe's default
    stage1 = parse_config(["stage1", "--resolution", "320x512", "--no-horizontal_flip"])
    assert stage1.size == (320, 512) and stage1.horizontal_flip is False and stage1.learning_rate == 3e-5
    assert isinstance(stage1, Stage1Config) and isinstance(config, DPOConfig)
    for spelling in ("--no-cache_latents", "--no_cache_latents", "--no-cache-latents", "--cache_latents=false"):
        assert parse_config(["dpo", spelling]).cache_latents is False, spelling
    assert parse_config(["dpo", "--push_to_hub", "--hub_model_id", "me/lora"]).push_to_hub is True
    assert parse_config(["dpo", "--resume", str(tmp_path)]).resume == str(tmp_path)
    assert parse_config(["dpo"]).resume is None


def test_help_lists_every_setting_with_its_range(capsys):
    for command, config_class in (("stage1", Stage1Config), ("dpo", DPOConfig)):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        shown = capsys.readouterr().out
        for name in config_class.__dataclass_fields__:
            assert f"--{name}" in shown, name
    assert "--lora_rank LORA_RANK, --lora-rank LORA_RANK" in shown and "From 1 to 1024." in shown


def test_demo_data_settings():
    command, settings, extra = parse_command(["demo-data", "/tmp/demo", "--num_frames", "4", "--num-pairs", "2"])
    assert (command, extra.out_dir, settings.num_frames, settings.num_pairs, settings.num_clips) == ("demo-data", "/tmp/demo", 4, 2, 8)


def test_bad_values_exit_with_the_reason(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["dpo", "--beta", "-1"])
    assert exit_info.value.code == 2
    assert "beta must be a number from 0.0001 to 1e+06 (default 50.0), got -1.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dpo", "--rpo_alpha", "-0.5"])
    assert "rpo_alpha must be a number from 0 to 10000" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["stage1", "--max_steps", "2.5"])
    assert "argument --max_steps/--max-steps: invalid int value: '2.5'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo-data", "out", "--num_frames", "1"])
    assert "num_frames must be an integer from 2 to 256" in capsys.readouterr().err


def test_one_dpo_step_end_to_end_then_resumed(tmp_path, capsys):
    pairs = write_world_pairs(tmp_path / "pairs", 1, num_frames=4)
    out = tmp_path / "dpo"
    args = ["dpo", "--data", str(pairs), "--output_dir", str(out), "--num_frames", "4", "--resolution", "32"]
    assert main([*args, "--max_steps", "1"]) == 0
    assert "dpo done after 1 steps; final loss 0.6931" in capsys.readouterr().out
    assert (out / "pytorch_lora_weights.safetensors").is_file()
    assert main([*args, "--max_steps", "2"]) == 2  # a fresh start would overwrite the run's checkpoints
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert main([*args, "--max_steps", "2", "--resume"]) == 0
    assert "dpo done after 2 steps" in capsys.readouterr().out
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in metrics] == [1, 2] and metrics[0]["loss"] == pytest.approx(0.6931, abs=1e-4)


def test_the_huvidpo_preset_sets_the_originals_optimizer_and_explicit_settings_win(tmp_path):
    """--preset huvidpo: the original code's AdamW eps 1e-3, weight decay 1e-4, LoRA dropout 0.1, lr 1e-4, batch 1.
    A setting given as a flag, in the YAML file or as an argument wins over the preset, whichever sets the preset."""
    optimizer = ("learning_rate", "batch_size", "weight_decay", "adam_epsilon", "lora_dropout")

    def values(config):
        return tuple(getattr(config, name) for name in optimizer)

    assert values(parse_config(["dpo"])) == (1e-4, 1, 1e-2, 1e-8, 0.0)  # ours, as before the preset existed
    assert values(parse_config(["dpo", "--preset", "huvidpo"])) == (1e-4, 1, 1e-4, 1e-3, 0.1)
    assert values(parse_config(["dpo", "--preset", "huvidpo", "--weight-decay", "0.05", "--lora_dropout", "0"])) == (
        1e-4, 1, 0.05, 1e-3, 0.0)
    path = tmp_path / "dpo.yaml"
    path.write_text("preset: huvidpo\nadam_epsilon: 1e-6\n")
    assert values(parse_config(["dpo", "--config", str(path), "--learning_rate", "3e-4"])) == (3e-4, 1, 1e-4, 1e-6, 0.1)
    path.write_text("weight_decay: 0.02\n")  # the file's explicit value wins over a preset given as a flag
    assert values(parse_config(["dpo", "--config", str(path), "--preset", "huvidpo"])) == (1e-4, 1, 0.02, 1e-3, 0.1)
    assert values(DPOConfig(preset="huvidpo", batch_size=2)) == (1e-4, 2, 1e-4, 1e-3, 0.1)
    # A saved config (config.yaml of a run) holds plain values: it loads as it trained, whatever the preset.
    saved = DPOConfig(preset="huvidpo", weight_decay=0.05).to_dict()
    assert values(DPOConfig(**saved)) == (1e-4, 1, 0.05, 1e-3, 0.1)
    with pytest.raises(ValueError, match=r"preset must be one of \['ours', 'huvidpo'\], got 'lamp'"):
        DPOConfig(preset="lamp")
    with pytest.raises(ValueError, match="lora_dropout must be a number from 0 to 0.9"):
        DPOConfig(preset="huvidpo", lora_dropout=1.0)
