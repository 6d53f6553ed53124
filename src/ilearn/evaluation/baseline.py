"""What a user would pick instead of iLearn: nearest neighbour on frozen image features (`frozen_nn_baseline`).

Every teach view of a fact scenario (pharmacy, objects) is stored with its object; each held-out test view is
named after the object of its most similar stored view (cosine on the pooled, L2-normalised ImageNet features of
EfficientNet-Lite0, `EfficientNetImageEmbedder`; the same as benchmarks/frozen_nn.py's "protocol split"). The
split is the experiment's own, so the number sits beside the rounds in the report. It names objects, one test
view each, while a round asks facts about them (name, use, dose...): a memory that recognises the object as
well as this and stores the right answers would match it on taught facts. Embedding the pictures costs a few
seconds on one thread (about 20 ms a picture).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

NAME = "frozen EfficientNet-Lite0 nearest neighbour"


def frozen_nn_baseline(scenario: Any, embedder: Any = None) -> dict[str, Any] | None:
    """{"name", "accuracy", "n", "right", "note"}: the share of the scenario's test views whose nearest teach view
    (cosine) is of the same object; None when the scenario has no items, no teach or no test views.

    `embedder`: anything with `embed_images(list of PIL images) -> (n, d) array` of L2-normalised rows
    (default: `EfficientNetImageEmbedder` on one thread)."""
    items = list(getattr(scenario, "items", []) or [])
    teach = [(i, im) for i, item in enumerate(items) for im in item.teach_views]
    test = [(i, im) for i, item in enumerate(items) for im in item.test_views]
    if not teach or not test:
        return None
    if embedder is None:
        from ilearn.models.embedders import EfficientNetImageEmbedder

        embedder = EfficientNetImageEmbedder(threads=1)
    vectors = np.asarray(embedder.embed_images([im for _, im in teach + test]), dtype=np.float32)
    stored, asked = vectors[: len(teach)], vectors[len(teach):]
    labels = np.array([i for i, _ in teach])
    truth = np.array([i for i, _ in test])
    right = int((labels[(asked @ stored.T).argmax(axis=1)] == truth).sum())
    return {"name": NAME, "accuracy": right / len(test), "n": len(test), "right": right,
            "note": "every teach view stored, each test view named after its nearest; the rounds' split"}
