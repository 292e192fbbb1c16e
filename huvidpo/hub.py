"""Loading by Hub id or local path, LoRA save/load, model cards, and pushing to the Hub.

One code path for both worlds: the embedded default is a saved :class:`HuViDPOPipeline` folder; a
Stable Diffusion 1.x id or folder (``stable-diffusion-v1-5/stable-diffusion-v1-5``) is loaded with
diffusers and inflated on the fly; the first-frame model is any text-to-image pipeline, or a
UNet-only repository such as ``mhdang/dpo-sdxl-text2image-v1`` put on its base pipeline (SDXL base).
A Wan 2.1 or AnimateDiff folder is loaded as its own diffusers pipeline: ``model_index.json`` names the family
(:func:`huvidpo.backends.backend_for`), and LoRAs are written in the format that family's pipeline loads.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoPipelineForText2Image, DDIMScheduler, DiffusionPipeline, StableDiffusionPipeline, UNet2DConditionModel
from huggingface_hub import HfApi, ModelCard, ModelCardData, get_token
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import LocalEntryNotFoundError

from . import convert
from .hub_calls import (  # noqa: F401 - ModelLoadError and read_model_json are part of this module's interface
    NETWORK_ERRORS,
    ModelLoadError,
    offline_message,
    read_model_json,
    scrub_tokens,
    use_hub_timeouts,
)
from .locations import DEFAULT_MODEL_DIR, LORA_WEIGHT_NAME, default_model_path, is_embedded_default, is_hub_id
from .models import VideoUNet
from .pipeline import HuViDPOPipeline

SDXL_BASE_ID = "stabilityai/stable-diffusion-xl-base-1.0"
DEFAULT_ADAPTER = "huvidpo"

logger = logging.getLogger(__name__)


def load_image_pipeline(
    model: str, base: str = SDXL_BASE_ID, torch_dtype: torch.dtype = torch.float32
) -> DiffusionPipeline:
    """A text-to-image pipeline for first frames: a full pipeline, or a UNet-only repo on ``base``."""
    try:
        if read_model_json(model, "model_index.json") is not None:
            return AutoPipelineForText2Image.from_pretrained(model, dtype=torch_dtype)
        if read_model_json(model, "unet/config.json") is not None:
            unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet", dtype=torch_dtype)
            return AutoPipelineForText2Image.from_pretrained(base, unet=unet, dtype=torch_dtype)
    except (LocalEntryNotFoundError, OSError, *NETWORK_ERRORS) as err:
        raise ModelLoadError(offline_message(model)) from err
    raise ModelLoadError(f"'{model}' holds neither a pipeline (model_index.json) nor a UNet (unet/config.json).")


def inflate_image_pipeline(sd: DiffusionPipeline, image_pipeline: DiffusionPipeline | None) -> HuViDPOPipeline:
    """A HuViDPO pipeline from a Stable Diffusion 1.x pipeline: same VAE and text encoder, inflated UNet, DDIM."""
    return HuViDPOPipeline(
        vae=sd.vae,
        text_encoder=sd.text_encoder,
        tokenizer=sd.tokenizer,
        unet=VideoUNet.from_unet2d(sd.unet),
        scheduler=DDIMScheduler.from_config(sd.scheduler.config),
        image_pipeline=image_pipeline,
    )


def load_pipeline(
    model: str | None = None,
    image_model: str | None = None,
    image_model_base: str = SDXL_BASE_ID,
    device: str | torch.device | None = None,
    torch_dtype: torch.dtype | None = None,
    runs_on: str | torch.device | None = None,
) -> DiffusionPipeline:
    """Load a video pipeline by local path or Hub id, with the backend its ``model_index.json`` names
    (:func:`huvidpo.backends.backend_for`).

    Its dtype, unless ``torch_dtype`` is given, follows the precision rule for the device it will run on
    (:meth:`~huvidpo.backends.Backend.load_dtype`): bf16 for a full-size model on a CUDA GPU (a family's
    ``fp32_components``, Wan's VAE, stay fp32), fp32 otherwise; a bf16 choice is logged.

    Args:
        model: a saved HuViDPO pipeline, a Stable Diffusion 1.x pipeline to inflate, a local LAMP/HuViDPO pipeline
            folder (converted in memory by ``huvidpo.convert``), or a Wan 2.1 or AnimateDiff pipeline; default the
            embedded model.
        image_model: first-frame model replacing the pipeline's own (e.g. ``mhdang/dpo-sdxl-text2image-v1``);
            None keeps the saved one (an inflated SD model then needs an uploaded first frame). Only for models
            conditioned on a first frame.
        image_model_base: base pipeline for a UNet-only ``image_model``.
        device: where to put the pipeline (None: leave it on the CPU).
        runs_on: the device the dtype is chosen for, when it is not ``device`` (a training run loads on the CPU and
            moves the parts it needs); default ``device``.
    """
    from huvidpo.backends import backend_for

    model = model or default_model_path()
    index = read_model_json(model, "model_index.json")
    if index is None:
        raise ModelLoadError(f"'{model}' has no model_index.json: give a HuViDPO, Stable Diffusion 1.x, Wan 2.1 or "
                             "AnimateDiff pipeline folder or id.")
    backend = backend_for(index)
    if image_model and not backend.first_frame_condition:
        raise ModelLoadError(f"'{model}' is a {backend.title} model, which makes videos from text alone: it takes no "
                             "first-frame model. Leave the image model empty.")
    if torch_dtype is None:
        torch_dtype, said = backend.load_dtype(backend.read_denoiser_config(model), runs_on or device)
        if said:
            logger.warning("%s", said)
    image_pipeline = load_image_pipeline(image_model, image_model_base, torch_dtype) if image_model else None
    try:
        pipe = backend.load(model, index, torch_dtype, image_pipeline)
    except (LocalEntryNotFoundError, OSError, *NETWORK_ERRORS) as err:
        raise ModelLoadError(offline_message(model)) from err
    for pipeline in (pipe, getattr(pipe, "image_pipeline", None)):
        if pipeline is not None:
            pipeline.set_progress_bar_config(disable=True)
    return pipe.to(device) if device is not None else pipe


def load_huvidpo_pipeline(model: str, index: dict, torch_dtype: torch.dtype,
                          image_pipeline: DiffusionPipeline | None = None) -> HuViDPOPipeline:
    """The HuViDPO backend's loader: a saved HuViDPO pipeline, an original LAMP/HuViDPO checkpoint (converted), or a
    Stable Diffusion 1.x pipeline (inflated); any other pipeline is refused with what the folder is."""
    if convert.is_original_pipeline(index):
        return convert.load_original_pipeline(model, index, image_pipeline, torch_dtype)
    if index.get("_class_name") == HuViDPOPipeline.__name__:
        kwargs = {"image_pipeline": image_pipeline} if image_pipeline is not None else {}
        return HuViDPOPipeline.from_pretrained(model, dtype=torch_dtype, **kwargs)
    if "unet" in index and "vae" in index:
        sd = StableDiffusionPipeline.from_pretrained(
            model, dtype=torch_dtype, safety_checker=None, requires_safety_checker=False
        )
        return inflate_image_pipeline(sd, image_pipeline)
    raise ModelLoadError(f"'{model}' is a {index.get('_class_name')}, not a HuViDPO, Stable Diffusion 1.x, Wan 2.1 or "
                         "AnimateDiff pipeline.")


def load_lora(pipe: DiffusionPipeline, lora: str, scale: float = 1.0, adapter_name: str = DEFAULT_ADAPTER) -> None:
    """Load a diffusers-format LoRA (folder, file or Hub id) into the video UNet and activate it at ``scale``; HuViDPO's
    stage-2 ``.pth`` is converted on the way (``huvidpo.convert``)."""
    use_hub_timeouts()
    if convert.is_original_lora(lora):
        with tempfile.TemporaryDirectory() as folder:
            convert.convert_lora(lora, folder)
            return load_lora(pipe, folder, scale, adapter_name)
    if any(adapter_name in names for names in pipe.get_list_adapters().values()):
        pipe.delete_adapters(adapter_name)
    try:
        pipe.load_lora_weights(lora, adapter_name=adapter_name)
    except NETWORK_ERRORS as err:
        raise ModelLoadError(_no_network_for_lora(lora, type(err).__name__)) from err
    except (LocalEntryNotFoundError, OSError) as err:
        raise ModelLoadError(
            f"Could not load the LoRA '{lora}': expected a folder with {LORA_WEIGHT_NAME}, the file itself, "
            "or a Hub model id reachable from here."
        ) from err
    except (KeyError, ValueError, RuntimeError) as err:
        if is_hub_id(lora) and hf_constants.HF_HUB_OFFLINE:  # diffusers will not look a Hub LoRA's files up offline
            raise ModelLoadError(_no_network_for_lora(lora, "HF_HUB_OFFLINE is set")) from err
        raise ModelLoadError(f"'{lora}' is not a LoRA for this model ({err}). Was it trained on a different base model?") from err
    pipe.set_adapters([adapter_name], adapter_weights=[scale])


def _no_network_for_lora(lora: str, why: str) -> str:
    return (
        f"No network: the LoRA '{lora}' is not in the Hugging Face cache and the Hub cannot be reached ({why}). Use a "
        "local folder (a trained run, or the LoRA's folder copied to this machine), or download it where there is a "
        f"network (`hf download {lora}`)."
    )


def unload_lora(pipe: DiffusionPipeline) -> None:
    """Remove every LoRA: the pipeline is the base model again."""
    pipe.unload_lora_weights()


def save_lora(model: torch.nn.Module, out_dir: str | Path, adapter_name: str = "default") -> Path:
    """Write ``adapter_name`` of ``model`` (a pipeline's denoiser) in the diffusers LoRA format its family's pipeline
    loads (``pytorch_lora_weights.safetensors``; :meth:`~huvidpo.backends.Backend.save_lora_weights`)."""
    from peft.utils import get_peft_model_state_dict

    from huvidpo.backends import backend_for

    out_dir = Path(out_dir)
    state_dict = get_peft_model_state_dict(model, adapter_name=adapter_name)
    # The adapter's config (rank, alpha, targets) travels in the file's metadata so the scale survives loading.
    metadata = model.peft_config[adapter_name].to_dict()
    backend_for(model).save_lora_weights(out_dir, state_dict, metadata)
    return out_dir / LORA_WEIGHT_NAME


def restore_lora(model: torch.nn.Module, folder: str | Path, adapter_name: str = DEFAULT_ADAPTER) -> None:
    """Copy a LoRA written by :func:`save_lora` into ``model``'s adapter ``adapter_name`` of the same shape (to
    resume training); a LoRA of another rank or other target modules is refused with what to do."""
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    from huvidpo.backends import backend_for

    saved, _ = backend_for(model).read_lora(folder)
    expected = get_peft_model_state_dict(model, adapter_name=adapter_name)
    mismatched = sorted(set(saved) ^ set(expected)) or sorted(k for k in saved if saved[k].shape != expected[k].shape)
    if mismatched:
        raise ValueError(
            f"The LoRA in {folder} was made with other LoRA settings (e.g. {mismatched[:3]}); resume with the settings "
            "it was trained with (lora_rank, lora_target_modules, model)."
        )
    set_peft_model_state_dict(model, saved, adapter_name=adapter_name)


def card_name(reference: str | None) -> tuple[str | None, str]:
    """How a model card names a model or dataset: (its Hub id for the card's metadata, or None; its name in the
    text). Never a local path: the embedded default is named as such, another local folder by its folder name.
    ``reference`` empty means the default model."""
    if is_embedded_default(reference):
        return None, f"{DEFAULT_MODEL_DIR.name} (embedded default)"
    reference = str(reference or default_model_path())
    if is_hub_id(reference):
        return reference, reference
    return None, Path(reference).name


def write_model_card(
    out_dir: str | Path,
    title: str,
    text: str,
    table: dict[str, Any],
    tags: list[str],
    base_model: str | None = None,
    dataset: str | None = None,
    license: str | None = None,
) -> Path:
    """``out_dir/README.md``: the card's metadata (``huggingface_hub.ModelCardData``: diffusers, tags, the base
    model's and dataset's Hub ids when they have one), a title, ``text`` and a table of settings and metrics."""
    card_data = ModelCardData(
        library_name="diffusers", base_model=base_model, datasets=[dataset] if dataset else None, tags=tags, license=license
    )
    rows = "\n".join(f"| {name} | {value} |" for name, value in table.items())
    content = f"---\n{card_data.to_yaml()}\n---\n\n# {title}\n\n{text}\n\n| setting / metric | value |\n|---|---|\n{rows}\n"
    path = Path(out_dir) / "README.md"
    ModelCard(content).save(path)
    return path


def push_folder_to_hub(
    folder: str | Path,
    repo_id: str,
    private: bool = True,
    token: str | None = None,
    repo_type: str = "model",
    ignore_patterns: list[str] | None = None,
) -> str:
    """Upload a folder (a LoRA or a pipeline with its card) to a Hub repo, created if needed, and return its URL.

    The local folder is never touched; ``ignore_patterns`` (``upload_folder``'s) leave out what is not for the Hub.
    ``token`` defaults to the environment / the login (``HF_TOKEN`` or ``hf auth login``).
    """
    if token is None and get_token() is None:
        raise ModelLoadError(
            f"Pushing to {repo_id} failed: no Hub token. Set HF_TOKEN or run `hf auth login` with a token that can "
            "write, then push again. The local files are intact."
        )
    use_hub_timeouts()
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, ignore_patterns=ignore_patterns,
            commit_message="Upload from HuViDPO Studio",
        )
    except Exception as err:  # noqa: BLE001 - any failure must leave local files and say why
        reason = scrub_tokens(f"{type(err).__name__}: {err}", token)  # a Hub error body may echo the token
        raise ModelLoadError(
            f"Pushing {Path(folder).name} to {repo_id} failed ({reason}). The local files are intact; "
            "check the token (HF_TOKEN or `hf auth login`), the repo name and the network, then push again."
        ) from None
    prefix = "datasets/" if repo_type == "dataset" else ""
    return f"https://huggingface.co/{prefix}{repo_id}"
