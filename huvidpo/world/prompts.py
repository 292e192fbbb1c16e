"""The world's language: its vocabulary, the ways people word a prompt, and the parser that reads them back.

What is unusual here:
- One prompt has many wordings. ``word_prompt`` writes a spec's attributes in one of ``TEMPLATES`` with a
  synonym for each word (ball/disc for circle, fast/quick for quickly, leftward for left), word orders such as
  "green triangle, moving right, on red", and capitals; wording 0 is the canonical sentence. The embedded default
  is trained on them all, so it reads prompts as people write them, and ``parse_prompt`` reads every wording back.
- The speed may be left out. A prompt that names no speed leaves the clip free to move slowly or quickly: that is
  the world's *unprompted mode* (``UNPROMPTED_MODES``), the visible quality a taste labeler prefers one way or the
  other and DPO learns to follow.
- ``vocabulary_warnings`` names words a prompt uses that the embedded model cannot know ("purple", "hexagon"),
  from a short list of common colour and shape words: a gentle warning, since larger models know more.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

# Colour names -> RGB. Pairwise distances are >= 160, so a shape stays nameable after blur.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 70),
    "blue": (40, 90, 220),
    "yellow": (240, 210, 40),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
}
COLORS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# Unit motion per direction in image coordinates (x right, y down).
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
# Speed adverb -> pixels per frame at a 64-pixel frame (scaled with the frame size).
SPEEDS: dict[str, float] = {"slowly": 0.75, "quickly": 2.0}
CORNERS: tuple[str, ...] = ("top-left", "top-right", "bottom-left", "bottom-right")

# Qualities a clip shows that a prompt may leave out, and the modes the world draws about equally often then.
UNPROMPTED_MODES: dict[str, tuple[str, ...]] = {"speed": tuple(SPEEDS)}

# Words people use for the same thing; parse_prompt maps them to our vocabulary, word_prompt writes them.
SHAPE_SYNONYMS: dict[str, str] = {
    "circle": "circle", "disc": "circle", "disk": "circle", "ball": "circle", "dot": "circle",
    "square": "square", "box": "square", "block": "square",
    "triangle": "triangle",
}
DIRECTION_SYNONYMS: dict[str, str] = {
    "left": "left", "leftward": "left", "leftwards": "left",
    "right": "right", "rightward": "right", "rightwards": "right",
    "up": "up", "upward": "up", "upwards": "up",
    "down": "down", "downward": "down", "downwards": "down",
}
SPEED_SYNONYMS: dict[str, str] = {
    "slowly": "slowly", "slow": "slowly",
    "quickly": "quickly", "quick": "quickly", "fast": "quickly", "rapidly": "quickly",
}
COLOR_SYNONYMS: dict[str, str] = {c: c for c in COLORS}

# Wordings of the main clause. {speed} is the speed word with its own leading space, or nothing.
TEMPLATES: tuple[str, ...] = (
    "a {color} {shape} moving {direction}{speed} on a {background} background",  # canonical: wording 0
    "{color} {shape}, moving {direction}{speed}, on {background}",
    "a {color} {shape} moves {direction}{speed} on a {background} background",
    "on a {background} background, a {color} {shape} moving {direction}{speed}",
    "the {color} {shape} goes {direction}{speed} over a {background} backdrop",
    "{color} {shape} moving{speed} {direction} on {background}",
    "a {color} {shape} heading {direction}{speed} across a {background} background",
)
# Words the wordings use besides the vocabulary and its synonyms (the tokenizer gives each a token).
WORDING_WORDS: tuple[str, ...] = ("moves", "goes", "over", "backdrop", "heading", "across", "the")

# Common words for colours and shapes the world does not draw: a prompt using one gets a gentle warning.
OTHER_COLOR_WORDS = ("purple", "orange", "pink", "brown", "cyan", "magenta", "violet", "grey", "gray", "gold",
                     "silver", "teal", "navy", "beige", "turquoise", "maroon", "lime", "indigo")
OTHER_SHAPE_WORDS = ("star", "hexagon", "pentagon", "rectangle", "oval", "ellipse", "heart", "diamond", "cross",
                     "cube", "sphere", "cone", "ring", "octagon", "arrow", "line")


@dataclass(frozen=True)
class PromptAttributes:
    """What a prompt asks for; ``None`` where the prompt does not say."""

    shape: str | None = None
    color: str | None = None
    background: str | None = None
    direction: str | None = None
    speed: str | None = None
    distractor_shape: str | None = None
    distractor_color: str | None = None


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def word_prompt(
    shape: str, color: str, background: str, direction: str, speed: str | None, wording: int = 0,
    distractor_clause: str = "",
) -> str:
    """The prompt for these attributes in wording ``wording`` (0: the canonical sentence; any other integer picks a
    template, synonyms and capitals deterministically). ``speed`` None leaves the speed out."""
    template = TEMPLATES[template_of(wording)]
    if wording == 0:
        shape_word, direction_word, speed_word, capitals = shape, direction, speed, "none"
    else:
        rng = np.random.default_rng(wording)
        rng.integers(len(TEMPLATES))  # the template's draw (template_of)
        shape_word = _pick(rng, SHAPE_SYNONYMS, shape)
        direction_word = _pick(rng, DIRECTION_SYNONYMS, direction)
        speed_word = _pick(rng, SPEED_SYNONYMS, speed) if speed is not None else None
        capitals = str(rng.choice(["none", "none", "first", "title"]))
    text = template.format(
        color=color, shape=shape_word, direction=direction_word, background=background,
        speed=f" {speed_word}" if speed_word else "",
    ) + distractor_clause
    if capitals == "first":
        text = text[0].upper() + text[1:]
    elif capitals == "title":
        text = " ".join(word[:1].upper() + word[1:] for word in text.split(" "))
    return text


def template_of(wording: int) -> int:
    """Index in ``TEMPLATES`` of wording ``wording`` (0: the canonical template)."""
    return 0 if wording == 0 else int(np.random.default_rng(wording).integers(len(TEMPLATES)))


def _pick(rng: np.random.Generator, synonyms: dict[str, str], value: str) -> str:
    words = [word for word, meaning in synonyms.items() if meaning == value]
    return str(words[int(rng.integers(len(words)))])


def parse_prompt(prompt: str) -> PromptAttributes:
    """Read shape, colour, background, direction and speed from a prompt in any of the world's wordings, tolerant
    to case, synonyms, word order and extra words.

    The background is the colour before "background"/"backdrop" (or after "on"); the shape's colour is the
    colour nearest before the shape word. A trailing "with a small ..." clause is a distractor.
    """
    main_text, _, extra_text = prompt.lower().partition(" with ")
    words = _words(main_text)
    background, background_at = None, None
    for i, word in enumerate(words):
        if word in ("background", "backdrop") and i > 0 and words[i - 1] in COLOR_SYNONYMS:
            background, background_at = COLOR_SYNONYMS[words[i - 1]], i - 1
        elif word == "on" and background is None:
            after = [j for j in range(i + 1, min(i + 3, len(words))) if words[j] in COLOR_SYNONYMS]
            if after:
                background, background_at = COLOR_SYNONYMS[words[after[0]]], after[0]
    shape_at = next((i for i, w in enumerate(words) if w in SHAPE_SYNONYMS), None)
    shape = SHAPE_SYNONYMS[words[shape_at]] if shape_at is not None else None
    colours = [(i, COLOR_SYNONYMS[w]) for i, w in enumerate(words) if w in COLOR_SYNONYMS and i != background_at]
    if shape_at is not None:
        before = [c for i, c in colours if i < shape_at]
        color = before[-1] if before else None
    else:
        color = colours[0][1] if colours else None
    direction = next((DIRECTION_SYNONYMS[w] for w in words if w in DIRECTION_SYNONYMS), None)
    speed = next((SPEED_SYNONYMS[w] for w in words if w in SPEED_SYNONYMS), None)
    extra = _words(extra_text)
    distractor_shape = next((SHAPE_SYNONYMS[w] for w in extra if w in SHAPE_SYNONYMS), None)
    distractor_color = next((COLOR_SYNONYMS[w] for w in extra if w in COLOR_SYNONYMS), None)
    attributes = PromptAttributes(shape, color, background, direction, speed, distractor_shape, distractor_color)
    if all(v is None for v in asdict(attributes).values()):
        raise ValueError(
            f"Nothing recognisable in prompt {prompt!r}: describe a shape ({', '.join(SHAPES)}), a colour "
            f"({', '.join(COLORS)}), a direction ({', '.join(DIRECTIONS)}) and/or a background colour."
        )
    return attributes


def vocabulary() -> dict[str, tuple[str, ...]]:
    """What the world (and so the embedded default) can draw, by kind, canonical words first then synonyms."""
    def words(synonyms: dict[str, str], canonical: tuple[str, ...]) -> tuple[str, ...]:
        return (*canonical, *(w for w in synonyms if w not in canonical))

    return {
        "colours": COLORS,
        "shapes": words(SHAPE_SYNONYMS, SHAPES),
        "directions": words(DIRECTION_SYNONYMS, tuple(DIRECTIONS)),
        "speeds": words(SPEED_SYNONYMS, tuple(SPEEDS)),
    }


def vocabulary_warnings(prompt: str) -> list[str]:
    """Gentle notes on words of ``prompt`` the world cannot draw (a colour or shape outside its vocabulary)."""
    words = set(_words(prompt))
    notes = []
    colours = [w for w in OTHER_COLOR_WORDS if w in words]
    if colours:
        notes.append(f"The embedded model knows the colours {', '.join(COLORS)}; it will not draw {', '.join(colours)}.")
    shapes = [w for w in OTHER_SHAPE_WORDS if w in words]
    if shapes:
        notes.append(f"The embedded model knows the shapes {', '.join(SHAPES)} (or ball, disc, box); "
                     f"it will not draw {', '.join(shapes)}.")
    return notes
