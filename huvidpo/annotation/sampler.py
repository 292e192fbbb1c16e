"""Which two clips a labeler sees next, and turning a click into a validated `Vote`.

What is unusual here:
- The sampler keeps almost no state: what was judged is read from the `VoteStore` on every call, so a
  restart (or a second sampler on the same files) resumes exactly. The only in-memory state is the pair
  currently served to each (labeler, session), which makes stale clicks detectable.
- Never repeated: a pair this labeler judged (an effective vote other than skip) is never served to them
  again. A skipped pair is not served again in the same session, but may come back in a later session.
- Coverage is spread evenly: among allowed pairs the ones with the fewest judgements win, counting pairs
  being looked at right now in other sessions as judged (so simultaneous labelers fan out). In active mode,
  ties are broken by the smallest |margin| from `active_margin_fn`, i.e. the pair the current model is
  least sure about. Then pairs that other labelers (those with no more judgements than this one) do not
  need are preferred, found with a bipartite matching; remaining ties are broken at random. Online, with
  labelers arriving in any order, perfect balance cannot be guaranteed: the first sweep covers every pair
  once before any twice; in our simulations later per-pair counts stayed within 2 of each other (mostly
  within 1 at the end of each round of a fixed rotation). Left/right is a coin flip, recorded in the vote.
- Quality control, both off by default: with `gold_rate`, that share of the pairs served are gold pairs (a clip
  against its degraded copy from `gold`, one a labeler has not judged yet), whose votes carry the clip that
  should win; with `overlap_share`, that share of the pairs served are pairs someone else already judged, so
  agreement is measured while coverage grows (without it, a pair is judged twice only once all were judged once).
- One lock makes `next_pair` / `record_vote` / `undo_last` safe to call from Gradio's worker threads. A vote's
  write (an fsync) happens outside it, so labelers do not queue behind each other's disk writes: under the lock
  the vote is checked and its pair taken off screen and marked in flight (a second vote of the same labeler on
  that pair is refused meanwhile); a write that fails puts the pair back on screen.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from huvidpo.annotation.gold import GoldMaker
from huvidpo.annotation.pool import CandidatePool, ClipRecord, UnknownClipError
from huvidpo.annotation.votes import Choice, Vote, VoteStore, clean_labeler_name, pair_id_for, utc_now_iso

ActiveMarginFn = Callable[[ClipRecord, ClipRecord], float]
IN_FLIGHT_TTL_S = 600.0


@dataclass(frozen=True)
class ServedPair:
    """A pair shown to one labeler in one session; `token` must come back with the vote."""

    token: str
    pair_id: str
    prompt: str
    left: ClipRecord
    right: ClipRecord
    labeler: str
    session_id: str
    served_at: str
    served_monotonic: float = field(repr=False, compare=False)  # the sampler's clock when served
    gold: str | None = field(default=None, repr=False)  # a gold pair's intact clip (never shown to the labeler)

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "pair_id": self.pair_id,
            "prompt": self.prompt,
            "left": self.left.to_dict(),
            "right": self.right.to_dict(),
            "labeler": self.labeler,
            "session_id": self.session_id,
            "served_at": self.served_at,
        }


class PairSampler:
    """Serves same-prompt pairs from a pool to labelers and records their votes into a store.

    `clock` (monotonic seconds) times the labelers' responses and the pairs in flight (a test passes its own).
    """

    def __init__(
        self,
        pool: CandidatePool,
        store: VoteStore,
        seed: int | None = None,
        active_margin_fn: ActiveMarginFn | None = None,
        clock: Callable[[], float] = time.monotonic,
        gold: GoldMaker | None = None,
        gold_rate: float = 0.0,
        overlap_share: float = 0.0,
    ) -> None:
        for name, value in (("gold_rate", gold_rate), ("overlap_share", overlap_share)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} is a share of the pairs served, from 0 to below 1; got {value}.")
        if gold_rate > 0 and gold is None:
            raise ValueError("gold_rate needs gold pairs: pass gold=GoldMaker(pool, gold_pool).")
        self.pool = pool
        self.store = store
        self.gold = gold
        self.gold_rate = gold_rate
        self.overlap_share = overlap_share
        self.active_margin_fn = active_margin_fn
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._in_flight: set[tuple[str, str]] = set()  # (labeler, pair_id) of votes being written
        self._served: dict[tuple[str, str], ServedPair] = {}

    def candidate_pairs(self) -> list[tuple[ClipRecord, ClipRecord]]:
        """Every unordered pair of clips that share a prompt, each as (lower id, higher id)."""
        by_prompt: dict[str, list[ClipRecord]] = {}
        for clip in self.pool.clips():
            by_prompt.setdefault(clip.prompt, []).append(clip)
        return [
            tuple(sorted(pair, key=lambda clip: clip.clip_id))
            for clips in by_prompt.values()
            for pair in itertools.combinations(clips, 2)
        ]

    def next_pair(self, labeler: str, session_id: str = "") -> ServedPair | None:
        """The next pair for this labeler, or None when they have judged every pair of the pool."""
        labeler = clean_labeler_name(labeler)
        with self._lock:
            self._served.pop((labeler, session_id), None)
            votes = self.store.effective_votes()
            excluded = self._pairs_excluded_for(labeler, session_id, votes)
            gold_winner = None
            pair = self._gold_pair(excluded) if self.gold_rate and self._rng.random() < self.gold_rate else None
            if pair is not None:
                gold_winner = pair[0].clip_id
            else:
                pair = self._data_pair(labeler, votes, excluded)
                if pair is None:
                    return None
            clip_a, clip_b = pair
            left, right = (clip_a, clip_b) if self._rng.random() < 0.5 else (clip_b, clip_a)
            served = ServedPair(
                token=uuid.uuid4().hex,
                pair_id=pair_id_for(left.clip_id, right.clip_id),
                prompt=left.prompt,
                left=left,
                right=right,
                labeler=labeler,
                session_id=session_id,
                served_at=utc_now_iso(),
                served_monotonic=self._clock(),
                gold=gold_winner,
            )
            self._served[(labeler, session_id)] = served
            return served

    def _data_pair(self, labeler: str, votes: list[Vote], excluded: set[str]) -> tuple[ClipRecord, ClipRecord] | None:
        """The next same-prompt pair of the pool for this labeler (see the module docstring), or None."""
        all_pairs = {pair_id_for(*_ids(pair)): pair for pair in self.candidate_pairs()}
        candidates = [pair_id for pair_id in all_pairs if pair_id not in excluded]
        if not candidates:
            return None
        load = self._judgement_load(votes)
        if self.overlap_share and self._rng.random() < self.overlap_share:
            judged_by_others = [pair_id for pair_id in candidates if load[pair_id] > 0]
            if judged_by_others:
                return all_pairs[self._rng.choice(_with_fewest(judged_by_others, load))]
        preferred = _with_fewest(candidates, load)
        if self.active_margin_fn is not None:
            preferred = self._most_uncertain(preferred, all_pairs)
        preferred = _leave_a_pair_for_everyone(preferred, labeler, list(all_pairs), votes, load)
        return all_pairs[self._rng.choice(preferred)]

    def _gold_pair(self, excluded: set[str]) -> tuple[ClipRecord, ClipRecord] | None:
        """(intact clip, degraded copy) of a gold pair this labeler has not judged, or None if none is left."""
        pairs = [pair for pair in self.gold.pairs() if pair_id_for(*_ids(pair)) not in excluded]
        return self._rng.choice(pairs) if pairs else None

    def _clip(self, clip_id: str) -> ClipRecord:
        """A clip of the pool, or a gold copy."""
        if self.gold is not None and clip_id not in self.pool:
            return self.gold.gold_pool.get(clip_id)
        return self.pool.get(clip_id)

    def _known(self, clip_id: str) -> bool:
        return clip_id in self.pool or (self.gold is not None and clip_id in self.gold.gold_pool)

    def record_vote(
        self,
        labeler: str,
        session_id: str,
        token: str,
        choice: Choice | str,
        *,
        left_score: int | None = None,
        right_score: int | None = None,
        left_clip: str | None = None,
        right_clip: str | None = None,
    ) -> Vote:
        """Record the labeler's choice on the pair served with `token`.

        `left_clip` / `right_clip` are what the client says it displayed; when given they must match the
        served pair. Raises `ValueError` for an empty name, an unknown choice or clip id, a score outside
        0-10, and a stale pair (replaced, already voted, or served to someone else).
        """
        labeler = clean_labeler_name(labeler)
        choice = Choice.parse(choice)
        if choice is Choice.UNDO:
            raise ValueError("to undo a vote use undo_last(), not record_vote(choice='undo')")
        for shown_clip in (left_clip, right_clip):
            if shown_clip is not None and not self._known(shown_clip):
                raise UnknownClipError(f"unknown clip id {shown_clip!r}: it is not in the candidate pool")
        with self._lock:
            served = self._served.get((labeler, session_id))
            if served is None or served.token != token:
                raise ValueError(
                    f"stale pair {token!r}: it is not the pair currently served to {labeler!r} in this session "
                    "(it was already voted on or replaced); fetch the next pair"
                )
            if not _shows(served, left_clip, right_clip):
                raise ValueError(f"stale pair {token!r}: the clips shown are not the ones served; fetch the next pair")
            if choice is not Choice.SKIP and (
                served.pair_id in self._judged_by(labeler, self.store.effective_votes())
                or (labeler, served.pair_id) in self._in_flight
            ):
                del self._served[(labeler, session_id)]
                raise ValueError(f"stale pair {served.pair_id!r}: {labeler!r} already judged it; fetch the next pair")
            vote = Vote(
                labeler=labeler,
                session_id=session_id,
                choice=choice,
                pair_id=served.pair_id,
                prompt=served.prompt,
                left_clip=served.left.clip_id,
                right_clip=served.right.clip_id,
                left_settings=served.left.settings,
                right_settings=served.right.settings,
                left_score=left_score,
                right_score=right_score,
                response_ms=round((self._clock() - served.served_monotonic) * 1000),
                served_at=served.served_at,
                gold=served.gold,
            )
            del self._served[(labeler, session_id)]
            in_flight = (labeler, served.pair_id) if choice is not Choice.SKIP else None
            if in_flight:
                self._in_flight.add(in_flight)
        try:
            self.store.append(vote)
        except BaseException:
            with self._lock:  # not recorded: the pair stays on screen (unless another was served meanwhile)
                self._served.setdefault((labeler, session_id), served)
            raise
        finally:
            if in_flight:
                with self._lock:
                    self._in_flight.discard(in_flight)
        return vote

    def undo_last(self, labeler: str, session_id: str = "") -> ServedPair | None:
        """Undo the labeler's last vote in this session and serve that pair again (same sides); None if nothing."""
        labeler = clean_labeler_name(labeler)
        with self._lock:
            undone = self.store.undo_last(labeler, session_id)
            if undone is None:
                return None
            served = ServedPair(
                token=uuid.uuid4().hex,
                pair_id=undone.pair_id,
                prompt=undone.prompt,
                left=self._clip(undone.left_clip),
                right=self._clip(undone.right_clip),
                labeler=labeler,
                session_id=session_id,
                served_at=utc_now_iso(),
                served_monotonic=self._clock(),
                gold=undone.gold,
            )
            self._served[(labeler, session_id)] = served
            return served

    def _pairs_excluded_for(self, labeler: str, session_id: str, votes: list[Vote]) -> set[str]:
        skipped_this_session = {
            vote.pair_id
            for vote in votes
            if vote.labeler == labeler and vote.session_id == session_id and vote.choice is Choice.SKIP
        }
        open_in_other_sessions = {served.pair_id for served in self._recently_served() if served.labeler == labeler}
        return self._judged_by(labeler, votes) | skipped_this_session | open_in_other_sessions

    @staticmethod
    def _judged_by(labeler: str, votes: list[Vote]) -> set[str]:
        return {vote.pair_id for vote in votes if vote.labeler == labeler and vote.choice is not Choice.SKIP}

    def _judgement_load(self, votes: list[Vote]) -> Counter[str]:
        """Judgements per pair, plus the pairs open right now in other sessions (recently served)."""
        load = Counter(vote.pair_id for vote in votes if vote.choice is not Choice.SKIP)
        load.update(served.pair_id for served in self._recently_served())
        return load

    def _recently_served(self) -> list[ServedPair]:
        """Pairs open in some session and served less than IN_FLIGHT_TTL_S ago (older tabs count as abandoned)."""
        now = self._clock()
        return [served for served in self._served.values() if now - served.served_monotonic < IN_FLIGHT_TTL_S]

    def _most_uncertain(self, pair_ids: list[str], all_pairs: dict[str, tuple[ClipRecord, ClipRecord]]) -> list[str]:
        """The pairs whose |active_margin_fn| is smallest."""
        uncertainty = {pair_id: abs(float(self.active_margin_fn(*all_pairs[pair_id]))) for pair_id in pair_ids}
        closest = min(uncertainty.values())
        return [pair_id for pair_id in pair_ids if uncertainty[pair_id] == closest]


def _with_fewest(pair_ids: list[str], load: Counter[str]) -> list[str]:
    fewest = min(load[pair_id] for pair_id in pair_ids)
    return [pair_id for pair_id in pair_ids if load[pair_id] == fewest]


def _leave_a_pair_for_everyone(
    pair_ids: list[str], labeler: str, all_pair_ids: list[str], votes: list[Vote], load: Counter[str]
) -> list[str]:
    """Among equally judged pairs, prefer those no other labeler needs to stay on the least-judged level.

    Other labelers are matched (maximum bipartite matching) to least-judged pairs they have not judged yet;
    a pair left unmatched by that matching can be taken without leaving anyone else with only more-judged
    pairs, which is what would make per-pair counts drift apart. Falls back to all pairs if none is spare.
    """
    level = load[pair_ids[0]]
    level_pairs = [pair_id for pair_id in all_pair_ids if load[pair_id] == level]
    judged_by: dict[str, set[str]] = {}
    for vote in votes:
        if vote.choice is not Choice.SKIP and vote.labeler != labeler:
            judged_by.setdefault(vote.labeler, set()).add(vote.pair_id)
    own_count = sum(1 for vote in votes if vote.choice is not Choice.SKIP and vote.labeler == labeler)
    wanted = {
        other: [pair_id for pair_id in level_pairs if pair_id not in judged]
        for other, judged in judged_by.items()
        if len(judged) <= own_count
    }
    taken = _maximum_matching(wanted)
    spare = [pair_id for pair_id in pair_ids if pair_id not in taken]
    return spare or pair_ids


def _maximum_matching(wanted: dict[str, list[str]]) -> dict[str, str]:
    """Maximum bipartite matching labeler -> pair (Kuhn's augmenting paths); returns pair_id -> labeler."""
    owner: dict[str, str] = {}

    def augment(labeler: str, visited: set[str]) -> bool:
        for pair_id in wanted[labeler]:
            if pair_id not in visited:
                visited.add(pair_id)
                if pair_id not in owner or augment(owner[pair_id], visited):
                    owner[pair_id] = labeler
                    return True
        return False

    for labeler in wanted:
        augment(labeler, set())
    return owner


def _shows(served: ServedPair, left_clip: str | None, right_clip: str | None) -> bool:
    """Whether the clips a client reports (None = not reported) are the served ones, on the same sides."""
    return left_clip in (None, served.left.clip_id) and right_clip in (None, served.right.clip_id)


def _ids(pair: tuple[ClipRecord, ClipRecord]) -> tuple[str, str]:
    return pair[0].clip_id, pair[1].clip_id
