"""The Label tab without the browser: the data dir's pool, vote store, pair sampler and Hub sync.

Everything here is the annotation library (``huvidpo.annotation``) bound to the studio's folders; the
service adds the payloads the UI and scripted labelers receive (plain dicts) and the progress counter.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huvidpo.annotation import (
    CandidatePool,
    Choice,
    ClipRecord,
    HubSync,
    PairSampler,
    ServedPair,
    VoteStore,
    export_preferences,
    inter_annotator_agreement,
    labeler_stats,
    pool_progress,
)
from huvidpo.annotation.export import REPLICAS_DIR
from huvidpo.annotation.gold import GOLD_OF, GoldMaker
from huvidpo.annotation.stats import flagged_labelers, version_ranking
from huvidpo.annotation.votes import data_votes
from huvidpo.annotation.provenance import image_sha256, revision_of
from huvidpo.locations import default_model_path
from huvidpo.studio.config import StudioConfig
from huvidpo.studio.generation import GeneratedClip, resolve_lora
from huvidpo.studio.runs import claim_dir

VOTES_FILE = "votes.jsonl"
SYNCED_FILES = (VOTES_FILE,)
SYNCED_FOLDERS = ("pool/",)
EXPORT_SOURCE = "source.json"  # in an export: the digests of the votes and pool it was made from


class AnnotationSync(HubSync):
    """``HubSync`` of the data dir limited to what labelers made: ``votes.jsonl`` and ``pool/``, pushed under
    ``replicas/<replica>/`` so that several studios share one repo without overwriting each other's files
    (``huvidpo.annotation.export.export_merged`` reads them back as one).

    Runs, exports and generated clips stay local (runs are pushed as model repos from the Train tab).
    """

    def _changed_files(self):
        return {
            path: signature
            for path, signature in super()._changed_files().items()
            if path in SYNCED_FILES or path.startswith(SYNCED_FOLDERS)
        }

    def status(self) -> dict[str, Any]:
        """``HubSync.status`` and ``pending_votes``: the vote-log lines written since the last successful push."""
        status = super().status()
        pushed_size = self._uploaded.get(VOTES_FILE, (0, 0))[0]
        try:
            with open(self.folder / VOTES_FILE, "rb") as log:
                log.seek(pushed_size)
                status["pending_votes"] = log.read().count(b"\n")
        except OSError:
            status["pending_votes"] = 0
        return status


def pair_payload(served: ServedPair) -> dict[str, Any]:
    """What a labeler's client needs to show a pair and vote on it (the videos travel separately)."""
    return {
        "token": served.token,
        "pair_id": served.pair_id,
        "prompt": served.prompt,
        "left_clip": served.left.clip_id,
        "right_clip": served.right.clip_id,
    }


@dataclass
class LabelingService:
    """Pool, votes and sampler of one data dir, shared by every session of the app."""

    config: StudioConfig
    pool: CandidatePool = field(init=False)
    store: VoteStore = field(init=False)
    gold: GoldMaker = field(init=False)
    sampler: PairSampler = field(init=False)
    sync: HubSync | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.config.make_dirs()
        self.pool = CandidatePool(self.config.pool_dir)
        self.store = VoteStore(self.config.votes_path)
        self.gold = GoldMaker(self.pool, CandidatePool(self.config.gold_dir), seed=self.config.sampler_seed or 0)
        self.sampler = PairSampler(self.pool, self.store, seed=self.config.sampler_seed, gold=self.gold,
                                   gold_rate=self.config.gold_rate, overlap_share=self.config.overlap_share)
        if self.config.gold_rate > 0:  # clips that entered the pool before gold checks were on get their copy now
            self.make_gold_copies()
        if self.config.votes_repo:
            self.sync = AnnotationSync(self.config.root, self.config.votes_repo, every_minutes=self.config.sync_every_minutes,
                                       path_in_repo=f"{REPLICAS_DIR}/{self.config.replica}")

    def next_pair(self, labeler: str, session_id: str) -> dict[str, Any] | None:
        """The next pair for this labeler (None when there is nothing left for them)."""
        served = self.sampler.next_pair(labeler, session_id)
        return pair_payload(served) if served is not None else None

    def vote(self, labeler: str, session_id: str, token: str, choice: str) -> dict[str, Any]:
        """Record a choice on the pair served with ``token``; the vote as stored (without settings)."""
        if not token:
            raise ValueError("No pair on screen: press 'Next pair' (or call next_pair) before voting.")
        vote = self.sampler.record_vote(labeler, session_id, token, Choice.parse(choice))
        return {"vote_id": vote.vote_id, "pair_id": vote.pair_id, "choice": vote.choice.value, "response_ms": vote.response_ms}

    def undo(self, labeler: str, session_id: str) -> dict[str, Any] | None:
        """Undo this labeler's last vote of the session and serve that pair again (None: nothing to undo)."""
        served = self.sampler.undo_last(labeler, session_id)
        return pair_payload(served) if served is not None else None

    def view(
        self, labeler: str, pair: dict[str, Any] | None, message: str = "", last_vote: dict[str, Any] | None = None,
        session_id: str = "",
    ) -> dict[str, Any]:
        """What a labeler sees after next pair, vote or undo, as plain data: ``pair`` (the payload scripts read:
        the pair, or ``done`` with why), both videos, the headline (the prompt, or why there is nothing to judge)
        and the progress line. Skips are not votes: they are counted apart."""
        progress = self.progress(labeler, session_id)
        skipped = progress.get("your_skips", 0)
        counter = (
            f"**{plural(progress.get('your_votes', 0), 'vote')}** by {labeler}"
            + (f" ({skipped} skipped)" if skipped else "")
            + f" · **{progress['pairs_judged']}/{progress['pairs_total']}** pairs judged ({progress['share_judged']:.0%})"
            f" · {plural(progress['clips'], 'clip')}"
        )
        if pair is None:
            done = self._nothing_to_show(progress)
            payload = {"token": None, "done": True, "message": done, "progress": progress, "last_vote": last_vote}
            return {"pair": payload, "left_video": None, "right_video": None, "headline": done, "counter": counter}
        return {
            "pair": {**pair, "done": False, "message": message, "progress": progress, "last_vote": last_vote},
            "left_video": str(self._video_path(pair["left_clip"])),
            "right_video": str(self._video_path(pair["right_clip"])),
            "headline": pair["prompt"],
            "counter": counter,
        }

    def _video_path(self, clip_id: str) -> Path:
        """A clip's video, in the pool or among the gold copies."""
        pool = self.pool if clip_id in self.pool else self.gold.gold_pool
        return pool.video_path(clip_id)

    def progress(self, labeler: str | None = None, session_id: str = "") -> dict[str, Any]:
        """Pool coverage; with ``labeler``, their votes (judgements: left, right, tie, both bad; gold checks left
        out) and the pairs they judged, and the pairs they skipped (in ``session_id`` when given: a skipped pair
        comes back next session)."""
        progress = pool_progress(self.pool, self.store)
        if labeler:
            votes = data_votes(self.store.effective_votes(labeler))
            judged = [vote for vote in votes if vote.choice is not Choice.SKIP]
            progress["your_votes"] = len(judged)
            progress["your_pairs_judged"] = len({vote.pair_id for vote in judged})
            progress["your_skips"] = len({
                vote.pair_id for vote in votes
                if vote.choice is Choice.SKIP and (not session_id or vote.session_id == session_id)
            } - {vote.pair_id for vote in judged})
        return progress

    @staticmethod
    def _nothing_to_show(progress: dict[str, Any]) -> str:
        """Why a labeler gets no pair: an empty pool, every pair judged, or the rest skipped or being judged."""
        total = progress["pairs_total"]
        if total == 0:
            return "The pool has no two clips with the same prompt yet."
        judged = progress.get("your_pairs_judged", 0)
        if judged >= total:
            return "You have judged every pair in the pool. Thank you!"
        said = f"Nothing more to show you for now: you judged {judged} of the {plural(total, 'pair')}"
        if progress.get("your_skips"):
            said += f" and skipped {progress['your_skips']} (skipped pairs come back in your next session; Undo shows the last one again)"
        return said + ". Other labelers may be judging the rest; new clips in the pool bring new pairs."

    def add_clips(self, clips: list[GeneratedClip]) -> list[ClipRecord]:
        """Put generated clips into the candidate pool (an identical clip is not added twice), with their provenance:
        the model's and LoRA's revisions and the first frame's hash, which every vote on them is exported with."""
        records = [self.pool.add_clip(clip.settings["prompt"], clip.video, {**clip.settings, **self._provenance(clip)})
                   for clip in clips]
        if self.config.gold_rate > 0:
            for record in records:
                self.gold.copy_of(record)
        return records

    def make_gold_copies(self) -> int:
        """Give every pool clip without one its degraded copy (decodes each once); returns how many were made."""
        having = {copy.settings.get(GOLD_OF) for copy in self.gold.gold_pool.clips()}
        missing = [clip for clip in self.pool.clips() if clip.clip_id not in having]
        for clip in missing:
            self.gold.copy_of(clip)
        return len(missing)

    def _provenance(self, clip: GeneratedClip) -> dict[str, Any]:
        try:
            lora = resolve_lora(clip.settings.get("lora"), self.config, maintainer=True)  # server-side: any LoRA
        except ValueError:  # the LoRA was removed since the clip was made: its revision is unknown
            lora = None
        return {
            "model_revision": revision_of(self.config.model or default_model_path()),
            "lora_revision": revision_of(lora),
            "first_frame_sha256": image_sha256(clip.first_frame),
        }

    def send_to_pool(self, clips: list[GeneratedClip]) -> str:
        """Add clips to the pool; returns what to tell whoever sent them (a clip sent again is not added twice)."""
        known = {record.clip_id for record in self.pool.clips()}
        records = self.add_clips(clips)
        added = [record.clip_id for record in records if record.clip_id not in known]
        already = [record.clip_id for record in records if record.clip_id in known]
        progress = self.progress()
        said = []
        if added:
            said.append(f"Added to the pool: {', '.join(added)}.")
        if already:
            said.append(f"Already in the pool, not added again: {', '.join(already)}.")
        said.append(f"The pool holds {plural(progress['clips'], 'clip')} and {plural(progress['pairs_total'], 'pair')} to judge.")
        if progress["pairs_total"] == 0:
            said.append("A pair is two clips of the same prompt: send another seed of this prompt to make one.")
        return " ".join(said)

    def stats(self) -> dict[str, Any]:
        """Per-labeler counts, pool progress (with the vote-log lines that could not be read), agreement, the
        model leaderboard (ranked by the lower bound of its bootstrap intervals; ``leaderboard_note`` says which
        versions have too few votes to be ranked) and the Hub sync's status (None without a votes repo)."""
        progress = pool_progress(self.pool, self.store)
        progress["unreadable_vote_lines"] = self.store.skipped_lines
        ranking = version_ranking(self.store, self.pool, min_votes=self.config.leaderboard_min_votes,
                                  resamples=self.config.leaderboard_resamples, seed=self.config.sampler_seed or 0)
        return {
            "labelers": labeler_stats(self.store, gold_threshold=self.config.gold_threshold),
            "progress": progress,
            "agreement": inter_annotator_agreement(self.store),
            "leaderboard": ranking["rows"],
            "leaderboard_note": leaderboard_note(ranking),
            "sync": self.sync.status() if self.sync is not None else None,
        }

    def sync_summary(self) -> str:
        """The Hub sync for maintainers, in one line: last push, votes not pushed yet, and the last error."""
        if self.sync is None:
            return "Votes stay on this server: no Hub dataset is set (`--votes-repo` or `HUVIDPO_VOTES_REPO`)."
        status = self.sync.status()
        line = (f"Hub sync to `{status['repo_id']}`: last push {status['last_push_at'] or 'never'} · "
                f"{status['pending_votes']} votes not pushed yet · {status['pushes_ok']} pushes, {status['pushes_failed']} failed")
        if status["last_error"]:
            line += f"\n\n**Last error** ({status['last_attempt_at']}): {status['last_error']}"
        return line

    def export(self, min_votes: int = 1, exclude_flagged: bool = False) -> tuple[Path, int]:
        """Export the decided pairs to ``exports/votes-<time>``: (folder, number of pairs); ``exclude_flagged``
        leaves out the votes of labelers flagged by their gold accuracy. The newest export of the very same votes,
        pool and choices is reused instead (the vote log and the manifest only grow, so equal contents mean
        nothing changed)."""
        excluded = flagged_labelers(self.store, self.config.gold_threshold) if exclude_flagged else []
        source = {**self._contents_digest(), "min_votes": min_votes, "excluded": sorted(excluded),
                  "replica": self.config.replica}
        folders = sorted(self.config.exports_dir.glob("votes-*"), key=lambda folder: folder.stat().st_mtime, reverse=True)
        for folder in folders:
            try:
                if json.loads((folder / EXPORT_SOURCE).read_text(encoding="utf-8")) == source:
                    with open(folder / "metadata.jsonl", "rb") as metadata:
                        return folder, sum(1 for line in metadata if line.strip())
            except (OSError, ValueError):
                continue
        out_dir = claim_dir(self.config.exports_dir, f"votes-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            dataset = export_preferences(self.store, self.pool, out_dir, min_votes=min_votes, exclude_labelers=excluded,
                                         replica=self.config.replica)
            (out_dir / EXPORT_SOURCE).write_text(json.dumps(source), encoding="utf-8")
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise
        return out_dir, len(dataset)

    def _contents_digest(self) -> dict[str, str]:
        """sha256 of the vote log and the pool manifest, up to their last complete line."""
        digests = {}
        for name, path in (("votes_sha256", self.config.votes_path), ("pool_sha256", self.pool.root / "manifest.jsonl")):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                data = b""
            digests[name] = hashlib.sha256(data[: data.rfind(b"\n") + 1]).hexdigest()
        return digests

    def close(self) -> None:
        if self.sync is not None:
            self.sync.stop()


def leaderboard_note(ranking: dict[str, Any]) -> str:
    """The line under the leaderboard: how it ranks, and the versions it does not rank yet."""
    line = f"Strengths (Bradley-Terry) are relative to `{ranking['anchor']}` (1)" if ranking["anchor"] else "No votes between versions yet"
    if ranking["anchor"] and ranking["resamples"]:
        line += f"; ranked by the lower bound of their bootstrap 95% interval ({ranking['resamples']} resamples)"
    line += "."
    return line + (f" {ranking['note']}" if ranking["note"] else "")


def plural(count: int, noun: str) -> str:
    """'1 clip', '2 clips'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
