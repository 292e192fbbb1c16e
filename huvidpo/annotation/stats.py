"""Numbers for maintainers: who labeled what, how far the pool is covered, agreement, and a model leaderboard.

What is unusual here:
- Sides are randomised when serving, so agreement is computed on side-free labels: "first" / "second" (the
  winner is the lower / higher clip id of the pair), "tie" or "both_bad". A labeler's latest effective vote
  on a pair is their label for it; skips are not labels.
- The leaderboard compares model *versions* (settings["model"] + settings["lora"] @ lora_scale, "base"
  without a LoRA) from votes between clips of different versions. Win rates carry Wilson 95% intervals;
  Bradley-Terry strengths come from Hunter's MM iterations with a small symmetric pseudo-count
  (`bt_prior`) so an undefeated version still has a finite strength. On the board a strength is relative to an
  anchor version (the base, round 0, when it is there; else the most-voted version), whose strength is 1: 2 means
  "wins two of three against the anchor". (Strengths summing to 1 would couple every version's interval to the
  luckiest one's.) With `resamples`, each strength gets a bootstrap 95% interval (the decided votes resampled with
  replacement, the model refitted; the 2.5th and 97.5th percentiles), and versions are ranked by its lower bound,
  as GenAI-Arena does: a version with few votes and a lucky record does not top the board, nor pass the base. Versions with fewer than `min_votes` decided votes (wins
  plus losses against other versions) are left out of the fit and listed apart, so the board can say so.
- Gold votes (a clip against a degraded copy of itself) measure labelers and nothing else: progress, agreement
  and the leaderboard never count them. Per labeler: gold accuracy (a tie, "both bad" or the degraded clip
  counts as wrong; skips are not answers), position bias (the share of left among their left/right choices;
  0.5 is unbiased since sides are random) and median response time; a labeler with at least `min_gold` gold
  answers and an accuracy below `gold_threshold` is flagged (and can be left out of exports).
- Everything returns plain lists of dicts / dicts (ready for `gr.Dataframe(value=...)` via `pandas`).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import statistics
from collections import Counter, defaultdict
from typing import Any

from huvidpo.annotation.pool import CandidatePool
from huvidpo.annotation.votes import Choice, Vote, VoteStore, data_votes

WILSON_Z_95 = 1.959963984540054
LEADERBOARD_MIN_VOTES = 10  # decided votes a version needs to be ranked (the studio's --leaderboard-min-votes)
BOOTSTRAP_RESAMPLES = 200  # bootstrap resamples of the leaderboard's intervals (the studio's --leaderboard-resamples)
GOLD_THRESHOLD = 0.8  # a labeler who prefers the intact clip less often than this is flagged
MIN_GOLD = 5  # gold answers needed before a labeler can be flagged


def labeler_pseudonym(labeler: str) -> str:
    """A stable pseudonym for a labeler in published data (a hash of the name, not the name)."""
    return "labeler-" + hashlib.sha256(labeler.encode("utf-8")).hexdigest()[:10]


def labeler_quality(
    votes: list[Vote], gold_threshold: float = GOLD_THRESHOLD, min_gold: int = MIN_GOLD
) -> dict[str, dict[str, Any]]:
    """Per labeler, over effective `votes`: data votes, gold answers and accuracy, share of left choices, median
    response time, and whether they are flagged (>= `min_gold` gold answers, accuracy below `gold_threshold`)."""
    by_labeler: dict[str, list[Vote]] = defaultdict(list)
    for vote in votes:
        by_labeler[vote.labeler].append(vote)
    quality = {}
    for labeler, own in by_labeler.items():
        gold = [vote for vote in own if vote.gold is not None and vote.choice is not Choice.SKIP]
        correct = sum(1 for vote in gold if vote.winner_clip == vote.gold)
        decisive = [vote for vote in own if vote.choice.is_decisive]
        times = [vote.response_ms for vote in own if vote.response_ms is not None and vote.choice is not Choice.SKIP]
        accuracy = correct / len(gold) if gold else None
        quality[labeler] = {
            "data_votes": len(data_votes(own)),
            "gold_judged": len(gold),
            "gold_accuracy": accuracy,
            "left_share": sum(1 for vote in decisive if vote.choice is Choice.LEFT) / len(decisive) if decisive else None,
            "median_response_ms": statistics.median(times) if times else None,
            "flagged": len(gold) >= min_gold and accuracy is not None and accuracy < gold_threshold,
        }
    return quality


def flagged_labelers(store: VoteStore, gold_threshold: float = GOLD_THRESHOLD, min_gold: int = MIN_GOLD) -> list[str]:
    """The labelers whose gold accuracy is below the threshold (see :func:`labeler_quality`)."""
    quality = labeler_quality(store.effective_votes(), gold_threshold, min_gold)
    return sorted(name for name, row in quality.items() if row["flagged"])


def labeler_stats(
    store: VoteStore, gold_threshold: float = GOLD_THRESHOLD, min_gold: int = MIN_GOLD
) -> list[dict[str, Any]]:
    """Per labeler: data votes (judgements: left, right, tie, both bad; skips are counted apart) by choice, undone
    votes, sessions, median response time, share of left choices, gold answers and accuracy, and the flag; busiest
    first."""
    records = store.read()
    undone_by = Counter(record.labeler for record in records if record.choice is Choice.UNDO)
    effective = store.effective_votes()
    quality = labeler_quality(effective, gold_threshold, min_gold)
    by_labeler: dict[str, list[Vote]] = defaultdict(list)
    for vote in effective:
        by_labeler[vote.labeler].append(vote)
    rows = []
    for labeler, own in by_labeler.items():
        votes = data_votes(own)
        choices = Counter(vote.choice.value for vote in votes)
        row = quality[labeler]
        rows.append(
            {
                "labeler": labeler,
                "votes": sum(1 for vote in votes if vote.choice is not Choice.SKIP),
                **{choice.value: choices[choice.value] for choice in Choice.judgements()},
                "undone": undone_by[labeler],
                "sessions": len({vote.session_id for vote in own}),
                "median_response_ms": row["median_response_ms"],
                "left_share": row["left_share"],
                "gold": row["gold_judged"],
                "gold_accuracy": row["gold_accuracy"],
                "flagged": row["flagged"],
            }
        )
    return sorted(rows, key=lambda row: (-row["votes"], row["labeler"]))


def pool_progress(pool: CandidatePool, store: VoteStore) -> dict[str, Any]:
    """How much of the pool's same-prompt pairs is judged (skips do not count)."""
    clips_per_prompt = Counter(clip.prompt for clip in pool.clips())
    pairs_total = sum(count * (count - 1) // 2 for count in clips_per_prompt.values())
    pool_clip_ids = {clip.clip_id for clip in pool.clips()}
    labelers_per_pair: dict[str, set[str]] = defaultdict(set)
    for vote in _judgements(store.effective_votes()):
        if vote.left_clip in pool_clip_ids and vote.right_clip in pool_clip_ids:
            labelers_per_pair[vote.pair_id].add(vote.labeler)
    judged = len(labelers_per_pair)
    return {
        "clips": len(pool_clip_ids),
        "prompts": len(clips_per_prompt),
        "pairs_total": pairs_total,
        "pairs_judged": judged,
        "pairs_judged_by_2": sum(1 for labelers in labelers_per_pair.values() if len(labelers) >= 2),
        "share_judged": judged / pairs_total if pairs_total else 0.0,
    }


def side_free_label(vote: Vote) -> str:
    """The vote's meaning independent of which side each clip was shown on."""
    if vote.choice.is_decisive:
        return "first" if vote.winner_clip == min(vote.left_clip, vote.right_clip) else "second"
    return vote.choice.value


def inter_annotator_agreement(store: VoteStore) -> dict[str, Any]:
    """Pairwise percent agreement and Krippendorff's alpha (nominal) on pairs judged by several labelers.

    `krippendorff_alpha` is None when it is undefined (fewer than two labels, or every label identical).
    """
    latest_label: dict[str, dict[str, str]] = defaultdict(dict)
    for vote in _judgements(store.effective_votes()):
        latest_label[vote.pair_id][vote.labeler] = side_free_label(vote)
    units = [list(labels.values()) for labels in latest_label.values() if len(labels) >= 2]
    comparisons = [pair for labels in units for pair in itertools.combinations(labels, 2)]
    agreeing = sum(1 for label_a, label_b in comparisons if label_a == label_b)
    return {
        "pairs": len(units),
        "labelers": len({labeler for labels in latest_label.values() if len(labels) >= 2 for labeler in labels}),
        "comparisons": len(comparisons),
        "percent_agreement": agreeing / len(comparisons) if comparisons else None,
        "krippendorff_alpha": krippendorff_alpha_nominal(units),
    }


def krippendorff_alpha_nominal(units: list[list[str]]) -> float | None:
    """Krippendorff's alpha for nominal labels; `units` holds the labels each item received (>= 2 each)."""
    coincidences: Counter[tuple[str, str]] = Counter()
    for labels in units:
        if len(labels) < 2:
            continue
        for label_a, label_b in itertools.permutations(labels, 2):
            coincidences[(label_a, label_b)] += 1 / (len(labels) - 1)
    label_totals: Counter[str] = Counter()
    for (label_a, _), weight in coincidences.items():
        label_totals[label_a] += weight
    total = sum(label_totals.values())
    observed_disagreement = sum(weight for (a, b), weight in coincidences.items() if a != b)
    expected_disagreement = sum(
        label_totals[a] * label_totals[b] for a, b in itertools.permutations(label_totals, 2)
    )
    if total <= 1 or expected_disagreement == 0:
        return None
    return 1 - (total - 1) * observed_disagreement / expected_disagreement


def wilson_interval(successes: int, trials: int, z: float = WILSON_Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion (None without trials)."""
    if trials == 0:
        return None
    rate = successes / trials
    denominator = 1 + z**2 / trials
    center = (rate + z**2 / (2 * trials)) / denominator
    half_width = z * math.sqrt(rate * (1 - rate) / trials + z**2 / (4 * trials**2)) / denominator
    return max(0.0, center - half_width), min(1.0, center + half_width)


def version_of(settings: dict[str, Any], key: str = "lora") -> str:
    """A clip's model version: for key="lora", "<model>/<lora>@<scale>" or "<model>/base"; else settings[key]."""
    if key != "lora":
        return str(settings.get(key, "unknown"))
    lora = settings.get("lora")
    scale = settings.get("lora_scale")
    adapter = "base" if not lora else (f"{lora}@{scale:g}" if isinstance(scale, (int, float)) else str(lora))
    model = settings.get("model")
    return f"{model}/{adapter}" if model else adapter


def head_to_head(store: VoteStore, pool: CandidatePool, key: str = "lora") -> list[dict[str, Any]]:
    """For each pair of versions that met: wins of each and ties (votes between clips of different versions)."""
    versions = {clip.clip_id: version_of(clip.settings, key) for clip in pool.clips()}
    tallies: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for vote in _judgements(store.effective_votes()):
        left, right = versions.get(vote.left_clip), versions.get(vote.right_clip)
        if left is None or right is None or left == right:
            continue
        matchup = tuple(sorted((left, right)))
        if vote.choice.is_decisive:
            tallies[matchup][versions[vote.winner_clip]] += 1
        elif vote.choice is Choice.TIE:
            tallies[matchup]["tie"] += 1
    return [
        {"version_a": a, "version_b": b, "wins_a": tally[a], "wins_b": tally[b], "ties": tally["tie"]}
        for (a, b), tally in sorted(tallies.items())
    ]


def leaderboard(
    store: VoteStore,
    pool: CandidatePool,
    key: str = "lora",
    bt_prior: float = 0.1,
    bt_iterations: int = 500,
    min_votes: int = 0,
    resamples: int = 0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The ranked rows of :func:`version_ranking` (the versions with at least ``min_votes`` decided votes)."""
    return version_ranking(store, pool, key, bt_prior, bt_iterations, min_votes, resamples, seed)["rows"]


def version_ranking(
    store: VoteStore,
    pool: CandidatePool,
    key: str = "lora",
    bt_prior: float = 0.1,
    bt_iterations: int = 500,
    min_votes: int = LEADERBOARD_MIN_VOTES,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Model versions ranked by Bradley-Terry strength, with win rate and its Wilson 95% interval.

    ``rows``: the versions with at least ``min_votes`` decided votes, each with its strength (``bt_strength``,
    fitted on the votes between them, relative to ``anchor``: see the module docstring) and, with ``resamples`` > 0, its bootstrap 95% interval (``bt_low``,
    ``bt_high``; resampled with ``seed``), ranked by ``bt_low`` (by the strength without resamples). A version's
    ``round`` is that of its clips (``settings["round"]``, 0 for the base; None when the pool has no rounds).
    ``hidden``: the other versions and their decided votes. ``note``: a line saying what was hidden and why.
    """
    if min_votes < 0 or resamples < 0:
        raise ValueError(f"min_votes and resamples must be >= 0, got {min_votes} and {resamples}.")
    matchups = head_to_head(store, pool, key)
    record: dict[str, Counter[str]] = defaultdict(Counter)
    for matchup in matchups:
        a, b = matchup["version_a"], matchup["version_b"]
        record[a].update(wins=matchup["wins_a"], losses=matchup["wins_b"], ties=matchup["ties"])
        record[b].update(wins=matchup["wins_b"], losses=matchup["wins_a"], ties=matchup["ties"])
    clips_per_version = Counter(version_of(clip.settings, key) for clip in pool.clips())
    rounds: dict[str, int] = {}
    for clip in pool.clips():
        if "round" in clip.settings:
            rounds.setdefault(version_of(clip.settings, key), int(clip.settings["round"]))
    decided = {version: record[version]["wins"] + record[version]["losses"] for version in clips_per_version}
    shown = {version for version, count in decided.items() if count >= min_votes and (count or not min_votes)}
    games = [(winner, loser) for winner, loser in _decided_games(store, pool, key) if winner in shown and loser in shown]
    anchor = _anchor(decided, shown, rounds, key)
    strengths = _relative(bradley_terry(_tally(games), prior=bt_prior, iterations=bt_iterations), anchor)
    intervals = _bootstrap_intervals(games, resamples, seed, bt_prior, bt_iterations, anchor) if resamples else {}
    rows = []
    for version in sorted(shown):
        games_played = decided[version]
        interval = wilson_interval(record[version]["wins"], games_played)
        rows.append(
            {
                "version": version,
                **({"round": rounds.get(version, 0)} if rounds else {}),
                "clips": clips_per_version[version],
                "games": games_played,
                "wins": record[version]["wins"],
                "losses": record[version]["losses"],
                "ties": record[version]["ties"],
                "win_rate": record[version]["wins"] / games_played if games_played else None,
                "ci_low": interval[0] if interval else None,
                "ci_high": interval[1] if interval else None,
                "bt_strength": strengths.get(version),
                **({"bt_low": intervals.get(version, (None, None))[0], "bt_high": intervals.get(version, (None, None))[1]}
                   if resamples else {}),
            }
        )
    rank_key = "bt_low" if resamples else "bt_strength"
    rows.sort(key=lambda row: (row[rank_key] is None, -(row[rank_key] or 0.0), -(row["bt_strength"] or 0.0), row["version"]))
    hidden = [{"version": version, "decided_votes": decided[version]} for version in sorted(set(clips_per_version) - shown)]
    note = ""
    if hidden:
        listed = ", ".join(f"{row['version']} ({row['decided_votes']})" for row in hidden)
        note = f"Not ranked yet, fewer than {min_votes} decided votes against other versions: {listed}."
    return {"rows": rows, "hidden": hidden, "note": note, "anchor": anchor, "min_votes": min_votes,
            "resamples": resamples}


def _anchor(decided: dict[str, int], shown: set[str], rounds: dict[str, int], key: str) -> str | None:
    """The version strengths are relative to: the base (round 0, or no LoRA) if ranked, else the most-voted one."""
    played = [version for version in shown if decided[version] > 0]
    is_base = (lambda version: rounds.get(version) == 0) if rounds else (
        lambda version: key == "lora" and version.split("/")[-1] == "base")
    candidates = [version for version in played if is_base(version)] or played
    return max(sorted(candidates), key=lambda version: decided[version]) if candidates else None


def _relative(strengths: dict[str, float], anchor: str | None) -> dict[str, float]:
    """Strengths divided by the anchor's (empty when the anchor did not play)."""
    if anchor is None or not strengths.get(anchor):
        return {}
    return {version: value / strengths[anchor] for version, value in strengths.items()}


def _decided_games(store: VoteStore, pool: CandidatePool, key: str) -> list[tuple[str, str]]:
    """(winner's version, loser's version) of every left/right data vote between clips of different versions."""
    versions = {clip.clip_id: version_of(clip.settings, key) for clip in pool.clips()}
    games = []
    for vote in _judgements(store.effective_votes()):
        left, right = versions.get(vote.left_clip), versions.get(vote.right_clip)
        if left is None or right is None or left == right or not vote.choice.is_decisive:
            continue
        winner = versions[vote.winner_clip]
        games.append((winner, right if winner == left else left))
    return games


def _tally(games: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
    wins: dict[tuple[str, str], float] = defaultdict(float)
    for winner, loser in games:
        wins[(winner, loser)] += 1
    return wins


def _bootstrap_intervals(
    games: list[tuple[str, str]], resamples: int, seed: int, prior: float, iterations: int, anchor: str | None
) -> dict[str, tuple[float, float]]:
    """Per version, the 2.5th and 97.5th percentiles of its Bradley-Terry strength relative to ``anchor`` over
    ``resamples`` refits on the decided games drawn with replacement (a version absent from a resample has no value
    in it)."""
    import numpy as np

    if not games:
        return {}
    rng = random.Random(seed)
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(resamples):
        fitted = bradley_terry(_tally(rng.choices(games, k=len(games))), prior, iterations)
        for version, strength in _relative(fitted, anchor).items():
            samples[version].append(strength)
    return {version: (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
            for version, values in samples.items()}


def bradley_terry(
    wins: dict[tuple[str, str], float], prior: float = 0.1, iterations: int = 500, tolerance: float = 1e-10
) -> dict[str, float]:
    """Bradley-Terry strengths (summing to 1) from wins[(i, j)] = times i beat j, by MM updates (Hunter 2004).

    `prior` pseudo-wins are added both ways to every pair that met, so the estimate exists even when a
    version never lost.
    """
    matchups = {tuple(sorted(pair)) for pair, count in wins.items() if count > 0}
    smoothed = defaultdict(float)
    for a, b in matchups:
        smoothed[(a, b)] = wins.get((a, b), 0.0) + prior
        smoothed[(b, a)] = wins.get((b, a), 0.0) + prior
    players = sorted({player for pair in matchups for player in pair})
    if not players:
        return {}
    total_wins = {player: sum(smoothed[(player, other)] for other in players if other != player) for player in players}
    strength = {player: 1.0 / len(players) for player in players}
    for _ in range(iterations):
        updated = {}
        for player in players:
            denominator = sum(
                (smoothed[(player, other)] + smoothed[(other, player)]) / (strength[player] + strength[other])
                for other in players
                if other != player and (smoothed[(player, other)] + smoothed[(other, player)]) > 0
            )
            updated[player] = total_wins[player] / denominator if denominator else strength[player]
        norm = sum(updated.values())
        updated = {player: value / norm for player, value in updated.items()}
        converged = max(abs(updated[player] - strength[player]) for player in players) < tolerance
        strength = updated
        if converged:
            break
    return strength


def _judgements(votes: list[Vote]) -> list[Vote]:
    """The data judgements: skips and gold checks left out."""
    return [vote for vote in data_votes(votes) if vote.choice is not Choice.SKIP]

