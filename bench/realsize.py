"""The paper's recipe at its real size, on the CPU: peak memory and time of one step of each kind.

What is unusual here: nothing is downloaded. Stable Diffusion 1.5's UNet config (below) is built with random
weights and inflated by ``VideoUNet.from_unet2d`` (1,043 M parameters, 183 M of them temporal); its VAE config
likewise. Random weights cost what trained ones cost, in memory and time. Each variant runs in its own
subprocess and reports the peak RSS of its step (``VmHWM``, reset after the model is built, so the transient
copy of inflation does not count; the child's whole-process ``ru_maxrss`` is kept beside it) and its
seconds. Peak RSS on the CPU stands in for GPU memory: the same tensors live in one or the other.

Each child runs with glibc's mmap threshold fixed at 128 KiB (``MALLOC_MMAP_THRESHOLD_``; ``--malloc default``
measures without): every tensor of 128 KiB or more is a mapping of its own, returned to the system when the
tensor is freed, so peak RSS follows the tensors alive at once. With glibc's default the threshold rises to 32 MiB
after the first large free and freed activations stay in the heap: the same DPO step at 16x320x256 peaked at
8.40 GB there against 4.90 GB here, and our step and the naive one differed by that allocator's luck (-0.23 to
+0.6 GB) instead of by the reference copy (research/2026-12-03-realsize-allocator.md).

Variants, at 16 frames of 320x512 (40x64 latents) unless told otherwise:
- ``infer_*``: one sampler step with classifier-free guidance (UNet on 2 x 16 frames, DDIM step), no grad;
- ``decode*``: the VAE decoding 16 frames, at once or one at a time (diffusers' ``vae.enable_slicing()``);
- ``dpo_*``: one DPO step (``huvidpo.training.dpo_step``: one pair, LoRA r16 on to_q/k/v/out.0, the reference
  being the same UNet with its adapter off), backward and AdamW step; ``dpo_naive_*`` keeps a deep-copied
  reference UNet instead;
- ``stage1_*``: one stage-1 step (temporal layers and attn1.to_q trained, one clip);
- ``fp32``: everything in fp32; ``bf16``: frozen weights in bf16 under bf16 autocast, trained ones in fp32 (what
  ``--mixed_precision bf16`` does); ``_gc``: with ``unet.enable_gradient_checkpointing()``.

Then a memory model, printed as a PREDICTION: weights + optimizer (from parameter counts) + activations (the
measured rest, per frame and latent pixel), for the paper's size on a GPU, and which settings fit 24 GB.

Writes ``bench/results/realsize.json``. The full run needs up to ~18 GB RAM and about two CPU hours; check
it small first (a UNet with 1/10 of SD's channels, 4 frames of 64x64)::

    python bench/realsize.py --channels-div 10 --frames 4 --height 64 --width 64 --out /tmp/realsize.json
    python bench/realsize.py            # the real size (variants predicted not to fit in free RAM are skipped)
    python bench/realsize.py --keep     # after a stop: measure only what the results file does not hold yet
    python bench/realsize.py --keep --threads 1 --redo dpo_bf16_gc --variants <the ones to keep> dpo_bf16_gc
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dpo_step import reset_peak, rss_kb  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "realsize.json"
GB = 2**30
# glibc settings of the children (--malloc live): tensors of 128 KiB and up are mapped alone and unmapped when freed
LIVE_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}

# stable-diffusion-v1-5/stable-diffusion-v1-5, unet/config.json (the keys that shape the network)
SD15_UNET = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
    "cross_attention_dim": 768, "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
# stable-diffusion-v1-5/stable-diffusion-v1-5, vae/config.json
SD15_VAE = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
    "sample_size": 512, "up_block_types": ["UpDecoderBlock2D"] * 4, "scaling_factor": 0.18215,
}
TEXT_TOKENS = 77  # CLIP's sequence length; the width is the UNet's cross_attention_dim

VARIANTS = [
    "infer_fp32", "infer_bf16", "decode_fp32", "decode_sliced_fp32",
    "dpo_fp32", "dpo_fp32_gc", "dpo_bf16", "dpo_bf16_gc", "dpo_naive_fp32_gc", "dpo_naive_bf16_gc",
    "stage1_fp32", "stage1_fp32_gc", "stage1_bf16", "stage1_bf16_gc",
]
TARGETS = {"dpo_bf16_gc_peak_gb": ("<=", 20.0), "naive_minus_ours_gb": (">=", 1.5), "infer_peak_gb": ("<=", 10.0)}
GPU_GB = 24.0


def unet_config(channels_div: int) -> dict:
    """SD 1.5's UNet, or the same layout with ``1/channels_div`` of its channels (for a quick check)."""
    config = dict(SD15_UNET)
    if channels_div > 1:
        config["block_out_channels"] = [c // channels_div for c in SD15_UNET["block_out_channels"]]
        config["cross_attention_dim"] = SD15_UNET["cross_attention_dim"] // channels_div
        if any(c % config["norm_num_groups"] for c in config["block_out_channels"]):
            raise SystemExit(f"--channels-div {channels_div}: every block's channels must stay a multiple of 32.")
    return config


def parse_variant(name: str) -> SimpleNamespace:
    parts = name.split("_")
    return SimpleNamespace(
        name=name, kind=parts[0], naive="naive" in parts, sliced="sliced" in parts,
        bf16="bf16" in parts, gc="gc" in parts,
    )


# ---------------------------------------------------------------------------------------------- one variant (child)


def run_variant(name: str, args) -> dict:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
    from diffusers.training_utils import cast_training_params

    from huvidpo.losses import denoising_loss, per_sample_mse, video_dpo_loss
    from huvidpo.models import VideoUNet
    from huvidpo.pipeline import HuViDPOPipeline
    from huvidpo.training import DPOConfig, dpo_step
    from huvidpo.training.dpo import add_dpo_lora
    from huvidpo.training.stage1 import freeze_all_but_stage1
    from huvidpo.backends import HUVIDPO
    from huvidpo.training.trainer import example_generator, sample_noise

    torch.set_num_threads(args.threads)
    variant = parse_variant(name)
    runtime_kb = rss_kb("VmRSS") or 0
    dtype = torch.bfloat16 if variant.bf16 else torch.float32
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if variant.bf16 else contextlib.nullcontext
    config = unet_config(args.channels_div)
    latent_h, latent_w, frames = args.height // 8, args.width // 8, args.frames
    generator = torch.Generator().manual_seed(0)
    text = torch.randn(1, TEXT_TOKENS, config["cross_attention_dim"], generator=generator)
    counts = {}

    if variant.kind == "decode":
        torch.manual_seed(0)
        vae = AutoencoderKL(**SD15_VAE).eval()
        if variant.sliced:
            vae.enable_slicing()
        counts["params"] = sum(p.numel() for p in vae.parameters())
        latents = torch.randn(1, 4, frames, latent_h, latent_w, generator=generator)
        units = frames * latent_h * latent_w

        def step():  # as the pipeline's __call__ runs it: without autograd (with it, 16 frames filled 24 GB)
            with torch.inference_mode():
                return HuViDPOPipeline.decode_latents(SimpleNamespace(vae=vae), latents)
    else:
        torch.manual_seed(0)
        unet2d = UNet2DConditionModel(**config)
        unet = VideoUNet.from_unet2d(unet2d)
        del unet2d
        gc.collect()
        counts["params"] = sum(p.numel() for p in unet.parameters())
        counts["temporal_params"] = sum(p.numel() for n, p in unet.named_parameters() if unet.is_temporal_parameter_name(n))
        scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
        if variant.kind == "infer":
            unet.to(dtype).eval()
            sampler = DDIMScheduler.from_config(scheduler.config)
            sampler.set_timesteps(50)
            latents = torch.randn(1, 4, frames, latent_h, latent_w, generator=generator, dtype=dtype)
            embeds = torch.cat([torch.zeros_like(text), text]).to(dtype)  # unconditional, conditional
            units = 2 * frames * latent_h * latent_w

            def step():
                with torch.inference_mode():
                    t = sampler.timesteps[0]
                    uncond, cond = unet(torch.cat([latents, latents]), t, embeds).sample.chunk(2)
                    return sampler.step(uncond + 7.5 * (cond - uncond), t, latents).prev_sample
        else:
            reference = None
            if variant.kind == "dpo":
                if variant.naive:  # the naive design: a second, deep-copied UNet as the reference
                    reference = copy.deepcopy(unet).requires_grad_(False).to(dtype).eval()
                add_dpo_lora(unet, DPOConfig(), "default")
                units = 2 * frames * latent_h * latent_w  # winner and loser
            else:
                freeze_all_but_stage1(unet)
                units = frames * latent_h * latent_w
            unet.to(dtype)
            cast_training_params(unet, dtype=torch.float32)
            if variant.gc:
                unet.enable_gradient_checkpointing()
            unet.train()
            trainable = [p for p in unet.parameters() if p.requires_grad]
            counts["trainable_params"] = sum(p.numel() for p in trainable)
            optimizer = torch.optim.AdamW(trainable, lr=1e-4)
            latents_w, latents_l = (torch.randn(1, 4, frames, latent_h, latent_w, generator=generator) for _ in range(2))
            embeds = text.to(dtype)

            def loss_of_step():
                if variant.kind == "stage1":
                    noise, t = sample_noise(scheduler, tuple(latents_w.shape), [example_generator(0, 0)], "cpu", dtype)
                    noisy, target = HUVIDPO.noisy_input_and_target(scheduler, latents_w.to(dtype), noise, t)[:2]
                    with autocast():
                        return denoising_loss(unet(noisy, t, embeds).sample, target)
                if reference is None:  # the policy's forward under autocast too: the trainer's accelerate-prepared model
                    with autocast():   # runs its forward in autocast (without it, fp32 LoRA outputs turn activations fp32)
                        return dpo_step(unet, unet, scheduler, latents_w.to(dtype), latents_l.to(dtype), embeds,
                                        [example_generator(0, 0)], beta=50.0, autocast=autocast)[0]
                both = torch.cat([latents_w, latents_l]).to(dtype)
                noise, t = sample_noise(scheduler, tuple(latents_w.shape), [example_generator(0, 0)], "cpu", dtype)
                noisy, target = HUVIDPO.noisy_input_and_target(scheduler, both, noise.repeat(2, 1, 1, 1, 1), t.repeat(2))[:2]
                with torch.no_grad(), autocast():
                    ref = per_sample_mse(reference(noisy, t.repeat(2), embeds.repeat(2, 1, 1)).sample, target)
                with autocast():
                    model = per_sample_mse(unet(noisy, t.repeat(2), embeds.repeat(2, 1, 1)).sample, target)
                return video_dpo_loss(model[:1], model[1:], ref[:1], ref[1:], beta=50.0)[0]

            def step():
                loss = loss_of_step()
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                return loss

    gc.collect()
    built_kb = rss_kb("VmRSS") or 0
    peak_reset = reset_peak()
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    peak_kb = rss_kb("VmHWM") if peak_reset else None
    process_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "variant": name,
        "peak_gb": round((peak_kb or process_peak_kb) * 1024 / GB, 3),
        "process_peak_gb": round(process_peak_kb * 1024 / GB, 3),
        "built_gb": round(built_kb * 1024 / GB, 3),
        "runtime_gb": round(runtime_kb * 1024 / GB, 3),
        "seconds": round(seconds[-1], 2),
        "units": units,  # clips x frames x latent pixels through the network
        **counts,
    }


# ---------------------------------------------------------------------------------------------- memory model


def model_terms(result: dict, variant: SimpleNamespace) -> dict:
    """Weights and optimizer in GB from the parameter counts; activations = what the step added to the RSS of
    the built model (its peak minus the RSS before it) beyond the optimizer's tensors."""
    params, trainable = result["params"], result.get("trainable_params", 0)
    frozen_bytes = 2 if variant.bf16 else 4
    weights = (params - trainable) * frozen_bytes + trainable * 4
    if variant.naive:
        weights += params * frozen_bytes
    optimizer = trainable * (4 + 8)  # its gradient and AdamW's two moments, fp32, made by the first step
    activations = max(0.0, (result["peak_gb"] - result["built_gb"]) * GB - optimizer)
    return {"weights_gb": weights / GB, "optimizer_gb": optimizer / GB, "activations_gb": activations / GB,
            "activation_bytes_per_unit": activations / result["units"]}


def predict(result: dict, variant: SimpleNamespace, units: int) -> float:
    """GB on a GPU at ``units`` (clips x frames x latent pixels): weights + optimizer + activations (no runtime)."""
    terms = model_terms(result, variant)
    return terms["weights_gb"] + terms["optimizer_gb"] + terms["activation_bytes_per_unit"] * units / GB


# ---------------------------------------------------------------------------------------------- the run (parent)


def available_gb() -> float:
    import psutil

    return psutil.virtual_memory().available / GB


def settings_of(args) -> dict:
    return {"frames": args.frames, "height": args.height, "width": args.width, "channels_div": args.channels_div,
            "unet": "SD 1.5 config, random weights, VideoUNet.from_unet2d (preset ours)", "steps": args.steps,
            "lora": "r16 alpha 32 on to_q, to_k, to_v, to_out.0", "cfg_scale": 7.5, "malloc": args.malloc}  # threads: per variant (they change
    # its seconds, not its memory)


def write_report(results: dict, skipped: dict, args, paper_units: dict, show: bool) -> None:
    """Summary, targets and the memory model of the variants measured so far, into ``args.out`` (printed if ``show``)."""
    say = print if show else (lambda *a, **k: None)

    def peak(name):
        return results[name]["peak_gb"] if name in results else None

    summary = {
        "infer_peak_gb": peak("infer_fp32"),
        "infer_bf16_peak_gb": peak("infer_bf16"),
        "decode_peak_gb": peak("decode_fp32"),
        "decode_sliced_peak_gb": peak("decode_sliced_fp32"),
        "dpo_fp32_gc_peak_gb": peak("dpo_fp32_gc"),
        "dpo_bf16_gc_peak_gb": peak("dpo_bf16_gc"),
        "naive_minus_ours_gb": (round(peak("dpo_naive_bf16_gc") - peak("dpo_bf16_gc"), 3)
                                if peak("dpo_naive_bf16_gc") is not None and peak("dpo_bf16_gc") is not None else None),
        "stage1_bf16_gc_peak_gb": peak("stage1_bf16_gc"),
    }
    targets = {}
    for key, (op, bound) in TARGETS.items():
        value = summary[key]
        targets[key] = {"target": f"{op} {bound}", "value": value,
                        "met": None if value is None else (value <= bound if op == "<=" else value >= bound)}

    say("\nPREDICTION (a memory model, not a measurement): GPU memory at 16 frames of 320x512, one pair / clip,")
    say("= weights + optimizer (gradient and AdamW moments of the trained weights) + activations measured here per")
    say("frame and latent pixel, scaled; add the CUDA context (~0.5-1 GB). From a smaller run it extrapolates linearly,")
    say("overhead included: trust it at (or near) the size measured.")
    prediction = {}
    for name, r in results.items():
        variant = parse_variant(name)
        terms = model_terms(r, variant)
        gpu = predict(r, variant, paper_units[variant.kind])
        prediction[name] = {**{k: round(v, 3) for k, v in terms.items()}, "predicted_gpu_gb_at_16x320x512": round(gpu, 2),
                            "fits_24gb": gpu + 1.0 <= GPU_GB}
        say(f"  {name:20s} {gpu:7.2f} GB = weights {terms['weights_gb']:.2f} + optimizer {terms['optimizer_gb']:.2f} + "
              f"activations {terms['activation_bytes_per_unit'] * paper_units[variant.kind] / GB:.2f}"
              f"  -> {'fits' if gpu + 1.0 <= GPU_GB else 'does not fit'} {GPU_GB:.0f} GB")
    fitting = [n for n in prediction if n.startswith("dpo_") and "naive" not in n and prediction[n]["fits_24gb"]]
    if fitting:
        say(f"  24 GB card, DPO: {', '.join(fitting)} (predicted)")

    result = {
        **summary,
        "seconds": {name: r["seconds"] for name, r in results.items()},
        "targets": targets,
        "variants": results,
        "skipped": skipped,
        "prediction": prediction,
        "settings": settings_of(args),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    say(f"Wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int, default=320, help="Pixels (latents are 1/8).")
    parser.add_argument("--width", type=int, default=512, help="Pixels (latents are 1/8).")
    parser.add_argument("--channels-div", type=int, default=1, help="Divide SD 1.5's UNet channels (a quick check: 10).")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=1, help="Steps per variant; the last one's time is reported.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each child.")
    parser.add_argument("--headroom-gb", type=float, default=1.0, help="Skip a variant predicted to need more than "
                        "free RAM minus this (predictions come from the smaller variants already measured).")
    parser.add_argument("--malloc", choices=("live", "default"), default="live",
                        help="live: glibc returns every freed tensor of 128 KiB or more to the system, so peak RSS "
                        "follows live tensors (the stand-in for GPU memory); default: glibc's own settings.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="Keep the variants --out already holds at the same "
                        "settings and measure only the others (the file is rewritten after each variant).")
    parser.add_argument("--redo", nargs="+", default=[], choices=VARIANTS,
                        help="With --keep: measure these variants again (e.g. at another --threads) and keep the rest.")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child, args)))
        return

    paper_units = {"infer": 2 * 16 * 40 * 64, "decode": 16 * 40 * 64, "dpo": 2 * 16 * 40 * 64, "stage1": 16 * 40 * 64}
    results, skipped = {}, {}
    earlier = json.loads(args.out.read_text()) if args.out.is_file() else {}
    earlier_settings = dict(earlier.get("settings", {}))
    earlier_threads = earlier_settings.pop("threads", None)  # a file from before threads were per variant
    if args.keep and earlier_settings == settings_of(args):
        results = {name: {"threads": earlier_threads, **row}
                   for name, row in earlier.get("variants", {}).items() if name in args.variants and name not in args.redo}
        # a variant this run does not attempt keeps the reason it was skipped or killed before
        skipped = {name: why for name, why in earlier.get("skipped", {}).items() if name not in args.variants}
        if results:
            print(f"kept from {args.out}: {', '.join(results)}", flush=True)
    for name in args.variants:
        if name in results:
            continue
        variant = parse_variant(name)
        similar = [results[other] for other in results
                   if (parse_variant(other).kind, parse_variant(other).bf16) == (variant.kind, variant.bf16)]
        if similar:  # a guard, not the model: the largest peak seen so far for this kind and precision, scaled
            worst = max(similar, key=lambda r: r["peak_gb"])
            guess = worst["peak_gb"] * (1.5 if not variant.gc and parse_variant(worst["variant"]).gc else 1.0)
            if guess > available_gb() - args.headroom_gb:
                skipped[name] = f"predicted about {guess:.1f} GB, more than the {available_gb():.1f} GB free"
                print(f"{name}: skipped ({skipped[name]})", flush=True)
                continue
        command = [sys.executable, __file__, "--child", name, "--frames", str(args.frames), "--height", str(args.height),
                   "--width", str(args.width), "--channels-div", str(args.channels_div), "--steps", str(args.steps),
                   "--threads", str(args.threads)]
        env = {**os.environ, **(LIVE_MALLOC if args.malloc == "live" else {})}
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env, check=False)
        if done.returncode:
            reason = "killed (out of memory?)" if done.returncode < 0 else done.stderr.strip().splitlines()[-1][:300]
            skipped[name] = f"failed: {reason}"
            print(f"{name}: {skipped[name]}", flush=True)
            continue
        results[name] = {"threads": args.threads, **json.loads(done.stdout.strip().splitlines()[-1])}
        r = results[name]
        print(f"{name:20s} peak {r['peak_gb']:7.2f} GB (process {r['process_peak_gb']:.2f})  {r['seconds']:8.2f} s on {r['threads']} threads", flush=True)
        write_report(results, skipped, args, paper_units, show=False)  # a stopped run keeps what it measured

    write_report(results, skipped, args, paper_units, show=True)


if __name__ == "__main__":
    main()
