"""From votes to the preference dataset the DPO trainer reads (prompt, video_w, video_l, counts).

What is unusual here:
- Votes are aggregated per *unordered* pair, because the same pair is shown with random sides: the winner
  is the clip with more left/right wins across all effective votes (undos applied, skips ignored). Pairs
  whose win counts are equal are left out unless `include_ties`; "tie" and "both bad" clicks are counted
  (`n_tie`, `n_both_bad`) but never make a pair on their own: they stay in the raw log.
- The export folder is self-contained and ready for `push_to_hub`-style upload: the clips are copied to
  `out_dir/videos/`, and `metadata.jsonl` names them in `video_w_file_name` / `video_l_file_name` (relative to
  `out_dir`), the `datasets` folder convention: `load_dataset(<folder or repo>)` reads them as `Video` columns
  `video_w` / `video_l`. Decoding a `Video` needs torchcodec, which is not installed here (its PyPI wheel needs
  CUDA libraries beside our CPU torch): the trainer reads the clips' paths and decodes them itself.
- `README.md` is a `huggingface_hub.DatasetCard`: schema, counts, labelers as pseudonyms (a hash of the name),
  licence, how to load. `vote_details.jsonl` beside it has one row per vote: the side chosen, response time, and per
  side the seed, model, LoRA, their revisions and the first frame's hash (`huvidpo.annotation.provenance`). It is
  not a config of the card: `datasets` reads every config of a repo with one builder, here videofolder.
- Gold votes (checks against a degraded copy) are never data, and labelers can be left out by name.
- Several studio replicas push to one repo, each under `replicas/<name>/` (votes.jsonl, pool/);
  `export_merged` reads every replica (and a root-level log of older pushes), keeps each vote id once and each
  clip id once (clip ids are content hashes), applies undos across them, and exports the union.
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
from typing import TYPE_CHECKING, Any, Iterable

from huggingface_hub import DatasetCard, DatasetCardData

from huvidpo.annotation.pool import MANIFEST_NAME, CandidatePool, ClipRecord
from huvidpo.annotation.provenance import video_first_frame_sha256
from huvidpo.annotation.stats import GOLD_THRESHOLD, labeler_pseudonym, labeler_quality
from huvidpo.annotation.votes import Choice, Vote, VoteStore, apply_undos, data_votes
from huvidpo.locations import is_hub_id

if TYPE_CHECKING:
    import datasets

METADATA_NAME = "metadata.jsonl"
CARD_NAME = "README.md"
RAW_VOTES_NAME = "raw_votes.jsonl"
VOTES_NAME = "vote_details.jsonl"  # the export's per-vote table (the raw log is votes.jsonl / raw_votes.jsonl)
LOG_NAME = "votes.jsonl"  # a replica's raw vote log
EXPORT_VIDEOS_DIR = "videos"
REPLICAS_DIR = "replicas"  # a votes repo: replicas/<name>/{votes.jsonl, pool/}
FILE_NAME_SUFFIX = "_file_name"  # the datasets folder convention for a column of files
VIDEO_COLUMNS = ("video_w", "video_l")

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


VOTE_COLUMNS = {  # the per-vote table: column -> (type, meaning)
    "vote_id": ("string", "unique id of the vote"),
    "pair_id": ("string", "the two clip ids, sorted, joined by |"),
    "prompt": ("string", "the prompt both clips were made for"),
    "labeler": ("string", "pseudonym of the labeler (a hash of the name)"),
    "choice": ("string", "left, right, tie, both_bad or skip"),
    "chosen_side": ("string", "left / right for a decisive vote, else empty"),
    "left_clip": ("string", "clip id shown on the left"),
    "right_clip": ("string", "clip id shown on the right"),
    "response_ms": ("int64", "milliseconds from serving the pair to the vote"),
    "served_at": ("string", "when the pair was served (UTC, ISO 8601)"),
    "timestamp": ("string", "when the vote was recorded (UTC, ISO 8601)"),
    "replica": ("string", "the studio replica that recorded the vote"),
    **{f"{side}_{name}": (dtype, f"{side} clip: {meaning}") for side in ("left", "right") for name, dtype, meaning in (
        ("seed", "int64", "generation seed"),
        ("model", "string", "model that made it"),
        ("model_revision", "string", "content revision of the model (Hub commit or file hash)"),
        ("lora", "string", "LoRA applied (empty: the base model)"),
        ("lora_revision", "string", "content revision of the LoRA"),
        ("lora_scale", "float64", "LoRA scale"),
        ("first_frame_sha256", "string", "hash of its first frame's pixels"),
    )},
}


@dataclass(frozen=True)
class SourcedClip:
    """A clip and the pool folder its video path starts from (several pools when replicas are merged)."""

    record: ClipRecord
    root: Path

    @property
    def path(self) -> Path:
        return self.root / self.record.video


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
    """pair_id -> ((clip_a, clip_b) sorted, tally) over the judgements (skips and gold checks ignored)."""
    tallies: dict[str, tuple[tuple[str, str], PairTally]] = {}
    for vote in data_votes(votes):
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
    exclude_labelers: Iterable[str] = (),
    replica: str = "",
) -> datasets.Dataset:
    """Write `out_dir/{metadata.jsonl, vote_details.jsonl, README.md, videos/}` with one row per decided pair; return the
    pairs (video paths relative to `out_dir`).

    `min_votes` is the minimum number of decisive (left/right) votes a pair needs; the votes of
    `exclude_labelers` (e.g. those flagged by their gold accuracy) are left out; `replica` names where the votes
    were recorded.
    """
    votes = store.effective_votes()
    clips = {clip.clip_id: SourcedClip(clip, pool.root) for clip in pool.clips()}
    return export_votes(votes, clips, out_dir, include_ties, min_votes, dataset_license, exclude_labelers,
                        {vote.vote_id: replica for vote in votes})


def export_merged(
    folder: str | os.PathLike, out_dir: str | os.PathLike, exclude_flagged: bool = False,
    gold_threshold: float = GOLD_THRESHOLD, **options: Any,
) -> datasets.Dataset:
    """:func:`export_preferences` over every replica in `folder` (a local copy of a votes repo, or its Hub id),
    merged. `exclude_flagged` leaves out the labelers whose gold accuracy over all replicas is below
    `gold_threshold`; `options` are those of :func:`export_preferences` but `replica`.
    """
    if not Path(folder).expanduser().is_dir() and is_hub_id(str(folder)):
        folder = _download_votes_repo(str(folder))
    votes, clips, replicas = merge_replicas(folder)
    if exclude_flagged:
        quality = labeler_quality(votes, gold_threshold)
        flagged = {name for name, row in quality.items() if row["flagged"]}
        options["exclude_labelers"] = set(options.get("exclude_labelers", ())) | flagged
    return export_votes(votes, clips, out_dir, replicas=replicas, **options)


def _download_votes_repo(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset"))
    except Exception as err:  # noqa: BLE001 - offline, no access, no such repo: one piece of advice
        raise ValueError(
            f"The votes repo '{repo_id}' could not be downloaded ({type(err).__name__}: {err}). Check the id, your "
            f"login and the network, or download it (`hf download --repo-type dataset {repo_id} --local-dir DIR`) "
            "and give DIR."
        ) from err


def merge_replicas(folder: str | os.PathLike) -> tuple[list[Vote], dict[str, SourcedClip], dict[str, str]]:
    """(effective votes, clips, vote_id -> replica) of every replica under `folder`: `replicas/<name>/` and a
    root-level `votes.jsonl` + `pool/` (named ''). A vote id or clip id seen twice is kept once."""
    folder = Path(folder).expanduser().resolve()
    sources = [("", folder)] + sorted((p.name, p) for p in (folder / REPLICAS_DIR).glob("*") if p.is_dir())
    records: dict[str, Vote] = {}
    replicas: dict[str, str] = {}
    clips: dict[str, SourcedClip] = {}
    found = False
    for name, root in sources:
        if (root / LOG_NAME).is_file():
            found = True
            for vote in VoteStore(root / LOG_NAME).read():
                if vote.vote_id not in records:
                    records[vote.vote_id] = vote
                    replicas[vote.vote_id] = name
        if (root / "pool" / MANIFEST_NAME).is_file():
            for clip in CandidatePool(root / "pool").clips():
                clips.setdefault(clip.clip_id, SourcedClip(clip, root / "pool"))
    if not found:
        raise ValueError(f"{folder} has no votes.jsonl, nor {REPLICAS_DIR}/<name>/votes.jsonl: is it a copy of a votes repo?")
    ordered = sorted(records.values(), key=lambda vote: (vote.timestamp, vote.vote_id))
    return apply_undos(ordered, None), clips, replicas


def export_votes(
    votes: list[Vote],
    clips: dict[str, SourcedClip],
    out_dir: str | os.PathLike,
    include_ties: bool = False,
    min_votes: int = 1,
    dataset_license: str = "cc-by-4.0",
    exclude_labelers: Iterable[str] = (),
    replicas: dict[str, str] | None = None,
) -> datasets.Dataset:
    """The export of effective `votes` on `clips` (see :func:`export_preferences`)."""
    if min_votes < 1:
        raise ValueError(f"min_votes must be at least 1, got {min_votes}")
    out_dir = Path(out_dir)
    (out_dir / EXPORT_VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
    excluded = set(exclude_labelers)
    kept = [vote for vote in votes if vote.labeler not in excluded]
    rows, missing_clip_pairs = [], 0
    for (clip_a, clip_b), tally in sorted(tally_pairs(kept).values(), key=lambda item: (item[1].prompt, item[0])):
        if clip_a not in clips or clip_b not in clips:
            missing_clip_pairs += 1
            continue
        row = _preference_row(tally, clips[clip_a].record, clips[clip_b].record, include_ties, min_votes)
        if row is not None:
            _copy_video(clips[row["clip_w"]].path, out_dir / row["video_w"])
            _copy_video(clips[row["clip_l"]].path, out_dir / row["video_l"])
            rows.append(row)
    _write_jsonl(out_dir / METADATA_NAME, [_on_disk(row) for row in rows])
    vote_rows = [_vote_row(vote, clips, (replicas or {}).get(vote.vote_id, "")) for vote in data_votes(kept)]
    _write_jsonl(out_dir / VOTES_NAME, vote_rows)
    card = _dataset_card(rows, kept, votes, excluded, include_ties, min_votes, missing_clip_pairs, dataset_license)
    card.save(out_dir / CARD_NAME)
    return _preference_dataset(rows)


def _on_disk(row: dict[str, Any]) -> dict[str, Any]:
    """A pair row as metadata.jsonl holds it: the clip columns named by the datasets folder convention."""
    return {f"{key}{FILE_NAME_SUFFIX}" if key in VIDEO_COLUMNS else key: value for key, value in row.items()}


def _vote_row(vote: Vote, clips: dict[str, SourcedClip], replica: str) -> dict[str, Any]:
    row = {
        "vote_id": vote.vote_id,
        "pair_id": vote.pair_id,
        "prompt": vote.prompt,
        "labeler": labeler_pseudonym(vote.labeler),
        "choice": vote.choice.value,
        "chosen_side": vote.choice.value if vote.choice.is_decisive else None,
        "left_clip": vote.left_clip,
        "right_clip": vote.right_clip,
        "response_ms": vote.response_ms,
        "served_at": vote.served_at,
        "timestamp": vote.timestamp,
        "replica": replica,
    }
    for side, clip_id, settings in (("left", vote.left_clip, vote.left_settings), ("right", vote.right_clip, vote.right_settings)):
        first_frame = settings.get("first_frame_sha256")
        if first_frame is None and clip_id in clips:
            first_frame = _first_frame_hash(clips[clip_id].path)
        row.update({
            f"{side}_seed": settings.get("seed"),
            f"{side}_model": settings.get("model"),
            f"{side}_model_revision": settings.get("model_revision"),
            f"{side}_lora": settings.get("lora"),
            f"{side}_lora_revision": settings.get("lora_revision"),
            f"{side}_lora_scale": settings.get("lora_scale"),
            f"{side}_first_frame_sha256": first_frame,
        })
    return row


_FIRST_FRAMES: dict[tuple[str, int, int], str | None] = {}


def _first_frame_hash(path: Path) -> str | None:
    """The first frame's hash of a clip file, decoded once per file version."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FIRST_FRAMES:
        _FIRST_FRAMES[key] = video_first_frame_sha256(path)
    return _FIRST_FRAMES[key]


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
    kept: list[Vote],
    all_votes: list[Vote],
    excluded: set[str],
    include_ties: bool,
    min_votes: int,
    missing_clip_pairs: int,
    dataset_license: str,
) -> DatasetCard:
    card_data = DatasetCardData(
        license=dataset_license,
        task_categories=["text-to-video"],
        tags=["huvidpo", "dpo", "preference", "video", "human-feedback"],
        pretty_name="HuViDPO video preference pairs",
        # one builder reads every config of a repo (here videofolder), so the votes table is a plain file beside it
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": [METADATA_NAME, f"{EXPORT_VIDEOS_DIR}/*"]}]}],
    )
    data = data_votes(kept)
    choices = Counter(vote.choice.value for vote in data)
    ties_policy = "included" if include_ties else "excluded"
    pair_types = {**PREFERENCE_COLUMNS, "video_w": "Video", "video_l": "Video"}
    pair_schema = "\n".join(f"| `{name}` | {dtype} |" for name, dtype in pair_types.items())
    vote_schema = "\n".join(f"| `{name}` | {dtype} | {meaning} |" for name, (dtype, meaning) in VOTE_COLUMNS.items())
    quality = labeler_quality(all_votes)
    labelers = "\n".join(
        f"| {labeler_pseudonym(name)} | {row['data_votes']} | {_share(row['left_share'])} | {row['gold_judged']} | "
        f"{_share(row['gold_accuracy'])} | {'left out' if name in excluded else ('flagged' if row['flagged'] else '')} |"
        for name, row in sorted(quality.items(), key=lambda item: -item[1]["data_votes"])
    )
    body = f"""
# HuViDPO video preference pairs

Human preferences between two videos generated for the same prompt, collected with HuViDPO Studio and
aggregated per pair for video DPO training (`video_w` preferred over `video_l`).

## How to load

```python
from datasets import load_dataset, Video

pairs = load_dataset("<repo id or folder>", split="train")  # video_w / video_l are Video columns
paths = pairs.cast_column("video_w", Video(decode=False))  # the files, without a decoder
votes = load_dataset("json", data_files="<folder, or hf://datasets/<repo id>>/{VOTES_NAME}", split="train")
```

Decoding a `Video` column needs `torchcodec` (`pip install torchcodec`, built for your torch). HuViDPO trains on
this folder or repo as is: `python -m huvidpo.train dpo --data <this repo or folder>`.

## Counts

- pairs: {len(rows)} (min. {min_votes} decisive vote(s) each; equal win counts {ties_policy})
- prompts: {len({row["prompt"] for row in rows})}
- votes: {len(data)} (left/right: {choices["left"] + choices["right"]}, tie: {choices["tie"]}, \
both bad: {choices["both_bad"]}, skip: {choices["skip"]}); gold checks, never data: {len(kept) - len(data)}
- labelers: {len({vote.labeler for vote in data})}; left out of this export: {len(excluded & {v.labeler for v in all_votes})}
- pairs left out because a clip is missing from the pool: {missing_clip_pairs}

## Labelers (pseudonyms)

| labeler | votes | share of left choices | gold checks | gold accuracy | |
|---|---|---|---|---|---|
{labelers}

## Schema: pairs (`metadata.jsonl`; clips in `videos/`)

| column | type |
|---|---|
{pair_schema}

`n_w` / `n_l`: decisive votes for the winner / loser; `agreement` = n_w / (n_w + n_l); `settings_*` are the
generation settings (model, LoRA, seed, ...) as JSON. On disk the clips are `video_w_file_name` /
`video_l_file_name`, paths relative to this folder.

## Schema: votes (`{VOTES_NAME}`)

| column | type | meaning |
|---|---|---|
{vote_schema}
"""
    return DatasetCard(f"---\n{card_data.to_yaml()}\n---\n{body}")


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


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
    rows = [{key.removesuffix(FILE_NAME_SUFFIX) if key.removesuffix(FILE_NAME_SUFFIX) in VIDEO_COLUMNS else key: value
             for key, value in row.items()} for row in rows]
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


def main(argv: list[str] | None = None) -> int:
    """``python -m huvidpo.annotation.export VOTES OUT``: the merged export of a votes repo (its Hub id or a local
    copy) that one or several studios push to, ready to train on (``python -m huvidpo.train dpo --data OUT``)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m huvidpo.annotation.export", description=main.__doc__.split("\n\n")[0])
    parser.add_argument("votes", help="The votes repo: a Hub dataset id, or a local copy of it.")
    parser.add_argument("out", help="Folder to write the export to.")
    parser.add_argument("--min-votes", type=int, default=1, help="Decisive votes a pair needs (default 1).")
    parser.add_argument("--include-ties", action="store_true", help="Also export pairs whose win counts are equal.")
    parser.add_argument("--exclude-flagged", action="store_true", help="Leave out labelers flagged by gold checks.")
    parser.add_argument("--gold-threshold", type=float, default=GOLD_THRESHOLD,
                        help=f"Gold accuracy below which a labeler is flagged (default {GOLD_THRESHOLD}).")
    parser.add_argument("--license", default="cc-by-4.0", help="Licence of the dataset card (default cc-by-4.0).")
    args = parser.parse_args(argv)
    try:
        pairs = export_merged(args.votes, args.out, exclude_flagged=args.exclude_flagged, gold_threshold=args.gold_threshold,
                              include_ties=args.include_ties, min_votes=args.min_votes, dataset_license=args.license)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"Exported {len(pairs)} pairs to {args.out}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
