"""The synthetic world end to end: is the embedded default faithful, fast, and does DPO change it?

1. Faithfulness: held-out prompts (combinations never seen in training) x seeds; the oracle reads each clip.
2. Speed: seconds for one 16-frame clip with 25 steps.
3. DPO: a candidate pool on training prompts (by default the world's clip of each prompt beside the same spec
   moving along the default's continuations of its first frame: ``--pairs``), labelled by the oracle through the
   PairSampler/VoteStore path a person uses, exported, and trained with ``train_dpo``.
4. What DPO changed, on held-out prompts: the oracle's preference of base+LoRA over base (same prompt and
   seed), and the implicit accuracy of the LoRA on oracle-labelled held-out pairs.

    python research/scripts/world_dpo.py            # the figures of 2026-12-01 (about 40 minutes on 2 idle cores)
    python research/scripts/world_dpo.py --quick    # a smoke run of every step in a few minutes

This was bench/world.py until 2026-12-02 (the DPO-on-oracle-pairs figures of the smoothness work, now research;
see research/2026-12-01-issue-4-status.md). Writes research/results/world-<name>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import PIL.Image

from huvidpo.annotation import CandidatePool, PairSampler, VoteStore, build_pool, export_preferences
from huvidpo.data.video import write_video
from huvidpo.eval import evaluate
from huvidpo.eval.implicit import heldout_implicit_accuracy
from huvidpo.generate import GenerationSettings, generate
from huvidpo.hub import load_pipeline
from huvidpo.training import (
    DPOConfig, PreferencePairs, train_dpo,
)
from huvidpo.world.clips import ClipSpec, make_prompt_set, render_clip, sample_specs
from huvidpo.world.labelers import label_with_oracle
from huvidpo.world.oracle import retrace

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
# The temporal layers of the video UNet: its temporal attention and the temporal convs of its ResNets.
TEMPORAL_TARGETS = ",".join([*(f"temporal_attention.attn.{name}" for name in ("to_q", "to_k", "to_v", "to_out.0")),
                             "temporal"])


@dataclass
class WorldBench:
    """The plan of the README's figures (research/results/world-2026-12-01.json). The previous one, the paper's LoRA on the
    default's own pairs, is ``--pairs model --clips-per-prompt 6 --dpo-lr 1e-4 --dpo-rpo-alpha 0 --dpo-targets ""``
    (research/results/world-model-pairs-c6-s400.json)."""

    heldout_prompts: int = 16
    eval_seeds: int = 4
    pool_prompts: int = 16
    clips_per_prompt: int = 4
    heldout_pair_prompts: int = 6
    heldout_clips_per_prompt: int = 6  # the held-out pairs (implicit accuracy) do not change with the training pool
    frames: int = 16
    steps: int = 25
    dpo_steps: int = 400
    dpo_lr: float = 3e-4
    dpo_beta: float = 50.0
    dpo_batch: int = 2
    dpo_rpo_alpha: float = 10.0  # without it a temporal LoRA raises every error (research/2026-12-01-motion-pairs.md)
    dpo_targets: str = TEMPORAL_TARGETS  # comma-separated LoRA target modules; empty: DPOConfig's (the paper's)
    dpo_guidance: float = 1.0  # DPOConfig.guidance_scale: 1 compares conditional predictions (the paper's)
    shared_first_frame: bool = True
    pairs: str = "motion"  # what the training pool holds: one of PAIR_SOURCES (see make_pool)


QUICK = WorldBench(heldout_prompts=2, eval_seeds=1, pool_prompts=2, clips_per_prompt=2, heldout_pair_prompts=1,
                   heldout_clips_per_prompt=2,
                   frames=4, steps=3, dpo_steps=2, dpo_batch=1)


PAIR_SOURCES = ("model", "world", "motion")


def make_pool(pipe, root: Path, prompts: list[str], clips_per_prompt: int, settings: GenerationSettings,
              shared_first_frame: bool = True, specs: dict[str, ClipSpec] | None = None,
              pairs: str = "model") -> CandidatePool:
    """Clips of ``prompts`` to label, by ``pairs`` (one of ``PAIR_SOURCES``):

    - ``model``: ``clips_per_prompt`` clips of each prompt from ``pipe``. With ``shared_first_frame`` a prompt's
      clips all start from the first frame of its first clip: a pair then differs only in what the video model
      did (the LoRA that DPO trains cannot change the first frame), not in a first frame drawn well or badly.
    - ``world``: the world's clip of each prompt's spec (``specs``) beside ``clips_per_prompt`` clips of
      ``pipe`` continuing its first frame: the oracle compares what the video model did against motion it can
      only approach, but also the world's crisp drawing against the model's.
    - ``motion``: the world's clip of each spec beside that spec rendered by the world along the track of each
      of ``clips_per_prompt`` continuations of its first frame by ``pipe`` (``oracle.retrace``). Every clip of a
      prompt shows the same shape drawn the same way; they differ in motion alone, and the losers' motion is
      the default's own.
    """
    if pairs not in PAIR_SOURCES:
        raise ValueError(f"pairs must be one of {PAIR_SOURCES}, got {pairs!r}.")
    if pairs != "model" and not specs:
        raise ValueError(f"pairs={pairs!r} needs the world spec of each prompt.")
    pool = CandidatePool(root / "pool")
    first_frames: dict = {}
    world_clips = {prompt: render_clip(specs[prompt], settings.frames) for prompt in prompts} if specs else {}
    for index, (prompt, frames) in enumerate(world_clips.items()):
        pool.add_clip(prompt, write_video(frames, root / "clips" / f"world_{index:04d}.mp4"), {"source": "world"})
        first_frames[prompt] = PIL.Image.fromarray(frames[0])

    def generate_fn(prompt: str, seed: int, **_) -> Path:
        image = first_frames.get(prompt) if shared_first_frame or world_clips else None
        frames, first = generate(pipe, replace(settings, prompt=prompt, seed=seed), image=image)
        first_frames.setdefault(prompt, first)
        if pairs == "motion":
            frames = render_clip(specs[prompt], settings.frames, track=retrace(specs[prompt], frames))
        return write_video(frames, root / "clips" / f"{abs(hash((prompt, seed)))}.mp4")

    source = {"motion": "world, along the default's motion"}.get(pairs, "embedded")
    build_pool(pool, generate_fn, prompts, clips_per_prompt, settings={"model": source, "steps": settings.steps})
    return pool


def training_specs(count: int) -> dict[str, ClipSpec]:
    """One world spec for each of ``count`` distinct training prompts."""
    specs: dict[str, ClipSpec] = {}
    for spec in sample_specs(4 * count, seed=2, split="train"):
        specs.setdefault(spec.prompt, spec)
    if len(specs) < count:
        raise ValueError(f"Only {len(specs)} distinct training prompts in the sample; ask for fewer.")
    return dict(list(specs.items())[:count])


def oracle_export(pipe, root: Path, prompts: list[str], clips_per_prompt: int, settings: GenerationSettings,
                  shared_first_frame: bool = True, specs: dict[str, ClipSpec] | None = None, pairs: str = "model"
                  ) -> tuple[Path, int, int]:
    """Pool (``make_pool``), oracle votes and export: (export folder, votes cast, decided pairs exported)."""
    pool = make_pool(pipe, root, prompts, clips_per_prompt, settings, shared_first_frame, specs, pairs)
    store = VoteStore(root / "votes.jsonl")
    votes = label_with_oracle(PairSampler(pool, store, seed=0))
    rows = export_preferences(store, pool, root / "export")
    return root / "export", len(votes), len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Pipeline to measure (default: the embedded default).")
    parser.add_argument("--quick", action="store_true", help="Tiny settings: checks every step runs.")
    parser.add_argument("--dpo-lr", type=float, default=None, help="Override the DPO learning rate.")
    parser.add_argument("--dpo-steps", type=int, default=None, help="Override the number of DPO steps.")
    parser.add_argument("--dpo-beta", type=float, default=None, help="Override the DPO beta.")
    parser.add_argument("--dpo-rpo-alpha", type=float, default=None,
                        help="Override the weight of the winners' denoising loss (DPOConfig.rpo_alpha).")
    parser.add_argument("--eval-seeds", type=int, default=None,
                        help="Override the seeds per held-out prompt (more seeds, a narrower interval).")
    parser.add_argument("--clips-per-prompt", type=int, default=None,
                        help="Override the pool's clips per prompt (n clips give n(n-1)/2 pairs to label).")
    parser.add_argument("--own-first-frames", action="store_true",
                        help="Pool clips each draw their own first frame (default: a prompt's clips share one).")
    parser.add_argument("--pairs", choices=PAIR_SOURCES, default=None,
                        help="What the training pool holds: 'model', the model's own clips; 'world', the world's clip "
                             "beside the model's continuations of its first frame; 'motion' (default), the world's clip "
                             "beside the same spec moving along those continuations' tracks (see make_pool).")
    parser.add_argument("--dpo-targets", default=None, help="Override the LoRA target modules (comma-separated).")
    parser.add_argument("--dpo-guidance", type=float, default=None,
                        help="Override the guidance at which DPO compares predictions (DPOConfig.guidance_scale).")
    parser.add_argument("--name", default=None, help="Results file name (default: world.json / world-quick.json).")
    args = parser.parse_args()
    plan = QUICK if args.quick else WorldBench()
    overrides = {"dpo_lr": args.dpo_lr, "dpo_steps": args.dpo_steps, "dpo_beta": args.dpo_beta,
                 "dpo_rpo_alpha": args.dpo_rpo_alpha, "dpo_targets": args.dpo_targets,
                 "dpo_guidance": args.dpo_guidance,
                 "clips_per_prompt": args.clips_per_prompt, "eval_seeds": args.eval_seeds, "pairs": args.pairs}
    plan = replace(plan, **{name: value for name, value in overrides.items() if value is not None})
    if args.own_first_frames:
        plan = replace(plan, shared_first_frame=False)
    pipe = load_pipeline(args.model)
    settings = GenerationSettings(prompt="-", frames=plan.frames, steps=plan.steps, image_steps=plan.steps)
    heldout = make_prompt_set("heldout", plan.heldout_prompts, seed=1)
    seeds = list(range(plan.eval_seeds))
    result: dict = {"plan": asdict(plan), "model": args.model or "embedded default"}

    # 1. Speed of a 16-frame, 25-step clip
    start = time.perf_counter()
    generate(pipe, GenerationSettings(prompt=heldout[0], frames=16, steps=25, image_steps=25))
    result["seconds_16_frames_25_steps"] = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # 2. DPO on oracle-labelled pairs (of the default's own clips, or world clips beside them: plan.pairs)
        specs = training_specs(plan.pool_prompts) if plan.pairs != "model" else None
        train_prompts = list(specs) if specs else make_prompt_set("train", plan.pool_prompts, seed=2)
        export, votes, _ = oracle_export(pipe, root / "train", train_prompts, plan.clips_per_prompt, settings,
                                         plan.shared_first_frame, specs, plan.pairs)
        heldout_export, _, heldout_pairs = oracle_export(pipe, root / "heldout", heldout[: plan.heldout_pair_prompts],
                                                         plan.heldout_clips_per_prompt, settings, plan.shared_first_frame)
        config = DPOConfig(data=str(export), output_dir=str(root / "dpo"), num_frames=plan.frames,
                           max_steps=plan.dpo_steps, learning_rate=plan.dpo_lr, beta=plan.dpo_beta,
                           batch_size=plan.dpo_batch, checkpointing_steps=0, rpo_alpha=plan.dpo_rpo_alpha,
                           guidance_scale=plan.dpo_guidance, **({"lora_target_modules": plan.dpo_targets} if plan.dpo_targets else {}))
        start = time.perf_counter()
        trained = train_dpo(config, pipe=pipe)
        dpo_minutes = (time.perf_counter() - start) / 60
        history = trained.metrics_history
        result["dpo"] = {
            "oracle_votes": votes, "pairs": len(PreferencePairs.load(str(export), "prompt", "video_w", "video_l")),
            "steps": trained.steps, "minutes": dpo_minutes, "lora_target_modules": list(config.lora_target_modules),
            "final_train_accuracy": history[-1]["rewards/accuracies"] if history else None,
        }
        # 3. What DPO changed on held-out prompts
        result["dpo"]["heldout_pairs"] = heldout_pairs  # the oracle may call every held-out pair a tie
        implicit = heldout_implicit_accuracy(pipe, heldout_export, plan.frames, guidance_scale=plan.dpo_guidance) if heldout_pairs else None
        result["dpo"]["heldout_implicit_accuracy"] = implicit["expected"] if implicit else None
        result["dpo"]["heldout_implicit_accuracy_single_draw"] = implicit["single_draw"] if implicit else None
        # One pass makes the base clips (for faithfulness) and the base+LoRA clips of the same prompts and seeds.
        compared = evaluate(pipe, heldout, seeds, settings, lora=str(trained.lora_path))
        result["dpo"]["oracle_prefers_dpo"] = compared.pairwise
        result["dpo"]["summary"] = compared.summary

    # 4. Faithfulness of the default on held-out prompts (the comparison's base clips)
    clips = [r for r in compared.records if r["variant"] == "base"]
    result["faithfulness"] = {
        "clips": len(clips),
        "shape_and_color": sum(r["oracle"]["shape_match"] and r["oracle"]["color_match"] for r in clips) / len(clips),
        "direction": sum(r["oracle"]["direction_match"] for r in clips) / len(clips),
        "summary": compared.summary["base"],
    }

    result["targets"] = {"shape_and_color": 0.8, "direction": 0.7, "seconds_16_frames_25_steps": 15.0,
                         "dpo_minutes": 30, "oracle_prefers_dpo": 0.65, "heldout_implicit_accuracy": 0.6}
    out = RESULTS_DIR / (args.name or ("world-quick.json" if args.quick else "world.json"))  # --name world-<what>.json
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    win = result["dpo"]["oracle_prefers_dpo"] or {}
    rows = [
        ("shape+colour match (held-out)", result["faithfulness"]["shape_and_color"], ">= 0.80"),
        ("direction match (held-out)", result["faithfulness"]["direction"], ">= 0.70"),
        ("s per 16-frame clip, 25 steps", result["seconds_16_frames_25_steps"], "<= 15"),
        ("DPO minutes", dpo_minutes, "<= 30"),
        ("oracle prefers DPO clip", win.get("win_rate"), ">= 0.65"),
        ("held-out implicit accuracy", result["dpo"]["heldout_implicit_accuracy"], ">= 0.60"),
    ]
    for name, value, target in rows:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{name:<32} {shown:>8}   target {target}")
    if win.get("ci95"):
        low, high = win["ci95"]
        print(f"  (oracle preference: {win['wins']} wins, {win['losses']} losses, {win['ties']} ties; "
              f"95% interval {low:.2f}-{high:.2f})")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
