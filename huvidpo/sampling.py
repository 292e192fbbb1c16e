"""The sampler presets: how the pipeline keeps a video's frames together, ours and the original HuViDPO/LAMP's.

What is unusual here: nothing but the table and its lookup, with no torch, so the generation settings (and the
studio's page, before the model stack loads) can offer the presets as choices. The pipeline applies the options
(:meth:`huvidpo.pipeline.HuViDPOPipeline.__call__`, ``sampler=...`` plus single options on top).
"""

from __future__ import annotations

from typing import Any

# The sampler options and what each preset sets them to; ``sampler=None`` leaves them all at SAMPLER_OFF.
SAMPLER_OFF: dict[str, Any] = dict(
    shared_noise=0.0, shared_noise_mix="variance_preserving", adain=False, adain_in_loop=False, histogram_match=False
)
SAMPLER_PRESETS: dict[str, dict[str, Any]] = {
    # Ours (the studio's and the generate CLI's default): a variance-preserving share of frame 0's noise, one
    # AdaIN to frame 0 before decoding.
    "ours": dict(shared_noise=0.2, shared_noise_mix="variance_preserving", adain=True, adain_in_loop=False, histogram_match=False),
    # The original HuViDPO/LAMP sampler: 0.2 n0 + 0.8 n_f, AdaIN inside the loop, histogram matching after decoding.
    "huvidpo": dict(shared_noise=0.2, shared_noise_mix="linear", adain=False, adain_in_loop=True, histogram_match=True),
}
SHARED_NOISE_MIXES = ("variance_preserving", "linear")
ADAIN_OPTIONS = ("adain", "adain_in_loop")  # the two kinds of AdaIN; a preset uses one


def sampler_options(sampler: str | None = None, **overrides) -> dict[str, Any]:
    """The sampler options of preset ``sampler`` (None: all off), with the ``overrides`` that are not None on top."""
    if sampler is not None and sampler not in SAMPLER_PRESETS:
        raise ValueError(f"Unknown sampler preset {sampler!r}: use one of {list(SAMPLER_PRESETS)} or None.")
    unknown = sorted(set(overrides) - set(SAMPLER_OFF))
    if unknown:
        raise ValueError(f"Unknown sampler option(s) {unknown}: the options are {list(SAMPLER_OFF)}.")
    options = {**SAMPLER_OFF, **SAMPLER_PRESETS.get(sampler, {}), **{k: v for k, v in overrides.items() if v is not None}}
    if options["shared_noise_mix"] not in SHARED_NOISE_MIXES:
        raise ValueError(f"shared_noise_mix must be one of {list(SHARED_NOISE_MIXES)}, got {options['shared_noise_mix']!r}.")
    return options
