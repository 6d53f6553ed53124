"""Training-time image augmentation: every time an event's image is batched it is shown as a new view.

Events are few (one or two views per taught fact) while the views the model meets later differ in pose, scale,
light, background and occlusion. `augment_view` draws such a view from an image with PIL only (torchvision is
not usable on these machines): a random rotation, scale and shift (the uncovered border filled with the image's
own border colour), brightness, contrast and a slight tint (hues are kept: a cap's or a label's colour is what
tells look-alike objects apart), and sometimes a small occluding patch.

`AugmentingCollator` wraps a TRL data collator: rows whose ``augment`` column is true get a fresh view of each of
their images before the wrapped collator processes them (the column itself is removed). Replayed general examples
carry ``augment=False`` and pass unchanged.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

logger = logging.getLogger(__name__)

AUGMENT_COLUMN = "augment"
"""Row column that marks examples whose images are augmented (True) or left as they are (False)."""


@dataclass(frozen=True)
class ViewJitter:
    """Ranges of the random view (`augment_view`); the defaults suit photos of objects on a table."""

    rotation: float = 20.0
    """largest rotation, degrees either way"""
    scale: tuple[float, float] = (0.8, 1.2)
    """zoom range (above 1 crops, below 1 shows more border)"""
    shift: float = 0.1
    """largest shift, as a share of the image side"""
    brightness: tuple[float, float] = (0.75, 1.25)
    contrast: tuple[float, float] = (0.8, 1.2)
    tint: float = 0.05
    """largest per-channel gain change (a colour cast that keeps hues)"""
    occlusion: float = 0.3
    """probability of a patch covering up to about a tenth of the image"""


def _border_colour(image: Image.Image) -> tuple[int, int, int]:
    """The median colour of the image's outer pixels (what the uncovered border is filled with)."""
    a = np.asarray(image)
    edge = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return tuple(int(c) for c in np.median(edge, axis=0))  # type: ignore[return-value]


def augment_view(image: Image.Image, rng: random.Random, jitter: ViewJitter = ViewJitter()) -> Image.Image:
    """A new random view of `image` (same size, RGB): rotation, zoom, shift, light, tint, maybe an occlusion."""
    image = image.convert("RGB")
    w, h = image.size
    fill = _border_colour(image)
    scale = rng.uniform(*jitter.scale)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    zoomed = image.resize((sw, sh), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (w, h), fill)
    canvas.paste(zoomed, ((w - sw) // 2, (h - sh) // 2))  # centred; negative offsets crop
    dx, dy = (round(rng.uniform(-jitter.shift, jitter.shift) * s) for s in (w, h))
    view = canvas.rotate(rng.uniform(-jitter.rotation, jitter.rotation), resample=Image.Resampling.BILINEAR,
                         translate=(dx, dy), fillcolor=fill)
    view = ImageEnhance.Brightness(view).enhance(rng.uniform(*jitter.brightness))
    view = ImageEnhance.Contrast(view).enhance(rng.uniform(*jitter.contrast))
    gains = np.array([1.0 + rng.uniform(-jitter.tint, jitter.tint) for _ in range(3)], dtype=np.float32)
    pixels = np.asarray(view, dtype=np.float32) * gains
    if rng.random() < jitter.occlusion:
        pw, ph = round(w * rng.uniform(0.15, 0.3)), round(h * rng.uniform(0.15, 0.3))
        x, y = rng.randrange(0, w - pw + 1), rng.randrange(0, h - ph + 1)
        pixels[y:y + ph, x:x + pw] = [rng.randrange(40, 230) for _ in range(3)]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


class AugmentingCollator:
    """Wraps a data collator: examples marked ``augment`` get a new random view of each image (seeded)."""

    def __init__(self, collate: Callable[[list[dict]], Any], seed: int = 0, jitter: ViewJitter = ViewJitter()) -> None:
        self.collate = collate
        self.rng = random.Random(seed)
        self.jitter = jitter

    def __call__(self, examples: list[dict]) -> Any:
        out = []
        for example in examples:
            example = dict(example)
            if example.pop(AUGMENT_COLUMN, False) and example.get("images"):
                example["images"] = [augment_view(img, self.rng, self.jitter) for img in example["images"]]
            out.append(example)
        return self.collate(out)
