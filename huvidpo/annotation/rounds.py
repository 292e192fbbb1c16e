"""Preference rounds: the pool holds the base model's clips (round 0) and, for each round k >= 1, the clips of the
LoRA trained in round k on the same prompts, seeds and settings, so labelers compare the rounds clip against clip.

    python -m huvidpo.annotation.fill --data-dir data --lora data/runs/dpo-20261202-180000   # round k+1's clips

What is unusual here:
- A round is a setting of its clips, not a folder: ``settings["round"]`` (absent = 0, the base), ``settings["lora"]``
  (how the LoRA is named: ``runs/<run>`` in the studio, the path given otherwise) and ``settings["lora_revision"]``
  (a hash of the LoRA's weights, :func:`huvidpo.annotation.provenance.revision_of`). The leaderboard ranks versions
  by model + LoRA (``stats.version_of``) and shows each one's round.
- Round k+1 repeats the base clips' jobs exactly: every round-0 clip without a LoRA, with a seed and a generated
  (not uploaded) first frame gives one job, its generation settings read back from the clip. The first frame comes
  from the first-frame model before any video noise is drawn, so the same prompt and seed give the same first frame
  whatever LoRA the video model carries; a prompt's clips that shared their first frame share it again. A pair of
  round k+1 and an earlier round on one prompt and seed therefore differs only in what the LoRAs changed.
- The sampler needs nothing new: it pairs any two clips of a prompt, so the new clips pair with each other and with
  every earlier round's, the least-judged pairs first.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from .pool import CandidatePool, ClipRecord
from .provenance import revision_of

ROUND = "round"  # the clip setting that holds its round
LORA_REVISION = "lora_revision"
NOT_REPEATED = ("prompt", "seed", "lora", "lora_scale")  # generation settings a round sets itself


@dataclass(frozen=True)
class RoundVersion:
    """The model version of one round: round 0 is the base model (no LoRA); round k the LoRA trained in round k."""

    round: int
    lora: str | None
    lora_revision: str | None
    clips: int


def round_of(clip: ClipRecord) -> int:
    return int(clip.settings.get(ROUND, 0))


def pool_rounds(pool: CandidatePool) -> list[RoundVersion]:
    """The rounds in the pool, oldest first (round 0 is listed when the pool has any clip)."""
    clips: dict[int, list[ClipRecord]] = defaultdict(list)
    for clip in pool.clips():
        clips[round_of(clip)].append(clip)
    return [RoundVersion(number, members[0].settings.get("lora") if number else None,
                         members[0].settings.get(LORA_REVISION) if number else None, len(members))
            for number, members in sorted(clips.items())]


def base_jobs(pool: CandidatePool) -> list[ClipRecord]:
    """The base clips a round repeats: round 0, no LoRA, a seed, and a first frame the model made."""
    return [clip for clip in pool.clips()
            if round_of(clip) == 0 and not clip.settings.get("lora") and isinstance(clip.settings.get("seed"), int)
            and clip.settings.get("first_frame") != "uploaded"]


def fill_round(pipe: Any, pool: CandidatePool, lora: str | Path, lora_name: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> tuple[int, list[ClipRecord]]:
    """Add the next round's clips to ``pool``: ``lora``'s clips of every base job (:func:`base_jobs`); returns (the
    round's number, its clips). Resumable: a rerun with the LoRA of the newest round completes that round. A LoRA
    that is already an earlier round, or a pool without base clips, is refused with what to do."""
    from ..generate import GenerationSettings

    lora = str(lora)
    lora_name = lora_name or lora
    revision = revision_of(lora)
    if revision is None:
        raise ValueError(f"No LoRA weights at {lora}: give the folder of a trained run (it holds "
                         "pytorch_lora_weights.safetensors).")
    rounds = pool_rounds(pool)
    same = [version for version in rounds if version.round and version.lora_revision == revision]
    newest = rounds[-1].round if rounds else 0
    if same and same[0].round != newest:
        raise ValueError(f"The LoRA {lora_name} is round {same[0].round} of the pool already; train the next round "
                         "first (or give the newest round's LoRA to complete it).")
    number = same[0].round if same else newest + 1
    jobs = base_jobs(pool)
    if not jobs:
        raise ValueError("The pool has no base clips to repeat (round 0: no LoRA, a seed, a generated first frame); "
                         "fill it first: python -m huvidpo.annotation.fill --data-dir DATA_DIR.")
    known = {f.name for f in fields(GenerationSettings)} - set(NOT_REPEATED)
    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for clip in jobs:  # one fill per (settings, seeds): prompts whose clips were made alike
        kept = {name: value for name, value in clip.settings.items() if name in known}
        key = json.dumps([kept, bool(clip.settings.get("shared_first_frame")), clip.settings.get("model")], sort_keys=True)
        groups[key][clip.prompt].append(clip.settings["seed"])
    try:
        clips = _fill_groups(pipe, pool, groups, lora, {ROUND: number, "lora": lora_name, LORA_REVISION: revision},
                             len(jobs), progress)
    finally:
        if pipe is not None:  # the pipeline is the base model again
            from ..generate import apply_lora

            apply_lora(pipe, None, 1.0)
    return number, clips


def _fill_groups(pipe: Any, pool: CandidatePool, groups: dict[str, dict[str, list[int]]], lora: str,
                 extra: dict[str, Any], total: int, progress: Callable[[int, int], None] | None) -> list[ClipRecord]:
    """One ``fill_pool`` per group of base clips made alike and per list of seeds."""
    from ..generate import GenerationSettings
    from .fill import fill_pool

    made = 0
    clips: list[ClipRecord] = []
    for key, seeds_of in groups.items():
        kept, shared, model = json.loads(key)
        by_seeds: dict[tuple[int, ...], list[str]] = defaultdict(list)
        for prompt, seeds in seeds_of.items():
            by_seeds[tuple(sorted(seeds))].append(prompt)
        for seeds, prompts in by_seeds.items():
            offset = made
            settings = GenerationSettings(prompt="", lora=lora, lora_scale=1.0, **kept)
            clips += fill_pool(pipe, pool, prompts, len(seeds), settings, shared_first_frame=shared,
                               model_name=model or "embedded default", seeds=list(seeds), recorded_extra=extra,
                               progress=(lambda done, _, offset=offset: progress(offset + done, total)) if progress else None)
            made += len(prompts) * len(seeds)
    return clips


def round_summary(pool: CandidatePool) -> str:
    """One line: the pool's rounds and their clips."""
    rounds = pool_rounds(pool)
    if not rounds:
        return "The pool is empty."
    parts = [f"round {version.round} ({'base' if not version.round else version.lora}): {version.clips} clips"
             for version in rounds]
    return "Pool: " + "; ".join(parts) + "."
