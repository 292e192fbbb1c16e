"""From votes to the preference dataset the DPO trainer reads (prompt, video_w, video_l, counts).

What is unusual here:
- Votes are aggregated per *unordered* pair, because the same pair is shown with random sides: the winner
  is the clip with more left/right wins across all effective votes (undos applied, skips ignored). Pairs
  whose win counts are equal are left out unless `include_ties`; "tie" and "both bad" clicks are counted
  (`n_tie`, `n_both_bad`) but never make a pair on their own: they stay in the raw log.
- The export folder is self-contained and ready for `push_to_hub`-style upload: the clips are copied to
  `out_dir/videos/`, paths in `metadata.jsonl` are relative to `out_dir`, and `README.md` is a dataset card
  whose `configs` entry makes `load_dataset(<repo>)` read `metadata.jsonl`.
- `pairs_from_scores` is the original HuViDPO recipe: clips scored 0-10, every same-prompt pair whose mean
  scores differ by at least `min_gap` becomes a (winner, loser) pair.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

from huggingface_hub import DatasetCardData

from huvidpo.annotation.pool import CandidatePool, ClipRecord
from huvidpo.annotation.votes import Choice, Vote, VoteStore

METADATA_NAME = "metadata.jsonl"
CARD_NAME = "README.md"
RAW_VOTES_NAME = "raw_votes.jsonl"
EXPORT_VIDEOS_DIR = "videos"

# The export's columns and their `datasets` dtypes. Plain names, not `datasets.Features`: importing `datasets` costs
# seconds, and the studio imports this module before it serves its page (`datasets` loads with the first export).
PREFERENCE_COLUMNS: dict[str, str] = {
    "pair_id": "string",
    "prompt": "string",
    "video_w": "string",
    "video_l": "string",
    "clip_w": "string",
    "clip_l": "string",
    "n_w": "int64",
    "n_l": "int64",
    "n_tie": "int64",
    "n_both_bad": "int64",
    "agreement": "float64",
    "settings_w": "string",
    "settings_l": "string",
}


@dataclass
class PairTally:
    """Effective votes on one unordered pair."""

    pair_id: str
    prompt: str
    wins: Counter[str] = field(default_factory=Counter)
    n_tie: int = 0
    n_both_bad: int = 0
    labelers: set[str] = field(default_factory=set)

    def add(self, vote: Vote) -> None:
        self.labelers.add(vote.labeler)
        if vote.choice.is_decisive:
            self.wins[vote.winner_clip] += 1
        elif vote.choice is Choice.TIE:
            self.n_tie += 1
        elif vote.choice is Choice.BOTH_BAD:
            self.n_both_bad += 1


def tally_pairs(votes: list[Vote]) -> dict[str, tuple[tuple[str, str], PairTally]]:
    """pair_id -> ((clip_a, clip_b) sorted, tally) over the judgements (skips ignored)."""
    tallies: dict[str, tuple[tuple[str, str], PairTally]] = {}
    for vote in votes:
        if vote.choice is Choice.SKIP:
            continue
        clips = tuple(sorted((vote.left_clip, vote.right_clip)))
        _, tally = tallies.setdefault(vote.pair_id, (clips, PairTally(vote.pair_id, vote.prompt)))
        tally.add(vote)
    return tallies


def export_preferences(
    store: VoteStore,
    pool: CandidatePool,
    out_dir: str | os.PathLike,
    include_ties: bool = False,
    min_votes: int = 1,
    dataset_license: str = "cc-by-4.0",
) -> datasets.Dataset:
    """Write `out_dir/{metadata.jsonl, README.md, videos/}` with one row per decided pair; return the rows.

    `min_votes` is the minimum number of decisive (left/right) votes a pair needs.
    """
    if min_votes < 1:
        raise ValueError(f"min_votes must be at least 1, got {min_votes}")
    out_dir = Path(out_dir)
    (out_dir / EXPORT_VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
    votes = store.effective_votes()
    clips = {clip.clip_id: clip for clip in pool.clips()}
    rows, missing_clip_pairs = [], 0
    for (clip_a, clip_b), tally in sorted(tally_pairs(votes).values(), key=lambda item: (item[1].prompt, item[0])):
        if clip_a not in clips or clip_b not in clips:
            missing_clip_pairs += 1
            continue
        row = _preference_row(tally, clips[clip_a], clips[clip_b], include_ties, min_votes)
        if row is not None:
            _copy_video(pool.root / clips[row["clip_w"]].video, out_dir / row["video_w"])
            _copy_video(pool.root / clips[row["clip_l"]].video, out_dir / row["video_l"])
            rows.append(row)
    _write_jsonl(out_dir / METADATA_NAME, rows)
    (out_dir / CARD_NAME).write_text(
        _dataset_card(rows, votes, include_ties, min_votes, missing_clip_pairs, dataset_license), encoding="utf-8"
    )
    return _preference_dataset(rows)


def _preference_dataset(rows: list[dict[str, Any]]) -> datasets.Dataset:
    """Rows as a `datasets.Dataset` with the fixed schema (column-wise, so an empty export still has columns)."""
    import datasets

    features = datasets.Features({name: datasets.Value(dtype) for name, dtype in PREFERENCE_COLUMNS.items()})
    columns = {name: [row[name] for row in rows] for name in PREFERENCE_COLUMNS}
    return datasets.Dataset.from_dict(columns, features=features)


def _preference_row(
    tally: PairTally, clip_a: ClipRecord, clip_b: ClipRecord, include_ties: bool, min_votes: int
) -> dict[str, Any] | None:
    wins_a, wins_b = tally.wins[clip_a.clip_id], tally.wins[clip_b.clip_id]
    decisive = wins_a + wins_b
    if decisive < min_votes or (wins_a == wins_b and not include_ties):
        return None
    winner, loser = (clip_a, clip_b) if wins_a >= wins_b else (clip_b, clip_a)
    return {
        "pair_id": tally.pair_id,
        "prompt": tally.prompt,
        "video_w": _exported_video_name(winner),
        "video_l": _exported_video_name(loser),
        "clip_w": winner.clip_id,
        "clip_l": loser.clip_id,
        "n_w": max(wins_a, wins_b),
        "n_l": min(wins_a, wins_b),
        "n_tie": tally.n_tie,
        "n_both_bad": tally.n_both_bad,
        "agreement": max(wins_a, wins_b) / decisive,
        "settings_w": json.dumps(winner.settings, sort_keys=True),
        "settings_l": json.dumps(loser.settings, sort_keys=True),
    }


def _exported_video_name(clip: ClipRecord) -> str:
    return f"{EXPORT_VIDEOS_DIR}/{clip.clip_id}{Path(clip.video).suffix}"


def _copy_video(source: Path, destination: Path) -> None:
    """Copy a clip unless a copy of the same size is already there (exports are re-run often)."""
    if destination.is_file() and destination.stat().st_size == source.stat().st_size:
        return
    shutil.copyfile(source, destination)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    staged = path.with_name(f".{path.name}.tmp")
    with open(staged, "w", encoding="utf-8") as stream:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(staged, path)


def _dataset_card(
    rows: list[dict[str, Any]],
    votes: list[Vote],
    include_ties: bool,
    min_votes: int,
    missing_clip_pairs: int,
    dataset_license: str,
) -> str:
    card_data = DatasetCardData(
        license=dataset_license,
        task_categories=["text-to-video"],
        tags=["huvidpo", "dpo", "preference", "video", "human-feedback"],
        pretty_name="HuViDPO video preference pairs",
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": METADATA_NAME}]}],
    )
    choices = Counter(vote.choice.value for vote in votes)
    ties_policy = "included" if include_ties else "excluded"
    schema = "\n".join(f"| `{name}` | {dtype} |" for name, dtype in PREFERENCE_COLUMNS.items())
    return f"""---
{card_data.to_yaml()}
---

# HuViDPO video preference pairs

Human preferences between two videos generated for the same prompt, collected with HuViDPO Studio and
aggregated per pair for video DPO training (`video_w` preferred over `video_l`).

## Counts

- pairs: {len(rows)} (min. {min_votes} decisive vote(s) each; equal win counts {ties_policy})
- prompts: {len({row["prompt"] for row in rows})}
- effective votes: {len(votes)} (left/right: {choices["left"] + choices["right"]}, tie: {choices["tie"]}, \
both bad: {choices["both_bad"]}, skip: {choices["skip"]})
- labelers: {len({vote.labeler for vote in votes})}
- pairs left out because a clip is missing from the pool: {missing_clip_pairs}

## Schema (`metadata.jsonl`, paths relative to this folder)

| column | type |
|---|---|
{schema}

`n_w` / `n_l`: decisive votes for the winner / loser; `agreement` = n_w / (n_w + n_l); `settings_*` are the
generation settings (model, LoRA, seed, ...) as JSON. Ties and "both bad" votes stay in the raw vote log.
"""


def export_raw_votes(store: VoteStore, out_dir: str | os.PathLike) -> Path:
    """Copy the raw vote log (every record, undo records included) to `out_dir/raw_votes.jsonl`."""
    destination = Path(out_dir) / RAW_VOTES_NAME
    destination.parent.mkdir(parents=True, exist_ok=True)
    _write_jsonl(destination, [vote.to_dict() for vote in store.read()])
    return destination


def load_exported_pairs(out_dir: str | os.PathLike) -> datasets.Dataset:
    """Load an export's `metadata.jsonl` as a `datasets.Dataset` with absolute video paths (the trainer's input)."""
    out_dir = Path(out_dir).expanduser().resolve()
    metadata_path = out_dir / METADATA_NAME
    if not metadata_path.is_file():
        raise ValueError(f"{out_dir} is not a preference export: {METADATA_NAME} is missing")
    rows = [json.loads(line) for line in metadata_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        for column in ("video_w", "video_l"):
            row[column] = str(out_dir / row[column])
            if not Path(row[column]).is_file():
                raise ValueError(f"{metadata_path}: video {row[column]} of pair {row.get('pair_id')!r} is missing")
    return _preference_dataset(rows)


def clip_mean_scores(votes: list[Vote]) -> dict[str, tuple[float, int]]:
    """clip_id -> (mean 0-10 score, number of scores) over the votes that carry scores."""
    scores: dict[str, list[int]] = defaultdict(list)
    for vote in votes:
        if vote.left_score is not None:
            scores[vote.left_clip].append(vote.left_score)
        if vote.right_score is not None:
            scores[vote.right_clip].append(vote.right_score)
    return {clip_id: (sum(values) / len(values), len(values)) for clip_id, values in scores.items()}


def pairs_from_scores(store: VoteStore, pool: CandidatePool, min_gap: float = 1) -> list[dict[str, Any]]:
    """(winner, loser) rows from 0-10 clip scores: every same-prompt pair whose mean scores differ by >= min_gap.

    Rows have the export schema's prompt, clip_w, clip_l, settings_w, settings_l, with absolute `video_w` /
    `video_l` in the pool, plus `score_w`, `score_l` and the number of scores behind each mean.
    """
    if min_gap <= 0:
        raise ValueError(f"min_gap must be positive, got {min_gap}")
    mean_scores = clip_mean_scores(store.effective_votes())
    rows = []
    for prompt in pool.prompts():
        scored = [clip for clip in pool.clips_for_prompt(prompt) if clip.clip_id in mean_scores]
        for index, clip_a in enumerate(scored):
            for clip_b in scored[index + 1 :]:
                (score_a, count_a), (score_b, count_b) = mean_scores[clip_a.clip_id], mean_scores[clip_b.clip_id]
                if abs(score_a - score_b) < min_gap:
                    continue
                (winner, score_w, count_w), (loser, score_l, count_l) = sorted(
                    [(clip_a, score_a, count_a), (clip_b, score_b, count_b)], key=lambda item: -item[1]
                )
                rows.append(
                    {
                        "prompt": prompt,
                        "video_w": str(pool.root / winner.video),
                        "video_l": str(pool.root / loser.video),
                        "clip_w": winner.clip_id,
                        "clip_l": loser.clip_id,
                        "score_w": score_w,
                        "score_l": score_l,
                        "n_scores_w": count_w,
                        "n_scores_l": count_l,
                        "settings_w": json.dumps(winner.settings, sort_keys=True),
                        "settings_l": json.dumps(loser.settings, sort_keys=True),
                    }
                )
    return rows
