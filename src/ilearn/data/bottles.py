"""Look-alike medicine bottles drawn with PIL: the objects of the ``pharmacy`` scenario
(`ilearn.evaluation.scenarios.pharmacy`) and the training data of the instance image embedder
(`ilearn.models.train_instance`), which both import them from here.

`BOTTLES` holds twelve over-the-counter medicines, each a bottle that differs from its look-alikes by one or two
details only (cap colour, label band colour, bottle shape, size) and carries no readable text. `render_view`
draws one 224x224 RGB view from a seed: rotation, scale, lighting and tint, background colour and texture, a
small offset and, in about half the views, a partial occlusion (a finger or a box in front of the bottle); it
takes a few milliseconds. `VIEW_STYLES` holds three presets of how much views vary (easy, default, hard).
`scenario_view` is the view the pharmacy scenario shows for a scenario seed, split and index.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from ilearn.data.seeds import derive_seed

logger = logging.getLogger(__name__)

SIZE = 224

COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (242, 242, 236), "amber": (168, 92, 28), "red": (200, 36, 36), "blue": (40, 80, 190),
    "green": (40, 150, 70), "orange": (238, 140, 30), "purple": (120, 60, 160), "yellow": (235, 205, 40),
}


@dataclass(frozen=True)
class BottleSpec:
    """How a bottle looks and what it is."""

    id: str
    name: str
    use: str
    dose: str
    body: str  # a COLOURS key
    cap: str
    band: str
    shape: str  # round | square | tall | flask
    size: str  # small | large

    @property
    def facts(self) -> dict[str, str]:
        return {"name": self.name, "use": self.use, "dose": self.dose}

    @property
    def attributes(self) -> dict[str, str]:
        return {"body": self.body, "cap": self.cap, "band": self.band, "shape": self.shape, "size": self.size}


#: Look-alike groups: same body colour, and pairs that differ only by one of cap, band, shape or size.
BOTTLES: tuple[BottleSpec, ...] = (
    BottleSpec("ibuprofen", "Ibuprofen", "pain and fever", "400 mg every 6 hours",
               "white", "red", "orange", "round", "large"),
    BottleSpec("paracetamol", "Paracetamol", "headache and fever", "1 g every 6 hours",
               "white", "red", "blue", "round", "large"),
    BottleSpec("aspirin", "Aspirin", "pain and inflammation", "300 mg every 4 hours",
               "white", "blue", "blue", "round", "large"),
    BottleSpec("naproxen", "Naproxen", "back and joint pain", "220 mg every 12 hours",
               "white", "red", "orange", "square", "large"),
    BottleSpec("loratadine", "Loratadine", "hay fever", "10 mg once a day",
               "white", "green", "green", "round", "small"),
    BottleSpec("cetirizine", "Cetirizine", "itchy skin allergies", "10 mg at night",
               "white", "green", "purple", "round", "small"),
    BottleSpec("omeprazole", "Omeprazole", "acid reflux", "20 mg before breakfast",
               "amber", "white", "yellow", "round", "large"),
    BottleSpec("famotidine", "Famotidine", "indigestion", "20 mg twice a day",
               "amber", "white", "yellow", "tall", "small"),
    BottleSpec("diphenhydramine", "Diphenhydramine", "sleeplessness", "50 mg at bedtime",
               "amber", "blue", "purple", "round", "large"),
    BottleSpec("loperamide", "Loperamide", "diarrhoea", "2 mg after each loose stool",
               "amber", "white", "green", "round", "large"),
    BottleSpec("guaifenesin", "Guaifenesin", "chesty cough", "200 mg every 4 hours",
               "amber", "red", "yellow", "flask", "large"),
    BottleSpec("dextromethorphan", "Dextromethorphan", "dry cough", "30 mg every 6 hours",
               "amber", "red", "blue", "flask", "large"),
)

_BACKGROUNDS = ((214, 200, 178), (200, 200, 204), (150, 110, 80), (180, 200, 220), (190, 215, 190),
                (90, 90, 96), (235, 225, 210), (120, 140, 160))
_LAYER_W, _LAYER_H = 128, 208
_GRID = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, c * factor))) for c in rgb)  # type: ignore[return-value]


@functools.lru_cache(maxsize=64)
def draw_bottle(spec: BottleSpec) -> Image.Image:
    """The bottle alone on a transparent RGBA layer (upright, before any view transform; cached: do not modify)."""
    layer = Image.new("RGBA", (_LAYER_W, _LAYER_H), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    body, cap, band = COLOURS[spec.body], COLOURS[spec.cap], COLOURS[spec.band]
    bw, bh, radius = {"round": (80, 128, 16), "square": (86, 128, 3), "tall": (62, 146, 10),
                      "flask": (84, 120, 8)}[spec.shape]
    cx, bottom = _LAYER_W // 2, _LAYER_H - 6
    top = bottom - bh
    outline = _shade(body, 0.6)
    if spec.shape == "flask":  # sloped shoulders up to the neck
        d.polygon([(cx - bw // 2, top + 26), (cx - bw // 4, top), (cx + bw // 4, top), (cx + bw // 2, top + 26)],
                  fill=body, outline=outline)
        d.rounded_rectangle((cx - bw // 2, top + 24, cx + bw // 2, bottom), radius, fill=body, outline=outline)
    else:
        d.rounded_rectangle((cx - bw // 2, top, cx + bw // 2, bottom), radius, fill=body, outline=outline, width=2)
    neck_w = bw // 2 if spec.shape != "flask" else bw // 2 - 4
    d.rectangle((cx - neck_w // 2, top - 10, cx + neck_w // 2, top + 2), fill=_shade(body, 0.85))
    cap_w, cap_h = int(bw * 0.8), 34
    d.rectangle((cx - cap_w // 2, top - 10 - cap_h, cx + cap_w // 2, top - 10), fill=cap, outline=_shade(cap, 0.6))
    for x in range(cx - cap_w // 2 + 4, cx + cap_w // 2 - 2, 5):  # ribs
        d.line((x, top - 8 - cap_h, x, top - 12), fill=_shade(cap, 0.78))
    label_top = top + int(bh * 0.3) + (10 if spec.shape == "flask" else 0)
    label_bottom = top + int(bh * 0.82)
    lx0, lx1 = cx - bw // 2 + 6, cx + bw // 2 - 6
    d.rectangle((lx0, label_top, lx1, label_bottom), fill=(248, 246, 232))
    band_h = max(8, (label_bottom - label_top) // 2)
    d.rectangle((lx0, label_top, lx1, label_top + band_h), fill=band)
    for k, y in enumerate(range(label_top + band_h + 7, label_bottom - 4, 8)):  # unreadable "text" lines
        d.line((lx0 + 5, y, lx1 - 5 - 9 * (k % 2), y), fill=(110, 110, 110), width=2)
    d.rectangle((cx - bw // 2 + 5, top + 6, cx - bw // 2 + 9, bottom - 8), fill=(255, 255, 255, 90))  # gloss
    return layer


@dataclass(frozen=True)
class ViewStyle:
    """How much views vary: ranges of the random view transform (see `VIEW_STYLES`)."""

    scale: tuple[float, float] = (0.75, 1.0)
    """bottle scale range (small bottles are drawn 0.84x on top)"""
    rotation: float = 28.0
    """largest rotation, degrees either way"""
    offset: int = 18
    """largest shift from the centre, pixels"""
    texture: float = 1.0
    """contrast of the background texture (0: plain colour)"""
    occlusion: float = 0.5
    """probability of a partial occlusion"""
    light: tuple[float, float] = (0.7, 1.25)
    """brightness range"""


#: Presets: ``default`` is what `pharmacy_scenario` renders unless told otherwise.
VIEW_STYLES: dict[str, ViewStyle] = {
    "easy": ViewStyle(scale=(0.95, 1.1), rotation=10, offset=8, texture=0.3, occlusion=0.2, light=(0.9, 1.1)),
    "default": ViewStyle(),
    "hard": ViewStyle(scale=(0.6, 1.0), rotation=40, offset=28, texture=1.5, occlusion=0.8, light=(0.6, 1.35)),
}


def _background(rng: np.random.Generator, contrast: float = 1.0) -> np.ndarray:
    base = np.array(_BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))], dtype=np.float32)
    base = base + rng.uniform(-18, 18, size=3)
    img = np.broadcast_to(base, (SIZE, SIZE, 3)).copy()
    texture = int(rng.integers(5))
    yy, xx = _GRID
    if texture == 1:  # grain
        img += rng.standard_normal((SIZE, SIZE, 1), dtype=np.float32) * (10 * contrast)
    elif texture == 2:  # stripes (a table cloth, a shelf)
        period, angle = rng.uniform(10, 30), rng.uniform(0, np.pi)
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) / period
        img += (np.sin(2 * np.pi * phase) > 0)[..., None] * (rng.uniform(-35, 35) * contrast)
    elif texture == 3:  # tiles
        cell = int(rng.integers(16, 40))
        img += (((xx // cell) + (yy // cell)) % 2)[..., None] * (rng.uniform(-30, 30) * contrast)
    elif texture == 4:  # gradient
        img += (yy / SIZE)[..., None] * (rng.uniform(-50, 50) * contrast)
    return img


def render_view(spec: BottleSpec, seed: int, style: ViewStyle | None = None) -> Image.Image:
    """One 224x224 RGB view of a bottle; every seed gives a different pose, light, background and occlusion."""
    style = style or VIEW_STYLES["default"]
    rng = np.random.default_rng(seed)
    canvas = Image.fromarray(np.clip(_background(rng, style.texture), 0, 255).astype(np.uint8))
    bottle = draw_bottle(spec)
    scale = float(rng.uniform(*style.scale)) * (0.84 if spec.size == "small" else 1.0)
    bottle = bottle.resize((int(_LAYER_W * scale), int(_LAYER_H * scale)), Image.Resampling.BILINEAR)
    bottle = bottle.rotate(float(rng.uniform(-style.rotation, style.rotation)), resample=Image.Resampling.BILINEAR,
                           expand=True)
    x = (SIZE - bottle.width) // 2 + int(rng.integers(-style.offset, style.offset + 1))
    y = (SIZE - bottle.height) // 2 + int(rng.integers(-style.offset, style.offset + 1) * 0.8)
    shadow = Image.new("L", bottle.size, 0)
    shadow.paste(bottle.getchannel("A").point(lambda a: 70 if a > 0 else 0))
    canvas.paste((30, 30, 30), (x + 5, y + 4), shadow)
    canvas.paste(bottle, (x, y), bottle)
    if rng.random() < style.occlusion:  # partial occlusion: a finger or a box, at most about a fifth of the bottle
        d = ImageDraw.Draw(canvas)
        colour = tuple(int(c) for c in rng.integers(60, 230, size=3))
        w, h = int(bottle.width * rng.uniform(0.25, 0.45)), int(bottle.height * rng.uniform(0.15, 0.3))
        side = rng.random() < 0.5
        ox = x - w // 3 if side else x + bottle.width - 2 * w // 3
        oy = y + int(bottle.height * rng.uniform(0.45, 0.85)) - h // 2
        if rng.random() < 0.5:
            d.ellipse((ox, oy, ox + w, oy + h), fill=(224, 172, 140))  # a fingertip
        else:
            d.rectangle((ox, oy, ox + w, oy + h), fill=colour)
    pixels = np.asarray(canvas, dtype=np.float32)
    light = rng.uniform(*style.light) * rng.uniform(0.93, 1.07, size=3)  # brightness and tint
    pixels = pixels * light.astype(np.float32) + rng.standard_normal(pixels.shape, dtype=np.float32) * 3
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def scenario_view(spec: BottleSpec, seed: int, split: Literal["teach", "test"], index: int,
                  style: ViewStyle | None = None) -> Image.Image:
    """View `index` of the `split` views of a bottle in the pharmacy scenario with seed `seed`."""
    return render_view(spec, derive_seed("pharmacy", seed, spec.id, split, index), style)
