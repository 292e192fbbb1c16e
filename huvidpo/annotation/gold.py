"""Gold pairs: a pool clip against a visibly degraded copy of itself, to measure labelers, never counted as data.

What is unusual here:
- The copies live in their own `CandidatePool` (the studio's `data_dir/gold`), so the data pool, its pairs,
  its progress and its exports never see them; a vote on a gold pair carries `gold` (the intact clip), which
  every count of data leaves out.
- Degradations act on pixels, so they work on any clip, ours or imported: `jitter` shakes every frame after
  the first by a few pixels (like the synthetic world's jitter, which prompts never ask for), `shuffle`
  permutes the frames after the first (the motion turns into flicker). Frame 0 stays: it is the condition the
  model was given, and both clips should start alike.
- A copy is made once per clip (its manifest line says `gold_of` and `degradation`), when the clip enters the
  pool; the sampler only picks among copies that exist, so serving a pair never decodes video.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from huvidpo.annotation.pool import CandidatePool, ClipRecord

GOLD_KINDS = ("jitter", "shuffle")
GOLD_OF = "gold_of"  # settings key of a copy: the clip it degrades


def degrade(frames: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A visibly worse copy of ``(F, H, W, 3)`` uint8 frames; frame 0 is kept."""
    frames = np.asarray(frames)
    if len(frames) < 3:
        raise ValueError(f"A gold copy needs a clip of at least 3 frames, got {len(frames)}.")
    out = frames.copy()
    if kind == "shuffle":
        order = np.arange(1, len(frames))
        while np.array_equal(order, np.arange(1, len(frames))):
            order = rng.permutation(order)
        out[1:] = frames[order]
        return out
    if kind == "jitter":
        reach = max(2, min(frames.shape[1:3]) // 12)
        for index in range(1, len(frames)):
            dy, dx = 0, 0
            while dy == 0 and dx == 0:
                dy, dx = (int(v) for v in rng.integers(-reach, reach + 1, size=2))
            out[index] = np.roll(frames[index], (dy, dx), axis=(0, 1))
        return out
    raise ValueError(f"Unknown gold degradation {kind!r}: use one of {GOLD_KINDS}.")


class GoldMaker:
    """Makes and finds the degraded copies of `pool`'s clips, kept in `gold_pool`."""

    def __init__(self, pool: CandidatePool, gold_pool: CandidatePool, kinds: tuple[str, ...] = GOLD_KINDS, seed: int = 0):
        unknown = [kind for kind in kinds if kind not in GOLD_KINDS]
        if not kinds or unknown:
            raise ValueError(f"gold kinds must be among {GOLD_KINDS}, got {kinds}.")
        self.pool = pool
        self.gold_pool = gold_pool
        self.kinds = tuple(kinds)
        self.seed = seed

    def pairs(self) -> list[tuple[ClipRecord, ClipRecord]]:
        """(intact clip, degraded copy) for every copy whose clip is still in the pool."""
        originals = {clip.clip_id: clip for clip in self.pool.clips()}
        return [(originals[copy.settings[GOLD_OF]], copy) for copy in self.gold_pool.clips()
                if copy.settings.get(GOLD_OF) in originals]

    def copy_of(self, clip: ClipRecord) -> ClipRecord:
        """The degraded copy of `clip`, made (and added to the gold pool) if it has none yet."""
        from huvidpo.data.video import probe_video, read_video, write_video

        for copy in self.gold_pool.clips():
            if copy.settings.get(GOLD_OF) == clip.clip_id:
                return copy
        source = self.pool.root / clip.video
        digest = int(clip.clip_id.encode().hex()[:8], 16) if clip.clip_id else 0
        rng = np.random.default_rng([self.seed, digest])
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        frames = degrade(read_video(source), kind, rng)
        fps = probe_video(source).fps
        with tempfile.TemporaryDirectory() as folder:
            video = write_video(frames, Path(folder) / "gold.mp4", fps=fps)
            return self.gold_pool.add_clip(clip.prompt, video, {**clip.settings, GOLD_OF: clip.clip_id, "degradation": kind})
