"""LAMP's CLIP metrics for generated videos: text alignment, frame consistency and diversity.

Definitions (all on L2-normalised CLIP embeddings, cosine similarities, not the x100 "CLIP score"):
- text alignment: mean over frames of cos(text, frame);
- consistency: mean of cos(frame_i, frame_j) over all pairs i < j of one video;
- diversity: 1 - mean of cos(video_a, video_b) over pairs of *different* videos of one prompt, a video's
  embedding being the re-normalised mean of its frame embeddings.

What is unusual here:
- Any ``transformers.CLIPModel`` works, by Hub id or local folder; its tokenizer and image preprocessing are
  read from the same place. Frames always go through ``CLIPImageProcessorPil`` (the PIL backend), so a
  metric does not change with whether torchvision happens to be installed.
- A clip's frames are embedded once (:meth:`ClipScorer.score_video`); the video embedding is kept for
  diversity, which needs several videos of the same prompt.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel, PreTrainedTokenizerBase

from ..data.video import to_uint8_frames
from ..hub import ModelLoadError
from ..locations import is_hub_id

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"


@dataclass
class VideoClipScores:
    """CLIP metrics of one video, and its video embedding (for :func:`diversity`)."""

    text_alignment: float
    consistency: float
    embedding: torch.Tensor  # (d,), unit norm

    def to_dict(self) -> dict[str, float]:
        return {"text_alignment": self.text_alignment, "consistency": self.consistency}


@dataclass
class ClipScorer:
    """A CLIP model with its tokenizer and image preprocessing; see :func:`load_clip`."""

    model: CLIPModel
    tokenizer: PreTrainedTokenizerBase
    image_processor: CLIPImageProcessorPil
    name: str
    batch_size: int = 32

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def embed_frames(self, frames: Any) -> torch.Tensor:
        """Unit-norm image embeddings ``(f, d)`` of a clip (``(f, h, w, 3)`` float [0, 1] or uint8)."""
        clip = to_uint8_frames(frames)
        embeddings = []
        for start in range(0, len(clip), self.batch_size):
            pixels = self.image_processor(images=list(clip[start : start + self.batch_size]), return_tensors="pt")
            out = self.model.get_image_features(pixel_values=pixels.pixel_values.to(self.device, self.model.dtype))
            embeddings.append(_features(out))
        return torch.nn.functional.normalize(torch.cat(embeddings).float(), dim=-1).cpu()

    @torch.no_grad()
    def embed_text(self, text: str) -> torch.Tensor:
        """Unit-norm text embedding ``(d,)``; text longer than the model's context is truncated."""
        max_length = min(self.tokenizer.model_max_length, self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer([text], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        out = self.model.get_text_features(input_ids=tokens.input_ids.to(self.device),
                                           attention_mask=tokens.attention_mask.to(self.device))
        return torch.nn.functional.normalize(_features(out).float(), dim=-1)[0].cpu()

    def score_video(self, frames: Any, prompt: str) -> VideoClipScores:
        """Text alignment and consistency of one clip, embedding its frames once."""
        image = self.embed_frames(frames)
        return VideoClipScores(
            text_alignment=text_alignment(image, self.embed_text(prompt)),
            consistency=frame_consistency(image),
            embedding=video_embedding(image),
        )


def _features(out: Any) -> torch.Tensor:
    """The projected embeddings of ``get_*_features`` (a model output in transformers 5, a tensor before)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def text_alignment(frame_embeddings: torch.Tensor, text_embedding: torch.Tensor) -> float:
    """Mean over frames of cos(text, frame); both unit norm, ``(f, d)`` and ``(d,)``."""
    return float((frame_embeddings @ text_embedding).mean())


def frame_consistency(frame_embeddings: torch.Tensor) -> float:
    """Mean cosine similarity of all frame pairs i < j of unit-norm ``(f, d)`` embeddings (1.0 for one frame)."""
    num_frames = frame_embeddings.shape[0]
    if num_frames < 2:
        return 1.0
    sims = frame_embeddings @ frame_embeddings.T
    i, j = torch.triu_indices(num_frames, num_frames, offset=1)
    return float(sims[i, j].mean())


def video_embedding(frame_embeddings: torch.Tensor) -> torch.Tensor:
    """A video's embedding: the mean of its unit-norm frame embeddings, normalised again."""
    return torch.nn.functional.normalize(frame_embeddings.mean(dim=0), dim=-1)


def diversity(video_embeddings: Sequence[torch.Tensor]) -> float | None:
    """1 - mean cos(video_a, video_b) over pairs of different videos (of one prompt); None for < 2 videos."""
    if len(video_embeddings) < 2:
        return None
    sims = [float(a @ b) for a, b in itertools.combinations(video_embeddings, 2)]
    return 1.0 - float(np.mean(sims))


def load_clip(model: str = DEFAULT_CLIP_MODEL, device: str | torch.device | None = None) -> ClipScorer:
    """A :class:`ClipScorer` from a Hub id or a local folder holding a CLIPModel, its tokenizer and
    ``preprocessor_config.json``. Raises :class:`ModelLoadError` saying what to do when it cannot be read."""
    path = Path(model).expanduser()
    if not is_hub_id(model) and not path.is_dir():
        raise ModelLoadError(
            f"No CLIP model folder at {path}: check the path, give a Hub id such as '{DEFAULT_CLIP_MODEL}', "
            "or pass --clip-model none to skip the CLIP metrics."
        )
    source = str(path) if path.is_dir() else model
    try:
        clip_model = CLIPModel.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
        image_processor = CLIPImageProcessorPil.from_pretrained(source)
    except (OSError, ValueError) as err:
        if path.is_dir():
            raise ModelLoadError(
                f"The folder {path} is not a complete CLIP model ({err}). It needs the CLIPModel (config.json and "
                "weights), its tokenizer files and preprocessor_config.json, as `save_pretrained` of each writes them."
            ) from err
        raise ModelLoadError(
            f"Could not load the CLIP model '{model}' ({type(err).__name__}): it is not a local folder, not in the "
            "Hugging Face cache, and the Hub could not be reached (or has no such model). On a machine with a "
            f"network run `hf download {model}`, or give a local folder, or pass --clip-model none to evaluate "
            "with the oracle metrics only."
        ) from err
    clip_model.eval()
    if device is not None:
        clip_model.to(device)
    return ClipScorer(model=clip_model, tokenizer=tokenizer, image_processor=image_processor, name=model)
