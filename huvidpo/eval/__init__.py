"""Evaluation: LAMP's CLIP metrics (text alignment, frame consistency, diversity) and, in the synthetic world,
the oracle's match rates, smoothness, flicker and pairwise preference; ``python -m huvidpo.eval`` runs them."""

from .clip_metrics import (
    DEFAULT_CLIP_MODEL,
    ClipScorer,
    VideoClipScores,
    diversity,
    frame_consistency,
    load_clip,
    text_alignment,
    video_embedding,
)
from ..world.metrics import (
    OracleClipMetrics,
    WinRate,
    oracle_clip_metrics,
    pairwise_win_rate,
    preference_from_totals,
    summarize_oracle,
    win_rate,
)
from .report import BASE_LABEL, LORA_LABEL, EvalReport
from .runner import evaluate

__all__ = [
    "BASE_LABEL",
    "DEFAULT_CLIP_MODEL",
    "LORA_LABEL",
    "ClipScorer",
    "EvalReport",
    "OracleClipMetrics",
    "VideoClipScores",
    "WinRate",
    "diversity",
    "evaluate",
    "frame_consistency",
    "load_clip",
    "oracle_clip_metrics",
    "pairwise_win_rate",
    "preference_from_totals",
    "summarize_oracle",
    "text_alignment",
    "video_embedding",
    "win_rate",
]
