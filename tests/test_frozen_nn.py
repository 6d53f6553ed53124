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
