"""`dataset=shapes`: a photo-scale data set drawn here, offline and the same on every machine.

Ten classes of shapes and patterns, each image with its own position, scale, rotation and colours, on a
textured background, under uneven lighting and sensor noise, drawn at `image_size` (supersampled, then
downsampled, as a camera would). Hard enough that a model needs its capacity (a ring and a circle, a hexagon
and a circle differ in a few pixels at 32 px), easy enough that a compressed model keeps its accuracy.
Image i depends only on (seed, its class, i): a larger set starts with the same images, and a scene is the
same at every size.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "ring", "square", "triangle", "hexagon", "star", "cross", "crescent", "stripes", "checker")
PER_CLASS = 400  # pinned: the figures README reports are on this many
SEED = 20261205  # pinned too: dataset=shapes is one data set, not one per run seed
DRAWING_VERSION = 1  # bump when the drawing changes: drawn sets are cached (steps/datasets/folder_cache.py)
# Ten far-apart hues, for colour_coded classes
CLASS_COLOURS = np.array(
    [(230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48)]
    + [(145, 30, 180), (70, 240, 240), (240, 50, 230), (128, 0, 0), (0, 0, 128)],
    float,
)
LEAST_CONTRAST = 90  # of 255, between a shape's colour and its background's mean
SUPERSAMPLE = 2  # drawn at twice the size, then averaged down: edges anti-aliased like a photo's


def recipe() -> str:
    """What dataset=shapes draws, as the cache keys it (with the size)."""
    return f"shapes v{DRAWING_VERSION} seed {SEED} {PER_CLASS} per class of {','.join(CLASSES)}"


def generate_shapes(
    side: int,
    per_class: int = PER_CLASS,
    classes: tuple[str, ...] = CLASSES,
    seed: int = SEED,
    clutter: float = 1.0,
    colour_coded: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, side, side, 3), labels int64 (N,)), class by class in the order of `classes`.
    `clutter` scales the background texture, the uneven light and the noise, and lowers the least contrast
    of a shape against its background: 1 is dataset=shapes, 0 flat scenes that a test's small model learns
    from a few hundred images. `colour_coded` draws each class in a colour of its own (on a grey background),
    a cue any model picks up: the easy data of tests."""
    unknown = sorted(set(classes) - set(CLASSES))
    if unknown:
        raise ValueError(f"unknown shape classes {unknown}; known: {', '.join(CLASSES)}")
    images = np.empty((len(classes) * per_class, side, side, 3), np.uint8)
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), per_class)
    for label, name in enumerate(classes):
        for i in range(per_class):
            rng = np.random.default_rng([seed, CLASSES.index(name), i])
            images[label * per_class + i] = draw(name, side, rng, clutter, colour_coded)
    return images, labels


def draw(
    name: str, side: int, rng: np.random.Generator, clutter: float = 1.0, colour_coded: bool = False
) -> np.ndarray:
    """One image of class `name`: uint8 (side, side, 3). The scene (shape, colours, light) comes from one
    stream of `rng` and the pixel grain from another, so a scene looks the same at every `side`."""
    rng, grain = rng.spawn(2)
    big = side * SUPERSAMPLE
    background = _background(big, rng, grain, clutter, grey=colour_coded)
    canvas = Image.fromarray(background)
    mask = Image.new("L", (big, big), 0)
    _SHAPES[name](ImageDraw.Draw(mask), big, rng)
    if colour_coded:
        colour = np.clip(CLASS_COLOURS[CLASSES.index(name)] + rng.normal(0, 15, 3), 0, 255)
    else:
        colour = _contrasting_colour(background.reshape(-1, 3).mean(axis=0), rng, LEAST_CONTRAST + (1 - clutter) * 60)
    canvas.paste(Image.new("RGB", (big, big), tuple(int(c) for c in colour)), mask=mask)
    image = np.asarray(canvas.resize((side, side), Image.Resampling.BOX), np.float32) / 255.0
    return _camera(image, rng, grain, clutter)


def _background(size: int, rng, grain, clutter: float, grey: bool) -> np.ndarray:
    """A base colour with low-frequency blotches and fine grain: not a flat colour a model could subtract."""
    base = rng.uniform(0.15, 0.85, 3)
    if grey:
        base[:] = base.mean()
    blotches = np.asarray(
        Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC),
        np.float32,
    )
    texture = ((blotches / 255.0 - 0.5) * rng.uniform(0.2, 0.5) + grain.normal(0, 0.03, (size, size, 1))) * clutter
    return (np.clip(base + texture, 0, 1) * 255).astype(np.uint8)


def _contrasting_colour(background: np.ndarray, rng, least: float) -> np.ndarray:
    """A random colour at least `least` (of 255) away from the background's mean: visible, not always by much."""
    while True:
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - background) >= least:
            return colour


def _camera(image: np.ndarray, rng, grain, clutter: float) -> np.ndarray:
    """Light falling off across the frame, a brightness and contrast of its own, and sensor noise."""
    side = image.shape[0]
    angle = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(-0.5, 0.5, side, dtype=np.float32)
    gradient = math.cos(angle) * ramp[np.newaxis, :] + math.sin(angle) * ramp[:, np.newaxis]
    falloff, brightness, noise = rng.uniform(0.1, 0.4), rng.uniform(0.7, 1.2), rng.uniform(0.01, 0.05)
    lit = image * (1 + clutter * falloff * gradient[..., np.newaxis]) * (1 + clutter * (brightness - 1))
    noisy = lit + clutter * grain.normal(0, noise, image.shape)
    return (np.clip(noisy, 0, 1) * 255 + 0.5).astype(np.uint8)


def _placement(size: int, rng, low: float = 0.35, high: float = 0.7) -> tuple[float, float, float, float]:
    """Centre, radius and rotation of a shape that stays inside the frame."""
    radius = rng.uniform(low, high) * size / 2
    cx, cy = rng.uniform(radius, size - radius, 2)
    return cx, cy, radius, rng.uniform(0, 2 * math.pi)


def _polygon_points(cx, cy, radii, turn) -> list[tuple[float, float]]:
    """Points at equal angles around (cx, cy), the k-th `radii[k]` away."""
    n = len(radii)
    return [
        (cx + r * math.cos(turn + 2 * math.pi * k / n), cy + r * math.sin(turn + 2 * math.pi * k / n))
        for k, r in enumerate(radii)
    ]


def _circle(pen, size, rng):
    cx, cy, r, _ = _placement(size, rng)
    pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)


def _ring(pen, size, rng):
    cx, cy, r, _ = _placement(size, rng)
    pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    inner = r * rng.uniform(0.45, 0.7)
    pen.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)


def _regular(sides):
    def shape(pen, size, rng):
        cx, cy, r, turn = _placement(size, rng)
        pen.polygon(_polygon_points(cx, cy, [r] * sides, turn), fill=255)

    return shape


def _star(pen, size, rng):
    cx, cy, r, turn = _placement(size, rng)
    pen.polygon(_polygon_points(cx, cy, [r, r * rng.uniform(0.38, 0.5)] * 5, turn), fill=255)


def _cross(pen, size, rng):
    cx, cy, r, turn = _placement(size, rng)
    arm = r * rng.uniform(0.25, 0.4)
    corners = [(arm, r), (arm, arm), (r, arm), (r, -arm), (arm, -arm), (arm, -r)]
    outline = corners + [(-x, -y) for x, y in corners]
    cos, sin = math.cos(turn), math.sin(turn)
    pen.polygon([(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in outline], fill=255)


def _crescent(pen, size, rng):
    cx, cy, r, turn = _placement(size, rng)
    pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    shift = r * rng.uniform(0.35, 0.55)
    bx, by = cx + shift * math.cos(turn), cy + shift * math.sin(turn)
    pen.ellipse((bx - r, by - r, bx + r, by + r), fill=0)


def _patterned_square(pattern):
    """A rotated square patch filled with a pattern; the square outline alone would be class `square`."""

    def shape(pen, size, rng):
        cx, cy, r, turn = _placement(size, rng, 0.5, 0.8)
        period = r * rng.uniform(0.3, 0.45)
        cos, sin = math.cos(turn), math.sin(turn)
        cells = int(2 * r / period) + 1
        for i in range(cells):
            for j in range(cells if pattern == "checker" else 1):
                if pattern == "checker" and (i + j) % 2:
                    continue
                x0, x1 = -r + i * period, min(-r + (i + 0.5 if pattern == "stripes" else i + 1) * period, r)
                y0, y1 = (-r + j * period, min(-r + (j + 1) * period, r)) if pattern == "checker" else (-r, r)
                corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
                pen.polygon([(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in corners], fill=255)

    return shape


_SHAPES = {
    "circle": _circle,
    "ring": _ring,
    "square": _regular(4),
    "triangle": _regular(3),
    "hexagon": _regular(6),
    "star": _star,
    "cross": _cross,
    "crescent": _crescent,
    "stripes": _patterned_square("stripes"),
    "checker": _patterned_square("checker"),
}
