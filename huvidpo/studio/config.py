"""The studio's settings: one dataclass, filled from flags, environment variables and defaults.

Everything the app writes lives under ``data_dir`` and survives restarts::

    data_dir/
      votes.jsonl        every vote (append-only; the only copy that matters)
      pool/              the candidate clips labelers compare (manifest.jsonl + videos/)
      runs/<run>/        DPO runs started from the Train tab (LoRA, model card, metrics, checkpoints, run.json)
      exports/<name>/    preference datasets exported from the votes (what a run trains on)
      generated/         clips made in the Generate tab (pruned to the newest ``keep_generated``), the
                         before/after clips of each run in generated/comparison/<run>/, and the base model's
                         "before" clips, made once per model and settings, in generated/comparison/before-clips/
      loras/             LoRA folders a maintainer copies in by hand, offered in the LoRA picker
      reproduced/        where the Generate tab's "command line" writes the clip it makes again

On a Space the environment sets what a maintainer would set with flags locally (see ``from_env``).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from huvidpo.annotation.pool import CATEGORY_PRESETS
from huvidpo.annotation.stats import BOOTSTRAP_RESAMPLES, LEADERBOARD_MIN_VOTES
from huvidpo.backends import model_family
from huvidpo.generate import GenerationSettings
from huvidpo.settings import parse_resolution
from huvidpo.locations import (
    ASSETS_DIR,
    DEFAULT_MODEL_DIR,
    MODEL_ENV_VAR,
    check_hub_id,
    default_model_path,
    is_embedded_default,
    is_hub_id,
)
from huvidpo.world.prompts import word_prompt

TABS = ("generate", "label", "train")

# Environment variables a Space (or a shell) sets; flags win over them.
ENV_MAINTAINERS = "HUVIDPO_MAINTAINERS"
ENV_VOTES_REPO = "HUVIDPO_VOTES_REPO"
ENV_DATA_DIR = "HUVIDPO_DATA_DIR"
ENV_IMAGE_MODEL = "HUVIDPO_IMAGE_MODEL"
ENV_TABS = "HUVIDPO_TABS"
ENV_REPLICA = "HUVIDPO_REPLICA"

# What the app itself proposes (the prompt box's placeholder, the empty-prompt message, the Train tab's before/after
# clips, the Examples) is chosen per model: sentences of the synthetic world for the embedded default, which draws
# those well (and not the paper's subjects); the paper's categories for a real model. The world's ones leave the
# speed out, so the before/after clips show the unprompted mode a taste moves. The oracle checks them at seed 0
# (tests/test_studio.py).
WORLD_PROMPTS = (
    word_prompt("circle", "red", "blue", "left", None),
    word_prompt("triangle", "yellow", "blue", "right", None),
)
PAPER_PROMPTS = (CATEGORY_PRESETS["horse run"][0], CATEGORY_PRESETS["firework"][0])


def on_space() -> bool:
    """Whether this process runs on a Hugging Face Space (the variables the Space runtime sets)."""
    return os.environ.get("SYSTEM") == "spaces" and bool(os.environ.get("SPACE_ID"))


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def split_names(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """'alice, bob carol' or ['alice', 'bob'] -> ['alice', 'bob', 'carol'] (commas and/or spaces)."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [name for item in items for name in re.split(r"[,\s]+", str(item)) if name]


@dataclass
class StudioConfig:
    """Settings of the Gradio studio (``python app.py --help`` lists the flags that set them)."""

    model: str = field(
        default="",
        metadata=_help(f"Video model: a HuViDPO, SD 1.x, Wan 2.1 or AnimateDiff folder or Hub id (docs/models.md). Empty: "
                       f"${MODEL_ENV_VAR} or the embedded default."),
    )
    image_model: str | None = field(
        default=None, metadata=_help("First-frame text-to-image model replacing the pipeline's own (e.g. mhdang/dpo-sdxl-text2image-v1).")
    )
    device: str | None = field(default=None, metadata=_help("torch device for generation, e.g. cuda (default: cuda if present, else cpu)."))
    data_dir: str = field(default="data", metadata=_help("Folder for votes, the clip pool, training runs and exports."))
    maintainers: list[str] = field(
        default_factory=list,
        metadata=_help(f"Hugging Face usernames allowed to train and push (on a Space, with OAuth); env {ENV_MAINTAINERS}."),
    )
    local_maintainer: bool = field(
        default=False, metadata=_help("Local use only: everyone who reaches this app may train and push (no login).")
    )
    oauth: bool | None = field(
        default=None, metadata=_help("Sign in with Hugging Face (labeler names and maintainers). Default: on when running on a Space.")
    )
    votes_repo: str | None = field(
        default=None, metadata=_help(f"Hub dataset repo the votes and pool are pushed to in the background; env {ENV_VOTES_REPO}.")
    )
    sync_every_minutes: float = field(default=5.0, metadata=_help("Minutes between background pushes of the votes."))
    replica: str = field(
        default="",
        metadata=_help(f"Name of this studio among several pushing to one votes repo (its files go to replicas/<name>/); "
                       f"env {ENV_REPLICA}. Empty: the Space's id, else the host name."),
    )
    tabs: list[str] = field(default_factory=lambda: list(TABS), metadata=_help(f"Tabs to show, among {TABS}; env {ENV_TABS}."))
    preload_model: bool = field(default=True, metadata=_help("Load the video model at start-up (else on the first generation)."))
    generate_concurrency: int = field(default=1, metadata=_help("Generations running at once (the pipeline is not re-entrant: keep 1)."))
    label_concurrency: int = field(default=16, metadata=_help("Label events (next pair, vote, undo) handled at once."))
    max_queue: int = field(default=64, metadata=_help("Requests waiting in the queue before new ones are refused."))
    default_frames: int | None = field(
        default=None, metadata=_help("Frames preset in the Generate tab (None: the model family's default, or the "
                                     "largest count it takes up to max_frames).")
    )
    default_steps: int | None = field(
        default=None, metadata=_help("Denoising steps preset in the Generate tab (None: GenerationSettings' default, up to max_steps).")
    )
    max_frames: int = field(default=32, metadata=_help("Most frames a visitor may ask for."))
    max_steps: int = field(default=100, metadata=_help("Most denoising steps a visitor may ask for."))
    max_upload_mb: int = field(default=10, metadata=_help("Largest upload (a first frame) in MB; an app without the Generate tab takes none."))
    keep_generated: int = field(default=500, metadata=_help("Generated clips kept in data_dir/generated (oldest deleted first)."))
    train_steps: int = field(default=100, metadata=_help("Steps preset in the Train tab: a short run (on the embedded default the taste plan, world.taste.TASTE_DPO; the CLI's default is DPOConfig's)."))
    train_frames: int | None = field(default=None, metadata=_help("Frames per clip preset in the Train tab (None: the model family's default; on the embedded default the taste plan's)."))
    comparison_prompts: list[str] | None = field(
        default=None,
        metadata=_help("Fixed prompts of the before/after comparison shown when a run finishes (None: two prompts "
                       "the served model draws well, see ``suggested_prompts``)."),
    )
    comparison_seed: int = field(default=0, metadata=_help("Seed of the before/after comparison."))
    train_resolution: str | None = field(
        default=None,
        metadata=_help("Size of the Train tab's runs, 'SIZE' or 'HEIGHTxWIDTH' in pixels: the DPO pairs are trained and "
                       "the before/after clips made at it. None: the model's native size (Wan 2.1's 480x832 needs a "
                       "GPU; 240x416 is a quarter of its pixels)."),
    )
    comparison_frames: int | None = field(default=None, metadata=_help("Frames of the before/after clips (None: the model family's default)."))
    comparison_steps: int = field(default=10, metadata=_help("Denoising steps of the before/after clips."))
    sampler_seed: int | None = field(default=None, metadata=_help("Seed of the pair sampler (None: random)."))
    gold_rate: float = field(
        default=0.0, metadata=_help("Share of the pairs served that are gold checks (a pool clip against a jittered or "
                                    "frame-shuffled copy of itself; never data). 0: none.")
    )
    overlap_share: float = field(
        default=0.0, metadata=_help("Share of the pairs served that someone else already judged, so agreement is "
                                    "measured early. 0: every pair is judged once before any twice.")
    )
    gold_threshold: float = field(
        default=0.8, metadata=_help("A labeler whose gold accuracy (over at least 5 gold checks) is below this is "
                                    "flagged in the stats and can be left out of exports.")
    )
    leaderboard_min_votes: int = field(
        default=LEADERBOARD_MIN_VOTES, metadata=_help("Decided votes (wins and losses against other versions) a model "
                                                      "version needs before the leaderboard ranks it.")
    )
    leaderboard_resamples: int = field(
        default=BOOTSTRAP_RESAMPLES, metadata=_help("Bootstrap resamples of the leaderboard's 95 percent intervals (the board "
                                                    "ranks by their lower bound); 0: no intervals.")
    )

    def __post_init__(self) -> None:
        self.maintainers = [name.lower() for name in split_names(self.maintainers)]
        self.tabs = [tab.strip().lower() for tab in split_names(self.tabs)]
        unknown = sorted(set(self.tabs) - set(TABS))
        if unknown or not self.tabs:
            raise ValueError(f"tabs must be a non-empty list among {TABS}, got {self.tabs}.")
        if self.oauth is None:
            self.oauth = on_space()
        if self.local_maintainer and self.oauth:
            raise ValueError(
                "The maintainer flag is for local use; with Hugging Face sign-in (on a Space) list the maintainers' "
                f"usernames in {ENV_MAINTAINERS} instead."
            )
        if self.votes_repo is not None:
            self.votes_repo = check_hub_id(self.votes_repo, "votes_repo")
        if not self.replica:
            self.replica = os.environ.get("SPACE_ID", "").replace("/", "--") or socket.gethostname() or "local"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", self.replica):
            raise ValueError(f"replica must be letters, digits, '.', '_' or '-' (a folder name), got {self.replica!r}.")
        for name in ("generate_concurrency", "label_concurrency", "max_queue", "max_frames", "max_steps", "max_upload_mb",
                     "keep_generated", "train_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        family = model_family(self.model)
        if self.default_frames is None:
            self.default_frames = family.frames_within(min(family.default_frames, self.max_frames))
        for name, settings_name, most in (("default_frames", "frames", self.max_frames), ("default_steps", "steps", self.max_steps)):
            spec = GenerationSettings.spec(settings_name)
            if getattr(self, name) is None:
                setattr(self, name, min(spec.default, most))
            if not spec.metadata["min"] <= getattr(self, name) <= most:
                raise ValueError(f"{name} must be in [{spec.metadata['min']}, {most}], got {getattr(self, name)}.")
        for name in ("default_frames", "train_frames", "comparison_frames"):  # what the served family takes
            if getattr(self, name) is None:
                setattr(self, name, family.default_frames)
            family.check_num_frames(getattr(self, name), name=name)
        if not self.sync_every_minutes > 0:
            raise ValueError(f"sync_every_minutes must be > 0, got {self.sync_every_minutes}.")
        for name in ("gold_rate", "overlap_share"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} is a share of the pairs served, from 0 to below 1; got {getattr(self, name)}.")
        for name in ("leaderboard_min_votes", "leaderboard_resamples"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if not 0 <= self.gold_threshold <= 1:
            raise ValueError(f"gold_threshold is an accuracy from 0 to 1, got {self.gold_threshold}.")
        if self.comparison_prompts is None:
            self.comparison_prompts = list(self.suggested_prompts)
        self.train_resolution = self.train_resolution or None
        parse_resolution(self.train_resolution, "train_resolution")
        if not self.comparison_prompts or self.comparison_steps < 1:
            raise ValueError("The before/after comparison needs at least one prompt and >= 1 step.")

    @classmethod
    def from_env(cls, **overrides: Any) -> "StudioConfig":
        """Defaults, then the HUVIDPO_* environment variables, then ``overrides`` (None values are ignored)."""
        values: dict[str, Any] = {}
        env = {
            "maintainers": os.environ.get(ENV_MAINTAINERS),
            "votes_repo": os.environ.get(ENV_VOTES_REPO) or None,
            "data_dir": os.environ.get(ENV_DATA_DIR),
            "image_model": os.environ.get(ENV_IMAGE_MODEL) or None,
            "tabs": os.environ.get(ENV_TABS),
            "replica": os.environ.get(ENV_REPLICA),
        }
        values.update({key: value for key, value in env.items() if value})
        values.update({key: value for key, value in overrides.items() if value is not None})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"Unknown studio settings {unknown}.")
        return cls(**values)

    @property
    def train_size(self) -> tuple[int, int] | None:
        """``train_resolution`` as (height, width), or None for the model's native size."""
        return parse_resolution(self.train_resolution, "train_resolution")

    # ------------------------------------------------------------------------------------------ paths

    @property
    def root(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def votes_path(self) -> Path:
        return self.root / "votes.jsonl"

    @property
    def pool_dir(self) -> Path:
        return self.root / "pool"

    @property
    def gold_dir(self) -> Path:
        """The degraded copies behind gold pairs: a pool of their own, never data."""
        return self.root / "gold"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def generated_dir(self) -> Path:
        return self.root / "generated"

    @property
    def loras_dir(self) -> Path:
        return self.root / "loras"

    @property
    def imports_dir(self) -> Path:
        """Public preference datasets a maintainer downloaded (offered in the Train tab's dataset box)."""
        return self.root / "imports"

    @property
    def max_upload_bytes(self) -> int:
        """Gradio's ``max_file_size``: ``max_upload_mb``, or 1 byte when no tab takes an upload."""
        return self.max_upload_mb * 1024 * 1024 if "generate" in self.tabs else 1

    @property
    def comparisons_dir(self) -> Path:
        """The before/after clips of the Train tab's runs (``<run>/<i>-before.mp4``): clips, like the generated ones."""
        return self.generated_dir / "comparison"

    @property
    def served_dirs(self) -> list[Path]:
        """The allow-list of what the app hands to a browser (Gradio's ``allowed_paths``; the one home of it): the
        clips visitors watch (generated, pool, and the pool's gold copies). Never votes.jsonl, manifests, exports, nor anything of a run
        (LoRA weights, checkpoints, config, metrics): those stay on the server (``blocked_paths``)."""
        return [self.generated_dir, self.pool_dir / "videos", self.gold_dir / "videos"]

    @property
    def blocked_paths(self) -> list[Path]:
        """What Gradio must never serve nor hand out, even when the data dir lies inside the working directory."""
        return [self.votes_path, self.pool_dir / "manifest.jsonl", self.gold_dir / "manifest.jsonl", self.runs_dir,
                self.exports_dir, self.loras_dir, self.imports_dir]

    def shown_path(self, path: str | os.PathLike) -> str:
        """A server path as users and model cards see it: relative to the data dir (``runs/x``), the model's name
        for the embedded default's folder, else the bare name, never the server's absolute path."""
        path = Path(path)
        for root, name in ((self.root, ""), (ASSETS_DIR, "assets")):
            if path.is_absolute() and path.is_relative_to(root):
                relative = path.relative_to(root).as_posix()
                return f"{name}/{relative}" if name else (relative or ".")
        return path.name if path.is_absolute() else str(path)

    def make_dirs(self) -> None:
        for folder in (self.root, self.pool_dir, self.exports_dir, self.loras_dir, self.runs_dir, *self.served_dirs):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def serves_embedded_default(self) -> bool:
        """Whether the app serves the embedded default (the synthetic world's tiny model)."""
        return is_embedded_default(self.model or None)

    @property
    def suggested_prompts(self) -> tuple[str, ...]:
        """Prompts the app proposes, ones the served model draws well (the first is the prompt box's placeholder)."""
        return WORLD_PROMPTS if self.serves_embedded_default else PAPER_PROMPTS

    @property
    def model_name(self) -> str:
        """How clips name their model in the pool and the leaderboard: a Hub id, or a folder's name (never its path)."""
        model = self.model or default_model_path()
        if is_embedded_default(model):
            return DEFAULT_MODEL_DIR.name
        return model if is_hub_id(model) else Path(model).expanduser().name
