"""Small factories shared by the tests (import as `from helpers import ...`)."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def make_png(color=(200, 30, 30), size=(64, 64), shape: str = "circle", mode: str = "RGB") -> bytes:
    """A small PNG of a coloured shape."""
    image = Image.new(mode, size, (255, 255, 255, 0) if mode == "RGBA" else (255, 255, 255))
    draw = ImageDraw.Draw(image)
    box = (size[0] // 5, size[1] // 5, 4 * size[0] // 5, 4 * size[1] // 5)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=color)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
