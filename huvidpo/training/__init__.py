"""HuViDPO's two training stages on accelerate: stage 1 (temporal layers) and stage 2 (video DPO LoRA).

    from huvidpo.training import DPOConfig, train_dpo
    result = train_dpo(DPOConfig(data="exports/pairs", output_dir="outputs/dpo", max_steps=200))

The CLI is ``python -m huvidpo.train stage1|dpo ...`` (see :mod:`huvidpo.train`).
"""

from .config import DPOConfig, Stage1Config, TrainingConfig
from .data import PairCache, PreferencePairs, VideoPromptData, build_pair_cache, write_world_pairs
from .dpo import adapters_disabled, dpo_step, implicit_accuracy, implicit_margins, train_dpo
from .stage1 import train_stage1
from .trainer import TrainResult

__all__ = [
    "DPOConfig",
    "PairCache",
    "PreferencePairs",
    "Stage1Config",
    "TrainResult",
    "TrainingConfig",
    "VideoPromptData",
    "adapters_disabled",
    "build_pair_cache",
    "dpo_step",
    "implicit_accuracy",
    "implicit_margins",
    "train_dpo",
    "train_stage1",
    "write_world_pairs",
]
