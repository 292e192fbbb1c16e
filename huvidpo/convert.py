"""Import LAMP and HuViDPO checkpoints: their stage-1 UNet (a pipeline folder or its ``unet/``) and HuViDPO's DPO LoRA.

What is unusual here: it is written from facts about the originals' files (``shared/fixtures/lamp-tiny``:
its README and key mapping), never from their code (CC BY-NC). The originals save a diffusers 0.11
``UNet3DConditionModel`` of their own: ``*3D`` block names, every inflated conv as ``X.conv2d`` (the 2-D
weights), ``X.conv_gate`` and ``X.conv1d`` (the temporal branch), temporal attention as ``attn_temp`` and
``norm_temp``. Each key is renamed by one of five rules and the result must fill a :class:`VideoUNet` of
the chosen preset exactly: an unknown, missing or misshapen key stops the conversion with its name. LAMP
and HuViDPO write the same format and differ only in the SparseCausal attention, so the files cannot tell
which one made them: ``--preset`` says (a LAMP checkpoint run as ``huvidpo`` is a different model).

    python -m huvidpo.convert path/to/lamp-pipeline --preset lamp --out converted
    python -m huvidpo.convert --lora model_weights_epoch_1.pth --out dpo-lora
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.model_loading_utils import load_state_dict
from peft import LoraConfig

from .models import VideoUNet
from .models.presets import video_unet_options
from .pipeline import HuViDPOPipeline

logger = logging.getLogger(__name__)

ORIGINAL_PRESETS = ("lamp", "huvidpo")
ORIGINAL_UNET_CLASS = "UNet3DConditionModel"
# Original name piece -> ours. Every other part of a key is Stable Diffusion's and stays as it is.
KEY_RULES = (
    (".conv2d.", "."),  # the inflated conv's 2-D weights keep the plain conv's name here
    (".conv_gate.", ".gate."),
    (".conv1d.", ".temporal."),
    (".attn_temp.", ".temporal_attention.attn."),
    (".norm_temp.", ".temporal_attention.norm."),
)
BLOCK_TYPES = {
    "CrossAttnDownBlock3D": "CrossAttnDownBlock2D",
    "DownBlock3D": "DownBlock2D",
    "CrossAttnUpBlock3D": "CrossAttnUpBlock2D",
    "UpBlock3D": "UpBlock2D",
    "UNetMidBlock3DCrossAttn": "UNetMidBlock2DCrossAttn",
}
PIPELINE_COMPONENTS = ("vae", "text_encoder", "tokenizer", "scheduler")
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
LORA_PREFIX = "base_model.model."
# HuViDPO's DPO LoRA (new_train.py): the .pth keeps the tensors, not the config; rank comes from the shapes.
HUVIDPO_LORA_ALPHA = 32


def original_key_to_ours(key: str) -> str:
    """One original UNet parameter name -> the :class:`VideoUNet` name (``conv_in.conv2d.weight`` -> ``conv_in.weight``)."""
    for old, new in KEY_RULES:
        key = key.replace(old, new)
    return key


def is_original_pipeline(model_index: dict) -> bool:
    """Whether a ``model_index.json`` is a LAMP/HuViDPO pipeline (its UNet the originals' own ``UNet3DConditionModel``,
    not diffusers' text-to-video one)."""
    library, class_name = (list(model_index.get("unet") or []) + [None, None])[:2]
    return class_name == ORIGINAL_UNET_CLASS and library != "diffusers"


def preset_for(model_index: dict) -> str:
    """The preset a pipeline folder most likely needs: ``lamp`` for a ``LAMPPipeline``, else ``huvidpo``."""
    return "lamp" if model_index.get("_class_name") == "LAMPPipeline" else "huvidpo"


def is_original_lora(path: str | Path) -> bool:
    """Whether ``path`` is a PEFT state dict saved with ``torch.save`` (HuViDPO's stage-2 ``.pth``)."""
    path = Path(path)
    return path.is_file() and path.suffix in (".pth", ".pt")


def _check_preset(preset: str) -> None:
    if preset not in ORIGINAL_PRESETS:
        raise ValueError(
            f"preset {preset!r} is not one of the originals {list(ORIGINAL_PRESETS)}: say which project made the "
            "checkpoint (their files are the same; LAMP's attention reads frame 0, HuViDPO's frames 0 and i-1)."
        )


def _local_folder(src: str | Path) -> Path:
    folder = Path(src).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"No folder at {folder}: give a local LAMP/HuViDPO pipeline folder or its unet/ folder "
            "(download a Hub checkpoint first, e.g. `hf download OWNER/NAME --local-dir DIR`)."
        )
    return folder


def original_unet_folder(src: str | Path) -> Path:
    """The folder holding the original UNet's ``config.json``: ``src`` itself or its ``unet/``."""
    folder = _local_folder(src)
    for candidate in (folder, folder / "unet"):
        config = candidate / "config.json"
        if config.is_file() and json.loads(config.read_text()).get("_class_name") == ORIGINAL_UNET_CLASS:
            return candidate
    raise ValueError(
        f"{folder} is not a LAMP/HuViDPO checkpoint: neither it nor its unet/ has a config.json of a "
        f"{ORIGINAL_UNET_CLASS}."
    )


def video_unet_config(original: dict, preset: str) -> dict:
    """The :class:`VideoUNet` config of an original UNet config (``*3D`` blocks, ``use_temp``) under ``preset``."""
    _check_preset(preset)
    config = {k: v for k, v in original.items() if not k.startswith("_")}
    if config.pop("use_temp", None) is not True:
        raise ValueError("The UNet config has no 'use_temp: true': it has no temporal attention, so it is not a stage-1 checkpoint.")
    known = UNet2DConditionModel._get_init_keys(UNet2DConditionModel)
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"Unknown UNet config key(s) {unknown}: this converter knows LAMP/HuViDPO's UNet3DConditionModel.")
    for name in ("down_block_types", "up_block_types"):
        config[name] = [_block_type(t) for t in config[name]]
    if "mid_block_type" in config:
        config["mid_block_type"] = _block_type(config["mid_block_type"])
    return {**config, **video_unet_options(preset)}


def _block_type(name: str) -> str:
    if name not in BLOCK_TYPES:
        raise ValueError(f"Unknown block type {name!r} in the UNet config: expected one of {list(BLOCK_TYPES)}.")
    return BLOCK_TYPES[name]


def _weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise ValueError(f"No UNet weights in {folder}: expected one of {list(WEIGHT_FILES)}.")


def load_converted_weights(unet: VideoUNet, original_state_dict: dict[str, torch.Tensor]) -> None:
    """Rename ``original_state_dict`` and load it into ``unet``; any key without a place, or a place without a
    key, raises ``ValueError`` naming them."""
    renamed = {original_key_to_ours(k): k for k in original_state_dict}
    if len(renamed) != len(original_state_dict):
        raise ValueError("Two original keys map to the same name: the checkpoint is not in the LAMP/HuViDPO layout.")
    expected = set(unet.state_dict())
    unknown = sorted(original for ours, original in renamed.items() if ours not in expected)
    missing = sorted(expected - set(renamed))
    if unknown or missing:
        raise ValueError(
            f"The checkpoint does not fit a VideoUNet with temporal_convs={unet.config.temporal_convs!r}: {len(unknown)} key(s) without a "
            f"place (e.g. {unknown[:3]}), {len(missing)} missing (e.g. {missing[:3]}). Check --preset and that the "
            "checkpoint is a LAMP/HuViDPO stage-1 UNet."
        )
    state_dict = {ours: original_state_dict[original] for ours, original in renamed.items()}
    try:
        unet.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(f"The checkpoint's tensors do not fit its own config: {err}") from err


def convert_unet(src: str | Path, preset: str) -> VideoUNet:
    """An original stage-1 UNet (a pipeline folder or its ``unet/``) as a :class:`VideoUNet`, in memory, fp32 as saved."""
    folder = original_unet_folder(src)
    config = video_unet_config(json.loads((folder / "config.json").read_text()), preset)
    unet = VideoUNet.from_config(config)
    load_converted_weights(unet, load_state_dict(_weights_file(folder)))
    return unet.eval()


def _load_component(folder: Path, name: str, spec: list) -> object:
    library, class_name = spec
    if library not in ("diffusers", "transformers"):
        raise ValueError(f"Component {name} is a {library}.{class_name}; only diffusers and transformers components convert.")
    cls = getattr(importlib.import_module(library), class_name)
    if name in ("vae", "text_encoder"):
        component, info = cls.from_pretrained(folder, subfolder=name, output_loading_info=True)
        problems = {k: sorted(v)[:3] for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if problems:
            raise ValueError(f"The {name} of {folder} does not load cleanly: {problems}.")
        return component.eval()
    return cls.from_pretrained(folder, subfolder=name)


def convert_pipeline(
    src: str | Path,
    preset: str,
    image_pipeline=None,
    torch_dtype: torch.dtype = torch.float32,
) -> HuViDPOPipeline:
    """A LAMP/HuViDPO pipeline folder as a :class:`HuViDPOPipeline`, in memory: its VAE, text encoder, tokenizer and
    scheduler as they are, its UNet converted. ``image_pipeline`` draws first frames (None: pass an image)."""
    folder = _local_folder(src)
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ValueError(f"{folder} has no model_index.json: for a lone unet/ folder use convert_unet.")
    index = json.loads(index_file.read_text())
    if not is_original_pipeline(index):
        raise ValueError(f"{folder} is a {index.get('_class_name')} whose UNet is not LAMP/HuViDPO's {ORIGINAL_UNET_CLASS}.")
    extra = sorted(k for k in index if not k.startswith("_") and k not in (*PIPELINE_COMPONENTS, "unet"))
    if extra:
        raise ValueError(f"Unknown pipeline component(s) {extra} in {index_file}: a LAMP/HuViDPO pipeline has {list(PIPELINE_COMPONENTS)} and unet.")
    components = {name: _load_component(folder, name, index[name]) for name in PIPELINE_COMPONENTS}
    pipe = HuViDPOPipeline(unet=convert_unet(folder, preset), image_pipeline=image_pipeline, **components)
    return pipe if torch_dtype == torch.float32 else pipe.to(dtype=torch_dtype)


def load_original_pipeline(
    model: str | Path, model_index: dict, image_pipeline=None, torch_dtype: torch.dtype = torch.float32
) -> HuViDPOPipeline:
    """``hub.load_pipeline``'s way in for a LAMP/HuViDPO folder: converted in memory with the preset its pipeline
    class suggests (:func:`preset_for`), and a log line that says so."""
    preset = preset_for(model_index)
    logger.warning(
        "%s is a %s checkpoint (LAMP/HuViDPO layout): converting it in memory with preset %r. Convert it once with "
        "`python -m huvidpo.convert %s --preset lamp|huvidpo --out DIR` to choose the preset and load faster.",
        model, model_index.get("_class_name"), preset, model,
    )
    return convert_pipeline(model, preset, image_pipeline, torch_dtype)


def convert(src: str | Path, out: str | Path, preset: str) -> Path:
    """Write ``src`` (a LAMP/HuViDPO pipeline folder or its ``unet/``) as a HuViDPO Studio folder at ``out``: a whole
    pipeline, or for a lone ``unet/`` a folder whose ``unet/`` ``VideoUNet.from_pretrained(out, subfolder="unet")`` loads."""
    _check_preset(preset)
    folder = _local_folder(src)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty: choose a new folder for the converted model.")
    if (folder / "model_index.json").is_file():
        convert_pipeline(folder, preset).save_pretrained(out)
    else:
        convert_unet(folder, preset).save_pretrained(out / "unet")
    return out


@dataclass
class LoraConversion:
    """What :func:`convert_lora` wrote and what it dropped."""

    path: Path
    rank: int
    alpha: int
    target_modules: list[str]
    lora_layers: int
    dropped_base: Counter  # dtype name -> how many frozen base weights of that dtype were dropped

    def summary(self) -> str:
        dropped = ", ".join(f"{n} {dtype}" for dtype, n in sorted(self.dropped_base.items())) or "none"
        return (
            f"wrote {self.path}: LoRA on {self.lora_layers} layers ({', '.join(self.target_modules)}), rank {self.rank}, "
            f"alpha {self.alpha}. Dropped the frozen base copies ({dropped}): the base is the stage-1 UNet as its training saved it "
            "(fp32 in LAMP/HuViDPO); loading these copies instead would round it to their dtype."
        )


def lora_state_dict_from_peft(peft_state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Counter]:
    """A PEFT ``state_dict()`` of a LoRA-wrapped original UNet -> (diffusers-format LoRA weights under our names,
    dtypes of the dropped frozen base weights). Keys other than LoRA A/B and base weights raise ``ValueError``."""
    lora, dropped = {}, Counter()
    for key, tensor in peft_state_dict.items():
        if not key.startswith(LORA_PREFIX):
            raise ValueError(f"Unknown key {key!r}: a PEFT LoRA state dict has every key under {LORA_PREFIX!r}.")
        path = key[len(LORA_PREFIX):]
        for part in ("lora_A", "lora_B"):
            suffix = f".{part}.default.weight"
            if path.endswith(suffix):
                lora[original_key_to_ours(path[: -len(suffix)] + ".") + f"{part}.weight"] = tensor
                break
        else:
            if ".lora_" in path or "lora_magnitude" in path:
                raise ValueError(f"Unsupported LoRA tensor {key!r}: only the 'default' adapter's lora_A/lora_B convert.")
            dropped[str(tensor.dtype).removeprefix("torch.")] += 1
    modules = {k.rsplit(".lora_", 1)[0] for k in lora}
    unpaired = sorted(m for m in modules if f"{m}.lora_A.weight" not in lora or f"{m}.lora_B.weight" not in lora)
    if not lora or unpaired:
        raise ValueError(f"No complete LoRA in the file: layers without both A and B: {unpaired[:3]}.")
    return lora, dropped


def convert_lora(pth: str | Path, out: str | Path, lora_alpha: int = HUVIDPO_LORA_ALPHA) -> LoraConversion:
    """HuViDPO's stage-2 ``.pth`` (``torch.save(peft_model.state_dict())``) -> a diffusers-format LoRA folder that
    ``huvidpo.hub.load_lora`` loads. The rank is read from the tensors; ``lora_alpha`` is not in the file (HuViDPO: 32)."""
    pth = Path(pth)
    if not pth.is_file():
        raise ValueError(f"No LoRA file at {pth}: give HuViDPO's stage-2 .pth (e.g. model_weights_epoch_1.pth).")
    lora, dropped = lora_state_dict_from_peft(torch.load(pth, map_location="cpu", weights_only=True))
    ranks = {t.shape[0] for k, t in lora.items() if k.endswith("lora_A.weight")}
    if len(ranks) != 1:
        raise ValueError(f"The LoRA layers have different ranks {sorted(ranks)}; this converter takes one rank.")
    modules = {k.rsplit(".lora_", 1)[0] for k in lora}
    targets = sorted({"to_out.0" if m.endswith(".to_out.0") else m.rsplit(".", 1)[-1] for m in modules})
    rank = ranks.pop()
    config = LoraConfig(r=rank, lora_alpha=lora_alpha, init_lora_weights="gaussian", target_modules=targets)
    HuViDPOPipeline.save_lora_weights(
        out, unet_lora_layers=lora, unet_lora_adapter_metadata=config.to_dict(), safe_serialization=True
    )
    return LoraConversion(Path(out), rank, lora_alpha, targets, len(modules), dropped)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m huvidpo.convert", description=__doc__.splitlines()[0])
    parser.add_argument("src", nargs="?", help="A LAMP/HuViDPO pipeline folder, or its unet/ folder.")
    parser.add_argument("--preset", choices=ORIGINAL_PRESETS, help="Which original made SRC: lamp or huvidpo (same files, different attention).")
    parser.add_argument("--lora", help="Instead of SRC: HuViDPO's stage-2 LoRA .pth to convert.")
    parser.add_argument("--lora-alpha", type=int, default=HUVIDPO_LORA_ALPHA, help="LoRA alpha (not stored in the .pth; HuViDPO trains with 32).")
    parser.add_argument("--out", required=True, help="Folder to write (new or empty).")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.src) == bool(args.lora):
        parser.error("give either SRC (a checkpoint folder, with --preset) or --lora PTH")
    if args.src and not args.preset:
        parser.error("--preset is required with SRC: lamp or huvidpo, whichever project made the checkpoint")
    try:
        if args.lora:
            print(convert_lora(args.lora, args.out, args.lora_alpha).summary())
        else:
            print(f"wrote {convert(args.src, args.out, args.preset)} (preset {args.preset})")
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
