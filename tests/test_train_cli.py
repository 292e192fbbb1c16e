"""The training CLI: flags and YAML build the same config; a one-step run end to end."""

import pytest
import torch
import yaml

from huvidpo.train import STAGES, build_parser, main
from huvidpo.training import write_world_pairs


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Other test runs share the cores: OpenMP threads spin-waiting for a busy core make steps 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def parse_config(argv):
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    return STAGES[args.command].from_yaml(args.config, **overrides)


def test_flags_override_yaml_which_overrides_defaults(tmp_path):
    path = tmp_path / "dpo.yaml"
    path.write_text(yaml.safe_dump({"beta": 10.0, "max_steps": 7, "lora_rank": 8}))
    config = parse_config(
        ["dpo", "--config", str(path), "--max-steps", "3", "--lora_target_modules", "to_q", "to_v",
         "--no-cache_latents", "--resume"]
    )
    assert (config.beta, config.max_steps, config.lora_rank) == (10.0, 3, 8)
    assert config.lora_target_modules == ["to_q", "to_v"]
    assert config.cache_latents is False and config.resume is True
    assert config.learning_rate == 1e-4  # the recipe's default
    stage1 = parse_config(["stage1", "--resolution", "320x512", "--no-horizontal_flip"])
    assert stage1.size == (320, 512) and stage1.horizontal_flip is False and stage1.learning_rate == 3e-5


def test_bad_values_exit_with_the_reason(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["dpo", "--beta", "-1"])
    assert exit_info.value.code == 2
    assert "beta must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dpo", "--rpo_alpha", "-0.5"])
    assert "rpo_alpha must be >= 0" in capsys.readouterr().err


def test_one_dpo_step_end_to_end(tmp_path, capsys):
    pairs = write_world_pairs(tmp_path / "pairs", 1, num_frames=4)
    out = tmp_path / "dpo"
    code = main(["dpo", "--data", str(pairs), "--output_dir", str(out), "--num_frames", "4", "--resolution", "32", "--max_steps", "1"])
    assert code == 0
    assert "dpo done after 1 steps; final loss 0.6931" in capsys.readouterr().out
    assert (out / "pytorch_lora_weights.safetensors").is_file()
