"""Training across processes: `accelerate launch --num_processes 2 --cpu -m huvidpo.train` at tiny size, and the
accelerate config files shipped for several GPUs and machines.

What is unusual here: the launched runs are real subprocesses (two ranks over gloo on this CPU). Each example's
noise and augmentation come from a generator keyed by its position in the run's stream, so 2 processes x batch 1
must train the LoRA that 1 process x batch 2 trains, which it can only do if the processes took different pairs
and averaged their gradients.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from huvidpo.hub import LORA_WEIGHT_NAME, load_pipeline
from huvidpo.training import DPOConfig, Stage1Config, train_dpo, train_stage1, write_world_pairs
from huvidpo.training.trainer import CHECKPOINTS_DIR, METRICS_NAME, TRAINABLE_NAME
from huvidpo.world.clips import generate_world

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
COMMON = ["--num_frames", "4", "--resolution", "32", "--learning_rate", "1e-3", "--checkpointing_steps", "1",
          "--adam_epsilon", "1e-5"]
# Adam divides each update by the root of its squared gradient, so a weight whose gradient is ~0 takes a full
# learning-rate step whose sign is float noise (gloo sums in another order than one batch's backward, a batch of
# 1 and of 2 round differently): with eps 1e-8 that noise alone moved the LoRA 0.5 % of its update. An epsilon of
# 1e-5 keeps those steps proportional to their gradients; then the two runs agree to 4e-5 of the update, and
# a run without the averaging (one process, batch 1) lands 59 % of the update away.
RTOL = 1e-3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(*args: str, processes: int = 2) -> str:
    """``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N -m huvidpo.train ARGS``; its stdout
    (it must succeed). ``--cpu --num_processes 2`` would start one process (accelerate's simple launcher; its
    multi-CPU path needs mpirun); ``--multi_gpu`` starts N through torchrun and the flag makes them gloo CPU ranks."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), "-m", "huvidpo.train", *args,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The Euclidean distance of two sets of the same named tensors."""
    assert sorted(a) == sorted(b)
    return sum(float((a[name] - b[name]).double().norm()) ** 2 for name in a) ** 0.5


def metric_steps(folder: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (folder / METRICS_NAME).read_text().splitlines()]


@pytest.fixture(scope="module")
def dpo_runs(tiny_model_dir, tmp_path_factory):
    """2 processes x 1 pair for 2 steps (launched), and 1 process x 2 pairs for 3 steps (in this process)."""
    root = tmp_path_factory.mktemp("dpo")
    pairs = write_world_pairs(root / "pairs", 4, num_frames=4)
    args = ["dpo", "--model", str(tiny_model_dir), "--data", str(pairs), *COMMON]
    out = launch(*args, "--output_dir", str(root / "two"), "--max_steps", "2")
    config = DPOConfig(model=str(tiny_model_dir), data=str(pairs), output_dir=str(root / "one"), num_frames=4, resolution="32",
                       learning_rate=1e-3, checkpointing_steps=1, batch_size=2, max_steps=3, adam_epsilon=1e-5)
    train_dpo(config)  # loads the model after seeding, as the launched runs do (the LoRA init draws from the seed)
    lora_one = load_file(root / "one" / CHECKPOINTS_DIR / "step-2" / LORA_WEIGHT_NAME)
    moved = distance({n: t for n, t in lora_one.items() if "lora_B" in n}, {n: 0 * t for n, t in lora_one.items() if "lora_B" in n})
    assert moved > 0.01  # trained (B starts at zero), so the comparisons can fail
    return SimpleNamespace(root=root, args=args, out=out, two=root / "two", one=root / "one", moved=moved)


def test_dpo_on_two_processes_equals_one_process_with_twice_the_batch(dpo_runs):
    # different pairs on each process and synchronised gradients: only then is it the LoRA of one process with both
    lora_one = load_file(dpo_runs.one / CHECKPOINTS_DIR / "step-2" / LORA_WEIGHT_NAME)
    assert distance(load_file(dpo_runs.two / LORA_WEIGHT_NAME), lora_one) < RTOL * dpo_runs.moved
    # written once, by the main process: its report, one metrics line per step, one checkpoint per step, the card
    assert dpo_runs.out.count("dpo done after 2 steps") == 1
    assert metric_steps(dpo_runs.two) == [1, 2]
    assert sorted(p.name for p in (dpo_runs.two / CHECKPOINTS_DIR).iterdir()) == ["step-1", "step-2"]
    assert "HuViDPO LoRA" in (dpo_runs.two / "README.md").read_text()


def test_dpo_on_two_processes_resumes_the_same_run(dpo_runs):
    resumed = dpo_runs.root / "resumed"
    shutil.copytree(dpo_runs.two, resumed)
    out = launch(*dpo_runs.args, "--output_dir", str(resumed), "--max_steps", "3", "--resume")
    assert out.count("dpo done after 3 steps") == 1
    assert distance(load_file(resumed / LORA_WEIGHT_NAME), load_file(dpo_runs.one / LORA_WEIGHT_NAME)) < RTOL * dpo_runs.moved
    assert metric_steps(resumed) == [1, 2, 3]
    one_rows = [json.loads(line) for line in (dpo_runs.one / METRICS_NAME).read_text().splitlines()]
    two_rows = [json.loads(line) for line in (resumed / METRICS_NAME).read_text().splitlines()]
    for name in ("loss", "rewards/margins", "mse/model_w"):  # the logged metrics are means over both processes
        assert [row[name] for row in two_rows] == pytest.approx([row[name] for row in one_rows], abs=1e-5)


def test_stage1_on_two_processes_equals_one_process_with_twice_the_batch(tiny_model_dir, tmp_path):
    world = generate_world(tmp_path / "world", 4, num_frames=6)
    two = tmp_path / "two"
    out = launch("stage1", "--model", str(tiny_model_dir), "--data", str(world), "--output_dir", str(two), *COMMON,
                 "--max_steps", "2")
    assert out.count("stage1 done after 2 steps") == 1

    one = tmp_path / "one"
    config = Stage1Config(model=str(tiny_model_dir), data=str(world), output_dir=str(one), num_frames=4, resolution="32",
                          learning_rate=1e-3, checkpointing_steps=1, batch_size=2, max_steps=2, adam_epsilon=1e-5)
    train_stage1(config)

    trained_one = load_file(one / CHECKPOINTS_DIR / "step-2" / TRAINABLE_NAME)
    trained_two = load_file(two / CHECKPOINTS_DIR / "step-2" / TRAINABLE_NAME)
    before = load_pipeline(str(tiny_model_dir)).unet.state_dict()
    moved = distance(trained_one, {name: before[name] for name in trained_one})
    assert moved > 0.01
    assert distance(trained_two, trained_one) < RTOL * moved
    assert metric_steps(two) == [1, 2]
    assert (two / "model_index.json").is_file() and "stage-1 video model" in (two / "README.md").read_text()


# ---------------------------------------------------------------------------------------------- accelerate configs


def launch_environment(config_file: Path) -> tuple[object, dict[str, str]]:
    """What ``accelerate launch --config_file F -m huvidpo.train`` reads from F: its parsed arguments and, for
    torchrun-launched configs, the environment each process gets (accelerate's own parser and helpers)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config_file), "-m", "huvidpo.train", "dpo"])
    args, defaults, _ = _validate_launch_command(args)
    return defaults, ({} if args.use_deepspeed else prepare_multi_gpu_env(args))


def test_the_shipped_accelerate_configs_parse_as_accelerate_reads_them(monkeypatch, tiny_model_dir):
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    names = {path.stem: path for path in ACCELERATE_CONFIGS}
    assert set(names) == {"multi-gpu", "deepspeed-zero2", "fsdp"}
    for path in ACCELERATE_CONFIGS:
        defaults, env = launch_environment(path)
        assert defaults.num_processes == 8 and defaults.mixed_precision == "bf16", path.name
    assert launch_environment(names["multi-gpu"])[0].distributed_type == DistributedType.MULTI_GPU

    defaults, env = launch_environment(names["fsdp"])
    assert defaults.distributed_type == DistributedType.FSDP
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables the launcher sets
    assert plugin.fsdp_version == 2 and plugin.transformer_cls_names_to_wrap == ["BasicTransformerBlock"]
    unet = load_pipeline(str(tiny_model_dir)).unet  # the class it wraps is the one our UNet is made of
    assert any(type(module).__name__ == "BasicTransformerBlock" for module in unet.modules())

    defaults, _ = launch_environment(names["deepspeed-zero2"])
    assert defaults.distributed_type == DistributedType.DEEPSPEED
    assert defaults.deepspeed_config["zero_stage"] == 2


def test_the_deepspeed_config_builds_accelerates_plugin():
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (it is only needed on GPU machines)")
    from accelerate.utils import DeepSpeedPlugin

    defaults, _ = launch_environment(ROOT / "configs" / "accelerate" / "deepspeed-zero2.yaml")
    plugin = DeepSpeedPlugin(**{k: v for k, v in defaults.deepspeed_config.items() if k != "zero3_init_flag"})
    assert plugin.zero_stage == 2
