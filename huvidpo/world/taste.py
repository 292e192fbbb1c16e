"""Taste: which unprompted mode a clip shows, and a labeler who prefers one of them.

A prompt that names no speed leaves the clip free to move slowly or quickly (``prompts.UNPROMPTED_MODES``).
People prefer clips for such things they never typed; a :class:`Taste` is that preference made exact, so the
studio's loop (label, train, compare) can be measured: a taste labeler votes for its mode, DPO on its votes should
make the model draw that mode more often, and the reversed taste should reverse it.

What is unusual here:
- The mode is read from the pixels by the oracle (the clip's measured speed, in pixels per frame at 64 px,
  against the geometric mean of the two speeds), never taken from how the clip was made.
- The vote is a rank: the preferred mode over the other mode over a clip whose mode cannot be read (no shape, or
  a shape that does not move); equal ranks are a tie. So two clips of the same mode tie, as a person with only
  this taste would call them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from .oracle import ClipReading, OracleConfig, read_clip
from .prompts import SPEEDS, UNPROMPTED_MODES

# The shipped DPO plan for a taste on the embedded default: DPOConfig fields over its defaults (the paper's LoRA
# and beta). The Train tab runs it when the embedded default is loaded, and bench/taste.py measures it. The loss is
# taken at t >= 800 only, where the sampler settles a clip's speed (research/2026-12-02-taste-loop.md), with the
# winners' denoising loss as an anchor (rpo_alpha) so the LoRA keeps drawing the shape while it moves the speed.
TASTE_DPO: dict[str, float | int] = {"learning_rate": 3e-4, "max_steps": 300, "num_frames": 16, "min_timestep": 800,
                                     "rpo_alpha": 10.0}

# Below this many pixels per frame (at 64 px) a clip is "slowly", at or above it "quickly".
SPEED_MODE_THRESHOLD = math.sqrt(min(SPEEDS.values()) * max(SPEEDS.values()))


def read_mode(frames: Any, attribute: str = "speed", reading: ClipReading | None = None,
              config: OracleConfig | None = None) -> str | None:
    """The mode of ``attribute`` the clip shows (e.g. "slowly" or "quickly"), or None if it cannot be read."""
    if attribute not in UNPROMPTED_MODES:
        raise ValueError(f"Unknown unprompted attribute {attribute!r}: use one of {list(UNPROMPTED_MODES)}.")
    config = config or OracleConfig()
    reading = reading if reading is not None else read_clip(frames, config)
    if reading.presence < 0.5 or reading.direction in (None, "static"):
        return None
    return "quickly" if reading.speed >= SPEED_MODE_THRESHOLD else "slowly"


@dataclass(frozen=True)
class Taste:
    """A labeler's taste: prefers mode ``prefers`` of the unprompted ``attribute``."""

    attribute: str = "speed"
    prefers: str = "quickly"

    def __post_init__(self) -> None:
        modes = UNPROMPTED_MODES.get(self.attribute)
        if modes is None:
            raise ValueError(f"Unknown unprompted attribute {self.attribute!r}: use one of {list(UNPROMPTED_MODES)}.")
        if self.prefers not in modes:
            raise ValueError(f"A taste for {self.attribute} prefers one of {list(modes)}, got {self.prefers!r}.")

    @classmethod
    def parse(cls, text: str) -> "Taste":
        """``"speed=quickly"``, or a mode alone (``"quickly"``, or a synonym such as ``"fast"``/``"slow"``)."""
        attribute, _, mode = text.strip().lower().rpartition("=")
        mode = {"fast": "quickly", "quick": "quickly", "slow": "slowly"}.get(mode, mode)
        if not attribute:
            attribute = next((name for name, modes in UNPROMPTED_MODES.items() if mode in modes), "speed")
        return cls(attribute, mode)

    @property
    def name(self) -> str:
        return f"{self.attribute}={self.prefers}"

    @property
    def reversed(self) -> "Taste":
        """The opposite taste (the other mode of a two-mode attribute)."""
        other = [mode for mode in UNPROMPTED_MODES[self.attribute] if mode != self.prefers]
        return Taste(self.attribute, other[0])

    def rank(self, mode: str | None) -> int:
        """2 for the preferred mode, 1 for another mode, 0 for a clip whose mode cannot be read."""
        return 0 if mode is None else 2 if mode == self.prefers else 1

    def choose(self, left: Any, right: Any) -> Literal["left", "right", "tie"]:
        """The vote between two clips of one prompt (frames, or modes already read)."""
        ranks = [self.rank(clip if isinstance(clip, str) or clip is None else read_mode(clip, self.attribute))
                 for clip in (left, right)]
        if ranks[0] == ranks[1]:
            return "tie"
        return "left" if ranks[0] > ranks[1] else "right"
