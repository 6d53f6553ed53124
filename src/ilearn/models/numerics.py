"""Numeric helpers the embedders share, below every model module: unit-length vectors and torch's CPU threads."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of `x` scaled to unit L2 norm (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def set_threads(threads: int) -> None:
    """Set torch's CPU thread count to `threads` (>= 1) unless it already is; torch is imported here, lazily."""
    import torch

    if threads >= 1 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
