"""Train HuViDPO from the command line: stage 1 (motion) and stage 2 (video DPO LoRA).

A tiny run on a laptop CPU (about a minute; embedded default model, 4-frame synthetic clips)::

    python -m huvidpo.train demo-data /tmp/huvidpo-demo --num_frames 4
    python -m huvidpo.train stage1 --data /tmp/huvidpo-demo/world --output_dir /tmp/huvidpo-stage1 \\
        --num_frames 4 --max_steps 10
    python -m huvidpo.train dpo --model /tmp/huvidpo-stage1 --data /tmp/huvidpo-demo/pairs \\
        --output_dir /tmp/huvidpo-dpo --num_frames 4 --max_steps 10 --learning_rate 1e-3

The same commands run on several GPUs with ``accelerate launch -m huvidpo.train dpo ...``. Settings come
from the defaults, then ``--config file.yaml``, then flags; ``python -m huvidpo.train dpo --help`` lists
them. Ctrl-C once stops after the current step and still saves; twice aborts.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from huvidpo.training.config import DPOConfig, Stage1Config, add_config_arguments

STAGES = {"stage1": Stage1Config, "dpo": DPOConfig}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m huvidpo.train", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, config_class in STAGES.items():
        sub = commands.add_parser(name, help=config_class.__doc__.split("\n")[0], description=config_class.__doc__)
        sub.add_argument("--config", default=None, help="YAML file of settings; flags override it.")
        add_config_arguments(sub, config_class)
    demo = commands.add_parser("demo-data", help="Write a tiny synthetic video folder (world/) and pair folder (pairs/).")
    demo.add_argument("out_dir", help="Folder to write world/ and pairs/ into.")
    demo.add_argument("--num_clips", type=int, default=8, help="Videos in world/ (default 8).")
    demo.add_argument("--num_pairs", type=int, default=4, help="Pairs in pairs/ (default 4).")
    demo.add_argument("--num_frames", type=int, default=16, help="Frames per clip (default 16).")
    demo.add_argument("--size", type=int, default=64, help="Frame size in pixels (default 64).")
    demo.add_argument("--seed", type=int, default=0, help="Seed (default 0).")
    return parser


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


def _demo_data(args: argparse.Namespace) -> int:
    from pathlib import Path

    from huvidpo.world.clips import generate_world
    from huvidpo.training.data import write_world_pairs

    out = Path(args.out_dir)
    generate_world(out / "world", args.num_clips, seed=args.seed, num_frames=args.num_frames, size=args.size)
    write_world_pairs(out / "pairs", args.num_pairs, num_frames=args.num_frames, size=args.size, seed=args.seed)
    print(f"Wrote {args.num_clips} videos to {out / 'world'} and {args.num_pairs} pairs to {out / 'pairs'}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("huvidpo").setLevel(logging.INFO)
    if args.command == "demo-data":
        return _demo_data(args)
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    try:
        config = STAGES[args.command].from_yaml(args.config, **overrides)
    except ValueError as err:
        parser.error(str(err))

    from huvidpo.training import train_dpo, train_stage1

    train = train_stage1 if args.command == "stage1" else train_dpo
    try:
        result = train(config, stop_event=_stop_on_interrupt())
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    last = result.metrics_history[-1] if result.metrics_history else {}
    status = "cancelled" if result.cancelled else "done"
    print(f"{args.command} {status} after {result.steps} steps; final loss {last.get('loss', float('nan')):.4f}.")
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
