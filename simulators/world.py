"""The synthetic visual world: procedural pictures with captions that describe them.

Every stimulus is one coloured shape on a background, defined by six
attributes (shape, colour, texture, size, position, background). Stimulus
``i`` is the ``i``-th combination in a seeded permutation, so the same seed
always gives the same pictures. Pictures are ``(size, size, 3)`` uint8 RGB,
drawn at 4x and downsampled for smooth edges. Captions have fixed slots
("a large striped red circle at the top-left on a navy background"), so each
attribute is always the same word of the caption.

Two versions of the world exist (``StimulusWorld(version=...)``):

* **1**: four plain backgrounds, so the background is a 4-way label that a
  pixel metric scores easily; the grid has 6 * 8 * 3 * 2 * 9 * 4 = 10,368
  pictures.
* **2** (the default, :data:`DEFAULT_VERSION`; the embedded model's and the
  metric network's world): twelve backgrounds, the four plain ones and eight that are not a
  flat colour: four gradients (``sky``, ``dusk``, ``meadow``, ``ocean``) and
  four textures (``dotted``, ``gridded``, ``sandy``, ``wavy``); 31,104
  pictures. Version 1's pictures are version 2's pictures on plain
  backgrounds, but the two versions hold out different ones.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "ring", "star")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 80, 230),
    "yellow": (240, 220, 40),
    "magenta": (210, 50, 200),
    "cyan": (40, 210, 220),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
}
TEXTURES = ("solid", "striped", "checkered")
SIZES = {"small": 0.17, "large": 0.3}  # radius as a fraction of the picture side
POSITIONS = {
    "top-left": (0.28, 0.28),
    "top": (0.5, 0.28),
    "top-right": (0.72, 0.28),
    "left": (0.28, 0.5),
    "centre": (0.5, 0.5),
    "right": (0.72, 0.5),
    "bottom-left": (0.28, 0.72),
    "bottom": (0.5, 0.72),
    "bottom-right": (0.72, 0.72),
}
BACKGROUNDS = {
    "black": (15, 15, 15),
    "grey": (128, 128, 128),
    "navy": (20, 30, 90),
    "beige": (225, 210, 170),
}

#: Version 2's backgrounds beyond the plain ones: each a name (one caption word) and how it
#: is drawn (:func:`_background`): a gradient between two colours along a direction, or a
#: texture of two colours.
PATTERNED_BACKGROUNDS: dict[str, tuple[str, tuple[int, int, int], tuple[int, int, int]]] = {
    "sky": ("vertical", (60, 120, 215), (215, 232, 250)),
    "dusk": ("vertical", (250, 150, 60), (70, 35, 110)),
    "meadow": ("horizontal", (35, 110, 40), (200, 215, 90)),
    "ocean": ("diagonal", (10, 50, 110), (70, 200, 195)),
    "dotted": ("dots", (225, 210, 170), (120, 110, 95)),
    "gridded": ("grid", (235, 235, 235), (60, 60, 60)),
    "sandy": ("noise", (205, 180, 130), (150, 120, 80)),
    "wavy": ("waves", (95, 95, 160), (175, 175, 225)),
}
WORLD_VERSIONS = (1, 2)
#: The version a world is when none is named: the embedded model's and the sessions' default
#: (``simulation.world_version`` in rt_recon.config says the same; a test holds them equal).
DEFAULT_VERSION = 2

#: Pictures of the world no model of this project trains on: the embedded render model
#: (training/train_embedded.py) and the metric network leave them out, and a synthetic
#: session's validation and test runs show only them. Drawn once, by attribute combination,
#: as ``default_rng(HOLDOUT_SEED).choice`` of world ``HOLDOUT_SEED``'s ids.
HOLDOUT_SEED = 0
HOLDOUT_SIZE = 512

#: The picture shown between trials, and its caption.
BLANK_ID = -1
BLANK_COLOUR = BACKGROUNDS["grey"]
BLANK_CAPTION = "a blank grey screen"

_ATTRIBUTE_AXES = (
    ("shape", SHAPES),
    ("colour", tuple(COLOURS)),
    ("texture", TEXTURES),
    ("size", tuple(SIZES)),
    ("position", tuple(POSITIONS)),
    ("background", tuple(BACKGROUNDS)),
)
_AXES_BY_VERSION = {
    1: _ATTRIBUTE_AXES,
    2: (*_ATTRIBUTE_AXES[:-1], ("background", (*BACKGROUNDS, *PATTERNED_BACKGROUNDS))),
}
_SUPERSAMPLE = 4
_GRAIN_SEED = 5  # the sandy background's fixed grain


@dataclass(frozen=True)
class Stimulus:
    """One picture of the world: its id, attributes and caption."""

    id: int
    shape: str
    colour: str
    texture: str
    size: str
    position: str
    background: str

    @property
    def caption(self) -> str:
        """Eleven words, each attribute always in the same slot (one token per word)."""
        return (
            f"a {self.size} {self.texture} {self.colour} {self.shape} "
            f"at the {self.position} on a {self.background} background"
        )

    @property
    def attributes(self) -> dict[str, str]:
        return {name: getattr(self, name) for name, _ in _ATTRIBUTE_AXES}


class StimulusWorld:
    """Deterministic procedural stimuli: ``world.image(i)``, ``world.stimulus(i).caption``."""

    def __init__(self, seed: int = 0, image_size: int = 64, version: int = DEFAULT_VERSION):
        if version not in WORLD_VERSIONS:
            raise ValueError(f"world version must be one of {WORLD_VERSIONS}, found {version!r}")
        self.seed = seed
        self.image_size = image_size
        self.version = version
        self.axes = _AXES_BY_VERSION[version]
        self.n_stimuli = math.prod(len(values) for _, values in self.axes)
        rng = np.random.default_rng(seed)
        self._order = rng.permutation(self.n_stimuli)

    @cached_property
    def _combinations(self) -> list[tuple[str, ...]]:
        return list(itertools.product(*(values for _, values in self.axes)))

    def stimulus(self, stimulus_id: int) -> Stimulus:
        if not 0 <= stimulus_id < self.n_stimuli:
            raise IndexError(f"stimulus id must be in [0, {self.n_stimuli}), found {stimulus_id}")
        values = self._combinations[int(self._order[stimulus_id])]
        return Stimulus(stimulus_id, *values)

    def holdout_ids(self) -> np.ndarray:
        """Sorted ids of this world's held-out pictures (:data:`HOLDOUT_SIZE` of them): the
        same attribute combinations whatever the world's seed, so that no seed's session
        tests on a picture a model trained on."""
        canonical = np.random.default_rng(HOLDOUT_SEED).permutation(self.n_stimuli)
        ids = np.random.default_rng(HOLDOUT_SEED).choice(
            self.n_stimuli, size=HOLDOUT_SIZE, replace=False
        )
        return np.sort(np.flatnonzero(np.isin(self._order, canonical[ids])))

    def training_ids(self) -> np.ndarray:
        """Sorted ids of every picture not held out (:meth:`holdout_ids`)."""
        return np.setdiff1d(np.arange(self.n_stimuli), self.holdout_ids())

    def never_held_out_ids(self) -> np.ndarray:
        """Sorted ids of the training pictures whose attributes no version of the world holds
        out: what a network (or a caption bank) may use so that no session of any version
        tests on a picture it has seen."""
        held = set()
        for version in sorted({1, self.version}):
            other = (
                self
                if version == self.version
                else StimulusWorld(seed=self.seed, image_size=self.image_size, version=version)
            )
            held |= {tuple(other.stimulus(int(i)).attributes.values()) for i in other.holdout_ids()}
        train_ids = self.training_ids()
        keep = [tuple(self.stimulus(int(i)).attributes.values()) not in held for i in train_ids]
        return train_ids[np.array(keep, dtype=bool)]

    def caption(self, stimulus_id: int) -> str:
        return BLANK_CAPTION if stimulus_id == BLANK_ID else self.stimulus(stimulus_id).caption

    def image(self, stimulus_id: int) -> np.ndarray:
        """The picture, ``(image_size, image_size, 3)`` uint8 RGB; the blank for ``BLANK_ID``."""
        if stimulus_id == BLANK_ID:
            return np.full((self.image_size, self.image_size, 3), BLANK_COLOUR, dtype=np.uint8)
        return draw(self.stimulus(stimulus_id), self.image_size)

    def images(self, stimulus_ids: list[int] | np.ndarray) -> np.ndarray:
        """``(n, size, size, 3)`` uint8."""
        return np.stack([self.image(int(i)) for i in stimulus_ids])

    def vocabulary(self) -> list[str]:
        """Every word any caption can contain, sorted."""
        words = set(BLANK_CAPTION.split())
        words.update(["a", "at", "the", "on", "background"])
        for _, values in self.axes:
            for value in values:
                words.update(value.split())
        return sorted(words)

    def semantic_features(self, stimulus_ids: list[int] | np.ndarray) -> np.ndarray:
        """One-hot attribute codes, ``(n, n_features)`` float32; all zeros for the blank.

        The synthetic brain's higher visual cortex is driven by this code (what
        the picture shows, independent of where the pixels are).
        """
        width = sum(len(values) for _, values in self.axes)
        out = np.zeros((len(stimulus_ids), width), dtype=np.float32)
        for row, sid in enumerate(stimulus_ids):
            if int(sid) == BLANK_ID:
                continue
            stim = self.stimulus(int(sid))
            offset = 0
            for name, values in self.axes:
                out[row, offset + values.index(getattr(stim, name))] = 1.0
                offset += len(values)
        return out


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [
            (cx + r * math.cos(a), cy + r * math.sin(a))
            for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        ]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    if shape == "cross":
        a, b = r, r * 0.35
        return [
            (cx - b, cy - a),
            (cx + b, cy - a),
            (cx + b, cy - b),
            (cx + a, cy - b),
            (cx + a, cy + b),
            (cx + b, cy + b),
            (cx + b, cy + a),
            (cx - b, cy + a),
            (cx - b, cy + b),
            (cx - a, cy + b),
            (cx - a, cy - b),
            (cx - b, cy - b),
        ]
    raise ValueError(f"no polygon for shape {shape!r}")


def _shape_mask(stim: Stimulus, side: int) -> Image.Image:
    mask = Image.new("L", (side, side), 0)
    pen = ImageDraw.Draw(mask)
    fx, fy = POSITIONS[stim.position]
    cx, cy, r = fx * side, fy * side, SIZES[stim.size] * side
    if stim.shape == "circle":
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif stim.shape == "ring":
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        inner = r * 0.55
        pen.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    else:
        pen.polygon(_shape_polygon(stim.shape, cx, cy, r), fill=255)
    return mask


def _texture_mask(texture: str, side: int) -> np.ndarray:
    """Boolean ``(side, side)``: where the shape shows its colour (else a darker shade)."""
    period = side // 8
    yy, xx = np.mgrid[0:side, 0:side]
    if texture == "striped":
        return (yy // period) % 2 == 0
    if texture == "checkered":
        return ((yy // period) + (xx // period)) % 2 == 0
    return np.ones((side, side), dtype=bool)


def _background(name: str, side: int) -> np.ndarray:
    """The background ``name`` drawn at ``(side, side, 3)`` float32: a flat colour, or one of
    :data:`PATTERNED_BACKGROUNDS` (the same pattern in every picture, whatever the seed)."""
    if name in BACKGROUNDS:
        return np.broadcast_to(np.array(BACKGROUNDS[name], np.float32), (side, side, 3)).copy()
    kind, first, second = PATTERNED_BACKGROUNDS[name]
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / (side - 1)  # 0..1 down, right
    period = side / 8
    if kind == "vertical":
        mix = yy
    elif kind == "horizontal":
        mix = xx
    elif kind == "diagonal":
        mix = (xx + yy) / 2
    elif kind == "dots":  # round dots on an 8 x 8 lattice
        py, px = (yy * (side - 1)) % period, (xx * (side - 1)) % period
        mix = (np.hypot(py - period / 2, px - period / 2) < period * 0.22).astype(np.float32)
    elif kind == "grid":  # thin lines every eighth of the picture
        py, px = (yy * (side - 1)) % period, (xx * (side - 1)) % period
        mix = ((py < period * 0.12) | (px < period * 0.12)).astype(np.float32)
    elif kind == "noise":  # a fixed grain: blocks of 1/16 of the side, smoothed by the resize
        grain = np.random.default_rng(_GRAIN_SEED).random((16, 16)).astype(np.float32)
        mix = np.kron(grain, np.ones((side // 16 + 1, side // 16 + 1), np.float32))[:side, :side]
    elif kind == "waves":  # diagonal sinusoidal bands
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * 5 * (xx + 0.5 * yy))
    else:
        raise ValueError(f"no background pattern {kind!r}")
    a, b = np.array(first, np.float32), np.array(second, np.float32)
    return a + (b - a) * mix[..., None]


def draw(stim: Stimulus, image_size: int) -> np.ndarray:
    """Render one stimulus to ``(image_size, image_size, 3)`` uint8."""
    side = image_size * _SUPERSAMPLE
    canvas = _background(stim.background, side)
    colour = np.array(COLOURS[stim.colour], dtype=np.float32)
    fill = np.where(_texture_mask(stim.texture, side)[..., None], colour, colour * 0.35)
    alpha = np.asarray(_shape_mask(stim, side), dtype=np.float32)[..., None] / 255.0
    canvas = canvas * (1.0 - alpha) + fill * alpha
    big = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(big.resize((image_size, image_size), Image.Resampling.LANCZOS))
