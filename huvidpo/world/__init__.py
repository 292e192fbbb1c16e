"""The synthetic world, one concept in one place: coloured shapes moving on plain backgrounds.

- ``clips``: the vocabulary, prompts, clip specs, the renderer and world datasets;
- ``oracle``: reads a clip from its pixels and scores it against a prompt;
- ``labelers``: the oracle voting through the real pair sampler and vote store, as a person would;
- ``metrics``: the oracle's evaluation metrics (match rates, win rates);
- ``tiny``: Stable Diffusion's classes at laptop size (the embedded default's architecture);
- ``build``: training the embedded default's parts from nothing (``scripts/build_embedded_default.py``).

``tiny`` and ``build`` import torch and diffusers; import them explicitly. This package's top level is numpy only.
"""

from .clips import (
    ClipSpec,
    Distractor,
    PromptAttributes,
    generate_world,
    make_prompt_set,
    parse_prompt,
    render_clip,
    render_degraded,
    sample_clip_spec,
    split_combinations,
    straight_track,
    world_dataset,
    world_frames,
)
from .oracle import ClipReading, OracleConfig, OracleScore, matches, prefer, read_clip, score_clip

__all__ = [
    "ClipReading", "ClipSpec", "Distractor", "OracleConfig", "OracleScore", "PromptAttributes",
    "generate_world", "make_prompt_set", "matches", "parse_prompt", "prefer", "read_clip",
    "render_clip", "render_degraded", "sample_clip_spec", "score_clip", "split_combinations",
    "straight_track", "world_dataset", "world_frames",
]
