"""Model families behind one interface (:class:`Backend`), and :func:`backend_for`, the one rule that picks one.

``backend_for`` reads the ``_class_name`` of a model folder's ``model_index.json`` (or a pipeline's class, or a bare
denoiser's): ``WanPipeline`` is Wan 2.1, ``AnimateDiffPipeline`` AnimateDiff, and everything else HuViDPO, whose
loader also inflates a Stable Diffusion 1.x pipeline and converts an original LAMP/HuViDPO checkpoint (and says
what is wrong with any other folder).

Importing the backends and ``backend_for`` on a folder, an id or a dict cost no torch: the studio reads a family's
settings (its frame rule) while it builds its page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huvidpo.backends.animatediff import AnimateDiffBackend
from huvidpo.backends.base import DEFAULT_LORA_TARGETS, Backend
from huvidpo.backends.huvidpo import HuViDPOBackend
from huvidpo.backends.wan import WanBackend

HUVIDPO = HuViDPOBackend()
WAN = WanBackend()
ANIMATEDIFF = AnimateDiffBackend()
BACKENDS: dict[str, Backend] = {backend.name: backend for backend in (HUVIDPO, WAN, ANIMATEDIFF)}


def backend_for(source: Any) -> Backend:
    """The backend of ``source``: a model folder or Hub id, its ``model_index.json`` as a dict, a pipeline, or a
    bare denoiser (the module a LoRA is trained on)."""
    if isinstance(source, (str, Path)):
        from huvidpo.hub_calls import read_model_json
        from huvidpo.locations import default_model_path

        source = read_model_json(str(source or default_model_path()), "model_index.json") or {}
    if isinstance(source, dict):
        class_name = source.get("_class_name")
    else:
        import torch  # a pipeline or a module: torch is loaded already

        if isinstance(source, torch.nn.Module):
            return next((b for b in BACKENDS.values() if isinstance(source, b.denoiser_classes())), HUVIDPO)
        class_name = type(source).__name__
    return next((b for b in BACKENDS.values() if class_name in b.pipeline_class_names), HUVIDPO)


def model_family(model: str | None) -> Backend:
    """The backend of ``model`` (a folder or Hub id; empty: the embedded default) from its ``model_index.json``,
    without loading it (nor torch); HuViDPO's when that cannot be read (loading the model says what is wrong)."""
    from huvidpo.hub_calls import ModelLoadError
    from huvidpo.locations import default_model_path

    try:
        return backend_for(model or default_model_path())
    except (ModelLoadError, OSError, ValueError):
        return HUVIDPO


__all__ = ["ANIMATEDIFF", "BACKENDS", "DEFAULT_LORA_TARGETS", "HUVIDPO", "WAN", "AnimateDiffBackend", "Backend",
           "HuViDPOBackend", "WanBackend", "backend_for", "model_family"]
