"""Cheap, model-free image statistics for the retrieval image descriptor (numpy + PIL only).

- `foreground_mask`: pixels unlike the border's colours (the object is roughly central; the background is
  estimated from a frame of border pixels, textured or not, by a small k-means palette).
- `upright_crop`: the image rotated so that the foreground's major axis is vertical (for elongated objects
  leaning less than 60 degrees), cropped to a square box around the foreground, with the crop's mask.
- `banded_colour_hist`: hue-saturation histograms of the foreground in horizontal bands of the upright crop
  (top / middle / bottom: a cap, a label band), each L1 -> sqrt -> L2 normalised (Hellinger).
- `colour_layout`: a tiny masked thumbnail (brightness-normalised RGB and mask occupancy, centred): where
  which colour sits, and the outline.
- `white_balance`: colour constancy on the object: each channel divided by its high percentile over the
  foreground (max-RGB: every bottle has a white label or body), so tint and brightness cancel.
- `drop_skin`: the foreground mask without skin-toned pixels (a fingertip in front of the object).
- `shape_profile`: the upright mask's aspect ratio and width profile (cap, shoulders, corners), each value
  soft-binned so that the cosine of two profiles is a mean of Gaussian kernels on the values.

These are what tells look-alike objects apart (cap, band, shape) when a frozen ImageNet encoder's pooled
features do not (see benchmarks/one_shot.py descriptors).
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

MASK_SIZE = 64
_BORDER = 3
_PALETTE = 32


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).ravel()
    return x / max(float(np.linalg.norm(x)), 1e-12)


def _sq_dist(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (n, k) between rows of x (n, 3) and centres (k, 3)."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return np.maximum(d, 0.0)


def foreground_mask(image: Image.Image, size: int = MASK_SIZE) -> np.ndarray:
    """(size, size) bool: pixels whose colour is far from every colour of the image border."""
    a = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    b = _BORDER
    border = np.concatenate([a[:b].reshape(-1, 3), a[-b:].reshape(-1, 3), a[:, :b].reshape(-1, 3),
                             a[:, -b:].reshape(-1, 3)])
    palette = border[np.linspace(0, len(border) - 1, _PALETTE).astype(int)].copy()  # deterministic seeds
    for _ in range(4):  # a few k-means steps
        label = _sq_dist(border, palette).argmin(1)
        sums = np.zeros_like(palette)
        np.add.at(sums, label, border)
        counts = np.bincount(label, minlength=len(palette))[:, None]
        palette = np.where(counts > 0, sums / np.maximum(counts, 1), palette)
    border_dist = np.sqrt(_sq_dist(border, palette).min(1))
    tolerance = max(20.0, 1.5 * float(np.percentile(border_dist, 99)))
    dist = np.sqrt(_sq_dist(a.reshape(-1, 3), palette).min(1)).reshape(size, size)
    return dist > tolerance


def _square_box(mask: np.ndarray, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    if len(xs) < 0.01 * mask.size:  # no foreground found: the whole image
        return 0, 0, width, height
    x0, x1 = np.percentile(xs, [1, 99])
    y0, y1 = np.percentile(ys, [1, 99])
    fx, fy = width / mask.shape[1], height / mask.shape[0]
    cx, cy = (x0 + x1 + 1) / 2 * fx, (y0 + y1 + 1) / 2 * fy
    half = max((x1 - x0 + 1) * fx, (y1 - y0 + 1) * fy) / 2 * (1 + margin)
    return int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half))


def _row_extent(xs: np.ndarray, ys: np.ndarray, angle: float) -> float:
    """Median over rows of the foreground's horizontal extent after rotating it by `angle` degrees (as PIL's
    `Image.rotate` turns the picture: counter-clockwise on screen)."""
    a = np.radians(angle)
    dx, dy = xs - xs.mean(), ys - ys.mean()
    x = dx * np.cos(a) + dy * np.sin(a)
    rows = np.round(-dx * np.sin(a) + dy * np.cos(a)).astype(int)
    order = np.argsort(rows, kind="stable")
    rows, x = rows[order], x[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    return float(np.median(np.maximum.reduceat(x, starts) - np.minimum.reduceat(x, starts)))


def upright_angle(xs: np.ndarray, ys: np.ndarray, max_angle: float = 60.0, step: float = 3.0) -> float:
    """The rotation (degrees, as `Image.rotate` takes it) that stands an elongated foreground upright; 0 for
    round blobs and objects lying down.

    The principal axis of the mask gives a first guess; the angle within 30 degrees of it whose rotated mask
    is narrowest row by row (median row extent) wins, so that an occluder stuck to one side (a box, a
    finger), which tilts the principal axis, tilts the crop less. Measured on the pharmacy views with the
    same instance CNN: new-view nearest neighbour 91.7% -> 94.8% (a Theil-Sen fit of the row centres: 93.4%).
    """
    ev, evec = np.linalg.eigh(np.cov(np.stack([xs, ys]).astype(np.float64)))
    axis = evec[:, 1] if evec[1, 1] <= 0 else -evec[:, 1]  # the major axis, pointing up
    guess = float(np.degrees(np.arctan2(axis[0], -axis[1])))
    if ev[0] > 0.8 * ev[1] or abs(guess) > max_angle:  # round blob or lying down: leave as is
        return 0.0
    xs, ys = xs.astype(np.float64), ys.astype(np.float64)
    candidates = [a for a in np.arange(guess - 30.0, guess + 30.0 + 1e-9, step) if abs(a) <= max_angle]
    return float(min(candidates, key=lambda a: _row_extent(xs, ys, a)))


def upright_crop(image: Image.Image, size: int = MASK_SIZE, margin: float = 0.04,
                 max_angle: float = 60.0) -> tuple[Image.Image, np.ndarray]:
    """The foreground rotated upright and cropped to a square box, and its (size, size) bool mask."""
    rgb = image.convert("RGB")
    mask = foreground_mask(rgb, size)
    ys, xs = np.nonzero(mask)
    angle = 0.0
    fill = (127, 127, 127)
    if len(xs) >= 0.01 * mask.size:
        angle = upright_angle(xs, ys, max_angle)
        small = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR))
        if (~mask).any():
            fill = tuple(int(v) for v in np.median(small[~mask], axis=0))
    w, h = rgb.size
    centre = (float(xs.mean() + 0.5) * w / size, float(ys.mean() + 0.5) * h / size) if len(xs) else None
    mask_img = Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)
    if angle:
        rgb = rgb.rotate(angle, resample=Image.Resampling.BILINEAR, center=centre, fillcolor=fill)
        mask_img = mask_img.rotate(angle, resample=Image.Resampling.NEAREST, center=centre)
    rot_mask = np.asarray(mask_img.resize((size, size), Image.Resampling.NEAREST)) > 127
    box = _square_box(rot_mask, w, h, margin)
    crop = rgb.crop(box)  # PIL pads outside the image with black; the mask says what is object
    crop_mask = np.asarray(mask_img.crop(box).resize((size, size), Image.Resampling.NEAREST)) > 127
    return crop, crop_mask


def banded_colour_hist(crop: Image.Image, mask: np.ndarray, bands: int = 3, hue_bins: int = 12,
                       sat_bins: int = 2, sat_min: float = 0.25, res: int = 64) -> np.ndarray:
    """Per horizontal band: hue x saturation histogram of saturated foreground pixels + 3 brightness bins of
    unsaturated ones; each band Hellinger-normalised, bands concatenated, the whole L2-normalised.

    Length bands * (hue_bins * sat_bins + 3). Hue comes from the RGB thumbnail (never resize hue: it wraps).
    """
    hsv = np.asarray(crop.convert("RGB").resize((res, res), Image.Resampling.BILINEAR).convert("HSV"),
                     dtype=np.float32) / 256.0
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((res, res), Image.Resampling.NEAREST)) > 127
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    edges = np.linspace(0, res, bands + 1).astype(int)
    out = []
    for b in range(bands):
        rows = slice(edges[b], edges[b + 1])
        lit = m[rows] & (val[rows] > 0.12)
        vivid = lit & (sat[rows] > sat_min)
        hist = np.zeros((hue_bins, sat_bins), dtype=np.float32)
        hb = (hue[rows][vivid] * hue_bins).astype(int) % hue_bins
        sb = np.minimum(((sat[rows][vivid] - sat_min) / (1 - sat_min) * sat_bins).astype(int), sat_bins - 1)
        np.add.at(hist, (hb, sb), 1.0)
        grey = lit & (sat[rows] <= sat_min)
        levels = np.bincount(np.minimum((val[rows][grey] * 3).astype(int), 2), minlength=3).astype(np.float32)
        counts = np.concatenate([hist.ravel(), levels])
        out.append(_l2(np.sqrt(counts / max(1.0, float(lit.sum())))))
    return _l2(np.concatenate(out))


def colour_layout(crop: Image.Image, mask: np.ndarray, grid: int = 8, res: int = 64) -> np.ndarray:
    """A grid x grid masked thumbnail: RGB divided by the foreground's mean brightness, and mask occupancy,
    mean-centred and L2-normalised. Length grid * grid * 4."""
    rgb = np.asarray(crop.convert("RGB").resize((res, res), Image.Resampling.BILINEAR), dtype=np.float32)
    m = (np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((res, res), Image.Resampling.NEAREST))
         > 127).astype(np.float32)
    level = float(rgb[m > 0].mean()) if m.any() else float(rgb.mean())
    rgb = rgb / max(level, 1.0) * m[..., None]
    cells = [np.asarray(Image.fromarray(rgb[..., c]).resize((grid, grid), Image.Resampling.BOX)) for c in range(3)]
    occupancy = np.asarray(Image.fromarray(m).resize((grid, grid), Image.Resampling.BOX))
    vec = np.concatenate([np.stack(cells, -1).ravel(), occupancy.ravel()])
    return _l2(vec - vec.mean())


def _resized_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 127


def white_balance(crop: Image.Image, mask: np.ndarray, percentile: float = 99.0, white: float = 245.0) -> Image.Image:
    """The crop with each channel scaled so that its `percentile` over the foreground maps to `white`.

    Max-RGB colour constancy on the object itself (the background's colour is unknown): a global tint or
    brightness change multiplies the channels, and this divides it out. Falls back to the whole crop when
    the mask is (nearly) empty.
    """
    a = np.asarray(crop.convert("RGB"), dtype=np.float32)
    m = _resized_mask(mask, crop.size)
    pixels = a[m] if m.sum() >= 50 else a.reshape(-1, 3)
    ref = np.percentile(pixels, percentile, axis=0)
    return Image.fromarray(np.clip(a / np.maximum(ref, 1.0) * white, 0, 255).astype(np.uint8))


def drop_skin(crop: Image.Image, mask: np.ndarray) -> np.ndarray:
    """`mask` without skin-toned pixels of a white-balanced crop (hue 8-40 degrees, saturation 0.2-0.55, bright).

    Amber and orange are more saturated (> 0.8) and stay; a fingertip over the object goes.
    """
    hsv = np.asarray(crop.convert("RGB").resize(mask.shape[::-1], Image.Resampling.BILINEAR).convert("HSV"),
                     dtype=np.float32) / 256.0
    hue, sat, val = hsv[..., 0] * 360.0, hsv[..., 1], hsv[..., 2]
    skin = (hue > 8) & (hue < 40) & (sat > 0.2) & (sat < 0.55) & (val > 0.6)
    return mask & ~skin


def _soft_bins(x: float, lo: float, hi: float, bins: int, sigma: float = 1.0) -> np.ndarray:
    centres = np.linspace(lo, hi, bins)
    step = (hi - lo) / (bins - 1)
    return np.exp(-0.5 * ((x - centres) / (sigma * step)) ** 2).astype(np.float32)


SHAPE_DIM = 12 + 12 * 6


def shape_profile(mask: np.ndarray, rows: int = 12, aspect_bins: int = 12, width_bins: int = 6) -> np.ndarray:
    """Soft-binned log aspect ratio (height / body width) and relative width at `rows` heights of an upright mask.

    Each value becomes a small Gaussian-smoothed one-hot vector; the aspect part weighs as much as the whole
    width profile. Length aspect_bins + rows * width_bins (84 by default), L2-normalised; zeros for an empty mask.
    """
    out = np.zeros(aspect_bins + rows * width_bins, dtype=np.float32)
    ys, _ = np.nonzero(mask)
    if len(ys) < 20:
        return out
    y0, y1 = (int(v) for v in np.percentile(ys, [1, 99]))
    width = mask[y0:y1 + 1].sum(1).astype(np.float32)
    body = max(float(np.median(width)), 1.0)  # an occluder widens a few rows only
    aspect = (y1 - y0 + 1) / body
    at = np.linspace(0, len(width) - 1, rows).round().astype(int)
    profile = np.clip(width[at] / body, 0.0, 1.2)
    parts = [_soft_bins(float(np.log(aspect)), float(np.log(1.3)), float(np.log(4.0)), aspect_bins)]
    parts += [_soft_bins(float(p), 0.0, 1.2, width_bins) / np.sqrt(rows) for p in profile]
    return _l2(np.concatenate(parts))
