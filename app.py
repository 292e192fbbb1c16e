"""HuViDPO Studio: generate videos, label pairs, train a DPO LoRA on the votes, push it to the Hub.

The embedded default runs on any CPU::

    python app.py --maintainer          # http://127.0.0.1:7860, data in ./data (the same as `huvidpo-studio`)

The app itself is ``huvidpo.studio.app`` (``build_demo``), one module per tab in ``huvidpo/studio/tabs``, and its
command line ``huvidpo.studio.cli`` (``main``), which this file runs.
"""

from huvidpo.studio.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
