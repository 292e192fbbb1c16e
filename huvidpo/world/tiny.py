"""The embedded default: Stable Diffusion's classes at laptop size, built without any download.

Everything a real checkpoint has is here in miniature: a CLIP tokenizer (its BPE vocabulary built from
our own word list), a CLIP text encoder, an ``AutoencoderKL``, a first-frame text-to-image
``StableDiffusionPipeline`` and its inflation to a :class:`VideoUNet`. Random-initialised here; the
synthetic-world scripts train them. Build the random checkpoint with::

    python -m huvidpo.world.tiny --out assets/huvidpo-tiny
"""

from __future__ import annotations

import argparse

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from ..locations import DEFAULT_MODEL_DIR
from ..models import VideoUNet
from ..pipeline import HuViDPOPipeline
from .prompts import DIRECTION_SYNONYMS, SHAPE_SYNONYMS, SPEED_SYNONYMS, WORDING_WORDS


# Words that get a token of their own. The world's vocabulary comes first; other text falls back to
# byte-level pieces, as in any BPE.
BASE_WORDS = (
    "a an the on in of with and moving move moves background small large big tiny slowly quickly fast slow "
    "left right up down circle square triangle red green blue yellow white black orange purple cyan magenta "
    "gray grey pink brown corner bird birds fly flying firework fireworks helicopter horse run running play "
    "playing guitar rain raining turn smile smiling waterfall sky video top bottom"
).split()

# The embedded default's tokenizer: BASE_WORDS and every word the world's wordings use (synonyms included), so
# "ball", "leftward" or "backdrop" are one token each, as "circle" is. Random tiny models for tests keep BASE_WORDS.
EMBEDDED_WORDS = tuple(dict.fromkeys([*BASE_WORDS, *WORDING_WORDS, *SHAPE_SYNONYMS, *DIRECTION_SYNONYMS, *SPEED_SYNONYMS]))

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def build_tokenizer(words: tuple[str, ...] | list[str] = BASE_WORDS, model_max_length: int = 32) -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose merges spell each of ``words`` as one token, built locally.

    The vocabulary is CLIP's layout: special tokens, the 256 byte symbols with and without the
    end-of-word mark, then one entry per merge, so any text still tokenizes (into bytes at worst).
    """
    symbols = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *symbols, *(s + "</w>" for s in symbols)]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in dict.fromkeys(w.lower() for w in words):
        # BPE applies the lowest-ranked merge first, not left to right: spell the word the way the
        # merges so far would, then add merges (ranked after all others) joining what is left.
        pieces = _apply_merges(list(word[:-1]) + [word[-1] + "</w>"], ranks)
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            merged = pair[0] + pair[1]
            vocab.setdefault(merged, len(vocab))
            ranks[pair] = len(merges)
            merges.append(pair)
            pieces = [merged, *pieces[2:]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def _apply_merges(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word: repeatedly join the adjacent pair of lowest merge rank."""
    while len(pieces) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(pieces, pieces[1:]))]
        ranked = [(rank, i) for rank, i in pairs if rank is not None]
        if not ranked:
            break
        _, i = min(ranked)
        pieces = [*pieces[:i], pieces[i] + pieces[i + 1], *pieces[i + 2:]]
    return pieces


def tiny_unet_config(cross_attention_dim: int = 64) -> dict:
    """Config of the tiny UNet (16x16 latents of 64x64 frames), shared by the image and the video model."""
    return dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=16,
    )


def tiny_vae() -> AutoencoderKL:
    """A 4x-downsampling KL autoencoder with 4 latent channels (SD's layout at 1/100 of the size)."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )


def tiny_text_encoder(tokenizer: CLIPTokenizer, hidden_size: int = 64) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def sd_ddim_scheduler(zero_terminal_snr: bool = False) -> DDIMScheduler:
    """Stable Diffusion 1.x's DDIM settings; with ``zero_terminal_snr``, the same betas rescaled so the
    last step is pure noise, v-prediction and "trailing" timesteps (Lin et al. 2023, "Common Diffusion
    Noise Schedules and Sample Steps are Flawed"), as the embedded default is trained."""
    zero_snr = dict(rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing")
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,  # "trailing" ignores it; 1 also keeps StableDiffusionPipeline from warning
        **(zero_snr if zero_terminal_snr else {}),
    )


def build_tiny_image_pipeline(seed: int = 0, words: tuple[str, ...] = BASE_WORDS) -> StableDiffusionPipeline:
    """A random-initialised tiny text-to-image pipeline (the first-frame model's classes); its tokenizer spells each
    of ``words`` as one token."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(words)
    text_encoder = tiny_text_encoder(tokenizer)
    return StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**tiny_unet_config(text_encoder.config.hidden_size)),
        scheduler=sd_ddim_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_pipeline(seed: int = 0, with_image_pipeline: bool = True) -> HuViDPOPipeline:
    """The tiny HuViDPO pipeline: its video UNet is the inflation of the first-frame model's UNet."""
    image_pipeline = build_tiny_image_pipeline(seed)
    return HuViDPOPipeline(
        vae=image_pipeline.vae,
        text_encoder=image_pipeline.text_encoder,
        tokenizer=image_pipeline.tokenizer,
        unet=VideoUNet.from_unet2d(image_pipeline.unet),
        scheduler=sd_ddim_scheduler(),
        image_pipeline=image_pipeline if with_image_pipeline else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the random-initialised tiny HuViDPO checkpoint.")
    parser.add_argument("--out", default=str(DEFAULT_MODEL_DIR), help="Folder to write the pipeline to.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random initialisation.")
    args = parser.parse_args()
    build_tiny_pipeline(args.seed).save_pretrained(args.out)
    print(f"Wrote a random-initialised tiny HuViDPO pipeline to {args.out}")


if __name__ == "__main__":
    main()
