"""HuViDPO Studio: generate videos, label pairs, train a DPO LoRA on the votes, push it to the Hub.

The embedded default runs on any CPU::

    python app.py --maintainer          # http://127.0.0.1:7860, data in ./data (the same as `huvidpo-studio`)

The app itself is ``huvidpo.studio.app`` (``build_demo`` and ``main``), one module per tab in
``huvidpo/studio/tabs``; this file is the entry point ``python app.py`` runs.
"""

from huvidpo.studio.app import build_demo, build_parser, config_from_args, main

__all__ = ["build_demo", "build_parser", "config_from_args", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
