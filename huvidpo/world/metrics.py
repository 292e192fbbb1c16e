"""Oracle metrics in the synthetic world: per clip what the prompt asked for and got, per pair who won.

What is unusual here:
- Per clip, the oracle's booleans (shape / colour / background / direction / all match) become match *rates*
  when averaged; ``smoothness`` and ``oracle_total`` are the oracle's scores in [0, 1]; ``flicker`` is the raw
  mean brightness change per frame (0-1 scale, lower is better), ``steadiness`` its score in [0, 1].
- The pairwise preference of B over A reuses each clip's stored oracle total with the rule of
  ``oracle.prefer`` (same margin), so nothing is scored twice. Ties count half a win; the 95 % interval
  is Wilson's, on that half-counted number of wins.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

import numpy as np

from ..annotation.stats import wilson_interval
from .oracle import OracleConfig, matches, prefer, score_clip

# The margin ``oracle.prefer`` uses by default, so stored totals give the same votes.
PREFER_MARGIN: float = inspect.signature(prefer).parameters["margin"].default
MATCH_KEYS: tuple[str, ...] = ("shape", "color", "background", "direction", "all")


@dataclass
class OracleClipMetrics:
    """The oracle's view of one clip for its prompt."""

    shape_match: bool
    color_match: bool
    background_match: bool
    direction_match: bool
    all_match: bool
    smoothness: float
    flicker: float
    steadiness: float
    presence: float
    oracle_total: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def oracle_clip_metrics(frames: Any, prompt: str, config: OracleConfig | None = None) -> OracleClipMetrics:
    """Match flags and scores of one clip (``(f, h, w, 3)`` float [0, 1] or uint8) for ``prompt``."""
    score = score_clip(frames, prompt, config)
    flags = matches(frames, prompt, config)
    return OracleClipMetrics(
        **{f"{key}_match": bool(flags[key]) for key in MATCH_KEYS},
        smoothness=float(score.smoothness),
        flicker=float(score.reading.flicker) if score.reading is not None else 0.0,
        steadiness=float(score.flicker),
        presence=float(score.presence),
        oracle_total=float(score.total),
    )


def summarize_oracle(metrics: Sequence[OracleClipMetrics]) -> dict[str, float]:
    """Means over clips: ``<key>_match_rate`` for the flags, and the mean of every score."""
    if not metrics:
        return {}
    rows = [m.to_dict() for m in metrics]
    summary = {}
    for key, value in rows[0].items():
        name = f"{key}_rate" if isinstance(value, bool) else key
        summary[name] = float(np.mean([row[key] for row in rows]))
    return summary


def preference_from_totals(total_a: float, total_b: float, margin: float = PREFER_MARGIN) -> Literal["a", "b", "tie"]:
    """The oracle's vote between two clips of the same prompt given their totals (``oracle.prefer``'s rule)."""
    if total_a > total_b + margin:
        return "a"
    if total_b > total_a + margin:
        return "b"
    return "tie"


@dataclass
class WinRate:
    """How often B beat A on the same (prompt, seed); ``win_rate`` counts ties half."""

    wins: int
    losses: int
    ties: int
    win_rate: float | None
    ci95: tuple[float, float] | None

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n": self.n, "ci95": list(self.ci95) if self.ci95 else None}


def win_rate(votes: Sequence[Literal["a", "b", "tie"]]) -> WinRate:
    """Win rate of B over A from per-pair votes, ties half, with a Wilson 95 % interval."""
    wins, losses, ties = (sum(v == side for v in votes) for side in ("b", "a", "tie"))
    n = wins + losses + ties
    if n == 0:
        return WinRate(0, 0, 0, None, None)
    successes = wins + 0.5 * ties
    return WinRate(wins, losses, ties, successes / n, wilson_interval(successes, n))


def pairwise_win_rate(
    totals_a: Sequence[float], totals_b: Sequence[float], margin: float = PREFER_MARGIN
) -> tuple[WinRate, list[Literal["a", "b", "tie"]]]:
    """Win rate of B over A from oracle totals of matched clips (same prompt and seed, same order), and the votes."""
    if len(totals_a) != len(totals_b):
        raise ValueError(f"Need one B clip per A clip; got {len(totals_a)} and {len(totals_b)}.")
    votes = [preference_from_totals(a, b, margin) for a, b in zip(totals_a, totals_b)]
    return win_rate(votes), votes
