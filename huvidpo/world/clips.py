"""The synthetic world: short clips of one coloured shape moving on a plain background.

"a red circle moving left slowly on a blue background" -> 16 frames of 64x64 pixels.

What is unusual here:
- The world is built to be *learnable* by a tiny CPU diffusion model and *readable* by a pixel
  oracle (``oracle.py``) after H.264 compression: six colours far apart in RGB, three shapes
  whose bounding-box fill ratios differ (square 1.0, circle 0.785, triangle 0.5), straight
  constant-velocity motion, and shapes that stay in frame for the whole clip.
- Shapes are drawn with analytic anti-aliasing (4x4 supersampled coverage), so sub-pixel motion
  (jitter, fractional speeds) renders smoothly and deterministically.
- ``split_combinations`` holds out (shape, colour, direction) triples, never words: every word
  of a held-out prompt is seen in training, only the combination is new.
- ``render_clip`` can also render *worse* clips for the same prompt (jitter, flicker, wrong
  direction) and ``degraded_spec`` makes specs that contradict their prompt; these are the
  losers of synthetic preference pairs and the negatives of the oracle's tests.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from .prompts import (  # noqa: F401 - the vocabulary is part of this module's API too
    COLORS,
    CORNERS,
    DIRECTIONS,
    PALETTE,
    SHAPES,
    SPEEDS,
    UNPROMPTED_MODES,
    PromptAttributes,
    parse_prompt,
    word_prompt,
)

REFERENCE_SIZE = 64
# Shapes are 22-26 px: with the embedded default's 4x VAE a shape is then about 6x6 latent pixels. At 14-18 px
# (4x4 latent pixels) both tiny UNets rounded squares' corners off (first-frame model: squares 20% right,
# video model 0%; research/scripts/shape.py); at this size they keep them. The largest, moving quickly, still fits in frame.
SHAPE_SIZE_RANGE = (22, 26)
DISTRACTOR_SIZE = 8
MARGIN = 2

Combo = tuple[str, str, str]  # (shape, color, direction)
Split = Literal["train", "heldout"]


@dataclass(frozen=True)
class Distractor:
    """A small static shape in a corner; mentioned in the prompt or not."""

    shape: str
    color: str
    corner: str = "top-left"
    mentioned: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines a clip. Positions are the shape's centre at frame 0, in pixels
    of a ``REFERENCE_SIZE`` frame (scaled when rendering at another size)."""

    shape: str
    color: str
    background: str
    direction: str
    speed: str = "slowly"
    size: float = 24.0
    start_x: float = 32.0
    start_y: float = 32.0
    distractor: Distractor | None = None
    speed_stated: bool = True
    wording: int = 0

    def __post_init__(self) -> None:
        checks = [
            ("shape", self.shape, SHAPES), ("color", self.color, COLORS),
            ("background", self.background, COLORS), ("direction", self.direction, DIRECTIONS),
            ("speed", self.speed, SPEEDS),
        ]
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"Unknown {name} {value!r}: use one of {list(allowed)}.")
        if self.color == self.background:
            raise ValueError(f"Shape and background are both {self.color}: the shape would be invisible.")
        if self.distractor is not None:
            if self.distractor.color in (self.color, self.background):
                raise ValueError("The distractor's colour must differ from the shape's and the background's.")
            if self.distractor.shape not in SHAPES or self.distractor.corner not in CORNERS:
                raise ValueError(f"Bad distractor {self.distractor}: shape in {SHAPES}, corner in {CORNERS}.")

    @property
    def combo(self) -> Combo:
        return (self.shape, self.color, self.direction)

    @property
    def prompt(self) -> str:
        """The prompt in wording ``wording`` (0: canonical); the speed left out unless ``speed_stated``."""
        clause = ""
        if self.distractor is not None and self.distractor.mentioned:
            d = self.distractor
            clause = f" with a small {d.color} {d.shape} in the {d.corner} corner"
        return word_prompt(self.shape, self.color, self.background, self.direction,
                           self.speed if self.speed_stated else None, self.wording, clause)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["distractor"] = None if self.distractor is None else self.distractor.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClipSpec":
        data = dict(data)
        if data.get("distractor") is not None:
            data["distractor"] = Distractor(**data["distractor"])
        return cls(**data)


def all_combinations() -> list[Combo]:
    """Every (shape, colour, direction) triple, in a fixed order."""
    return list(itertools.product(SHAPES, COLORS, DIRECTIONS))


def split_combinations(seed: int = 0, holdout_fraction: float = 0.2) -> tuple[list[Combo], list[Combo]]:
    """Split (shape, colour, direction) triples into train and held-out sets.

    Held-out triples never occur in training, but each of their words does, and so does each of
    their pairs (shape+colour, shape+direction, colour+direction): only the triple is new.
    """
    if not 0.0 < holdout_fraction < 0.5:
        raise ValueError(f"holdout_fraction must be in (0, 0.5); got {holdout_fraction}.")
    combos = all_combinations()
    rng = np.random.default_rng(seed)
    num_heldout = max(1, int(round(holdout_fraction * len(combos))))
    heldout: list[Combo] = []
    for index in rng.permutation(len(combos)):
        candidate = combos[int(index)]
        trial = set(heldout) | {candidate}
        train = [c for c in combos if c not in trial]
        if _pairs_covered(train, list(trial)):
            heldout.append(candidate)
        if len(heldout) == num_heldout:
            break
    heldout_set = set(heldout)
    return [c for c in combos if c not in heldout_set], sorted(heldout)


def _pairs_covered(train: Sequence[Combo], heldout: Sequence[Combo]) -> bool:
    seen = {(i, j, c[i], c[j]) for c in train for i, j in ((0, 1), (0, 2), (1, 2))}
    return all((i, j, c[i], c[j]) in seen for c in heldout for i, j in ((0, 1), (0, 2), (1, 2)))


def _path_bounds(size: float, travel: float, frame: int) -> tuple[float, float]:
    """Range of start centres (along the motion) that keep the shape in frame all clip long."""
    low = size / 2 + MARGIN
    high = frame - size / 2 - MARGIN - travel
    if high < low:  # longer clips than the world was made for: centre the path
        mid = (frame - travel) / 2
        return mid, mid
    return low, high


def sample_clip_spec(
    rng: np.random.Generator,
    combos: Sequence[Combo] | None = None,
    num_frames: int = 16,
    distractor_prob: float = 0.0,
    unstated_speed_prob: float = 0.0,
    wording_prob: float = 0.0,
) -> ClipSpec:
    """Draw a random spec (from ``combos`` if given) whose shape stays in frame for ``num_frames``.

    ``unstated_speed_prob``: the share of specs whose prompt leaves the speed out; their speed is still drawn 50/50
    and their start lies where the fastest speed fits, so the first frame does not tell the speed: it is the clip's
    own choice, an unprompted mode. ``wording_prob``: the share of prompts worded other than canonically
    (:func:`huvidpo.world.prompts.word_prompt`). At 0 neither draws from ``rng``, so older streams are unchanged."""
    combos = list(combos) if combos is not None else all_combinations()
    if not combos:
        raise ValueError("combos is empty: pass at least one (shape, color, direction) triple.")
    shape, color, direction = combos[int(rng.integers(len(combos)))]
    background = str(rng.choice([c for c in COLORS if c != color]))
    speed = str(rng.choice(list(SPEEDS)))
    size = float(rng.integers(SHAPE_SIZE_RANGE[0], SHAPE_SIZE_RANGE[1] + 1))
    speed_stated = not (unstated_speed_prob > 0 and rng.random() < unstated_speed_prob)
    travel = (SPEEDS[speed] if speed_stated else max(SPEEDS.values())) * (num_frames - 1)
    along = float(rng.uniform(*_path_bounds(size, travel, REFERENCE_SIZE)))
    across = float(rng.uniform(size / 2 + MARGIN, REFERENCE_SIZE - size / 2 - MARGIN))
    dx, dy = DIRECTIONS[direction]
    if dx:
        start_x = along if dx > 0 else REFERENCE_SIZE - along
        start_y = across
    else:
        start_y = along if dy > 0 else REFERENCE_SIZE - along
        start_x = across
    distractor = None
    if distractor_prob > 0 and rng.random() < distractor_prob:
        distractor = Distractor(
            shape=str(rng.choice(SHAPES)),
            color=str(rng.choice([c for c in COLORS if c not in (color, background)])),
            corner=str(rng.choice(CORNERS)),
            mentioned=bool(rng.random() < 0.5),
        )
    wording = int(rng.integers(1, 2**31)) if wording_prob > 0 and rng.random() < wording_prob else 0
    return ClipSpec(shape, color, background, direction, speed, size, round(start_x, 2), round(start_y, 2), distractor,
                    speed_stated, wording)


def _coverage(shape: str, cx: float, cy: float, size: float, height: int, width: int, ss: int = 4) -> np.ndarray:
    """Fraction of each pixel covered by the shape (``ss`` x ``ss`` supersampling), (H, W) float32."""
    offsets = (np.arange(ss) + 0.5) / ss
    ys = (np.arange(height)[:, None] + offsets[None, :]).reshape(-1)[:, None]  # (H*ss, 1)
    xs = (np.arange(width)[:, None] + offsets[None, :]).reshape(-1)[None, :]  # (1, W*ss)
    half = size / 2
    if shape == "circle":
        inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= half**2
    elif shape == "square":
        inside = (np.abs(xs - cx) <= half) & (np.abs(ys - cy) <= half)
    else:  # an upright isosceles triangle filling its size x size box: half the box's area
        top, bottom = cy - half, cy + half
        rel = np.clip((ys - top) / size, 0.0, 1.0)
        inside = (ys >= top) & (ys <= bottom) & (np.abs(xs - cx) <= rel * half)
    return inside.reshape(height, ss, width, ss).mean(axis=(1, 3)).astype(np.float32)


def _corner_centre(corner: str, frame: int, size: float) -> tuple[float, float]:
    low, high = MARGIN + size / 2, frame - MARGIN - size / 2
    return (low if "left" in corner else high), (low if "top" in corner else high)


def straight_track(spec: ClipSpec, num_frames: int = 16) -> np.ndarray:
    """The box centre of ``spec``'s shape in each frame, ``(num_frames, 2)`` pixels at the 64-pixel reference size:
    from (``start_x``, ``start_y``) in the prompt's direction at its speed, the path ``render_clip`` draws."""
    steps = SPEEDS[spec.speed] * np.arange(num_frames, dtype=np.float64)
    dx, dy = DIRECTIONS[spec.direction]
    return np.stack([spec.start_x + dx * steps, spec.start_y + dy * steps], axis=1)


def render_clip(
    spec: ClipSpec,
    num_frames: int = 16,
    size: int = 64,
    jitter: float = 0.0,
    flicker: float = 0.0,
    wrong_direction: bool = False,
    seed: int = 0,
    track: np.ndarray | None = None,
) -> np.ndarray:
    """Render ``spec`` to a ``(F, H, W, 3)`` uint8 clip; deterministic for a given ``seed``.

    ``track`` (``(F, 2)``, pixels at the 64-pixel reference size) replaces the straight constant-velocity
    path by the shape's box centre in each frame: the same shape, colours and distractor moving another
    way, e.g. along the track a model drew (:func:`huvidpo.world.oracle.retrace`).

    Degradations (for preference losers): ``jitter`` adds Gaussian noise of that many pixels
    (std) to the shape's position in each frame; ``flicker`` multiplies each frame's brightness
    by ``1 + flicker * u`` with ``u`` uniform in [-1, 1]; ``wrong_direction`` moves the shape
    the opposite way (from its end point, so it still stays in frame).
    """
    if num_frames < 1 or size < 8:
        raise ValueError(f"Need num_frames >= 1 and size >= 8; got {num_frames} and {size}.")
    rng = np.random.default_rng(seed)
    scale = size / REFERENCE_SIZE
    if track is not None:
        if wrong_direction:
            raise ValueError("wrong_direction and track both set the path: reverse the track instead.")
        track = np.asarray(track, np.float64)
        if track.shape != (num_frames, 2):
            raise ValueError(f"track must be {num_frames} (x, y) centres, shape ({num_frames}, 2); got shape {track.shape}.")
        if not np.isfinite(track).all():
            raise ValueError("track holds NaN or inf: give a centre for every frame (interpolate gaps).")
        xs, ys = track[:, 0] * scale, track[:, 1] * scale
    else:
        track = straight_track(spec, num_frames)
        if wrong_direction:
            track = track[::-1]
        xs, ys = track[:, 0] * scale, track[:, 1] * scale
    if jitter > 0:
        xs = xs + rng.normal(0.0, jitter * scale, num_frames)
        ys = ys + rng.normal(0.0, jitter * scale, num_frames)
    background = np.array(PALETTE[spec.background], np.float32)
    colour = np.array(PALETTE[spec.color], np.float32)
    base = np.broadcast_to(background, (size, size, 3)).copy()
    if spec.distractor is not None:
        d = spec.distractor
        d_size = DISTRACTOR_SIZE * scale
        dcx, dcy = _corner_centre(d.corner, size, d_size)
        alpha = _coverage(d.shape, dcx, dcy, d_size, size, size)[..., None]
        base = base * (1 - alpha) + np.array(PALETTE[d.color], np.float32) * alpha
    frames = np.empty((num_frames, size, size, 3), np.float32)
    for i in range(num_frames):
        alpha = _coverage(spec.shape, xs[i], ys[i], spec.size * scale, size, size)[..., None]
        frames[i] = base * (1 - alpha) + colour * alpha
    if flicker > 0:
        frames *= (1.0 + flicker * rng.uniform(-1.0, 1.0, num_frames)).astype(np.float32)[:, None, None, None]
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


DEGRADATIONS: tuple[str, ...] = (
    "jitter", "flicker", "wrong_direction", "wrong_color", "wrong_shape", "wrong_background", "static",
)


def degraded_spec(spec: ClipSpec, kind: str, rng: np.random.Generator) -> ClipSpec:
    """A spec that contradicts ``spec.prompt`` in one way (colour, shape or background)."""
    if kind == "wrong_color":
        return replace(spec, color=str(rng.choice([c for c in COLORS if c not in (spec.color, spec.background)])))
    if kind == "wrong_shape":
        return replace(spec, shape=str(rng.choice([s for s in SHAPES if s != spec.shape])))
    if kind == "wrong_background":
        return replace(spec, background=str(rng.choice([c for c in COLORS if c not in (spec.color, spec.background)])))
    raise ValueError(f"degraded_spec handles wrong_color/wrong_shape/wrong_background; got {kind!r}.")


def render_degraded(
    spec: ClipSpec, kind: str, num_frames: int = 16, size: int = 64, seed: int = 0, strength: float = 1.0
) -> np.ndarray:
    """A clip worse than ``render_clip(spec)`` for ``spec.prompt``, in one of ``DEGRADATIONS``.

    ``strength`` scales jitter (1.5 px std at 1.0) and flicker (+-25 % brightness at 1.0).
    """
    rng = np.random.default_rng(seed)
    if kind == "jitter":
        return render_clip(spec, num_frames, size, jitter=1.5 * strength, seed=seed)
    if kind == "flicker":
        return render_clip(spec, num_frames, size, flicker=0.25 * strength, seed=seed)
    if kind == "wrong_direction":
        return render_clip(spec, num_frames, size, wrong_direction=True, seed=seed)
    if kind == "static":
        return np.repeat(render_clip(spec, 1, size, seed=seed), num_frames, axis=0)
    if kind in ("wrong_color", "wrong_shape", "wrong_background"):
        return render_clip(degraded_spec(spec, kind, rng), num_frames, size, seed=seed)
    raise ValueError(f"Unknown degradation {kind!r}: use one of {DEGRADATIONS}.")


def _split_combos(split: Split, holdout_seed: int = 0) -> list[Combo]:
    train, heldout = split_combinations(seed=holdout_seed)
    if split == "train":
        return train
    if split == "heldout":
        return heldout
    raise ValueError(f"split must be 'train' or 'heldout'; got {split!r}.")


def sample_specs(
    num_clips: int, seed: int = 0, split: Split = "train", num_frames: int = 16, distractor_prob: float = 0.0,
    unstated_speed_prob: float = 0.0, wording_prob: float = 0.0, speed_twins: bool = False,
) -> list[ClipSpec]:
    """``num_clips`` specs drawn deterministically from the combinations of ``split`` (see :func:`sample_clip_spec`).

    ``speed_twins``: each spec whose prompt leaves the speed out is followed by its twin at the other speed (same
    prompt, same first frame), so for every such prompt and first frame the data shows both modes equally often;
    ``unstated_speed_prob`` stays the share of *clips* that leave the speed out (each draw leaves it out with
    p / (2 - p), and such a draw makes two clips)."""
    combos = _split_combos(split)
    rng = np.random.default_rng(seed)
    draw_prob = unstated_speed_prob / (2 - unstated_speed_prob) if speed_twins else unstated_speed_prob
    specs: list[ClipSpec] = []
    while len(specs) < num_clips:
        spec = sample_clip_spec(rng, combos, num_frames, distractor_prob, draw_prob, wording_prob)
        specs.append(spec)
        if speed_twins and not spec.speed_stated:
            specs.append(replace(spec, speed=next(s for s in SPEEDS if s != spec.speed)))
    return specs[:num_clips]


def world_frames(
    num_clips: int,
    seed: int = 0,
    num_frames: int = 16,
    size: int = 64,
    split: Split = "train",
    distractor_prob: float = 0.0,
) -> tuple[np.ndarray, list[ClipSpec]]:
    """Clips in memory, no I/O: frames ``(N, F, H, W, 3)`` uint8 and their specs (``spec.prompt``)."""
    specs = sample_specs(num_clips, seed, split, num_frames, distractor_prob)
    frames = np.empty((num_clips, num_frames, size, size, 3), np.uint8)
    for i, spec in enumerate(specs):
        frames[i] = render_clip(spec, num_frames, size)
    return frames, specs


def generate_world(
    out_dir: str | Path,
    num_clips: int,
    seed: int = 0,
    num_frames: int = 16,
    size: int = 64,
    split: Split = "train",
    fps: int = 8,
    distractor_prob: float = 0.0,
    unstated_speed_prob: float = 0.0,
    wording_prob: float = 0.0,
    speed_twins: bool = False,
) -> Path:
    """Write ``out_dir/videos/*.mp4`` and ``out_dir/metadata.jsonl`` (file_name, prompt, spec) of the specs
    :func:`sample_specs` draws.

    ``file_name`` is relative to ``out_dir`` (the `datasets` folder convention). Videos listed
    by an existing ``metadata.jsonl`` are deleted first, so the folder matches its metadata;
    other files are left alone.
    """
    from ..data.video import write_video

    out_dir = Path(out_dir)
    if (out_dir / "metadata.jsonl").is_file():
        for row in read_world_metadata(out_dir):
            (out_dir / row["file_name"]).unlink(missing_ok=True)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    specs = sample_specs(num_clips, seed, split, num_frames, distractor_prob, unstated_speed_prob, wording_prob, speed_twins)
    lines = []
    for i, spec in enumerate(specs):
        file_name = f"videos/{split}_{seed}_{i:05d}.mp4"
        write_video(render_clip(spec, num_frames, size), out_dir / file_name, fps=fps)
        lines.append(json.dumps({"file_name": file_name, "prompt": spec.prompt, "spec": spec.to_dict()}))
    tmp = out_dir / "metadata.jsonl.tmp"
    tmp.write_text("\n".join(lines) + ("\n" if lines else ""))
    tmp.replace(out_dir / "metadata.jsonl")
    return out_dir


def read_world_metadata(out_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``out_dir/metadata.jsonl``."""
    path = Path(out_dir) / "metadata.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"No {path}: run generate_world({str(out_dir)!r}, num_clips) first.")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def world_dataset(out_dir: str | Path, num_clips: int | None = None, seed: int = 0, **generate_kwargs: Any):
    """A ``datasets.Dataset`` with columns ``prompt``, ``video`` (absolute mp4 path), ``spec``.

    ``spec`` is the JSON of ``ClipSpec.to_dict()`` (a string, so the optional distractor does
    not make Arrow infer a different schema per file); ``specs_from_rows(dataset)`` decodes it.

    With ``num_clips`` the world is (re)generated first (``generate_kwargs`` go to
    :func:`generate_world`); without it an existing folder is loaded.
    """
    from datasets import Dataset

    if num_clips is not None:
        generate_world(out_dir, num_clips, seed=seed, **generate_kwargs)
    root = Path(out_dir).resolve()
    rows = read_world_metadata(root)
    return Dataset.from_dict(
        {
            "prompt": [r["prompt"] for r in rows],
            "video": [str(root / r["file_name"]) for r in rows],
            "spec": [json.dumps(r["spec"], sort_keys=True) for r in rows],
        }
    )


def make_prompt_set(kind: Split = "heldout", n: int = 16, seed: int = 0, unstated_speed_prob: float = 0.0,
                    wording_prob: float = 0.0) -> list[str]:
    """``n`` evaluation prompts from the ``kind`` combinations, distinct while possible. ``unstated_speed_prob``: the
    share of prompts that leave the speed out (the unprompted mode a taste moves); ``wording_prob``: the share
    worded other than canonically (``prompts.word_prompt``). The specs are drawn as for canonical prompts and only
    their wording changes, so sets of one seed name the same combinations and compare directly."""
    specs = sample_specs(max(4 * n, 1), seed, kind)
    rng = np.random.default_rng([seed, 1])
    prompts: list[str] = []
    for spec in specs:
        unstated, wording = rng.random() < unstated_speed_prob, int(rng.integers(1, 2**31))
        spec = replace(spec, speed_stated=not unstated, wording=wording if rng.random() < wording_prob else 0)
        if spec.prompt not in prompts:
            prompts.append(spec.prompt)
        if len(prompts) == n:
            return prompts
    return list(itertools.islice(itertools.cycle(prompts), n)) if prompts else []


# Named prompt sets of the world (the eval CLI's --prompts, the benches): split, share leaving the speed out, share
# worded other than canonically. "-speedless" sets measure the unprompted mode; "-worded" sets the wordings people use.
PROMPT_SETS: dict[str, tuple[Split, float, float]] = {
    "heldout": ("heldout", 0.0, 0.0),
    "heldout-speedless": ("heldout", 1.0, 0.0),
    "heldout-worded": ("heldout", 0.0, 1.0),
    "train": ("train", 0.0, 0.0),
    "train-speedless": ("train", 1.0, 0.0),
}


def prompt_set(name: str, n: int = 16, seed: int = 0) -> list[str]:
    """``n`` prompts of the named set (``PROMPT_SETS``)."""
    if name not in PROMPT_SETS:
        raise ValueError(f"Unknown prompt set {name!r}: use one of {list(PROMPT_SETS)}.")
    split, unstated_speed_prob, wording_prob = PROMPT_SETS[name]
    return make_prompt_set(split, n, seed, unstated_speed_prob, wording_prob)


def resolve_prompts(spec: str, num_prompts: int = 8, prompt_seed: int = 0) -> list[str]:
    """Prompts from a file (one a line, ``#`` comments), a world prompt set (``PROMPT_SETS``), or a comma list."""
    path = Path(spec).expanduser()
    if path.is_file():
        prompts = [line.strip() for line in path.read_text().splitlines()]
        prompts = [p for p in prompts if p and not p.startswith("#")]
    elif spec in PROMPT_SETS:
        prompts = prompt_set(spec, n=num_prompts, seed=prompt_seed)
    else:
        prompts = [p.strip() for p in spec.split(",") if p.strip()]
    if not prompts:
        raise ValueError(f"No prompts in {spec!r}: give a file with one prompt a line, a prompt set ({', '.join(PROMPT_SETS)}) or 'a,b,c'.")
    return prompts


def specs_from_rows(rows: Iterable[dict[str, Any]]) -> list[ClipSpec]:
    """Specs of metadata rows (``spec`` as a dict or a JSON string)."""
    out = []
    for row in rows:
        spec = row["spec"]
        out.append(ClipSpec.from_dict(json.loads(spec) if isinstance(spec, str) else spec))
    return out
