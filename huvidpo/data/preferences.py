"""Public preference datasets into the DPO trainer's pair format (prompt, video_w, video_l).

What is unusual here:
- Every reader turns a row into one *outcome* -- the first clip wins, the second wins, a tie, both bad, or no
  label -- and one function turns outcomes into pairs. So ties and "both bad" are handled the same way in
  every format, by an explicit option: ``drop`` (the default) or ``keep``. A kept tie becomes both orders
  (A over B and B over A): their two DPO terms pull the clips' margin towards zero, which is what "equally
  good" means to the loss. Whatever is dropped is counted in the :class:`PairReport` the caller prints.
- Rows are read through ``datasets`` (CSV, JSON lines, parquet, or ``load_dataset`` for a Hub id); video paths
  stay as written, relative to the folder (or Hub repo) they came from, and are resolved and checked by the
  trainer's :func:`~huvidpo.training.data.video_paths`, which also fetches a Hub dataset's files.

Schema facts used (from each project's published card, README or code, looked up when this was written):
- **Pick-a-Pic v2** (``yuvalkirstain/pickapic_v2``): ``caption``, ``label_0`` / ``label_1`` (float64; 1/0 for a
  preference, 0.5/0.5 for a tie), ``has_label``, ``are_different``, images in ``jpg_0`` / ``jpg_1``. Pick-a-Pic holds images;
  a video dataset in its schema puts the two clips' paths in ``video_0`` / ``video_1`` (read here).
- **VideoReward** (KwaiVGI VideoAlign, ``datasets/train/README.md``): a CSV with ``path_A``, ``path_B``,
  ``prompt`` and ``VQ`` / ``MQ`` / ``TA`` (visual quality, motion quality, text alignment), each ``A``, ``B``
  or ``same``; paths relative to the data folder.
- **VideoDPO** (``OmniScore/funcs/save_utils.py``): ``pair.json``, a JSON list of ``{video1, video2, label,
  frame_caption}`` where ``video1`` / ``video2`` index ``metadata.json`` (a list of ``{"basic": {"clip_path":
  ...}}``) and ``label`` 0 means video1 is preferred (1: video2). Paths given directly as text are accepted too.
- **GenAI-Bench, video** (``TIGER-Lab/GenAI-Bench``, config ``video_generation``): ``prompt``, ``left_model``,
  ``left_video``, ``right_model``, ``right_video`` (text) and ``vote_type`` in ``leftvote``, ``rightvote``,
  ``tievote`` (tie, both good), ``bothbad_vote``. Its published splits are ``test`` / ``test_v1``.
- **HuViDPO scores**: 0-10 human scores per clip, pairs taken between clips of the same prompt. Rows here are
  ``prompt``, ``video``, ``score``; two clips pair when their scores differ by at least ``min_score_gap``
  (> 0), so equal scores never make a pair (the original script paired them).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from huvidpo.locations import is_hub_id

STUDIO = "studio"
PREFERENCE_FORMATS = (STUDIO, "pickapic", "videoreward", "videodpo", "genai-bench", "scores")
CRITERIA = ("majority", "VQ", "MQ", "TA")  # VideoReward's three labels, or the majority of them
KEEP_OR_DROP = ("drop", "keep")

# one outcome per row
FIRST, SECOND, TIE, BOTH_BAD, UNLABELED, IDENTICAL = "first", "second", "tie", "both_bad", "unlabeled", "identical"
GENAI_BENCH_VOTES = {"leftvote": FIRST, "rightvote": SECOND, "tievote": TIE, "bothbad_vote": BOTH_BAD}
VIDEOREWARD_LABELS = {"A": FIRST, "B": SECOND, "same": TIE}
VIDEODPO_PAIRS, VIDEODPO_VIDEOS = "pair.json", "metadata.json"
TABLE_SUFFIXES = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass
class PairReport:
    """What a reader made of a dataset: rows read, pairs made, and why rows made no pair."""

    data_format: str
    rows: int = 0
    pairs: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
    kept: Counter = field(default_factory=Counter)  # "tie" / "both_bad" -> rows kept as both orders

    def summary(self) -> str:
        parts = [f"{self.pairs} pairs from {self.rows} {self.data_format} rows"]
        parts += [f"{count} {reason} kept as both orders" for reason, count in sorted(self.kept.items())]
        parts += [f"{count} dropped ({reason})" for reason, count in sorted(self.dropped.items())]
        return "; ".join(parts)


@dataclass(frozen=True)
class Outcome:
    prompt: Any
    first: Any
    second: Any
    result: str
    where: str


def read_preference_pairs(
    source: Any,
    data_format: str,
    *,
    criterion: str = "majority",
    ties: str = "drop",
    both_bad: str = "drop",
    min_score_gap: float = 1.0,
    split: str = "train",
    subset: str | None = None,
) -> tuple[list[dict[str, Any]], Path | str, PairReport]:
    """``(rows, origin, report)``: rows of ``prompt`` / ``video_w`` / ``video_l`` (paths as the dataset writes
    them), the folder or Hub id those paths start from, and what was kept and dropped.

    ``source`` is a local folder, a table file (``.csv``, ``.jsonl``, ``.json``, ``.parquet``), a Hub dataset id,
    or (for tests and scripts) a ``datasets.Dataset`` / list of dicts with the format's columns.
    """
    if data_format not in PREFERENCE_FORMATS or data_format == STUDIO:
        raise ValueError(f"data_format must be one of {PREFERENCE_FORMATS[1:]} here, got {data_format!r}.")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    for name, value in (("ties", ties), ("both_bad", both_bad)):
        if value not in KEEP_OR_DROP:
            raise ValueError(f"{name} must be 'drop' or 'keep', got {value!r}.")
    report = PairReport(data_format)
    if data_format == "videodpo":
        records, origin = _videodpo_records(source, split, subset)
    else:
        records, origin = _table(source, data_format, split, subset)
    if data_format == "scores":
        rows = _pairs_from_scores(records, min_score_gap, report)
    else:
        outcomes = list(_OUTCOMES[data_format](records, criterion))
        rows = _pairs_from_outcomes(outcomes, {TIE: ties, BOTH_BAD: both_bad}, report)
    report.pairs = len(rows)
    if not rows:
        raise ValueError(f"No preference pairs in {source} as {data_format}: {report.summary()}.")
    return rows, origin, report


# ---------------------------------------------------------------------------------------------- outcomes


def _pickapic(records: list[dict[str, Any]], criterion: str) -> Iterable[Outcome]:
    _require(records, ("caption", "label_0", "label_1", "video_0", "video_1"), "pickapic",
             hint="Pick-a-Pic's own rows hold images (jpg_0 / jpg_1); a video dataset in its schema names the "
                  "clips in video_0 / video_1.")
    for index, row in enumerate(records):
        label_0, label_1 = row["label_0"], row["label_1"]
        if row.get("has_label") is False or label_0 is None or label_1 is None:
            result = UNLABELED
        elif row.get("are_different") is False:
            result = IDENTICAL
        else:
            result = FIRST if label_0 > label_1 else SECOND if label_1 > label_0 else TIE
        yield Outcome(row["caption"], row["video_0"], row["video_1"], result, f"Row {index}")


def _videoreward(records: list[dict[str, Any]], criterion: str) -> Iterable[Outcome]:
    labels = ("VQ", "MQ", "TA") if criterion == "majority" else (criterion,)
    _require(records, ("prompt", "path_A", "path_B", *labels), "videoreward")
    for index, row in enumerate(records):
        where = f"Row {index}"
        votes = []
        for name in labels:
            value = str(row[name]).strip()
            if value not in VIDEOREWARD_LABELS:
                raise ValueError(f"{where}: {name} is {row[name]!r}; VideoReward labels are A, B or same.")
            votes.append(VIDEOREWARD_LABELS[value])
        first, second = votes.count(FIRST), votes.count(SECOND)
        result = FIRST if first > second else SECOND if second > first else TIE
        yield Outcome(row["prompt"], row["path_A"], row["path_B"], result, where)


def _genai_bench(records: list[dict[str, Any]], criterion: str) -> Iterable[Outcome]:
    _require(records, ("prompt", "left_video", "right_video", "vote_type"), "genai-bench")
    for index, row in enumerate(records):
        result = GENAI_BENCH_VOTES.get(row["vote_type"])
        if result is None:
            raise ValueError(f"Row {index}: vote_type is {row['vote_type']!r}; GenAI-Bench votes are {sorted(GENAI_BENCH_VOTES)}.")
        yield Outcome(row["prompt"], row["left_video"], row["right_video"], result, f"Row {index}")


def _videodpo(records: list[dict[str, Any]], criterion: str) -> Iterable[Outcome]:
    for index, row in enumerate(records):
        label = row.get("label")
        result = {0: FIRST, 1: SECOND}.get(label, UNLABELED) if not isinstance(label, bool) else UNLABELED
        yield Outcome(row.get("frame_caption"), row["video1"], row["video2"], result, f"Pair {index} of {VIDEODPO_PAIRS}")


_OUTCOMES: dict[str, Callable[[list[dict[str, Any]], str], Iterable[Outcome]]] = {
    "pickapic": _pickapic, "videoreward": _videoreward, "genai-bench": _genai_bench, "videodpo": _videodpo,
}


def _pairs_from_outcomes(outcomes: list[Outcome], policy: dict[str, str], report: PairReport) -> list[dict[str, Any]]:
    rows = []
    report.rows = len(outcomes)
    for outcome in outcomes:
        if outcome.result in (UNLABELED, IDENTICAL):
            report.dropped["no label" if outcome.result == UNLABELED else "the same clip twice"] += 1
            continue
        if outcome.result in (TIE, BOTH_BAD):
            name = "tie" if outcome.result == TIE else "both bad"
            if policy[outcome.result] == "drop":
                report.dropped[name] += 1
                continue
            report.kept[name] += 1
            rows.append(_pair(outcome.prompt, outcome.first, outcome.second))
            rows.append(_pair(outcome.prompt, outcome.second, outcome.first))
            continue
        winner, loser = (outcome.first, outcome.second) if outcome.result == FIRST else (outcome.second, outcome.first)
        rows.append(_pair(outcome.prompt, winner, loser))
    return rows


def _pairs_from_scores(records: list[dict[str, Any]], min_score_gap: float, report: PairReport) -> list[dict[str, Any]]:
    """Every same-prompt pair of clips whose scores differ by at least ``min_score_gap`` (never equal scores)."""
    if not min_score_gap > 0:
        raise ValueError(f"min_score_gap must be above 0 (equal scores are no preference), got {min_score_gap}.")
    _require(records, ("prompt", "video", "score"), "scores")
    by_prompt: dict[str, list[tuple[Any, float]]] = defaultdict(list)
    for index, row in enumerate(records):
        score = row["score"]
        if score is None:
            report.dropped["no score"] += 1
            continue
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 10:
            raise ValueError(f"Row {index}: score is {score!r}; scores are numbers from 0 to 10.")
        by_prompt[row["prompt"]].append((row["video"], float(score)))
    report.rows = len(records)
    rows = []
    for prompt, clips in by_prompt.items():
        for index, (video_a, score_a) in enumerate(clips):
            for video_b, score_b in clips[index + 1:]:
                if score_a == score_b:
                    report.dropped["clip pairs with equal scores"] += 1
                elif abs(score_a - score_b) < min_score_gap:
                    report.dropped[f"clip pairs less than {min_score_gap:g} apart"] += 1
                else:
                    winner, loser = (video_a, video_b) if score_a > score_b else (video_b, video_a)
                    rows.append({**_pair(prompt, winner, loser), "score_w": max(score_a, score_b),
                                 "score_l": min(score_a, score_b)})
    return rows


def _pair(prompt: Any, winner: Any, loser: Any) -> dict[str, Any]:
    return {"prompt": prompt, "video_w": winner, "video_l": loser}


def _require(records: list[dict[str, Any]], columns: tuple[str, ...], data_format: str, hint: str = "") -> None:
    present = sorted({key for row in records for key in row})
    missing = [name for name in columns if name not in present]
    if missing:
        raise ValueError(
            f"The {data_format} data lacks column(s) {missing}; it has {present}. {hint}".rstrip()
            + f" Check data_format (now {data_format!r}): the formats are {PREFERENCE_FORMATS}."
        )


# ---------------------------------------------------------------------------------------------- sources


def _table(source: Any, data_format: str, split: str, subset: str | None) -> tuple[list[dict[str, Any]], Path | str]:
    """The rows of a table-shaped source as dicts, and the folder or Hub id its paths start from."""
    import datasets

    if isinstance(source, datasets.DatasetDict):
        if split not in source:
            raise ValueError(f"The dataset has splits {list(source)}, not {split!r}: set data_split to one of them.")
        source = source[split]
    if isinstance(source, (datasets.Dataset, list, tuple)):
        return [dict(row) for row in source], Path.cwd()
    path = Path(str(source)).expanduser()
    if path.is_dir():
        path = _table_file(path, data_format)
    if path.is_file():
        builder = TABLE_SUFFIXES.get(path.suffix)
        if builder is None:
            raise ValueError(f"{path}: a preference table is .csv, .jsonl, .json or .parquet, not {path.suffix or 'no suffix'}.")
        return _rows(_load(builder, str(path)), path), path.parent.resolve()
    if not is_hub_id(str(source)):
        raise ValueError(f"No {data_format} data at {source}: give an existing folder or file, or a Hub dataset id 'owner/name'.")
    return _rows(_load_hub(str(source), subset, split), source), str(source)


def _table_file(folder: Path, data_format: str) -> Path:
    """The one table of a folder: ``metadata.jsonl`` if present, else its only .csv / .parquet / .jsonl file."""
    if (folder / "metadata.jsonl").is_file():
        return folder / "metadata.jsonl"
    tables = sorted(p for p in folder.iterdir() if p.suffix in (".csv", ".parquet", ".jsonl") and p.is_file())
    if len(tables) != 1:
        found = ", ".join(p.name for p in tables) or "none"
        raise ValueError(f"{folder}: expected metadata.jsonl or a single .csv / .parquet / .jsonl table of "
                         f"{data_format} rows (found: {found}); give the file itself.")
    return tables[0]


def _load(builder: str, path: str):
    import datasets

    try:
        return datasets.load_dataset(builder, data_files=path, split="train", keep_in_memory=True)
    except Exception as err:  # noqa: BLE001 - a malformed file: say which and why
        reason = err.__cause__ or err
        raise ValueError(f"{path} could not be read as {builder} ({type(reason).__name__}: {reason}).") from err


def _load_hub(repo_id: str, subset: str | None, split: str):
    import datasets

    try:
        return datasets.load_dataset(repo_id, subset, split=split)
    except Exception as err:  # noqa: BLE001 - offline, missing repo, wrong split: the same advice
        raise ValueError(
            f"The Hub dataset '{repo_id}' (subset {subset!r}, split {split!r}) could not be loaded "
            f"({type(err).__name__}: {err}). Check the id, subset and split and the network, or download it "
            f"(`hf download --repo-type dataset {repo_id} --local-dir DIR`) and point data at DIR."
        ) from err


def _rows(dataset, where: Any) -> list[dict[str, Any]]:
    """Rows as dicts with any ``datasets`` Video/Image column as its undecoded ``{"path", "bytes"}``."""
    import datasets

    for name, feature in dataset.features.items():
        if isinstance(feature, (datasets.Video, datasets.Image)):
            dataset = dataset.cast_column(name, type(feature)(decode=False))
    if len(dataset) == 0:
        raise ValueError(f"{where} has no rows.")
    return [dict(row) for row in dataset]


def _videodpo_records(source: Any, split: str, subset: str | None) -> tuple[list[dict[str, Any]], Path | str]:
    """VideoDPO's pair.json rows, with ``video1`` / ``video2`` turned into clip paths through metadata.json."""
    if isinstance(source, (list, tuple)):
        return list(source), Path.cwd()
    folder = Path(str(source)).expanduser()
    origin: Path | str = folder.resolve()
    if not folder.is_dir():
        if not is_hub_id(str(source)):
            raise ValueError(f"No VideoDPO data at {source}: give the folder with {VIDEODPO_PAIRS} or a Hub dataset id.")
        folder, origin = _fetch_json_files(str(source)), str(source)
    pairs_path, videos_path = folder / VIDEODPO_PAIRS, folder / VIDEODPO_VIDEOS
    if not pairs_path.is_file():
        raise ValueError(f"{folder} has no {VIDEODPO_PAIRS}: a VideoDPO folder holds {VIDEODPO_PAIRS} and {VIDEODPO_VIDEOS}.")
    pairs = _read_json_list(pairs_path)
    videos = _read_json_list(videos_path) if videos_path.is_file() else []
    records = []
    for index, pair in enumerate(pairs):
        where = f"Pair {index} of {pairs_path}"
        if not isinstance(pair, dict) or "video1" not in pair or "video2" not in pair:
            raise ValueError(f"{where}: expected an object with video1, video2, label and frame_caption.")
        clip_1, clip_2 = (_videodpo_clip(pair[key], videos, videos_path, where) for key in ("video1", "video2"))
        records.append({**pair, "video1": clip_1, "video2": clip_2})
    return records, origin


def _videodpo_clip(reference: Any, videos: list[Any], videos_path: Path, where: str) -> str:
    if isinstance(reference, str):
        return reference
    if isinstance(reference, bool) or not isinstance(reference, int) or not 0 <= reference < len(videos):
        raise ValueError(f"{where}: video index {reference!r} is not in {videos_path} ({len(videos)} videos).")
    entry = videos[reference]
    try:
        return entry["basic"]["clip_path"]
    except (KeyError, TypeError):
        raise ValueError(f"{videos_path}: entry {reference} has no basic.clip_path.") from None


def _read_json_list(path: Path) -> list[Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}).") from err
    if not isinstance(value, list):
        raise ValueError(f"{path} should hold a JSON list, got {type(value).__name__}.")
    return value


def _fetch_json_files(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=[VIDEODPO_PAIRS, VIDEODPO_VIDEOS]))
    except Exception as err:  # noqa: BLE001
        raise ValueError(
            f"The Hub dataset '{repo_id}' could not be downloaded ({type(err).__name__}: {err}). Check the id and "
            f"the network, or download it (`hf download --repo-type dataset {repo_id} --local-dir DIR`) and point "
            "data at DIR."
        ) from err


def is_url(value: Any) -> bool:
    return isinstance(value, str) and "://" in value and not os.path.exists(value)
