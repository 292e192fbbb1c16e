"""Train HuViDPO from the command line: stage 1 (motion) and stage 2 (video DPO LoRA).

A tiny run on a laptop CPU (about a minute; embedded default model, 4-frame synthetic clips)::

    python -m huvidpo.train demo-data /tmp/huvidpo-demo --num_frames 4
    python -m huvidpo.train stage1 --data /tmp/huvidpo-demo/world --output_dir /tmp/huvidpo-stage1 \\
        --num_frames 4 --max_steps 10
    python -m huvidpo.train dpo --model /tmp/huvidpo-stage1 --data /tmp/huvidpo-demo/pairs \\
        --output_dir /tmp/huvidpo-dpo --num_frames 4 --max_steps 10 --learning_rate 1e-3

The same commands run on several GPUs with ``accelerate launch -m huvidpo.train dpo ...``. The flags are the
fields of :class:`~huvidpo.training.config.Stage1Config` / ``DPOConfig`` (transformers' ``HfArgumentParser``);
``--config file.yaml`` holds the same keys, and flags override it. Ctrl-C once stops after the current step
and still saves; twice aborts.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huvidpo.settings import SettingsParser
from huvidpo.settings import MAX_SEED, check_settings, setting
from huvidpo.training.config import DPOConfig, Stage1Config


@dataclass
class DemoDataConfig:
    """Write a tiny synthetic video folder (world/) and pair folder (pairs/)."""

    num_clips: int = setting(8, "Videos in world/.", min=1, max=100_000)
    num_pairs: int = setting(4, "Pairs in pairs/.", min=1, max=100_000)
    num_frames: int = setting(16, "Frames per clip.", min=2, max=256)
    size: int = setting(64, "Frame size in pixels.", min=8, max=1024)
    seed: int = setting(0, "Seed.", min=0, max=MAX_SEED)

    def __post_init__(self) -> None:
        check_settings(self)


COMMANDS = {"stage1": Stage1Config, "dpo": DPOConfig, "demo-data": DemoDataConfig}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, SettingsParser]]:
    """The top-level parser and one :class:`SettingsParser` per command."""
    parser = argparse.ArgumentParser(prog="python -m huvidpo.train", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=SettingsParser)
    parsers = {}
    for name, config_class in COMMANDS.items():
        summary = config_class.__doc__.split("\n")[0]
        parsers[name] = commands.add_parser(name, dataclass_types=[config_class], help=summary, description=config_class.__doc__)
    parsers["demo-data"].add_argument("out_dir", help="Folder to write world/ and pairs/ into.")
    return parser, parsers


def parse_command(argv: list[str] | None = None) -> tuple[str, Any, argparse.Namespace]:
    """(command, its settings, the other arguments) from the command line; exits with the reason on bad input."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, parsers = build_parser()
    command = parser.parse_args(argv).command  # --help, an unknown command or a malformed flag exit here
    settings, extra = parsers[command].parse(argv[1:])
    return command, settings, extra


def _stop_on_interrupt() -> threading.Event:
    """First Ctrl-C: stop after this step and save. Second: abort."""
    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        print("\nStopping after this step and saving (Ctrl-C again to abort).", file=sys.stderr)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
    return stop


def _demo_data(settings: DemoDataConfig, out_dir: str) -> int:
    from huvidpo.training.data import write_world_pairs
    from huvidpo.world.clips import generate_world

    out = Path(out_dir)
    generate_world(out / "world", settings.num_clips, seed=settings.seed, num_frames=settings.num_frames, size=settings.size)
    write_world_pairs(out / "pairs", settings.num_pairs, num_frames=settings.num_frames, size=settings.size, seed=settings.seed)
    print(f"Wrote {settings.num_clips} videos to {out / 'world'} and {settings.num_pairs} pairs to {out / 'pairs'}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    command, settings, extra = parse_command(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("huvidpo").setLevel(logging.INFO)
    if command == "demo-data":
        return _demo_data(settings, extra.out_dir)

    from accelerate import PartialState

    from huvidpo.training import train_dpo, train_stage1

    train = train_stage1 if command == "stage1" else train_dpo
    try:
        result = train(settings, stop_event=_stop_on_interrupt())
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not PartialState().is_main_process:
        return 0
    last = result.metrics_history[-1] if result.metrics_history else {}
    status = "cancelled" if result.cancelled else "done"
    print(f"{command} {status} after {result.steps} steps; final loss {last.get('loss', float('nan')):.4f}.")
    if "rewards/accuracies" in last:
        print(f"implicit accuracy {last['rewards/accuracies']:.3f}, margin {last['rewards/margins']:.4f}")
    print(f"Output: {result.lora_path or result.output_dir}")
    if result.hub_url:
        print(f"Pushed to {result.hub_url}")
    if result.hub_error:
        print(f"error: {result.hub_error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
