"""The fused image embedder: instance CNN and EfficientNet vectors side by side, one weighted cosine."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from helpers import make_png
from ilearn import plugins
from ilearn.errors import InvalidInput
from ilearn.models.embedders import FusedImageEmbedder, StubImageEmbedder, fuse_vectors


def test_fused_cosine_is_the_weighted_sum():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(5, 11)) * 3  # unnormalised on purpose
    for w in (0.0, 0.3, 0.7, 1.0):
        f = fuse_vectors(a, b, w)
        assert f.shape == (5, 18) and f.dtype == np.float32
        assert np.allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
        na = a / np.linalg.norm(a, axis=1, keepdims=True)
        nb = b / np.linalg.norm(b, axis=1, keepdims=True)
        assert np.allclose(f @ f.T, w * na @ na.T + (1 - w) * nb @ nb.T, atol=1e-5)
    with pytest.raises(InvalidInput):
        fuse_vectors(a, b, 1.5)


def test_fused_embedder_on_images():
    first, second = StubImageEmbedder(grid=2), StubImageEmbedder(grid=4)
    emb = FusedImageEmbedder(first=first, second=second, weight=0.6)
    assert emb.dim == 12 + 48 and "0.6" in emb.name
    images = [Image.open(io.BytesIO(make_png(c))) for c in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    v = emb.embed_images(images)
    assert v.shape == (3, 60) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    a, b = first.embed_images(images), second.embed_images(images)
    assert np.allclose(v @ v.T, 0.6 * a @ a.T + 0.4 * b @ b.T, atol=1e-5)
    assert emb.embed_images([]).shape == (0, 60)


def test_fused_is_a_registered_image_embedder():
    assert "fused" in plugins.names("image_embedder")
    assert plugins.resolve("image_embedder", "fused") is FusedImageEmbedder


def test_the_fused_weight_made_by_name_is_the_deployed_one():
    """A fused embedder made by name (benchmarks, measurements) must weigh as the deployment does."""
    from ilearn.config import RetrievalConfig
    from ilearn.models.embedders import FUSED_WEIGHT

    assert FUSED_WEIGHT == RetrievalConfig().fused_weight
