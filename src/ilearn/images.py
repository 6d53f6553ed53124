"""Image input: decode and validate user images, content-address them by sha256."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ilearn.errors import InvalidImage
from ilearn.types import ImageRef

ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF"})


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_image_bytes(source: bytes | str | Path, *, max_bytes: int) -> bytes:
    """The raw bytes of an image given as bytes or a path, refusing empty or oversized input."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InvalidImage(f"no image file at {path}")
        size = path.stat().st_size
        if size > max_bytes:
            raise InvalidImage(f"image {path.name} is {size} bytes; the limit is {max_bytes}")
        data = path.read_bytes()
    else:
        data = bytes(source)
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise InvalidImage(f"the image is {len(data)} bytes; the limit is {max_bytes}")
    return data


def decode_image(data: bytes, *, max_pixels: int) -> tuple[Image.Image, ImageRef]:
    """Decode image bytes to RGB, checking format and size before the pixels are decoded.

    Transparent images are flattened on white, so a cut-out object looks the same to every model.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
            fmt = probe.format or ""
            width, height = probe.size
            if fmt not in ALLOWED_FORMATS:
                raise InvalidImage(f"unsupported image format {fmt or 'unknown'}; use one of {sorted(ALLOWED_FORMATS)}")
            if width < 1 or height < 1:
                raise InvalidImage("the image has no pixels")
            if width * height > max_pixels:
                raise InvalidImage(f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels")
            probe.load()
    except InvalidImage:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"the image cannot be decoded: {exc}") from exc
    image = to_rgb(probe)
    return image, ImageRef(sha256=sha256_bytes(data), width=width, height=height, format=fmt)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of any PIL image; alpha is composited on white."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(source: bytes | str | Path, *, max_bytes: int = 20_000_000,
               max_pixels: int = 40_000_000) -> tuple[Image.Image, ImageRef, bytes]:
    """Read, validate and decode an image: (RGB image, its content address, the original bytes)."""
    data = read_image_bytes(source, max_bytes=max_bytes)
    image, ref = decode_image(data, max_pixels=max_pixels)
    return image, ref, data
