"""Oracle metrics in the synthetic world: per clip what the prompt asked for and got, per pair who won.

What is unusual here:
- Per clip, the oracle's booleans (shape / colour / background / direction / all match) become match *rates*
  when averaged; ``smoothness`` and ``oracle_total`` are the oracle's scores in [0, 1]; ``flicker`` is the raw
  mean brightness change per frame (0-1 scale, lower is better), ``steadiness`` its score in [0, 1].
- Where a prompt leaves an unprompted attribute out (the speed), the clip's mode of it is read (``taste.read_mode``)
  and the summary gives each mode's share among those clips (``mode_shares``): what a taste moves.
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
from .prompts import UNPROMPTED_MODES, parse_prompt
from .taste import read_mode

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
    modes: dict[str, str | None] | None = None  # unprompted attribute -> the mode shown, for those the prompt leaves out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def oracle_clip_metrics(frames: Any, prompt: str, config: OracleConfig | None = None) -> OracleClipMetrics:
    """Match flags and scores of one clip (``(f, h, w, 3)`` float [0, 1] or uint8) for ``prompt``."""
    score = score_clip(frames, prompt, config)
    flags = matches(frames, prompt, config)
    asked = parse_prompt(prompt)
    modes = {name: read_mode(frames, name, score.reading) for name in UNPROMPTED_MODES if getattr(asked, name) is None}
    return OracleClipMetrics(
        modes=modes,
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
    summary: dict[str, Any] = {}
    for key, value in rows[0].items():
        if key == "modes":
            continue
        name = f"{key}_rate" if isinstance(value, bool) else key
        summary[name] = float(np.mean([row[key] for row in rows]))
    shares = mode_shares(metrics)
    if shares:
        summary["mode_shares"] = shares
    return summary


def mode_shares(metrics: Sequence[OracleClipMetrics]) -> dict[str, dict[str, float | int]]:
    """Per unprompted attribute, the share of each mode (and of unreadable clips) among the clips whose prompt
    left it out, and their number ``n``: e.g. ``{"speed": {"slowly": 0.5, "quickly": 0.45, "unreadable": 0.05, "n": 20}}``."""
    out: dict[str, dict[str, float | int]] = {}
    for name, modes in UNPROMPTED_MODES.items():
        shown = [m.modes[name] for m in metrics if m.modes and name in m.modes]
        if shown:
            out[name] = {**{mode: shown.count(mode) / len(shown) for mode in modes},
                         "unreadable": shown.count(None) / len(shown), "n": len(shown)}
    return out


def preference_from_totals(total_a: float, total_b: float, margin: float = PREFER_MARGIN) -> Literal["a", "b", "tie"]:
    """The oracle's vote between two clips of the same prompt given their totals (``oracle.prefer``'s rule)."""
    if total_a > total_b + margin:
        return "a"
    if total_b > total_a + margin:
        return "b"
    return "tie"


@dataclass
class WinRate:
    """How often B beat A on the same (prompt, seed); ``win_rate`` as :func:`win_rate` counted it."""

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


def win_rate(votes: Sequence[Literal["a", "b", "tie"]], ties: Literal["half", "excluded"] = "half") -> WinRate:
    """Win rate of B over A from per-pair votes with a Wilson 95 % interval. ``ties="half"`` counts a tie as half a win
    (the oracle's faithfulness votes); ``"excluded"`` leaves ties out (a taste labeler's tie means both clips show
    the same mode, so it has no preference): then the rate is wins / (wins + losses)."""
    wins, losses, tied = (sum(v == side for v in votes) for side in ("b", "a", "tie"))
    if ties not in ("half", "excluded"):
        raise ValueError(f"ties must be 'half' or 'excluded', got {ties!r}.")
    successes, n = (wins + 0.5 * tied, wins + losses + tied) if ties == "half" else (wins, wins + losses)
    if n == 0:
        return WinRate(wins, losses, tied, None, None)
    return WinRate(wins, losses, tied, successes / n, wilson_interval(successes, n))


def pairwise_win_rate(
    totals_a: Sequence[float], totals_b: Sequence[float], margin: float = PREFER_MARGIN
) -> tuple[WinRate, list[Literal["a", "b", "tie"]]]:
    """Win rate of B over A from oracle totals of matched clips (same prompt and seed, same order), and the votes."""
    if len(totals_a) != len(totals_b):
        raise ValueError(f"Need one B clip per A clip; got {len(totals_a)} and {len(totals_b)}.")
    votes = [preference_from_totals(a, b, margin) for a, b in zip(totals_a, totals_b)]
    return win_rate(votes), votes
