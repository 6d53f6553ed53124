"""Contracts of the pluggable memory parts: event store, vector index and retrieval memory (see DESIGN.md).

Backends: `ilearn.memory.sqlite` (store), `ilearn.memory.index.FaissIndex` and
`ilearn.memory.partitioned.PartitionedIndex` (index),
`ilearn.memory.retrieval.DualModalityMemory` (memory); model-free stubs for tests in `ilearn.memory.stub`.
Each is registered by name in `ilearn.plugins`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ilearn.errors import ILearnError
from ilearn.memory.store import EventStore
from ilearn.types import Event

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from ilearn.models.base import ImageEmbedder, TextEmbedder


@dataclass
class Match:
    """A retrieved event with its fused score and the similarity of each modality."""

    event: Event
    score: float
    image_sim: float
    text_sim: float
    parts: tuple[float, float] | None = None
    """With a fused image embedder (`ilearn.models.embedders.FusedImageEmbedder`): the image cosine of each of its
    two parts (instance, general), so that a guess can weigh them as this memory's events say (`guess_weight`)."""


class IndexCorrupt(ILearnError):
    """An index file or its manifest is unreadable or inconsistent; rebuild it from the store."""


class KeyFilter(Protocol):
    """A prepared set of keys a search may return (`VectorIndex.make_filter`)."""

    @property
    def count(self) -> int:
        """How many of the index's keys it keeps."""
        ...

    @property
    def generation(self) -> int:
        """The index generation it was made for; a filter of another generation is rebuilt from its keys."""
        ...


@runtime_checkable
class VectorIndex(Protocol):
    """Top-k inner-product search over vectors keyed by strings, with key filters; saved beside the store.

    A backend class is constructed as `cls(dim, *, meta=..., **params)` (params: `RetrievalConfig`'s index
    settings, which a backend may ignore) and read back with `cls.load(prefix, **params)`, which raises
    FileNotFoundError when nothing was saved there and `IndexCorrupt` for a bad file.
    """

    dim: int
    meta: dict[str, Any]  # what the vectors were built with; a loaded index with other meta is rebuilt

    @property
    def generation(self) -> int:
        """Bumped whenever prepared filters stop applying (e.g. compaction)."""
        ...

    @property
    def dead(self) -> int:
        """Removed vectors still taking space until `compact`."""
        ...

    def __len__(self) -> int: ...
    def __contains__(self, key: object) -> bool: ...

    def keys(self) -> list[str]:
        """The live keys."""
        ...

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Insert vectors under `keys` (a key already present is replaced)."""
        ...

    def remove(self, keys: Iterable[str]) -> int:
        """Drop `keys` (unknown ones ignored); returns how many were removed."""
        ...

    def get_vectors(self, keys: Sequence[str]) -> np.ndarray:
        """The stored vectors of `keys` (a copy); unknown keys raise KeyError."""
        ...

    def make_filter(self, keys: Iterable[str]) -> KeyFilter:
        """A reusable filter keeping only `keys` (unknown keys ignored)."""
        ...

    def search(self, queries: np.ndarray, k: int,
               allowed: KeyFilter | Iterable[str] | None = None) -> list[list[tuple[str, float]]]:
        """For each query row, up to `k` (key, inner product) pairs, best first; `allowed` restricts the keys."""
        ...

    def compact(self) -> None:
        """Drop every trace of removed vectors (no saved file may keep them)."""
        ...

    def save(self, prefix: str | Path) -> None:
        """Write the index to files starting with `prefix`."""
        ...

    @classmethod
    def load(cls, prefix: str | Path, **params: Any) -> VectorIndex:
        """Read an index written by `save` (FileNotFoundError when there is none, IndexCorrupt when bad)."""
        ...


@runtime_checkable
class PartitionedVectorIndex(VectorIndex, Protocol):
    """A VectorIndex whose keys each live in one named partition, so that a filter can keep whole partitions
    (searched on their own, at no cost per key) besides single keys (`ilearn.memory.partitioned`)."""

    def add(self, keys: Sequence[str], vectors: np.ndarray, partition: str = "") -> None:
        """Insert vectors under `keys` into `partition` (a key already present in any partition is replaced)."""
        ...

    def partition_of(self, key: str) -> str | None:
        """The partition holding `key`, or None."""
        ...

    def move(self, keys: Iterable[str], partition: str) -> int:
        """Put existing `keys` into `partition` (vectors unchanged); returns how many moved."""
        ...

    def make_filter(self, keys: Iterable[str] = (), partitions: Iterable[str] = ()) -> KeyFilter:
        """A reusable filter keeping every key of `partitions` and `keys` (unknown names and keys ignored)."""
        ...


@runtime_checkable
class RetrievalMemory(Protocol):
    """Past events found by image and question, with scopes; the store stays the source of truth."""

    store: EventStore
    image_embedder: ImageEmbedder
    text_embedder: TextEmbedder

    def search(self, image: Image.Image | None, question: str, user_id: str | None,
               robot_id: str = "default", k: int | None = None, floor: float | None = None) -> list[Match]:
        """Events visible to `user_id` that match the image and question, best first: those scoring >= `floor`
        (default: the memory's match threshold; a lower floor finds candidates for a guess)."""
        ...

    def format_references(self, matches: Sequence[Match]) -> str:
        """Short numbered references for the model's context (never ids)."""
        ...

    def add(self, event: Event, image: Image.Image | None = None) -> Event:
        """Store (if new) and index an event; returns it as stored (possibly quarantined). A rejection (no answer,
        only answers turned down: `ilearn.types.is_rejection`) is stored, never indexed."""
        ...

    def remove(self, event_ids: Iterable[str]) -> int:
        """Drop events from the index (their store rows are left as they are)."""
        ...

    def forget_user(self, user_id: str) -> list[str]:
        """Delete a user's events, sessions and images from the store and their vectors; returns event ids."""
        ...

    def on_forget(self, hook: Callable[[], None]) -> None:
        """Call `hook` after every forget the memory learns of (its own, or another process's on a shared store)."""
        ...

    def ensure_fresh(self) -> str:
        """Bring the index in line with the store's active events; returns what was done."""
        ...

    def close(self) -> None:
        """Save what changed."""
        ...


__all__ = ["EventStore", "IndexCorrupt", "KeyFilter", "Match", "PartitionedVectorIndex", "RetrievalMemory",
           "VectorIndex"]
