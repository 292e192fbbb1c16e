"""Where models come from: the default model's location, and whether a reference is a local path or a Hub id.

The one home of these rules; the studio, the CLIs, the trainers and ``hub.py`` all ask here. Standard library and
``huggingface_hub`` only (no torch), so the app's page can use it before the model stack has loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = REPO_ROOT / "assets"
DEFAULT_MODEL_DIR = ASSETS_DIR / "huvidpo-tiny"
MODEL_ENV_VAR = "HUVIDPO_MODEL"
# A LoRA folder holds its weights under diffusers' file name; the studio finds LoRAs by it before torch has loaded.
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def default_model_path() -> str:
    """The model the app and the CLIs use unless told otherwise: ``$HUVIDPO_MODEL`` or the embedded default."""
    return os.environ.get(MODEL_ENV_VAR) or str(DEFAULT_MODEL_DIR)


def is_embedded_default(model: str | os.PathLike | None) -> bool:
    """Whether ``model`` (empty: the default) is the embedded default shipped in ``assets/``."""
    reference = str(model) if model else default_model_path()
    path = Path(reference).expanduser()
    return path.exists() and path.resolve() == DEFAULT_MODEL_DIR.resolve()


def is_hub_id(reference: str) -> bool:
    """Whether ``reference`` reads as a Hub repo id (``owner/name``, valid per ``huggingface_hub``) and is not an
    existing local path. ``"runs/abc"`` that exists on disk is a path; ``"./x/y"`` or ``"a/b/c"`` never are ids."""
    reference = str(reference).strip()
    if not reference or Path(reference).expanduser().exists() or reference.count("/") != 1:
        return False
    if {".", ".."} & set(reference.split("/")):
        return False
    try:
        validate_repo_id(reference)
    except HFValidationError:
        return False
    return True


def check_hub_id(reference: str, what: str, own_namespace: bool = False) -> str:
    """``reference`` if it is a valid Hub repo id, else a ``ValueError`` naming ``what`` and the expected form.
    With ``own_namespace`` a bare ``name`` passes too (the Hub puts it under the token's user)."""
    reference = (reference or "").strip()
    form = "'owner/name' (or just 'name' for your own namespace)" if own_namespace else "'owner/name'"
    try:
        validate_repo_id(reference)
    except HFValidationError as err:
        raise ValueError(f"{what} {reference!r} is not a Hub repo id: write it as {form} ({err}).") from None
    if reference.count("/") != 1 and not (own_namespace and "/" not in reference):
        raise ValueError(f"{what} {reference!r} is not a Hub repo id: write it as {form}.")
    return reference
