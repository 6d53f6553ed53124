"""The frozen-feature nearest-neighbour baseline on a scenario's own teach/test split (a fake embedder)."""

from __future__ import annotations

import numpy as np

from ilearn.evaluation.baseline import frozen_nn_baseline
from ilearn.evaluation.scenarios.base import stub_scenario


class _MeanColour:
    def embed_images(self, images):
        rows = np.array([np.asarray(im.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) for im in images])
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_nearest_neighbour_on_the_scenarios_split():
    scenario = stub_scenario(n_teach=2, n_test=3)  # a red and a blue object
    out = frozen_nn_baseline(scenario, embedder=_MeanColour())
    assert out["n"] == 6 and out["right"] == 6 and out["accuracy"] == 1.0


def test_no_test_views_no_baseline():
    class Empty:
        items = []

    assert frozen_nn_baseline(Empty(), embedder=_MeanColour()) is None
