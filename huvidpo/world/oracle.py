"""The oracle: reads a synthetic-world clip from its pixels and scores it against a prompt.

It stands in for a human labeler in tests and benchmarks (``prefer`` answers like a vote).

What is unusual here:
- Nothing is learned. Each frame's background is the median of its border ring; foreground is
  what differs from it. Components connect only pixels of the same nearest palette colour
  (max-label propagation in numpy, no scipy), so an object touching the shape stays separate.
- The main shape is the largest component of the colour with the most foreground area over
  the clip, so a small static distractor of another colour is ignored.
- Shape class comes from *cumulants* of the shape's soft coverage (the coverage projected
  onto the background->shape colour line, so anti-aliasing counts fractionally). Blurring adds
  an independent Gaussian, which leaves third and fourth cumulants unchanged, so the features
  survive H.264 and a tiny VAE: an upright triangle is skewed vertically (kappa3_y / A^1.5 ~
  -0.021, 0 for the others), and a square's projection on the axes is flatter than on the
  diagonals (kappa4 ratio 2.0, a circle's is 1.0).
- Colours are named by the nearest palette colour of the *core* of a region (the pixels
  farthest from the background), so edge blending and chroma subsampling do not matter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from ..data.video import to_uint8_frames
from .clips import DIRECTIONS, PALETTE, SPEEDS, REFERENCE_SIZE, ClipSpec, parse_prompt

_PALETTE_NAMES = list(PALETTE)
_PALETTE_RGB = np.array([PALETTE[n] for n in _PALETTE_NAMES], np.float32)
# Shape decision thresholds: 100 * kappa3_y / A^1.5 below this is a triangle (ideal -2.1 vs 0);
# kappa4 axis/diagonal ratio above this is a square (ideal 2.0 vs 1.0 for a circle).
TRIANGLE_SKEW = -1.0
SQUARE_KURTOSIS_RATIO = 1.5
# Coverage below this (in either sign) is treated as background when measuring the shape.
DEADZONE = 0.04
# Weights of the score components in ``OracleScore.total`` (presence multiplies instead).
SCORE_WEIGHTS: dict[str, float] = {
    "shape_match": 1.0,
    "color_match": 1.5,
    "background_match": 1.0,
    "direction_match": 1.5,
    "speed_match": 0.5,
    "smoothness": 1.0,
    "flicker": 1.0,
}


@dataclass
class OracleConfig:
    """Thresholds of the oracle; the defaults suit 64x64 clips, compressed or decoded by a tiny VAE."""

    foreground_distance: float = field(
        default=60.0, metadata={"help": "RGB distance from the background that counts as foreground."}
    )
    min_area: float = field(
        default=12.0, metadata={"help": "Components smaller than this (pixels at 64x64) are ignored."}
    )
    static_speed: float = field(
        default=0.35, metadata={"help": "Below this speed (px/frame at 64x64) a clip is static."}
    )
    jitter_scale: float = field(
        default=0.6, metadata={"help": "RMS acceleration (px/frame^2 at 64x64) at which smoothness is 0.5."}
    )
    flicker_scale: float = field(
        default=0.02, metadata={"help": "Mean brightness change per frame (0-1) at which the flicker score is 0.5."}
    )
    border: int = field(default=2, metadata={"help": "Width of the border ring that estimates the background."})


@dataclass
class ClipReading:
    """What a clip shows. Centroids are (x, y) in pixels of the clip, pixel i spanning [i, i + 1)
    as in ``world.render_clip`` (a triangle's centroid is size/6 below its box centre);
    ``velocity`` and ``speed`` are in
    pixels per frame at the 64-pixel reference size (so they compare with ``world.SPEEDS``); ``areas`` are the
    shape's coverage-weighted area per frame in pixels at that size (``None`` where it is missing): a rigid
    shape keeps one area, a shape the model redraws in every frame changes it."""

    background: str | None
    color: str | None
    shape: str | None
    direction: str | None
    speed: float
    centroids: list[tuple[float, float] | None]
    presence: float
    smoothness: float
    flicker: float
    velocity: tuple[float, float] = (0.0, 0.0)
    areas: list[float | None] = field(default_factory=list)
    shape_features: dict[str, float] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class OracleScore:
    """Components in [0, 1] (1 = faithful) and their weighted ``total``."""

    shape_match: float
    color_match: float
    background_match: float
    direction_match: float
    speed_match: float
    smoothness: float
    flicker: float
    presence: float
    total: float
    reading: ClipReading | None = None

    def components(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in (*SCORE_WEIGHTS, "presence")}


def _nearest_colours(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest palette colour and the margin to the second nearest, per row of ``rgb``."""
    distances = np.linalg.norm(rgb[..., None, :] - _PALETTE_RGB, axis=-1)
    order = np.argsort(distances, axis=-1)
    nearest = np.take_along_axis(distances, order[..., :1], -1)[..., 0]
    second = np.take_along_axis(distances, order[..., 1:2], -1)[..., 0]
    return order[..., 0], second - nearest


def _nearest_index(rgb: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour for every pixel of a (..., 3) array (fast path)."""
    squared = (_PALETTE_RGB**2).sum(axis=1) - 2.0 * (rgb @ _PALETTE_RGB.T)  # |p|^2 is common to all
    return squared.argmin(axis=-1)


def _max3(a: np.ndarray, axis: int) -> np.ndarray:
    """Maximum over a sliding window of 3 along ``axis`` (zero padded)."""
    out = a.copy()
    lead = [slice(None)] * a.ndim
    lag = [slice(None)] * a.ndim
    lead[axis], lag[axis] = slice(1, None), slice(None, -1)
    np.maximum(out[tuple(lag)], a[tuple(lead)], out=out[tuple(lag)])
    np.maximum(out[tuple(lead)], a[tuple(lag)], out=out[tuple(lead)])
    return out


def _label_components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels of a (F, H, W) bool mask (0 = background), per frame.

    Each pixel takes the largest label in its 3x3 neighbourhood until nothing changes; the
    3x3 maximum is separable, so an iteration is four vectorised maxima.
    """
    labels = np.where(mask, np.arange(1, mask.size + 1, dtype=np.int32).reshape(mask.shape), 0)
    while True:
        grown = np.where(mask, _max3(_max3(labels, 1), 2), 0)
        if np.array_equal(grown, labels):
            return labels
        labels = grown


def _label_by_colour(classes: np.ndarray, min_pixels: float) -> np.ndarray:
    """Component labels of a (F, H, W) map of palette indices (-1 = background) where only
    pixels of the same colour connect, so a shape touching another object stays separate."""
    labels = np.zeros(classes.shape, np.int32)
    for colour in np.unique(classes[classes >= 0]):
        mask = classes == colour
        if mask.sum() >= min_pixels:
            labels = np.where(mask, _label_components(mask), labels)  # labels are unique pixel ids
    return labels


def _shape_features(weights: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
    """(kappa4 axis/diagonal ratio, 100 * kappa3_y / A^1.5) of a (H, W) coverage map."""
    area = float(weights.sum())

    on = weights != 0
    w, xs, ys = weights[on], xs[on], ys[on]

    def cumulants(u: np.ndarray) -> tuple[float, float]:
        c = u - float(w @ u) / area
        c2 = c * c
        m2, m3, m4 = float(w @ c2) / area, float(w @ (c2 * c)) / area, float(w @ (c2 * c2)) / area
        return m3, m4 - 3 * m2**2

    skew_y, k4_y = cumulants(ys)
    _, k4_x = cumulants(xs)
    _, k4_d1 = cumulants((xs + ys) / np.sqrt(2))
    _, k4_d2 = cumulants((xs - ys) / np.sqrt(2))
    axis, diagonal = (k4_x + k4_y) / 2, (k4_d1 + k4_d2) / 2
    ratio = axis / diagonal if diagonal < 0 else float("inf")
    return float(ratio), 100.0 * skew_y / area**1.5


def _classify_shape(kurtosis_ratio: float, skew: float) -> tuple[str, float]:
    """Shape class from the cumulant features, and a confidence in [0, 1]."""
    skew_confidence = min(1.0, abs(skew - TRIANGLE_SKEW) / abs(TRIANGLE_SKEW))
    if skew < TRIANGLE_SKEW:
        return "triangle", float(skew_confidence)
    ratio_confidence = min(1.0, abs(kurtosis_ratio - SQUARE_KURTOSIS_RATIO) / 0.5)
    shape = "square" if kurtosis_ratio > SQUARE_KURTOSIS_RATIO else "circle"
    return shape, float(min(skew_confidence, ratio_confidence))


def read_clip(frames: Any, config: OracleConfig | None = None) -> ClipReading:
    """Read background, main shape (colour, class), per-frame centroid and motion from pixels."""
    config = config or OracleConfig()
    clip = to_uint8_frames(frames).astype(np.float32)
    num_frames, height, width, _ = clip.shape
    scale = min(height, width) / REFERENCE_SIZE
    b = max(1, min(config.border, height // 4, width // 4))

    # 1. Background per frame: median of the border ring (robust to a shape touching it).
    ring = np.concatenate(
        [clip[:, :b].reshape(num_frames, -1, 3), clip[:, -b:].reshape(num_frames, -1, 3),
         clip[:, b:-b, :b].reshape(num_frames, -1, 3), clip[:, b:-b, -b:].reshape(num_frames, -1, 3)],
        axis=1,
    )
    backgrounds = np.median(ring, axis=1)  # f 3
    bg_index, bg_margin = _nearest_colours(np.median(backgrounds, axis=0))
    background = _PALETTE_NAMES[int(bg_index)]

    # 2. Foreground components per frame, one colour each; name each by the colour of its core.
    distance = np.sqrt(np.square(clip - backgrounds[:, None, None, :]).sum(axis=-1))  # f h w
    foreground = distance > config.foreground_distance
    pixel_colours = _nearest_index(clip)
    classes = np.where(foreground & (pixel_colours != bg_index), pixel_colours, -1)
    min_area = config.min_area * scale**2
    labels = _label_by_colour(classes, min_area)
    regions: list[list[dict[str, Any]]] = [[] for _ in range(num_frames)]
    for i in range(num_frames):
        ids, counts = np.unique(labels[i][labels[i] > 0], return_counts=True)
        for label, count in zip(ids, counts):
            if count < min_area:
                continue
            pixels = labels[i] == label
            d = distance[i][pixels]
            rgb = np.median(clip[i][pixels][d >= np.quantile(d, 0.5)], axis=0)
            name_index, _ = _nearest_colours(rgb)
            if int(name_index) != int(bg_index):
                regions[i].append({"mask": pixels, "rgb": rgb, "color": int(name_index), "area": int(count)})

    empty = ClipReading(background, None, None, None, 0.0, [None] * num_frames, 0.0, 0.0, 0.0,
                        confidence={"background": float(min(1.0, bg_margin / 80.0))})
    if not any(regions):
        return empty

    # 3. The main colour: the one with the most foreground area over the clip.
    area_by_colour: dict[int, int] = {}
    for frame_regions in regions:
        for r in frame_regions:
            area_by_colour[r["color"]] = area_by_colour.get(r["color"], 0) + r["area"]
    main = max(area_by_colour, key=area_by_colour.get)

    # 4. Per frame, the largest region of that colour. Its coverage (projection onto the
    #    background->shape colour line, unclipped so noise averages out) is taken in a window
    #    wide enough for blurred edges, minus other objects.
    centroids: list[tuple[float, float] | None] = []
    areas: list[float | None] = []
    features, rgbs, shape_brightness = [], [], []
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5  # pixel i spans [i, i + 1)
    window = int(round(5 * scale)) + 1
    for i, frame_regions in enumerate(regions):
        candidates = [r for r in frame_regions if r["color"] == main]
        if not candidates:
            centroids.append(None)
            areas.append(None)
            continue
        region = max(candidates, key=lambda r: r["area"])
        line = region["rgb"] - backgrounds[i]
        offset = clip[i] - backgrounds[i]
        coverage = (offset @ line) / max(float(line @ line), 1e-6)
        # Other objects (regions whose colour is off the background->shape line; blurred rims
        # of the shape lie on it) are cut out of the window, but never the shape's own edge.
        others = np.zeros((height, width), bool)
        for other in frame_regions:
            if other is not region and _off_line(other["rgb"] - backgrounds[i], line):
                others |= other["mask"]
        rim = _dilate(region["mask"], 1)
        inner = _dilate(rim, window - 3)
        support = _dilate(inner, 2)
        if others.any():
            support &= ~(_dilate(others, 1) & ~rim)
        # Subtract the local background level (the window's outer band): a pedestal of 1 %
        # over the window would weigh more than the shape in fourth-order cumulants.
        band = support & ~inner
        if band.any():
            coverage = coverage - float(np.median(coverage[band]))
        coverage = np.where(np.abs(coverage) < DEADZONE, 0.0, coverage)
        weights = np.where(support, np.clip(coverage, -0.5, 1.5), 0.0)
        area = float(weights.sum())
        if area <= 0:
            centroids.append(None)
            areas.append(None)
            continue
        areas.append(area / scale**2)
        centroids.append((float((weights * xs).sum() / area), float((weights * ys).sum() / area)))
        rgbs.append(region["rgb"])
        shape_brightness.append(float(region["rgb"].mean()) / 255.0)
        ys_on, xs_on = np.nonzero(region["mask"])
        inside = ys_on.min() >= b and xs_on.min() >= b and ys_on.max() < height - b and xs_on.max() < width - b
        features.append((*_shape_features(weights, xs, ys), inside))

    present = [c for c in centroids if c is not None]
    if not present:
        return empty
    presence = len(present) / num_frames
    usable = [f[:2] for f in features if f[2]] or [f[:2] for f in features]
    kurtosis_ratio, skew = (float(v) for v in np.median(np.array(usable), axis=0))
    shape, shape_confidence = _classify_shape(kurtosis_ratio, skew)
    colour_index, colour_margin = _nearest_colours(np.median(np.stack(rgbs), axis=0))

    # 5. Motion: least-squares velocity and RMS acceleration of the centroid track.
    velocity, speed, direction_name, direction_confidence = (0.0, 0.0), 0.0, None, 0.0
    smoothness = 1.0
    if len(present) >= 2:
        t = np.array([k for k, c in enumerate(centroids) if c is not None], np.float64)
        pts = np.array(present, np.float64)
        vx, vy = (np.polyfit(t, pts[:, j], 1)[0] for j in (0, 1))
        velocity = (float(vx) / scale, float(vy) / scale)
        speed = float(np.hypot(*velocity))
        if speed < config.static_speed:
            direction_name, direction_confidence = "static", float(1.0 - speed / config.static_speed)
        else:
            if abs(vx) >= abs(vy):
                direction_name = "right" if vx > 0 else "left"
            else:
                direction_name = "down" if vy > 0 else "up"
            direction_confidence = float(max(abs(vx), abs(vy)) / (abs(vx) + abs(vy)))
        track = np.array([c if c is not None else (np.nan, np.nan) for c in centroids], np.float64)
        accel = track[:-2] + track[2:] - 2 * track[1:-1]  # (f-2) 2, NaN where a frame is missing
        accel = accel[~np.isnan(accel).any(axis=1)]
        if len(accel):
            rms = float(np.sqrt(np.mean(np.sum(accel**2, axis=1)))) / scale
            smoothness = float(1.0 / (1.0 + (rms / config.jitter_scale) ** 2))
    # Flicker: the larger of the background's and the shape's mean brightness change per frame.
    background_flicker = float(np.mean(np.abs(np.diff(backgrounds.mean(axis=1) / 255.0)))) if num_frames > 1 else 0.0
    shape_flicker = float(np.mean(np.abs(np.diff(shape_brightness)))) if len(shape_brightness) > 1 else 0.0
    flicker = max(background_flicker, shape_flicker)
    return ClipReading(
        background=background,
        color=_PALETTE_NAMES[int(colour_index)],
        shape=shape,
        direction=direction_name,
        speed=speed,
        centroids=centroids,
        presence=presence,
        smoothness=smoothness,
        flicker=flicker,
        velocity=velocity,
        areas=areas,
        shape_features={"kurtosis_ratio": kurtosis_ratio, "skew": skew},
        confidence={
            "background": float(min(1.0, bg_margin / 80.0)),
            "color": float(min(1.0, colour_margin / 80.0)),
            "shape": shape_confidence,
            "direction": direction_confidence,
        },
    )


def retrace(spec: ClipSpec, frames: Any, config: OracleConfig | None = None) -> np.ndarray:
    """The motion of the main shape of ``frames``, as a ``track`` for ``world.render_clip(spec, track=...)``.

    Returns ``(F, 2)`` box centres at the 64-pixel reference size: ``spec``'s start plus the clip's centroid
    displacement from its first frame, frames where the shape was not found filled by linear interpolation
    (the nearest found frame at the ends). Rendering ``spec`` along it gives a clip that differs from the
    world's own clip of ``spec`` in its motion alone, so a preference between the two is a preference about
    motion, not about how the shape is drawn.
    """
    clip = to_uint8_frames(frames)
    reading = read_clip(clip, config)
    found = [i for i, c in enumerate(reading.centroids) if c is not None]
    if not found:
        raise ValueError("No shape found in the clip: there is no motion to retrace.")
    scale = min(clip.shape[1], clip.shape[2]) / REFERENCE_SIZE
    t = np.arange(len(reading.centroids), dtype=np.float64)
    points = np.array([reading.centroids[i] for i in found], np.float64) / scale
    track = np.stack([np.interp(t, np.array(found, np.float64), points[:, j]) for j in (0, 1)], axis=1)
    return track - track[0] + np.array([spec.start_x, spec.start_y])


def _off_line(offset: np.ndarray, line: np.ndarray) -> bool:
    """Whether a colour (as an offset from the background) is not a blend of background and ``line``."""
    t = float(offset @ line) / max(float(line @ line), 1e-6)
    return float(np.linalg.norm(offset - t * line)) > 0.4 * float(np.linalg.norm(line))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation of a (H, W) bool mask by ``radius`` pixels."""
    out = mask
    for _ in range(radius):
        out = _max3(_max3(out, 0), 1)
    return out


def score_clip(frames: Any, prompt: str, config: OracleConfig | None = None) -> OracleScore:
    """Score how faithfully and cleanly ``frames`` show ``prompt``; every component is in [0, 1].

    Attributes the prompt does not mention score 1. ``total`` is the weighted mean of the
    components (``SCORE_WEIGHTS``) times ``presence``, so a clip without the shape scores 0.
    """
    config = config or OracleConfig()
    wanted = parse_prompt(prompt)
    reading = read_clip(frames, config)

    def agree(expected: str | None, got: str | None) -> float:
        return 1.0 if expected is None or expected == got else 0.0

    direction_match = 1.0
    if wanted.direction is not None:
        ux, uy = DIRECTIONS[wanted.direction]
        vx, vy = reading.velocity
        along = vx * ux + vy * uy
        direction_match = float(np.clip(along / max(np.hypot(vx, vy), config.static_speed), 0.0, 1.0))
    speed_match = 1.0
    if wanted.speed is not None:
        ratio = max(reading.speed, 1e-3) / SPEEDS[wanted.speed]
        speed_match = float(np.exp(-2.0 * abs(np.log(ratio))))
    components = {
        "shape_match": agree(wanted.shape, reading.shape),
        "color_match": agree(wanted.color, reading.color),
        "background_match": agree(wanted.background, reading.background),
        "direction_match": direction_match,
        "speed_match": speed_match,
        "smoothness": reading.smoothness if reading.presence > 0 else 0.0,
        "flicker": float(1.0 / (1.0 + (reading.flicker / config.flicker_scale) ** 2)),
    }
    weighted = sum(SCORE_WEIGHTS[k] * v for k, v in components.items()) / sum(SCORE_WEIGHTS.values())
    return OracleScore(**components, presence=reading.presence, total=float(weighted * reading.presence),
                       reading=reading)


def matches(frames: Any, prompt: str, config: OracleConfig | None = None) -> dict[str, bool]:
    """Which parts of ``prompt`` the clip satisfies (unmentioned attributes count as satisfied),
    plus ``present``, ``smooth``, ``steady`` and ``all``."""
    score = score_clip(frames, prompt, config)
    result = {
        "present": score.presence >= 0.5,
        "shape": score.shape_match >= 0.5,
        "color": score.color_match >= 0.5,
        "background": score.background_match >= 0.5,
        "direction": score.direction_match >= 0.5,
        "speed": score.speed_match >= 0.5,
        "smooth": score.smoothness >= 0.5,
        "steady": score.flicker >= 0.5,
    }
    result["all"] = all(result.values())
    return result


def prefer(
    frames_a: Any, frames_b: Any, prompt: str, margin: float = 0.02, config: OracleConfig | None = None
) -> Literal["left", "right", "tie"]:
    """The oracle's vote between two clips for one prompt: "left" (``frames_a``), "right" or "tie"."""
    a = score_clip(frames_a, prompt, config).total
    b = score_clip(frames_b, prompt, config).total
    if a > b + margin:
        return "left"
    if b > a + margin:
        return "right"
    return "tie"
