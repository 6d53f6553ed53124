"""The benchmarks' scoring helpers on tiny inputs whose right answer is known."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from ilearn.config import RetrievalConfig
from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def one_shot():
    return load("one_shot")


def test_one_shot_rates_from_known_scores(one_shot):
    teach = np.eye(3, dtype=np.float32)  # three taught bottles; a query's scores are then its own coordinates
    test = np.array([[0.9, 0.8, 0.0],     # bottle 0, fixed; its look-alike 1 would be reused if 0 were untaught
                     [0.1, 0.95, 0.2],    # bottle 1, fixed; no other bottle close
                     [0.3, 0.0, 0.7],     # bottle 2, below the threshold
                     [0.85, 0.0, 0.1]],   # bottle 2 mistaken for bottle 0: a false reuse, and an open-set one
                    dtype=np.float32)
    tops, oks, others = one_shot._score({0: (teach, test, np.array([0, 1, 2, 2]))})
    np.testing.assert_allclose(others, [0.8, 0.2, 0.3, 0.85], rtol=1e-6)
    rates = one_shot._rates(tops, oks, others, 0.75)
    assert rates == {"fix_rate": 0.5, "false_reuse": 0.25, "open_set_false_reuse": 0.5, "nn1": 0.75, "n": 4}


def flat(color: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (32, 32), color)


def test_one_shot_memory_open_set_counts_a_look_alikes_name(one_shot):
    """Two look-alike bottles and a distinct one, each taught once: every view is fixed, and a look-alike's
    name would be reused for each of the pair had it never been taught (open set 2/3); the distinct one's not."""
    items = [SimpleNamespace(name=name, teach_views=[flat(color)], test_views=[flat(color)])
             for name, color in (("aspirin", (200, 40, 40)), ("aspirin forte", (206, 44, 40)),
                                 ("vitamin d", (30, 150, 200)))]
    probe = RetrievalConfig(threshold=0.0, reuse_threshold=0.0)
    rows = one_shot._memory_case(items, 1, "a", probe, StubImageEmbedder(), HashingTextEmbedder())
    rates = one_shot._case_rates(rows, 0.87)
    assert (rates["fix_rate"], rates["false_reuse"], rates["nn1"], rates["n"]) == (1.0, 0.0, 1.0, 3)
    assert rates["open_set_false_reuse"] == pytest.approx(2 / 3)
    assert rates["any_reference"] == 1.0


def test_guesses_rates_and_weight_choice_on_known_vectors():
    guesses = load("guesses")
    teach = np.eye(3, dtype=np.float32)
    test = np.array([[0.9, 0.1, 0], [0.1, 0.9, 0], [0.6, 0.0, 0.8]], dtype=np.float32)
    rows = guesses.nearest(teach, np.array([0, 1, 2]), test, np.array([0, 1, 0]))
    assert rows[:, 1].tolist() == [1.0, 1.0, 0.0]  # the third is nearest object 2's picture, not its own
    rates = guesses.rates(rows, 0.7)
    assert rates == {"right": pytest.approx(66.7), "wrong": pytest.approx(33.3), "open_set": pytest.approx(33.3)}
    # three objects, four pictures each: the second part tells them apart, the first is noise
    labels = np.repeat(np.arange(3), 4)
    rng = np.random.default_rng(0)
    first = rng.normal(size=(12, 8))
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    second = np.eye(3)[labels] + 0.1 * rng.normal(size=(12, 3))
    second /= np.linalg.norm(second, axis=1, keepdims=True)
    row = guesses.weight_choice(first, second, labels, views=2, draws=3)
    assert row["chosen"] == row["best"] == 100.0 and row["fixed_0.7"] < 100.0
    assert all(w is not None and w < 0.7 for w in row["weights_chosen"])
