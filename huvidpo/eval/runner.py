"""Run an evaluation: generate every (prompt, seed) with the base model and, optionally, with the DPO LoRA, and
measure each clip once.

What is unusual here:
- Base and LoRA clips share prompt, seed and every other setting, so the pairwise oracle preference compares
  like with like; all base clips are generated first, then all LoRA clips (the LoRA is loaded for that pass and
  unloaded at the end, leaving the pipeline as the base model).
- Frames are not kept: each clip is scored (oracle, and CLIP when given) right after it is generated and only
  its numbers, its CLIP video embedding (for diversity) and optionally an mp4 are kept.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..data.video import write_video
from ..generate import GenerationSettings, apply_lora, clip_fps, generate
from ..pipeline import HuViDPOPipeline
from .clip_metrics import ClipScorer, diversity
from ..world.metrics import OracleClipMetrics, oracle_clip_metrics, pairwise_win_rate, summarize_oracle
from .report import BASE_LABEL, LORA_LABEL, EvalReport


@dataclass
class _Variant:
    label: str
    lora: str | None
    slug: str


def evaluate(
    pipe: HuViDPOPipeline,
    prompts: Sequence[str],
    seeds: Sequence[int],
    settings_template: GenerationSettings,
    lora: str | None = None,
    clip: ClipScorer | None = None,
    out_dir: str | Path | None = None,
    save_videos: bool = False,
    progress: Callable[[int, int], None] | None = None,
    model_name: str | None = None,
) -> EvalReport:
    """Generate and measure ``prompts`` x ``seeds`` for the base model and (with ``lora``) base + LoRA.

    Args:
        settings_template: generation settings for every clip; its prompt and seed are replaced, its LoRA
            ignored (``lora`` decides), its ``lora_scale`` used for the LoRA pass.
        lora: a LoRA folder, file or Hub id; None evaluates the base model only.
        clip: a CLIP model for the CLIP metrics (:func:`load_clip`); None skips them.
        out_dir: where to write ``eval.json``, ``eval.png`` and (with ``save_videos``) ``videos/*.mp4``.
        progress: called as ``progress(done, total)`` after each clip.
        model_name: how the base model is named in the report's config.
    """
    if not prompts:
        raise ValueError("No prompts to evaluate: give at least one prompt.")
    if not seeds:
        raise ValueError("No seeds to evaluate: give at least one seed, e.g. 0,1,2.")
    variants = [_Variant(BASE_LABEL, None, "base")]
    if lora:
        variants.append(_Variant(LORA_LABEL, lora, "lora"))
    out_dir = Path(out_dir) if out_dir is not None else None
    if save_videos and out_dir is None:
        raise ValueError("save_videos needs an out_dir to write the mp4 files to.")

    if lora:  # a LoRA that does not load should fail now, not after the whole base pass
        apply_lora(pipe, lora, settings_template.lora_scale)
        apply_lora(pipe, None, 1.0)

    total = len(variants) * len(prompts) * len(seeds)
    records: list[dict[str, Any]] = []
    oracle_by_variant: dict[str, list[OracleClipMetrics]] = defaultdict(list)
    embeddings: dict[tuple[str, int], list[torch.Tensor]] = defaultdict(list)  # (variant, prompt index) -> videos
    try:
        for variant in variants:
            for p, prompt in enumerate(prompts):
                for seed in seeds:
                    settings = replace(settings_template, prompt=prompt, seed=int(seed), lora=variant.lora)
                    start = time.perf_counter()
                    frames, _ = generate(pipe, settings)
                    seconds = time.perf_counter() - start
                    oracle = oracle_clip_metrics(frames, prompt)
                    oracle_by_variant[variant.label].append(oracle)
                    clip_scores = None
                    if clip is not None:
                        scores = clip.score_video(frames, prompt)
                        embeddings[(variant.label, p)].append(scores.embedding)
                        clip_scores = scores.to_dict()
                    video = None
                    if save_videos:
                        path = out_dir / "videos" / f"{variant.slug}_p{p:03d}_s{seed}.mp4"
                        video = str(write_video(frames, path, fps=clip_fps(settings, pipe)))
                    records.append({
                        "variant": variant.label, "prompt": prompt, "prompt_index": p, "seed": int(seed),
                        "settings": settings.to_dict(), "oracle": oracle.to_dict(), "clip": clip_scores,
                        "video": video, "seconds": seconds,
                    })
                    if progress is not None:
                        progress(len(records), total)
    finally:
        apply_lora(pipe, None, 1.0)

    summary: dict[str, dict[str, float | None]] = {}
    for variant in variants:
        summary[variant.label] = summarize_oracle(oracle_by_variant[variant.label])
        summary[variant.label].update(_clip_summary(records, embeddings, variant.label, len(prompts), clip is not None))
    pairwise = None
    if lora:
        totals = {
            label: [r["oracle"]["oracle_total"] for r in records if r["variant"] == label]
            for label in (BASE_LABEL, LORA_LABEL)
        }
        rate, votes = pairwise_win_rate(totals[BASE_LABEL], totals[LORA_LABEL])
        pairwise = {"a": BASE_LABEL, "b": LORA_LABEL, **rate.to_dict(), "votes": votes}
    report = EvalReport(
        config={
            "model": model_name,
            "lora": lora,
            "lora_scale": settings_template.lora_scale if lora else None,
            "clip_model": clip.name if clip is not None else None,
            "prompts": list(prompts),
            "seeds": [int(s) for s in seeds],
            "settings": {k: v for k, v in settings_template.to_dict().items() if k not in ("prompt", "seed", "lora")},
        },
        records=records,
        summary=summary,
        pairwise=pairwise,
    )
    if out_dir is not None:
        report.write(out_dir)
    return report


def _clip_summary(
    records: list[dict[str, Any]],
    embeddings: dict[tuple[str, int], list[torch.Tensor]],
    label: str,
    num_prompts: int,
    measured: bool,
) -> dict[str, float | None]:
    """Mean CLIP alignment and consistency over a variant's clips; diversity averaged over its prompts."""
    if not measured:
        return {"clip_text_alignment": None, "clip_consistency": None, "clip_diversity": None}
    scores = [r["clip"] for r in records if r["variant"] == label]
    per_prompt = [diversity(embeddings[(label, p)]) for p in range(num_prompts)]
    per_prompt = [d for d in per_prompt if d is not None]
    return {
        "clip_text_alignment": float(np.mean([s["text_alignment"] for s in scores])),
        "clip_consistency": float(np.mean([s["consistency"] for s in scores])),
        "clip_diversity": float(np.mean(per_prompt)) if per_prompt else None,
    }
