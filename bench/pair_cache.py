"""RAM while DPO trains on many pairs: the pair cache on disk (safetensors shards) against the cache in RAM.

Each variant runs in a fresh subprocess: the tiny model, a pair cache of N synthetic pairs (random latents of
8 frames at 8x8, two distinct videos and one prompt per pair, so the cache grows with N as real data does),
then the same number of DPO steps through the real trainer (``DPOTrainer``, LoRA, checkpoints and card
included). Memory is the peak RSS of the training (``VmHWM`` reset after the cache is written, as in
``bench/dpo_step.py``) and of the whole process. The cache is written before training here, as DPO does
before its first step; the encoding itself (VAE, text encoder) is not what this measures. Writes
``bench/results/pair_cache.json``::

    python bench/pair_cache.py                     # 200 and 2,000 pairs, disk and RAM; ~5 min on 2 idle cores
    python bench/pair_cache.py --pairs 50 500 --steps 20   # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dpo_step import reset_peak, rss_kb  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "pair_cache.json"
TARGET_RATIO = 1.10  # peak RSS of the large run / the small one, cache on disk
FRAMES, LATENT_SIZE = 8, 8  # the tiny model at 64x64 pixels


def synthetic_blocks(count: int, row_shape: tuple[int, ...], seed: int, block: int = 256):
    """``count`` random rows in blocks (as an encoder yields them)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for start in range(0, count, block):
        yield torch.randn((min(block, count - start), *row_shape), generator=generator)


def run_variant(pairs: int, storage: str, steps: int, batch_size: int) -> dict:
    """One variant in this process: build the cache, train, report memory and time."""
    import torch

    from huvidpo.hub import DEFAULT_ADAPTER
    from huvidpo.training import DPOConfig
    from huvidpo.training.data import PairCache, write_pair_cache
    from huvidpo.training.dpo import DPOTrainer, add_dpo_lora
    from huvidpo.world.tiny import build_tiny_pipeline

    class SyntheticPairsTrainer(DPOTrainer):
        """DPO on a cache given as ``dataset`` (no videos to encode)."""

        def load_data(self, source):
            return source

        def prepare(self, pipe):
            self.cache, self.negative_embeds = self.data, None
            add_dpo_lora(pipe.unet, self.config, DEFAULT_ADAPTER)

    torch.set_num_threads(1)
    pipe = build_tiny_pipeline(seed=0, with_image_pipeline=False)
    pipe.set_progress_bar_config(disable=True)
    text_shape = tuple(pipe.encode_prompt(["a red circle"], torch.device("cpu")).shape[1:])
    latent_shape = (pipe.unet.config.in_channels, FRAMES, LATENT_SIZE, LATENT_SIZE)
    videos, prompts = 2 * pairs, pairs
    index_w, index_l, index_prompt = torch.arange(pairs), torch.arange(pairs, 2 * pairs), torch.arange(pairs)
    work = Path(tempfile.mkdtemp(prefix="pair-cache-bench-"))
    if storage == "disk":
        cache = write_pair_cache(work / "cache", synthetic_blocks(videos, latent_shape, 0), synthetic_blocks(prompts, text_shape, 1),
                                 index_w, index_l, index_prompt)
    else:
        cache = PairCache(torch.cat(list(synthetic_blocks(videos, latent_shape, 0))),
                          torch.cat(list(synthetic_blocks(prompts, text_shape, 1))), index_w, index_l, index_prompt)
    cache_mb = (videos * torch.Size(latent_shape).numel() + prompts * torch.Size(text_shape).numel()) * 4 / 2**20
    config = DPOConfig(output_dir=str(work / "run"), num_frames=FRAMES, resolution=str(8 * LATENT_SIZE), max_steps=steps,
                       batch_size=batch_size, learning_rate=1e-4, checkpointing_steps=0)
    trainer = SyntheticPairsTrainer(config, pipe=pipe, dataset=cache)
    before_kb = rss_kb("VmRSS")
    peak_reset = reset_peak()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    train_peak_kb = rss_kb("VmHWM") if peak_reset else None
    return {
        "pairs": pairs, "storage": storage, "steps": steps, "batch_size": batch_size,
        "cache_mb": round(cache_mb, 1),
        "rss_before_training_mb": round(before_kb / 1024, 1) if before_kb else None,
        "training_peak_rss_mb": round(train_peak_kb / 1024, 1) if train_peak_kb else None,
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seconds_per_step": round(seconds / steps, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, nargs=2, default=[200, 2000], help="The small and the large run.")
    parser.add_argument("--steps", type=int, default=60, help="DPO steps of each run.")
    parser.add_argument("--batch-size", type=int, default=2, help="Pairs per step.")
    parser.add_argument("--child", nargs=2, metavar=("PAIRS", "STORAGE"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(int(args.child[0]), args.child[1], args.steps, args.batch_size)))
        return

    runs = {}
    for storage in ("disk", "ram"):
        for pairs in args.pairs:
            command = [sys.executable, __file__, "--child", str(pairs), storage, "--steps", str(args.steps),
                       "--batch-size", str(args.batch_size)]
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
            if done.returncode:
                raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
            runs[f"{storage}_{pairs}"] = json.loads(done.stdout.strip().splitlines()[-1])
            print(runs[f"{storage}_{pairs}"], flush=True)
    small, large = args.pairs
    key = "training_peak_rss_mb" if runs[f"disk_{small}"]["training_peak_rss_mb"] else "process_peak_rss_mb"
    ratio = {storage: runs[f"{storage}_{large}"][key] / runs[f"{storage}_{small}"][key] for storage in ("disk", "ram")}
    result = {
        f"disk_peak_ratio_{large}_over_{small}": round(ratio["disk"], 4),
        f"ram_peak_ratio_{large}_over_{small}": round(ratio["ram"], 4),
        "measure": key,
        "target": {f"disk_peak_ratio_{large}_over_{small}": TARGET_RATIO},
        "runs": runs,
        "settings": {"frames": FRAMES, "latents": f"{LATENT_SIZE}x{LATENT_SIZE}", "steps": args.steps,
                     "batch_size": args.batch_size, "model": "tiny (huvidpo.world.tiny)", "torch_threads": 1},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\npeak RSS ({key}), {large} pairs / {small} pairs: cache on disk {ratio['disk']:.3f} "
          f"(target <= {TARGET_RATIO}), cache in RAM {ratio['ram']:.3f}")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
