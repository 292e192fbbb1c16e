"""The synthetic world's stand-in labelers: the oracle, and a labeler with a taste, voting as a person would.

They ask the :class:`PairSampler` for pairs and record their choices with ``record_vote``, so their votes are
ordinary JSON lines in the :class:`VoteStore`, exported and trained on exactly like human votes. Only meaningful
for clips of the synthetic world, whose prompts and motion the oracle can read.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from ..annotation.sampler import PairSampler
from ..annotation.votes import Vote
from ..data.video import read_video
from .oracle import prefer
from .taste import Taste

ORACLE_LABELER = "oracle"

Judge = Callable[[Any, Any, str], Literal["left", "right", "tie"]]


def label_pairs(
    sampler: PairSampler,
    judge: Judge,
    labeler: str,
    max_votes: int | None = None,
    session_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Vote]:
    """Vote with ``judge(left_frames, right_frames, prompt)`` on every pair the sampler serves to ``labeler``
    (or ``max_votes`` of them)."""
    votes: list[Vote] = []
    while max_votes is None or len(votes) < max_votes:
        served = sampler.next_pair(labeler, session_id or labeler)
        if served is None:
            break
        left = read_video(sampler.pool.video_path(served.left.clip_id))
        right = read_video(sampler.pool.video_path(served.right.clip_id))
        votes.append(sampler.record_vote(labeler, session_id or labeler, served.token, judge(left, right, served.prompt)))
        if progress is not None:
            progress(len(votes))
    return votes


def label_with_oracle(
    sampler: PairSampler,
    max_votes: int | None = None,
    labeler: str = ORACLE_LABELER,
    session_id: str = "oracle",
    margin: float = 0.02,
    progress: Callable[[int], None] | None = None,
) -> list[Vote]:
    """The oracle votes for the clip that shows the prompt more faithfully and cleanly; 'tie' within ``margin``."""
    return label_pairs(sampler, lambda left, right, prompt: prefer(left, right, prompt, margin=margin), labeler,
                       max_votes, session_id, progress)


def taste_labeler_name(taste: Taste) -> str:
    return f"taste-{taste.prefers}"


def label_with_taste(
    sampler: PairSampler,
    taste: Taste,
    max_votes: int | None = None,
    labeler: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Vote]:
    """A labeler with ``taste`` votes for the clip that shows its preferred mode; 'tie' when both show the same."""
    return label_pairs(sampler, lambda left, right, prompt: taste.choose(left, right),
                       labeler or taste_labeler_name(taste), max_votes, progress=progress)
