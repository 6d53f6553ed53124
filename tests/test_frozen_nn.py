"""benchmarks/frozen_nn.py's scoring on vectors whose nearest neighbours are known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "frozen_nn.py"


@pytest.fixture(scope="module")
def fnn():
    spec = importlib.util.spec_from_file_location("benchmarks_frozen_nn", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nearest_accuracy(fnn):
    vectors = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], dtype=np.float32)
    labels = np.array([0, 1, 0, 1, 1])  # the last is object 1 but nearer object 0's example
    examples = np.array([True, True, False, False, False])
    assert fnn.nearest_accuracy(vectors, labels, examples) == (2, 3)
    assert fnn.nearest_accuracy(vectors, labels, np.ones(5, dtype=bool)) == (0, 0)


def test_draw_examples(fnn):
    labels = np.array([0] * 6 + [1] * 3 + [2])
    rng = np.random.default_rng(0)
    for shots, per_object in ((1, [1, 1, 1]), (3, [3, 3, 1]), ("half", [3, 1, 1])):
        mask = fnn.draw_examples(labels, shots, rng)
        assert [int(mask[labels == k].sum()) for k in range(3)] == per_object


def test_gem_pooling_and_flip_of_a_variant(fnn, monkeypatch):
    """--pool gem and --flip change the vector the way their names say (a stub network: the map is the input)."""
    import torch
    from PIL import Image

    embedder = fnn.variant_embedder("lite0", "gem", True)
    assert embedder.name == "efficientnet-lite0-gem-flip" and embedder.size == 224

    class Identity:
        def extract_features(self, batch):
            return batch

    monkeypatch.setattr(embedder, "_load", lambda: Identity())
    monkeypatch.setattr(embedder, "preprocess", lambda im: np.asarray(im, dtype=np.float32).transpose(2, 0, 1))
    left_bright = np.zeros((2, 2, 3), dtype=np.uint8)
    left_bright[:, 0, :] = 8
    vec = embedder.embed_images([Image.fromarray(left_bright)])
    # generalised mean (p = 3) of a map half 8, half ~0: 8 / 2 ** (1/3) per channel, the flip's the same: equal rows
    assert vec.shape == (1, 3) and np.allclose(vec, 1 / np.sqrt(3), atol=1e-5)
    mean = fnn.variant_embedder("lite0", "mean", False)
    assert torch.allclose(mean._pooled(torch.ones(1, 2, 3, 3)), torch.ones(1, 2))
    half = torch.tensor([[[[8.0, 0.0], [8.0, 0.0]]]])  # half the map 8, half 0
    assert torch.allclose(embedder._pooled(half), torch.full((1, 1), 8 / 2 ** (1 / 3)), atol=1e-4)
    assert torch.allclose(mean._pooled(half), torch.full((1, 1), 4.0))
