"""The studio's command line: ``python app.py`` and ``huvidpo-studio`` (flags -> ``StudioConfig`` -> ``build_demo``).

What is unusual here: Gradio and the app are imported once the flags are read, so ``--help`` and a bad flag answer
in a moment; the model stack (torch, diffusers) loads in the background once the page is served.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from huvidpo.studio.config import TABS, StudioConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python app.py", description="HuViDPO Studio: the Gradio app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="Address to bind (default 127.0.0.1; 0.0.0.0 serves the network).")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)), help="Port (default 7860).")
    parser.add_argument("--share", action="store_true", help="Also open a temporary public gradio.live link.")
    parser.add_argument("--model", default=None, help="Video model folder or Hub id (default: $HUVIDPO_MODEL or the embedded model).")
    parser.add_argument("--image-model", default=None, help="First-frame text-to-image model (e.g. mhdang/dpo-sdxl-text2image-v1).")
    parser.add_argument("--data-dir", default=None, help="Folder for votes, pool, runs and exports (default ./data, or $HUVIDPO_DATA_DIR).")
    parser.add_argument("--maintainer", action="store_true",
                        help="Local use: everyone reaching this app may train and push. On a Space use HUVIDPO_MAINTAINERS.")
    parser.add_argument("--maintainers", default=None, help="Comma-separated Hugging Face usernames allowed to train (with sign-in).")
    parser.add_argument("--oauth", action=argparse.BooleanOptionalAction, default=None,
                        help="Sign in with Hugging Face (default: on when running on a Space).")
    parser.add_argument("--votes-repo", default=None, help="Hub dataset repo the votes are pushed to (default $HUVIDPO_VOTES_REPO).")
    parser.add_argument("--tabs", default=None, help=f"Comma-separated tabs to show, among {','.join(TABS)} (default all).")
    parser.add_argument("--device", default=None, help="torch device for generation (default cuda if present, else cpu).")
    parser.add_argument("--no-preload", action="store_true", help="Load the model on the first generation instead of at start-up.")
    fields = StudioConfig.__dataclass_fields__
    parser.add_argument("--replica", default=None, help=fields["replica"].metadata["help"])
    parser.add_argument("--train-resolution", default=None, help=fields["train_resolution"].metadata["help"])
    for name in ("gold_rate", "overlap_share", "gold_threshold"):  # campaign quality control (help: StudioConfig's)
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None,
                            help=f"{fields[name].metadata['help']} Default {fields[name].default}.")
    for name in ("leaderboard_min_votes", "leaderboard_resamples"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"{fields[name].metadata['help']} Default {fields[name].default}.")
    return parser


def config_from_args(args: argparse.Namespace) -> StudioConfig:
    return StudioConfig.from_env(
        model=args.model, image_model=args.image_model, data_dir=args.data_dir, local_maintainer=args.maintainer or None,
        maintainers=args.maintainers, oauth=args.oauth, votes_repo=args.votes_repo, tabs=args.tabs, device=args.device,
        preload_model=False if args.no_preload else None, replica=args.replica, gold_rate=args.gold_rate,
        overlap_share=args.overlap_share, gold_threshold=args.gold_threshold,
        leaderboard_min_votes=args.leaderboard_min_votes, leaderboard_resamples=args.leaderboard_resamples,
        train_resolution=args.train_resolution,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as err:  # bad flags: say what to do, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    from huvidpo.studio.app import build_demo

    try:
        demo = build_demo(config)
    except ValueError as err:  # bad flags, a model that cannot be loaded: say what to do, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:  # a Ctrl-C at any point after the build (even mid-launch) still stops the vote sync with its final push
        _, local_url, share_url = demo.launch(
            server_name=args.host, server_port=args.port, share=args.share, prevent_thread_lock=True, quiet=True,
        )
        print(f"HuViDPO Studio is serving at {local_url}" + (f" and {share_url}" if share_url else ""), flush=True)
        print(f"Data (votes, pool, runs, exports) in {config.root}", flush=True)
        demo.block_thread()
    except KeyboardInterrupt:
        demo.close()
    finally:
        if demo.services["labeling"] is not None:
            demo.services["labeling"].close()
    return 0
