"""What a DPO step costs next to a plain fine-tuning step, and what our design saves over the naive one.

Four variants on the same tiny components, LoRA and batch of B (winner, loser) pairs:

- ``sft``: a plain denoising step with the same LoRA on the 2B clips (one forward + backward);
- ``dpo``: our step (``huvidpo.training.dpo_step``): one policy forward + backward on 2B clips plus a
  reference forward under ``no_grad`` of the same UNet with its adapter disabled. The arithmetic floor
  is about (3 + 1) / 3 = 1.33 of ``sft`` (a backward costs about two forwards);
- ``naive``: a deep-copied reference UNet, and winner and loser in separate passes;
- ``guided``: our step with ``guidance_scale`` 7.5 (``DPOConfig.guidance_scale``): policy and reference
  each also predict the empty prompt, so it should cost about twice ``dpo``.

Time: one subprocess runs the variants' steps interleaved (sft, dpo, naive, guided, in a rotating
order), so load from other processes hits them alike; a step is forward, backward and optimizer
step, and each ratio is the median over rounds of that round's ratio. Memory: each variant runs in a
fresh subprocess; its number is the peak RSS during the steps minus the RSS after building the model
(Linux ``VmHWM``, reset through ``/proc/self/clear_refs``; ``ru_maxrss`` elsewhere). Everything runs
on one torch thread (spinning OpenMP threads make timings erratic on a busy machine). Writes ``bench/results/dpo_step.json`` and prints a table::

    python bench/dpo_step.py                # about two minutes on a laptop CPU
    python bench/dpo_step.py --rounds 3     # a quick look

The same DPO/SFT ratios are measured for the other model families on their tiny random pipelines
(``--backends``; keys ``backends.<name>.time_ratio_dpo_over_sft`` and ``backends.<name>.memory_ratio_dpo_over_sft``;
HuViDPO's are the figures above), each family's step made by its backend (Wan: flow matching, 1 + 4k frames).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

RESULTS = REPO_ROOT / "bench" / "results" / "dpo_step.json"
VARIANTS = ("sft", "dpo", "naive", "guided")
TARGETS = {"time_ratio_dpo_over_sft": 1.45, "memory_ratio_dpo_over_sft": 1.15}


def rss_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def frames_for(backend, pipe, num_frames: int) -> int:
    """The first frame count from ``num_frames`` up that the family takes (Wan: 1 + 4k)."""
    return max(backend.nearest_frames(num_frames, pipe))


class Bench:
    """A family's tiny components (``--backend``), one LoRA, one batch of pairs, and the step function of each
    variant; the family's backend makes the latents, the noisy input and target, and the model call."""

    def __init__(self, pairs: int, num_frames: int, threads: int, backend_name: str = "huvidpo"):
        import torch

        from huvidpo.backends import BACKENDS
        from huvidpo.world.clips import render_clip, render_degraded, sample_specs
        from huvidpo.training import DPOConfig
        from huvidpo.training.dpo import add_dpo_lora
        from huvidpo.training.trainer import trainable_parameters

        if threads > 0:
            torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.backend = backend = BACKENDS[backend_name]
        pipe = backend.tiny_pipeline(seed=0)
        num_frames = frames_for(backend, pipe, num_frames)
        specs = sample_specs(pairs, seed=0, num_frames=num_frames)
        winners = torch.stack([torch.from_numpy(render_clip(s, num_frames)) for s in specs])
        losers = torch.stack([torch.from_numpy(render_degraded(s, "jitter", num_frames)) for s in specs])
        with torch.no_grad():
            def encode(frames):  # b f h w 3 uint8 -> b c f h w latents
                return backend.encode_video(pipe, frames.permute(0, 1, 4, 2, 3).float() / 127.5 - 1)

            self.latents_w, self.latents_l = encode(winners), encode(losers)
            self.embeds = backend.encode_prompt(pipe, [s.prompt for s in specs], torch.device("cpu"))
            self.negative_embeds = backend.encode_prompt(pipe, [""], torch.device("cpu"))
        self.unet = backend.denoiser(pipe)
        add_dpo_lora(self.unet, DPOConfig(), "default")
        self.unet.train()
        self.optimizer = torch.optim.AdamW(trainable_parameters(self.unet).values(), lr=1e-4)
        self.scheduler = backend.training_scheduler(pipe)
        self.reference = None
        self.steps_done = 0
        self.num_frames = num_frames

    def make_naive_reference(self) -> None:
        self.reference = copy.deepcopy(self.unet)
        self.reference.disable_adapters()
        self.reference.requires_grad_(False)

    def sft_loss(self, generator):
        import torch

        from huvidpo.losses import denoising_loss
        from huvidpo.training.trainer import sample_noise

        backend = self.backend
        latents = torch.cat([self.latents_w, self.latents_l])
        noise, t = sample_noise(self.scheduler, tuple(self.latents_w.shape), generator, "cpu", torch.float32)
        noise, t = noise.repeat(2, 1, 1, 1, 1), t.repeat(2)
        noisy, target, t = backend.noisy_input_and_target(self.scheduler, latents, noise, t)
        prediction = backend.predict(self.unet, noisy, t, self.embeds.repeat(2, 1, 1))
        return denoising_loss(prediction, target, backend.first_frame_condition)

    def dpo_loss(self, generator):
        from huvidpo.training import dpo_step

        return dpo_step(self.unet, self.unet, self.scheduler, self.latents_w, self.latents_l, self.embeds, generator, beta=50.0,
                        backend=self.backend)[0]

    def guided_loss(self, generator):
        from huvidpo.training import dpo_step

        return dpo_step(self.unet, self.unet, self.scheduler, self.latents_w, self.latents_l, self.embeds, generator, beta=1.0,
                        negative_embeds=self.negative_embeds, guidance_scale=7.5, backend=self.backend)[0]

    def naive_loss(self, generator):
        import torch

        from huvidpo.losses import per_sample_mse, video_dpo_loss
        from huvidpo.training.trainer import sample_noise

        backend, exclude = self.backend, self.backend.first_frame_condition
        noise, t = sample_noise(self.scheduler, tuple(self.latents_w.shape), generator, "cpu", torch.float32)
        noisy_w, target_w, t_w = backend.noisy_input_and_target(self.scheduler, self.latents_w, noise, t)
        noisy_l, target_l, t_l = backend.noisy_input_and_target(self.scheduler, self.latents_l, noise, t)
        model_w = per_sample_mse(backend.predict(self.unet, noisy_w, t_w, self.embeds), target_w, exclude)
        model_l = per_sample_mse(backend.predict(self.unet, noisy_l, t_l, self.embeds), target_l, exclude)
        with torch.no_grad():
            ref_w = per_sample_mse(backend.predict(self.reference, noisy_w, t_w, self.embeds), target_w, exclude)
            ref_l = per_sample_mse(backend.predict(self.reference, noisy_l, t_l, self.embeds), target_l, exclude)
        return video_dpo_loss(model_w, model_l, ref_w, ref_l, beta=50.0)[0]

    def step(self, variant: str) -> float:
        """One optimizer step of ``variant``; its wall time in seconds."""
        from huvidpo.training.trainer import example_generator

        start = time.perf_counter()
        loss = getattr(self, f"{variant}_loss")(example_generator(0, self.steps_done))
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps_done += 1
        return time.perf_counter() - start


def measure_memory(variant: str, args: argparse.Namespace) -> dict:
    bench = Bench(args.pairs, args.num_frames, args.threads, args.backend)
    baseline_kb = rss_kb("VmRSS")
    resettable = reset_peak()
    if variant == "naive":
        bench.make_naive_reference()
    for _ in range(args.memory_steps):
        bench.step(variant)
    peak_kb = rss_kb("VmHWM") if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "baseline_rss_mb": baseline_kb / 1024 if baseline_kb else None,
        "peak_rss_increase_mb": (peak_kb - (baseline_kb or 0)) / 1024,
        "peak_measure": "VmHWM after clear_refs" if resettable else "ru_maxrss",
        "unet_params_mb": sum(p.numel() * p.element_size() for p in bench.unet.parameters()) / 2**20,
        "num_frames": bench.num_frames,
    }


def measure_time(args: argparse.Namespace) -> dict:
    import torch

    variants = tuple(args.variants.split(","))
    bench = Bench(args.pairs, args.num_frames, args.threads, args.backend)
    if "naive" in variants:
        bench.make_naive_reference()
    for variant in variants * args.warmup:
        bench.step(variant)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for round_index in range(args.rounds):
        shift = round_index % len(variants)
        order = variants[shift:] + variants[:shift]
        for variant in order:
            times[variant].append(bench.step(variant))
    return {"times_s": times, "torch_threads": torch.get_num_threads()}


def run_child(*argv: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"bench child {argv[:2]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2, help="Pairs per batch (B).")
    parser.add_argument("--num_frames", type=int, default=8, help="Frames per clip.")
    parser.add_argument("--rounds", type=int, default=12, help="Timed rounds (one step of each variant per round).")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps of each variant first.")
    parser.add_argument("--memory_steps", type=int, default=3, help="Steps per memory run.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default).")
    parser.add_argument("--backends", default="wan,animatediff",
                        help="Other model families whose DPO/SFT ratios are measured too (sft and dpo only), comma-"
                             "separated: wan, animatediff ('' for none); HuViDPO's are the figures above them.")
    parser.add_argument("--out", default=str(RESULTS), help="Where to write the results.")
    parser.add_argument("--child", choices=("time", *VARIANTS), help=argparse.SUPPRESS)  # internal: one measurement
    parser.add_argument("--backend", default="huvidpo", help=argparse.SUPPRESS)  # internal: the child's family
    parser.add_argument("--variants", default=",".join(VARIANTS), help=argparse.SUPPRESS)  # internal: timed variants
    args = parser.parse_args()
    if args.child == "time":
        print(json.dumps(measure_time(args)))
        return
    if args.child:
        print(json.dumps(measure_memory(args.child, args)))
        return

    internal = ("child", "backend", "variants", "backends", "out")
    settings = [f"--{k}={v}" for k, v in vars(args).items() if k not in internal]
    print(f"timing the {len(VARIANTS)} variants, interleaved ...", file=sys.stderr)
    timing = run_child("--child", "time", *settings)
    memory = {}
    for variant in VARIANTS:
        print(f"peak memory of {variant} in a fresh process ...", file=sys.stderr)
        memory[variant] = run_child("--child", variant, *settings)

    times = timing["times_s"]

    def time_ratio(variant: str) -> float:
        return statistics.median(t / base for t, base in zip(times[variant], times["sft"]))

    def memory_ratio(variant: str) -> float:
        return memory[variant]["peak_rss_increase_mb"] / memory["sft"]["peak_rss_increase_mb"]

    summary = {
        v: {"step_time_s": statistics.median(times[v]), "peak_rss_increase_mb": memory[v]["peak_rss_increase_mb"]}
        for v in VARIANTS
    }
    result = {
        "time_ratio_dpo_over_sft": time_ratio("dpo"),
        "memory_ratio_dpo_over_sft": memory_ratio("dpo"),
        "time_ratio_naive_over_sft": time_ratio("naive"),
        "memory_ratio_naive_over_sft": memory_ratio("naive"),
        "time_ratio_guided_over_sft": time_ratio("guided"),
        "memory_ratio_guided_over_sft": memory_ratio("guided"),
        "targets": TARGETS,
        "summary": summary,
        "backends": {"huvidpo": {"time_ratio_dpo_over_sft": time_ratio("dpo"), "memory_ratio_dpo_over_sft": memory_ratio("dpo"),
                                 "num_frames": memory["sft"]["num_frames"]}},
        "settings": {
            **{k: v for k, v in vars(args).items() if k not in ("child", "backend", "variants", "out")},
            "python": platform.python_version(),
            "machine": platform.machine(),
            "torch_threads": timing["torch_threads"],
            "peak_measure": memory["sft"]["peak_measure"],
            "unet_params_mb": memory["sft"]["unet_params_mb"],
        },
        "timing": timing,
        "memory": memory,
    }
    for name in filter(None, args.backends.split(",")):
        print(f"{name}: sft and dpo, timed interleaved, then each in a fresh process ...", file=sys.stderr)
        family_times = run_child("--child", "time", f"--backend={name}", "--variants=sft,dpo", *settings)["times_s"]
        family_memory = {v: run_child("--child", v, f"--backend={name}", *settings) for v in ("sft", "dpo")}
        result["backends"][name] = {
            "time_ratio_dpo_over_sft": statistics.median(t / b for t, b in zip(family_times["dpo"], family_times["sft"])),
            "memory_ratio_dpo_over_sft": (family_memory["dpo"]["peak_rss_increase_mb"]
                                          / family_memory["sft"]["peak_rss_increase_mb"]),
            "step_time_s": {v: statistics.median(family_times[v]) for v in ("sft", "dpo")},
            "num_frames": family_memory["sft"]["num_frames"],
            "denoiser_params_mb": family_memory["sft"]["unet_params_mb"],
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nDPO step vs SFT step: {args.pairs} pairs x {args.num_frames} frames, tiny UNet, CPU, "
          f"{args.threads or 'default'} thread(s), median of {args.rounds} interleaved rounds")
    print(f"{'variant':<8} {'step (s)':>9} {'x sft':>7} {'peak RSS +MB':>13} {'x sft':>7}")
    for v in VARIANTS:
        t_ratio = 1.0 if v == "sft" else time_ratio(v)
        m_ratio = 1.0 if v == "sft" else memory_ratio(v)
        print(f"{v:<8} {summary[v]['step_time_s']:>9.3f} {t_ratio:>7.2f} {summary[v]['peak_rss_increase_mb']:>13.1f} {m_ratio:>7.2f}")
    print(f"UNet parameters: {result['settings']['unet_params_mb']:.1f} MB (the least the naive reference copy adds)")
    for name, family in result["backends"].items():
        print(f"{name:<12} dpo / sft: time x{family['time_ratio_dpo_over_sft']:.2f}, memory "
              f"x{family['memory_ratio_dpo_over_sft']:.2f} ({family['num_frames']} frames)")
    print(f"targets for dpo: time x{TARGETS['time_ratio_dpo_over_sft']}, memory x{TARGETS['memory_ratio_dpo_over_sft']}; "
          f"wrote {out}")


if __name__ == "__main__":
    main()
