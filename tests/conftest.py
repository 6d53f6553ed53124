"""Shared test set-up: offline, one torch thread, small images made on the fly."""

from __future__ import annotations

import io
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


def make_png(color=(200, 30, 30), size=(64, 64), shape: str = "circle", mode: str = "RGB") -> bytes:
    """A small PNG of a coloured shape."""
    image = Image.new(mode, size, (255, 255, 255, 0) if mode == "RGBA" else (255, 255, 255))
    draw = ImageDraw.Draw(image)
    box = (size[0] // 5, size[1] // 5, 4 * size[0] // 5, 4 * size[1] // 5)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=color)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def png() -> bytes:
    return make_png()


@pytest.fixture(autouse=True)
def _restore_logging():
    """`ilearn.cli.main` configures logging on the (captured) stderr; undo it after each test."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
