"""HuViDPO's two training stages on accelerate: stage 1 (temporal layers) and stage 2 (video DPO LoRA).

    from huvidpo.training import DPOConfig, train_dpo
    result = train_dpo(DPOConfig(data="exports/pairs", output_dir="outputs/dpo", max_steps=200))

The CLI is ``python -m huvidpo.train stage1|dpo ...`` (see :mod:`huvidpo.train`).

What is unusual here: the settings import without torch (the studio reads their defaults while it builds
its page); the names that need torch are imported from their modules on first use.
"""

import importlib

from .config import DPOConfig, Stage1Config, TrainingConfig

_MODULE_OF = {
    "PairCache": "data",
    "PreferencePairs": "data",
    "VideoPromptData": "data",
    "build_pair_cache": "data",
    "write_world_pairs": "data",
    "adapters_disabled": "dpo",
    "dpo_step": "dpo",
    "implicit_accuracy": "dpo",
    "implicit_margins": "dpo",
    "train_dpo": "dpo",
    "train_stage1": "stage1",
    "TrainResult": "trainer",
}

__all__ = ["DPOConfig", "Stage1Config", "TrainingConfig", *_MODULE_OF]


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
