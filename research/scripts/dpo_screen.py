"""Screen DPO settings in the synthetic world on cached pools, faster than a full ``world_dpo.py`` run.

Each step writes into ROOT, so later runs reuse its clips:

    python research/scripts/dpo_screen.py pools ROOT            # the default's own pairs (world.py --pairs model) and the held-out pairs (~15 min)
    python research/scripts/dpo_screen.py world-pairs ROOT 64   # world clip vs the default's continuation of its first frame
    python research/scripts/dpo_screen.py mix ROOT              # the model's pairs and the world pairs in one export
    python research/scripts/dpo_screen.py mix ROOT --sources motion/export,redenoise_pairs   # any pair folders of ROOT
    python research/scripts/dpo_screen.py motion-pairs ROOT 4   # world clip vs the same spec along the default's motion (4 a prompt)
    python research/scripts/dpo_screen.py run ROOT NAME --data ROOT/world_pairs --lr 1e-4 --steps 200
    python research/scripts/dpo_screen.py rescreen ROOT ROOT/runs/NAME/pytorch_lora_weights.safetensors --scale 1.5
    python research/scripts/dpo_screen.py redenoise-pairs ROOT 48  # world clip vs the default's re-denoising of it from mid noise
    python research/scripts/dpo_screen.py sft ROOT NAME --lr 3e-4 --steps 300   # control: more stage 1 on world clips, no pairs
    python research/scripts/dpo_screen.py smoothness ROOT       # where jerky motion comes from: world, VAE or video UNet
    python research/scripts/dpo_screen.py jitter-pairs ROOT 64  # world clip vs the same track with jitter added (only the jitter differs)
    python research/scripts/dpo_screen.py shared-noise ROOT [MODEL]  # the default's clips as frames share more of their initial noise

``run`` trains a LoRA on the pairs given, measures its implicit accuracy on the held-out pairs
(averaged over 16 noise draws, and per draw), generates the last 8 held-out prompts x 2 seeds with and without
it (base clips are cached in ROOT), and writes research/results/dpo-screen-NAME.json with the oracle's
wins/losses/ties and the mean of each oracle component. Sixteen comparisons give a 95% interval of about
+-0.2 on the preference: a screen, not the figures of record (those are world_dpo.py's).

The screens reuse world_dpo.py's plan, pools and held-out measure; bench/ is a folder of scripts, not a
package, so that file is loaded by its path (``load_world_bench``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import torch

from huvidpo.data.video import read_video, to_uint8_frames, write_video
from huvidpo.eval import pairwise_win_rate
from huvidpo.generate import GenerationSettings, generate
from huvidpo.hub import load_pipeline, unload_lora
from huvidpo.training import DPOConfig, Stage1Config, train_dpo, train_stage1
from huvidpo.world.clips import DIRECTIONS, SPEEDS, generate_world, make_prompt_set, render_clip, sample_specs, straight_track
from huvidpo.world.oracle import prefer, score_clip

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "research" / "results"


def load_world_bench():
    """research/scripts/world_dpo.py (the DPO-on-oracle-pairs bench of 2026-12-01) as a module, by its path (importlib's recipe for importing a source file directly)."""
    spec = importlib.util.spec_from_file_location("bench_world", REPO_ROOT / "research" / "scripts" / "world_dpo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


_world_bench = load_world_bench()
WorldBench = _world_bench.WorldBench
from huvidpo.eval.implicit import heldout_implicit_accuracy  # noqa: E402
oracle_export, training_specs = _world_bench.oracle_export, _world_bench.training_specs

SETTINGS = GenerationSettings(prompt="-", frames=16, steps=25, image_steps=25)
PAIR_COLUMNS = ("prompt", "video_w", "video_l")
MIX_SOURCES = ("train/export", "world_pairs")  # mix's default: the model's own pairs and the world pairs


def build_pools(root: Path) -> None:
    """The default's own clips on the training prompts (``WorldBench.clips_per_prompt`` each, world_dpo.py's
    ``--pairs model`` pool) into ROOT/train, and world_dpo.py's held-out pairs into ROOT/heldout."""
    plan = WorldBench()
    pipe = load_pipeline(None)
    train = make_prompt_set("train", plan.pool_prompts, seed=2)
    heldout = make_prompt_set("heldout", plan.heldout_prompts, seed=1)[: plan.heldout_pair_prompts]
    print("train", oracle_export(pipe, root / "train", train, plan.clips_per_prompt, SETTINGS))
    print("heldout", oracle_export(pipe, root / "heldout", heldout, plan.heldout_clips_per_prompt, SETTINGS))


def world_clip_pairs(out: Path, count: int, rivals) -> dict[str, int]:
    """``count`` training specs, each the world's clip against every clip ``rivals(spec, world_clip, i)`` returns
    as ``(name, frames)``; the oracle decides each pair (ties dropped) into ``out`` (a pairs folder). Returns
    the votes: ``left`` for the world clip, ``right`` for the rival."""
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rows, votes = [], {"left": 0, "right": 0, "tie": 0}
    for i, spec in enumerate(sample_specs(count, seed=5, split="train")):
        real = render_clip(spec, SETTINGS.frames)
        a = f"videos/{i:05d}_world.mp4"
        write_video(real, out / a)
        for name, frames in rivals(spec, real, i):
            b = f"videos/{i:05d}_{name}.mp4"
            write_video(frames, out / b)
            vote = prefer(read_video(out / a), read_video(out / b), spec.prompt)
            votes[vote] += 1
            if vote != "tie":
                rows.append(dict(zip(PAIR_COLUMNS, (spec.prompt, *((a, b) if vote == "left" else (b, a))))))
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return votes


def build_world_pairs(root: Path, count: int) -> None:
    """``count`` training specs: the world's clip vs the default's continuation of its first frame."""
    pipe = load_pipeline(None)

    def continuation(spec, real, i):
        yield "model", generate(pipe, replace(SETTINGS, prompt=spec.prompt, seed=i), image=PIL.Image.fromarray(real[0]))[0]

    votes = world_clip_pairs(root / "world_pairs", count, continuation)
    print(f"oracle votes: world clip {votes['left']}, model clip {votes['right']}, tie {votes['tie']}")


def build_motion_pairs(root: Path, clips_per_prompt: int) -> None:
    """world_dpo.py's ``--pairs motion`` pool on its training prompts, labelled by the oracle into ROOT/motion."""
    specs = training_specs(WorldBench().pool_prompts)
    print("motion", oracle_export(load_pipeline(None), root / "motion", list(specs), clips_per_prompt, SETTINGS,
                                  specs=specs, pairs="motion"))


class PerFrameUNet(torch.nn.Module):
    """The first-frame model's UNet in the video UNet's place: each frame of a ``b c f h w`` input denoised on
    its own, with no temporal layers (what the video UNet's temporal layers add, by their absence)."""

    def __init__(self, image_unet, video_unet):
        super().__init__()
        self.image_unet, self.config = image_unet, video_unet.config

    @property
    def dtype(self):
        return self.image_unet.dtype

    @property
    def device(self):
        return self.image_unet.device

    def forward(self, sample, timestep, encoder_hidden_states):
        frames = sample.shape[2]
        flat = sample.transpose(1, 2).flatten(0, 1)  # (b f) c h w
        states = encoder_hidden_states.repeat_interleave(frames, dim=0)
        out = self.image_unet(flat, timestep, encoder_hidden_states=states).sample
        return SimpleNamespace(sample=out.unflatten(0, (-1, frames)).transpose(1, 2))


@torch.no_grad()
def vae_round_trip(pipe, frames: np.ndarray) -> np.ndarray:
    """``frames`` (uint8 f h w 3) encoded by the pipeline's VAE and decoded again."""
    video = pipe.decode_latents(pipe.encode_video(torch.from_numpy(frames).float().permute(0, 3, 1, 2)[None] / 127.5 - 1))[0]
    return ((video.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def redenoise(pipe, frames: np.ndarray, prompt: str, start: int, seed: int, per_frame: bool = False) -> np.ndarray:
    """``frames`` (uint8 f h w 3) noised to step ``start`` of ``SETTINGS.steps`` and denoised from there by the
    pipeline's video UNet (the pipeline's video-to-video call at strength ``1 - start / steps``, guidance, frame 0
    kept clean, no shared noise or AdaIN): SDEdit of a clip. ``start`` 0 is a generation from the clip's first
    frame. ``per_frame``: denoise with the first-frame (image) model's UNet,
    each frame on its own (``PerFrameUNet``), to see what the video UNet's temporal layers add."""
    video_unet = pipe.unet
    if per_frame:
        pipe.unet = PerFrameUNet(pipe.image_pipeline.unet, video_unet)
    try:
        out = pipe(prompt, video=frames, strength=(SETTINGS.steps - start) / SETTINGS.steps, num_inference_steps=SETTINGS.steps,
                   guidance_scale=SETTINGS.guidance, generator=torch.Generator().manual_seed(seed))
    finally:
        pipe.unet = video_unet
    return to_uint8_frames(out.frames[0])


REDENOISE_STARTS = (10, 15)  # of 25 steps: from t 599 and t 399


def build_redenoise_pairs(root: Path, count: int) -> None:
    """``count`` training specs: the world's clip vs the default's re-denoising of it from each of
    ``REDENOISE_STARTS`` (the same shape on the same track, plus the jitter the video UNet adds)."""
    pipe = load_pipeline(None)

    def redenoised(spec, real, i):
        for start in REDENOISE_STARTS:
            yield f"from{start}", redenoise(pipe, real, spec.prompt, start, seed=i)

    votes = world_clip_pairs(root / "redenoise_pairs", count, redenoised)
    print(f"oracle votes: world clip {votes['left']}, re-denoised {votes['right']}, tie {votes['tie']}")


JITTER_LEVELS = (0.5, 1.0)  # px (std at 64x64) of the jitter on the losers of jitter pairs


def build_jitter_pairs(root: Path, count: int) -> None:
    """``count`` training specs: the world's clip against the same spec on the same straight track with Gaussian
    jitter of each of ``JITTER_LEVELS`` px added to every frame's position but the first. Both clips are the
    world's rendering, so the jitter is their only difference (re-denoise pairs also differ in how the shape
    is drawn)."""

    def jittered(spec, real, i):
        rng = np.random.default_rng(1000 + i)
        track = straight_track(spec, SETTINGS.frames)
        for level in JITTER_LEVELS:
            noisy = track + rng.normal(0.0, level, track.shape)
            noisy[0] = track[0]
            yield f"jitter{level:g}", render_clip(spec, SETTINGS.frames, track=noisy)

    votes = world_clip_pairs(root / "jitter_pairs", count, jittered)
    print(f"oracle votes: world clip {votes['left']}, jittered {votes['right']}, tie {votes['tie']}")


def mix(root: Path, sources: list[str]) -> None:
    """One export with the pairs of each of ``sources`` (pair folders under ROOT), in ROOT/mixed (the model's
    own pairs and the world pairs, the default) or ROOT/mixed-<sources>."""
    default = sources == list(MIX_SOURCES)
    out = root / ("mixed" if default else "mixed-" + "-".join(Path(s).parts[0] for s in sources))
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rows = []
    for source in sources:
        prefix = {"train/export": "model", "world_pairs": "world"}.get(source, Path(source).parts[0])
        for line in (root / source / "metadata.jsonl").read_text().splitlines():
            row = json.loads(line)
            for key in ("video_w", "video_l"):
                target = out / "videos" / f"{prefix}_{Path(row[key]).name}"
                if not target.exists():
                    os.link(root / source / row[key], target)
                row[key] = target.relative_to(out).as_posix()
            rows.append({key: row[key] for key in PAIR_COLUMNS})
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} pairs in {out}")


SMOOTHNESS_STARTS = (20, 15, 10, 5)  # of 25 steps: re-denoising from t 199, 399, 599, 799
SMOOTHNESS_GUIDANCE = (1.0, 3.0)  # the default's clips are also made at these guidance scales (SETTINGS: 7.5)


def motion_readings(clip: np.ndarray, spec) -> dict:
    """The oracle's smoothness of ``clip`` against ``spec``'s prompt, how much the shape's area varies (standard
    deviation over mean, over the frames that show it: 0 for a rigid shape) and each frame-to-frame step along
    the asked direction as a multiple of the asked speed (1 everywhere for the world's clips)."""
    score = score_clip(clip, spec.prompt)
    areas = np.array([a for a in score.reading.areas if a is not None] or [np.nan])
    track = np.array([c if c is not None else (np.nan, np.nan) for c in score.reading.centroids], np.float64)
    steps = (np.diff(track, axis=0) @ np.array(DIRECTIONS[spec.direction], np.float64)) / SPEEDS[spec.speed]
    return {"smoothness": score.smoothness, "size_cv": float(np.std(areas) / np.mean(areas)), "steps": steps.tolist()}


@torch.no_grad()
def smoothness(count: int = 8) -> None:
    """The oracle's smoothness of held-out world clips, of the same clips through the VAE and back, of the
    default's re-denoising of them from each of ``SMOOTHNESS_STARTS`` (at what noise level the jitter comes
    in; from the first two also by the image UNet frame by frame), of its continuation of their first frames
    and of its clips of their prompts (also at each of ``SMOOTHNESS_GUIDANCE``): the part of the pipeline that
    makes motion jerky is the one where it drops. With each, how much the shape's size varies and the mean step
    profile (``motion_readings``)."""
    pipe = load_pipeline(None)
    names = ("world", "vae_round_trip", *(f"redenoised_from_step_{s}" for s in SMOOTHNESS_STARTS),
             *(f"image_unet_per_frame_from_step_{s}" for s in SMOOTHNESS_STARTS[:2]), "continued_from_first_frame", "generated",
             *(f"generated_guidance_{g:g}" for g in SMOOTHNESS_GUIDANCE))
    rows = []
    for i, spec in enumerate(sample_specs(count, seed=1, split="heldout")):
        world = render_clip(spec, SETTINGS.frames)
        clips = [world, vae_round_trip(pipe, world),
                 *(redenoise(pipe, world, spec.prompt, start, seed=i) for start in SMOOTHNESS_STARTS),
                 *(redenoise(pipe, world, spec.prompt, start, seed=i, per_frame=True) for start in SMOOTHNESS_STARTS[:2]),
                 redenoise(pipe, world, spec.prompt, 0, seed=i),
                 generate(pipe, replace(SETTINGS, prompt=spec.prompt, seed=i))[0],
                 *(generate(pipe, replace(SETTINGS, prompt=spec.prompt, seed=i, guidance=g))[0] for g in SMOOTHNESS_GUIDANCE)]
        rows.append({"prompt": spec.prompt, **{name: motion_readings(clip, spec) for name, clip in zip(names, clips)}})
    means = {name: float(np.mean([r[name]["smoothness"] for r in rows])) for name in names}
    size_cv = {name: float(np.mean([r[name]["size_cv"] for r in rows])) for name in names}
    step_profile = {name: np.nanmean([r[name]["steps"] for r in rows], axis=0).round(3).tolist() for name in names}
    out = RESULTS_DIR / "smoothness.json"
    out.write_text(json.dumps({"clips": len(rows), "steps": SETTINGS.steps, "mean": means, "size_cv": size_cv,
                               "step_profile": step_profile, "rows": rows}, indent=2) + "\n")
    for name in names:
        print(f"{name:34s} smoothness {means[name]:.2f}  size cv {size_cv[name]:.3f}  steps/asked "
              + " ".join(f"{v:.2f}" for v in step_profile[name]))
    print(f"{len(rows)} held-out specs; wrote {out}")


SHARED_NOISE_LEVELS = (0.0, 0.2, 0.5, 0.8, 0.95)  # GenerationSettings.shared_noise; 0.2 is the default


@torch.no_grad()
def shared_noise(model: str | None, count: int = 8, seeds: int = 2) -> None:
    """The default's (or ``model``'s) clips of ``count`` held-out prompts x ``seeds`` seeds at each of
    ``SHARED_NOISE_LEVELS``: smoothness, oracle total, prompt matches and the step profile. If frames that share
    more of their initial noise move more smoothly, the jitter comes from each frame's own noise."""
    pipe = load_pipeline(model)
    specs = sample_specs(count, seed=1, split="heldout")
    levels = {}
    for level in SHARED_NOISE_LEVELS:
        rows = []
        for i, spec in enumerate(specs):
            for seed in range(seeds):
                clip = generate(pipe, replace(SETTINGS, prompt=spec.prompt, seed=seed, shared_noise=level))[0]
                score = score_clip(clip, spec.prompt)
                rows.append({**motion_readings(clip, spec), "total": score.total, "shape_and_color":
                             float(score.shape_match >= 0.5 and score.color_match >= 0.5),
                             "direction": float(score.direction_match >= 0.5)})
        levels[f"{level:g}"] = {
            **{key: float(np.mean([r[key] for r in rows])) for key in ("smoothness", "total", "shape_and_color", "direction", "size_cv")},
            "step_profile": np.nanmean([r["steps"] for r in rows], axis=0).round(3).tolist(),
            "step_sd": np.nanstd([r["steps"] for r in rows], axis=0).round(3).tolist(),
        }
        row = levels[f"{level:g}"]
        print(f"shared_noise {level:<4g} smoothness {row['smoothness']:.3f}  oracle total {row['total']:.3f}  "
              f"shape+colour {row['shape_and_color']:.2f}  direction {row['direction']:.2f}  "
              f"frame-1 step {row['step_profile'][0]:.2f}x  mean step {np.mean(row['step_profile']):.2f}x", flush=True)
    name = "shared_noise.json" if model is None else f"shared_noise-{Path(model).name}.json"
    out = RESULTS_DIR / name
    out.write_text(json.dumps({"model": model or "embedded default", "clips_per_level": count * seeds, "steps": SETTINGS.steps,
                               "guidance": SETTINGS.guidance, "levels": levels}, indent=2) + "\n")
    print(f"wrote {out}")


def screen_clips(pipe, root: Path, args: argparse.Namespace, lora: str | None, cache: bool = True) -> dict[str, dict[str, float]]:
    """Oracle scores of the screen's clips (the last ``args.prompts`` held-out prompts x ``args.seeds`` seeds)
    with ``lora`` at ``args.scale``, or without a LoRA, at ``args.shared_noise``; base clips at the default
    shared noise are cached in ROOT/base_eval.json (``cache`` False: ``pipe`` is not the base, neither read nor
    write the cache)."""
    count = WorldBench().heldout_prompts  # the last prompts of world_dpo.py's held-out set
    heldout = make_prompt_set("heldout", count, seed=1)[count - args.prompts:]
    base_cache = root / "base_eval.json"
    cache = cache and args.shared_noise == SETTINGS.shared_noise
    cached = json.loads(base_cache.read_text()) if cache and base_cache.exists() else {}
    scores = {}
    for prompt in heldout:
        for seed in range(args.seeds):
            key = f"{prompt}|{seed}"
            if lora is None and key in cached:
                scores[key] = cached[key]
                continue
            frames, _ = generate(pipe, replace(SETTINGS, prompt=prompt, seed=seed, lora=lora, lora_scale=args.scale,
                                                 shared_noise=args.shared_noise))
            score = score_clip(frames, prompt)
            scores[key] = {**score.components(), "total": score.total}
    if lora is None and cache:
        partial = base_cache.with_suffix(f".{os.getpid()}")
        partial.write_text(json.dumps({**cached, **scores}))
        partial.replace(base_cache)  # atomic: parallel runs may share the cache
    return scores


def compare(base: dict, lora: dict) -> dict:
    """The oracle's wins/losses/ties of the LoRA's clips over the base clips and each component's mean."""
    keys = list(lora)
    rate, _ = pairwise_win_rate([base[k]["total"] for k in keys], [lora[k]["total"] for k in keys])
    return {
        "comparisons": len(keys), "wins": rate.wins, "losses": rate.losses, "ties": rate.ties, "win_rate": rate.win_rate,
        "base": {c: float(np.mean([base[k][c] for k in keys])) for c in base[keys[0]]},
        "lora": {c: float(np.mean([lora[k][c] for k in keys])) for c in lora[keys[0]]},
    }


def summary(name: str, result: dict) -> str:
    """One line of ``compare``'s result."""
    return (f"{name}: preference {result['win_rate']:.2f} ({result['wins']}W/{result['losses']}L/{result['ties']}T), "
            f"oracle total {result['base']['total']:.3f} -> {result['lora']['total']:.3f}, "
            f"smoothness {result['base']['smoothness']:.3f} -> {result['lora']['smoothness']:.3f}, "
            f"shape {result['base']['shape_match']:.2f} -> {result['lora']['shape_match']:.2f}")


def write_screen(name: str, result: dict, label: str | None = None, tail: str = "") -> None:
    """research/results/dpo-screen-NAME.json, and ``summary``'s line (of ``label``, default NAME) plus ``tail``."""
    out = RESULTS_DIR / f"dpo-screen-{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(label or name, result) + f"{tail}; wrote {out}")


def rescreen(root: Path, args: argparse.Namespace) -> None:
    """A trained LoRA (``args.extra``) on the screen's prompts at ``args.scale``, without training again."""
    pipe = load_pipeline(None)
    base = screen_clips(pipe, root, args, None)
    result = {"lora": args.extra, "lora_scale": args.scale, "shared_noise": args.shared_noise,
              **compare(base, screen_clips(pipe, root, args, args.extra))}
    run_name = Path(args.extra).parent.name
    suffix = f"-scale{args.scale:g}" + ("" if args.shared_noise == SETTINGS.shared_noise else f"-shared{args.shared_noise:g}")
    write_screen(run_name + suffix, result, label=f"{run_name} at scale {args.scale:g}, shared noise {args.shared_noise:g}")


def run(root: Path, args: argparse.Namespace) -> None:
    pipe = load_pipeline(None)
    base = screen_clips(pipe, root, args, None)

    start = time.perf_counter()
    config = DPOConfig(data=str(args.data), output_dir=str(root / "runs" / args.name), num_frames=16,
                       max_steps=args.steps, learning_rate=args.lr, beta=args.beta, batch_size=2,
                       checkpointing_steps=0, rpo_alpha=args.rpo_alpha, guidance_scale=args.dpo_guidance,
                       **({"lora_target_modules": args.targets} if args.targets else {}))
    trained = train_dpo(config, pipe=pipe)
    minutes = (time.perf_counter() - start) / 60
    implicit = heldout_implicit_accuracy(pipe, root / "heldout" / "export", 16, guidance_scale=args.dpo_guidance)
    unload_lora(pipe)
    compared = compare(base, screen_clips(pipe, root, args, str(trained.lora_path)))
    result = {
        "name": args.name, "data": str(args.data), "lr": args.lr, "steps": args.steps, "beta": args.beta, "rpo_alpha": args.rpo_alpha,
        "dpo_guidance_scale": args.dpo_guidance, "shared_noise": args.shared_noise,
        "lora_scale": args.scale, "lora_target_modules": list(config.lora_target_modules), "dpo_minutes": minutes,
        "pairs": len((Path(args.data) / "metadata.jsonl").read_text().splitlines()),
        "heldout_implicit_accuracy": implicit["expected"], "heldout_implicit_accuracy_single_draw": implicit["single_draw"],
        **compared,
    }
    write_screen(args.name, result, tail=f", implicit {implicit['expected']:.2f}")


SFT_CLIPS = 256  # world clips the sft control trains on


def sft(root: Path, args: argparse.Namespace) -> None:
    """The control for a DPO screen: ``args.steps`` more stage-1 steps (the stage-1 parameters, plain denoising
    loss) on ``SFT_CLIPS`` world clips, with no pairs, scored on the screen's clips like ``run``."""
    pipe = load_pipeline(None)
    base = screen_clips(pipe, root, args, None)
    clips = root / "world_clips"
    if not (clips / "metadata.jsonl").exists():
        generate_world(clips, SFT_CLIPS, seed=77, num_frames=SETTINGS.frames)
    start = time.perf_counter()
    config = Stage1Config(data=str(clips), output_dir=str(root / "runs" / args.name), num_frames=SETTINGS.frames,
                          max_steps=args.steps, learning_rate=args.lr, batch_size=2, random_start_frame=False,
                          horizontal_flip=False, cache_latents=True, checkpointing_steps=0, overwrite_output_dir=True)
    train_stage1(config, pipe=pipe)
    result = {"name": args.name, "stage1_steps": args.steps, "lr": args.lr, "world_clips": SFT_CLIPS, "shared_noise": args.shared_noise,
              "minutes": (time.perf_counter() - start) / 60, **compare(base, screen_clips(pipe, root, args, None, cache=False))}
    write_screen(args.name, result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("pools", "world-pairs", "motion-pairs", "redenoise-pairs", "jitter-pairs", "mix", "run", "rescreen", "sft",
                                           "smoothness", "shared-noise"))
    parser.add_argument("root", type=Path)
    parser.add_argument("extra", nargs="?", help="world-pairs, redenoise-pairs, jitter-pairs: how many; motion-pairs: clips a prompt; run, sft: the run's "
                             "name; rescreen: a trained LoRA's weights file; shared-noise: a model folder (default: the embedded default)")
    parser.add_argument("--data", type=Path, help="run: pairs to train on (default: ROOT/train/export)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--beta", type=float, default=50.0)
    parser.add_argument("--scale", type=float, default=1.0, help="LoRA scale when generating")
    parser.add_argument("--shared-noise", type=float, default=SETTINGS.shared_noise,
                        help="run, rescreen, sft: GenerationSettings.shared_noise of the screen's base and LoRA clips "
                             "(base clips are cached only at the default)")
    parser.add_argument("--rpo-alpha", type=float, default=0.0, help="run: weight of the winners' denoising loss")
    parser.add_argument("--dpo-guidance", type=float, default=1.0,
                        help="run: guidance at which DPO compares predictions (DPOConfig.guidance_scale; 1: the paper's)")
    parser.add_argument("--targets", help="run: LoRA target modules, comma-separated (default: DPOConfig's)")
    parser.add_argument("--sources", default=",".join(MIX_SOURCES), help="mix: pair folders under ROOT, comma-separated")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    if args.step == "pools":
        build_pools(args.root)
    elif args.step == "world-pairs":
        build_world_pairs(args.root, int(args.extra or 64))
    elif args.step == "motion-pairs":
        build_motion_pairs(args.root, int(args.extra or 4))
    elif args.step == "redenoise-pairs":
        build_redenoise_pairs(args.root, int(args.extra or 48))
    elif args.step == "jitter-pairs":
        build_jitter_pairs(args.root, int(args.extra or 64))
    elif args.step == "shared-noise":
        shared_noise(args.extra)
    elif args.step == "mix":
        mix(args.root, args.sources.split(","))
    elif args.step == "smoothness":
        smoothness()
    elif args.step == "rescreen":
        if not args.extra or not Path(args.extra).is_file():
            parser.error("rescreen needs the path of a trained LoRA's weights file (ROOT/runs/NAME/pytorch_lora_weights.safetensors)")
        rescreen(args.root, args)
    else:
        if not args.extra:
            parser.error(f"{args.step} needs a NAME")
        args.name = args.extra
        if args.step == "sft":
            sft(args.root, args)
            return
        args.data = args.data or args.root / "train" / "export"
        run(args.root, args)


if __name__ == "__main__":
    main()
