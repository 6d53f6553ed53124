"""Image input: decode and validate user images, content-address them by sha256."""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
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


class ImageCache:
    """Decoded images by sha256, read from a store on a miss; the `size` most recently used kept; thread-safe."""

    def __init__(self, read: Callable[[str], bytes], *, max_pixels: int, size: int = 32) -> None:
        self._read = read
        self._max_pixels = max_pixels
        self._size = size
        self._images: OrderedDict[str, Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, sha256: str, image: Image.Image) -> None:
        """Remember a decoded image."""
        with self._lock:
            self._images[sha256] = image
            self._images.move_to_end(sha256)
            while len(self._images) > self._size:
                self._images.popitem(last=False)

    def clear(self) -> None:
        """Forget every decoded image (after a user is forgotten: none of their pictures stays in memory)."""
        with self._lock:
            self._images.clear()

    def get(self, sha256: str) -> Image.Image:
        """The decoded image (NotFound from the store when it holds no such image)."""
        with self._lock:
            image = self._images.get(sha256)
            if image is not None:
                self._images.move_to_end(sha256)
                return image
        image, _ = decode_image(self._read(sha256), max_pixels=self._max_pixels)  # outside the lock
        self.put(sha256, image)
        return image


def png_image(image: Image.Image, *, max_pixels: int) -> tuple[Image.Image, ImageRef, bytes]:
    """A PIL image as stored: (RGB image decoded from its PNG, its content address, the PNG bytes)."""
    buf = io.BytesIO()
    to_rgb(image).save(buf, format="PNG")
    data = buf.getvalue()
    pil, ref = decode_image(data, max_pixels=max_pixels)
    return pil, ref, data
