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


def label_through_api(url: str, taste: Taste, max_votes: int | None = None, labeler: str | None = None,
                      client: Any = None) -> list[dict[str, Any]]:
    """A labeler with ``taste`` votes in a running studio at ``url`` through its API (``/next_pair`` and ``/vote``,
    as ``gradio_client`` reaches them), watching both clips as a person in the Label tab does. Returns the votes
    recorded (each ``last_vote`` the studio acknowledged)."""
    from gradio_client import Client

    client = client or Client(url, verbose=False)
    name = labeler or taste_labeler_name(taste)
    recorded: list[dict[str, Any]] = []
    shown = client.predict(name, api_name="/next_pair")
    while max_votes is None or len(recorded) < max_votes:
        pair, left, right = shown[0], shown[1], shown[2]
        if pair.get("done") or not left or not right:
            break
        choice = taste.choose(read_video(left), read_video(right))
        shown = client.predict(name, pair["token"], choice, api_name="/vote")
        recorded.append(shown[0]["last_vote"])
    return recorded


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m huvidpo.world.labelers",
        description="A taste labeler votes in a running studio's Label tab through its API (embedded world only).")
    parser.add_argument("--url", required=True, help="The studio's address, e.g. http://127.0.0.1:7860/.")
    parser.add_argument("--taste", required=True, help="The mode it prefers: 'slowly' or 'quickly' (or 'speed=quickly').")
    parser.add_argument("--votes", type=int, default=64, help="How many votes to cast (default 64; fewer if the pool runs out).")
    parser.add_argument("--name", default=None, help="Labeler name (default: taste-<mode>).")
    args = parser.parse_args(argv)
    try:
        taste = Taste.parse(args.taste)
    except ValueError as error:
        parser.error(f"--taste: {error}")
    if args.votes < 1:
        parser.error("--votes: give at least 1.")
    votes = label_through_api(args.url, taste, args.votes, args.name)
    decided = sum(vote["choice"] in ("left", "right") for vote in votes)
    print(f"{len(votes)} votes by {args.name or taste_labeler_name(taste)} ({decided} decided, {len(votes) - decided} ties).")


if __name__ == "__main__":
    main()
