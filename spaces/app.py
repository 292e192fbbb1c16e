"""Entry of a Hugging Face Space: the studio configured from the Space's variables and secrets.

The Space holds a copy of this repository (see spaces/README.md); the front matter points ``app_file`` here.
``huvidpo`` imports from the installed project (``pip install -e .``) or, on a Space, from the repository root,
which the Space runtime puts on ``PYTHONPATH`` (with ``SYSTEM=spaces``).
Everything is set in the Space's settings, never in code:

- ``HUVIDPO_MODEL`` (variable): the video model, a Hub id or a folder (default: the embedded tiny model);
- ``HUVIDPO_IMAGE_MODEL`` (variable): the first-frame model, e.g. ``mhdang/dpo-sdxl-text2image-v1``;
- ``HUVIDPO_MAINTAINERS`` (variable): Hugging Face usernames allowed to train and push;
- ``HUVIDPO_VOTES_REPO`` (variable): the dataset repo the votes are pushed to;
- ``HUVIDPO_TABS`` (variable): ``generate,label`` for a demo Space, ``label,train`` for a labeling Space;
- ``HF_TOKEN`` (secret): write access to the votes repo and the LoRA repos.

With persistent storage the data dir is ``/data/huvidpo`` and survives restarts; without it, ``./data``
lasts until the Space restarts (the votes are in the Hub dataset by then, pushed every few minutes).
"""

import os
from pathlib import Path

from huvidpo.studio import StudioConfig
from huvidpo.studio.app import build_demo


def space_config() -> StudioConfig:
    persistent = Path("/data")
    data_dir = os.environ.get("HUVIDPO_DATA_DIR") or (str(persistent / "huvidpo") if persistent.is_dir() else "data")
    return StudioConfig.from_env(data_dir=data_dir)


demo = build_demo(space_config())

if __name__ == "__main__":
    demo.launch()  # the Space runtime sets GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
