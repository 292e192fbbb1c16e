"""Implicit accuracy on held-out preference pairs: does a DPO LoRA favour the winners of pairs it never saw?"""

from __future__ import annotations

from pathlib import Path

import torch


@torch.no_grad()
def heldout_implicit_accuracy(pipe, pairs_dir: str | Path, frames: int, draws: int = 16,
                              guidance_scale: float = 1.0) -> dict[str, float]:
    """How often the LoRA loaded in ``pipe`` favours the winners of the exported pairs in ``pairs_dir``.

    ``expected``: the share of pairs whose implicit reward margin, averaged over ``draws`` noise and timestep
    draws, is positive (Diffusion-DPO's implicit reward is that expectation). ``single_draw``: the share of
    (pair, draw) cases favouring the winner, the trainer's ``rewards/accuracies``: one draw is dominated by its
    noise, so it stays near 0.5. ``guidance_scale`` > 1 measures the guided predictions' margins (a LoRA
    trained with that ``DPOConfig.guidance_scale``).
    """
    from ..backends import backend_for
    from ..training import PreferencePairs, build_pair_cache, implicit_accuracy, implicit_margins

    backend = backend_for(pipe)
    pairs = PreferencePairs.load(str(pairs_dir), "prompt", "video_w", "video_l")
    cache = build_pair_cache(pipe, pairs, frames, backend.default_size(pipe), pipe.device)
    scheduler = backend.training_scheduler(pipe)
    negative = backend.encode_prompt(pipe, [""], pipe.device) if guidance_scale > 1 else None
    per_draw = [implicit_margins(backend.denoiser(pipe), scheduler, cache, draws=1, seed=draw, negative_embeds=negative,
                                 guidance_scale=guidance_scale) for draw in range(draws)]
    return {
        "expected": implicit_accuracy(torch.stack(per_draw).mean(0)),
        "single_draw": sum(implicit_accuracy(m) for m in per_draw) / draws,
        "draws": draws,
        "pairs": len(pairs),
    }
