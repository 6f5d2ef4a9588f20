"""Small synthetic images with a structured description, for tests and the CPU demo.

An image is one to three flat-coloured shapes on a neutral (grey-scale) background, sometimes with a
short word in black or white. Colour and shape are the only chromatic signal, so every label that is
derived from the description (class name, caption, answer, crop) is learnable by a tiny model and can
be checked by a colour histogram. Objects in one scene have distinct colours and distinct shapes, so a
label such as "red circle" names exactly one object.
"""

from __future__ import annotations

import functools
import io
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ...atomic_files import atomic_write_bytes

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 50, 190),
    "orange": (245, 140, 20),
    "cyan": (20, 200, 210),
    "pink": (245, 110, 190),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
BACKGROUNDS: tuple[str, ...] = ("plain", "stripes", "checker", "noise")
WORDS: tuple[str, ...] = tuple("cat sun tree moon fish boat book car home key map cup".split())
COUNT_WORDS: tuple[str, ...] = ("one", "two", "three")

_BACKGROUND_WORDS = {"plain": "plain", "stripes": "striped", "checker": "checkered", "noise": "noisy"}
_MIN_SIDE, _MAX_SIDE = 48, 96
_MIN_OBJECT = 8
_GAP = 2


@dataclass(frozen=True)
class SceneObject:
    """One shape; `box` is (x0, y0, x1, y1) in pixels, end exclusive, always square."""

    shape: str
    color: str
    box: tuple[int, int, int, int]

    @property
    def label(self) -> str:
        return f"{self.color} {self.shape}"

    def position(self, width: int, height: int) -> str:
        """Coarse position in thirds of the image: 'top left', 'right', 'center', ..."""
        cx = (self.box[0] + self.box[2]) / 2 / width
        cy = (self.box[1] + self.box[3]) / 2 / height
        horizontal = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
        vertical = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
        return " ".join(p for p in (vertical, horizontal) if p) or "center"


@dataclass(frozen=True)
class Scene:
    """Everything needed to draw an image and to say what is in it; `objects[0]` is the main object."""

    width: int
    height: int
    background: str
    tones: tuple[int, int]
    texture_seed: int
    objects: tuple[SceneObject, ...]
    text: str | None = None
    text_xy: tuple[int, int] | None = None

    @property
    def main(self) -> SceneObject:
        return self.objects[0]

    def caption(self) -> str:
        """A plain-English list of the objects with their positions, the background and the word."""
        phrases = [
            f"{_article(o.label)} {o.label} {_position_phrase(o.position(self.width, self.height))}"
            for o in self.objects
        ]
        listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        caption = f"{listed} on a {_BACKGROUND_WORDS[self.background]} background"
        if self.text:
            caption += f', with the word "{self.text}"'
        return caption


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _position_phrase(position: str) -> str:
    if position == "center":
        return "in the center"
    if position in ("left", "right"):
        return f"on the {position}"
    return f"at the {position}"


def sample_scene(
    rng: random.Random,
    *,
    num_objects: tuple[int, int] = (1, 3),
    main_scale: tuple[float, float] = (0.3, 0.5),
    other_scale: tuple[float, float] = (0.3, 0.5),
    text_prob: float = 0.3,
    main: tuple[str, str] | None = None,
) -> Scene:
    """Draw a random scene description; `main` fixes the (colour, shape) of the main object.

    Scales are fractions of the short side. Objects never overlap each other or the word; an object
    other than the main one that finds no free place is left out, so a scene may hold fewer objects
    than asked (never fewer than one).
    """
    lo, hi = num_objects
    if not 1 <= lo <= hi <= min(len(SHAPES), len(COLORS)):
        raise ValueError(f"num_objects must be 1 <= lo <= hi <= {len(SHAPES)}, got {num_objects}")
    if main is not None and (main[0] not in COLORS or main[1] not in SHAPES):
        raise ValueError(f"unknown main object {main!r}; colours {list(COLORS)}, shapes {list(SHAPES)}")
    width = rng.randint(_MIN_SIDE, _MAX_SIDE)
    height = width if rng.random() < 0.6 else rng.randint(_MIN_SIDE, _MAX_SIDE)
    short = min(width, height)
    background = rng.choice(BACKGROUNDS)
    light = rng.random() < 0.6
    base = rng.randint(175, 235) if light else rng.randint(25, 80)
    tones = (base, base - 45 if light else base + 45)
    texture_seed = rng.getrandbits(32)

    occupied: list[tuple[int, int, int, int]] = []
    text = text_xy = None
    if short >= 64 and rng.random() < text_prob:
        text = rng.choice(WORDS)
        x0, y0, x1, y1 = _font().getbbox(text)
        tx = rng.randint(2, max(2, width - x1 - 2))
        ty = 1 if rng.random() < 0.5 else height - y1 - 2
        text_xy = (tx, ty)
        occupied.append((tx + x0, ty + y0, tx + x1, ty + y1))

    count = rng.randint(lo, hi)
    colors = [c for c in COLORS if main is None or c != main[0]]
    shapes = [s for s in SHAPES if main is None or s != main[1]]
    picked_colors = rng.sample(colors, count)
    picked_shapes = rng.sample(shapes, count)
    if main is not None:
        picked_colors[0], picked_shapes[0] = main

    objects: list[SceneObject] = []
    for i, (color, shape) in enumerate(zip(picked_colors, picked_shapes)):
        scale = main_scale if i == 0 else other_scale
        size = max(_MIN_OBJECT, min(short - 2, round(rng.uniform(*scale) * short)))
        box = _place(rng, width, height, size, occupied)
        while box is None and i == 0:
            size = max(_MIN_OBJECT, int(size * 0.85))
            box = _place(rng, width, height, size, occupied)
        if box is None:
            continue
        occupied.append(box)
        objects.append(SceneObject(shape, color, box))
    return Scene(width, height, background, tones, texture_seed, tuple(objects), text, text_xy)


def _place(
    rng: random.Random, width: int, height: int, size: int, occupied: list[tuple[int, int, int, int]]
) -> tuple[int, int, int, int] | None:
    for _ in range(60):
        x0 = rng.randint(1, width - size - 1)
        y0 = rng.randint(1, height - size - 1)
        box = (x0, y0, x0 + size, y0 + size)
        if not any(_overlaps(box, other) for other in occupied):
            return box
    return None


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] + _GAP and b[0] < a[2] + _GAP and a[1] < b[3] + _GAP and b[1] < a[3] + _GAP


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default()


def render_scene(scene: Scene) -> Image.Image:
    """Draw the scene as an RGB image."""
    grey = _background(scene)
    image = Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB")
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_shape(draw, obj)
    if scene.text and scene.text_xy:
        ink = 0 if scene.tones[0] > 127 else 255
        draw.text(scene.text_xy, scene.text, fill=(ink, ink, ink), font=_font())
    return image


def _background(scene: Scene) -> np.ndarray:
    h, w = scene.height, scene.width
    a, b = scene.tones
    rng = np.random.default_rng(scene.texture_seed)
    period = int(rng.integers(3, 8))
    ys, xs = np.mgrid[0:h, 0:w]
    if scene.background == "plain":
        grey = np.full((h, w), a, dtype=np.float64)
    elif scene.background == "stripes":
        axis = ys if rng.random() < 0.5 else xs
        grey = np.where((axis // period) % 2 == 0, a, b).astype(np.float64)
    elif scene.background == "checker":
        grey = np.where(((ys // period) + (xs // period)) % 2 == 0, a, b).astype(np.float64)
    elif scene.background == "noise":
        grey = a + rng.normal(0.0, 18.0, size=(h, w))
    else:
        raise ValueError(f"unknown background {scene.background!r}; expected one of {BACKGROUNDS}")
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def _draw_shape(draw: ImageDraw.ImageDraw, obj: SceneObject) -> None:
    x0, y0, x1, y1 = obj.box
    s = x1 - x0
    cx, cy = x0 + s / 2, y0 + s / 2
    fill = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(cx, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=fill)
    elif obj.shape == "diamond":
        draw.polygon([(cx, y0), (x1 - 1, cy), (cx, y1 - 1), (x0, cy)], fill=fill)
    elif obj.shape == "cross":
        third = s / 3
        draw.rectangle((x0 + third, y0, x0 + 2 * third - 1, y1 - 1), fill=fill)
        draw.rectangle((x0, y0 + third, x1 - 1, y0 + 2 * third - 1), fill=fill)
    elif obj.shape == "star":
        outer, inner = s / 2 - 0.5, s / 4.4
        points = []
        for k in range(10):
            radius = outer if k % 2 == 0 else inner
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        draw.polygon(points, fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}; expected one of {SHAPES}")


def crop_object(image: Image.Image, obj: SceneObject, margin: int = 2) -> Image.Image:
    """The object's box plus a small margin, clipped to the image (the grounding target)."""
    x0, y0, x1, y1 = obj.box
    box = (
        max(0, x0 - margin),
        max(0, y0 - margin),
        min(image.width, x1 + margin),
        min(image.height, y1 + margin),
    )
    return image.crop(box)


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write a PNG atomically (temp file + rename), so a reader never sees half an image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return path
