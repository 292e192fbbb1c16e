"""The synthetic world's stand-in labeler: the pixel oracle votes through the same path as a person.

It asks the :class:`PairSampler` for pairs and records its choices with ``record_vote``, so its votes are
ordinary JSON lines in the :class:`VoteStore` (labeler ``oracle``), exported and trained on exactly like
human votes. Only meaningful for clips of the synthetic world, whose prompts the oracle can read.
"""

from __future__ import annotations

from typing import Callable

from .oracle import prefer
from ..data.video import read_video
from ..annotation.sampler import PairSampler
from ..annotation.votes import Vote

ORACLE_LABELER = "oracle"


def label_with_oracle(
    sampler: PairSampler,
    max_votes: int | None = None,
    labeler: str = ORACLE_LABELER,
    session_id: str = "oracle",
    margin: float = 0.02,
    progress: Callable[[int], None] | None = None,
) -> list[Vote]:
    """Vote on every pair the sampler serves to ``labeler`` (or ``max_votes`` of them); ties are voted 'tie'."""
    votes: list[Vote] = []
    while max_votes is None or len(votes) < max_votes:
        served = sampler.next_pair(labeler, session_id)
        if served is None:
            break
        left = read_video(sampler.pool.video_path(served.left.clip_id))
        right = read_video(sampler.pool.video_path(served.right.clip_id))
        choice = prefer(left, right, served.prompt, margin=margin)
        votes.append(sampler.record_vote(labeler, session_id, served.token, choice))
        if progress is not None:
            progress(len(votes))
    return votes
