"""The vision encoder's features of recently seen images, reused while the encoder's weights stay the same.

The turns of a dialogue are about one photo: the question, the reply to a clarifying question, the next question
after a correction. Each answer's prompt shows that photo again, and the composed models' vision encoder
(EfficientNet-Lite0 and the instance CNN, `ilearn.models.composed`) is about a quarter of a batched answer's CPU
time on `small` (benchmarks/concurrency.py). `FeatureCache` keeps the features of the last `size` images by their
pixels' content, for the encoder weights they were computed with: a version switch (an adapter, partial weights,
`reset`) changes the weights' stamp and empties it, so a reused feature is always the one the encoder would give.

Only inference uses it (`torch.inference_mode`, the encoder in eval mode, pixels on the CPU): training always runs
the encoder (its gradients), and on a GPU the encoder is cheap while hashing the pixels would copy them back.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from itertools import chain

import torch
from torch import nn


def weights_stamp(module: nn.Module) -> tuple:
    """What tells the module's weights apart: each parameter and buffer (the object, its storage and its in-place
    version counter: loading weights into it bumps the counter, injecting LoRA layers adds parameters)."""
    return tuple((id(t), t.data_ptr(), t._version) for t in chain(module.parameters(), module.buffers()))


def pixels_key(pixels: torch.Tensor) -> bytes:
    """A digest of one image's pixel tensor (its dtype, shape and bytes)."""
    flat = pixels.detach().contiguous().reshape(-1)
    digest = hashlib.blake2b(flat.view(torch.uint8).numpy().tobytes(), digest_size=16)
    digest.update(f"{pixels.dtype}{tuple(pixels.shape)}".encode())
    return digest.digest()


class FeatureCache:
    """Features of the last `size` images by content (LRU), for one encoder's current weights. Thread-safe.

    Copies (`copy.deepcopy` of a model, pickling) start empty: a copied model trains or serves other weights."""

    def __init__(self, size: int = 64) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._stamp: tuple | None = None
        self.hits = 0
        """Images whose features were reused."""
        self.misses = 0
        """Images the encoder ran on."""

    def __reduce__(self) -> tuple:
        return (FeatureCache, (self.size,))

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget every image's features (after a user is forgotten)."""
        with self._lock:
            self._items.clear()

    def usable(self, encoder: nn.Module, pixels: torch.Tensor) -> bool:
        """Whether `encoder(pixels)` may be answered from the cache (module docstring)."""
        return (self.size > 0 and torch.is_inference_mode_enabled() and not encoder.training
                and pixels.device.type == "cpu")

    def features(self, encoder: Callable[[torch.Tensor], torch.Tensor], stamp: tuple,
                 pixels: torch.Tensor) -> torch.Tensor:
        """`encoder(pixels)` for a batch of images (n, ...): the features of images seen since the weights got
        `stamp` are reused, the encoder runs once on the others (an image twice in the batch counts once)."""
        keys = [pixels_key(row) for row in pixels]
        first: dict[bytes, int] = {}  # each image to encode: the first row showing it
        with self._lock:
            if stamp != self._stamp:
                self._items.clear()
                self._stamp = stamp
            found = [self._items.get(key) for key in keys]
            for i, (key, feature) in enumerate(zip(keys, found, strict=True)):
                if feature is None:
                    first.setdefault(key, i)
                else:
                    self._items.move_to_end(key)
            self.misses += len(first)
            self.hits += len(keys) - len(first)
        if first:
            fresh = encoder(pixels[list(first.values())])
            computed = {key: fresh[j].clone() for j, key in enumerate(first)}
            found = [computed[key] if feature is None else feature for key, feature in zip(keys, found, strict=True)]
            with self._lock:
                if stamp == self._stamp:  # weights changed meanwhile: these features are not the new weights'
                    self._items.update(computed)
                    while len(self._items) > self.size:
                        self._items.popitem(last=False)
        return torch.stack(found)


__all__ = ["FeatureCache", "pixels_key", "weights_stamp"]
