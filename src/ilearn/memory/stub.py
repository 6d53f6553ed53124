"""Model-free, FAISS-free memory parts for tests: `ExactIndex` (index "exact") and `StubMemory` (memory "stub")."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ilearn.config import RetrievalConfig
from ilearn.errors import InvalidInput, NotFound
from ilearn.memory.base import IndexCorrupt, Match, VectorIndex
from ilearn.memory.retrieval import format_references
from ilearn.memory.store import upsert_event
from ilearn.types import Event, EventStatus, Scope

if TYPE_CHECKING:
    from PIL import Image

    from ilearn.memory.store import EventStore
    from ilearn.models.base import ImageEmbedder, TextEmbedder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeySet:
    """The filter of `ExactIndex`: the kept keys themselves."""

    keys: frozenset[str]
    generation: int = 0

    @property
    def count(self) -> int:
        return len(self.keys)


class ExactIndex:
    """A `VectorIndex` in plain numpy: exact inner products over every kept vector (fine for a few thousand)."""

    def __init__(self, dim: int, *, meta: dict[str, Any] | None = None, **params: Any) -> None:
        if dim < 1:
            raise InvalidInput("index dim must be >= 1")
        self.dim = dim
        self.meta: dict[str, Any] = dict(meta or {})
        self.generation = 0
        self.dead = 0
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, key: object) -> bool:
        return key in self._vectors

    def keys(self) -> list[str]:
        """The live keys."""
        with self._lock:
            return list(self._vectors)

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Insert vectors under `keys` (a key already present is replaced)."""
        rows = np.asarray(vectors, dtype=np.float32).reshape(len(keys), -1)
        if rows.shape[1] != self.dim:
            raise InvalidInput(f"vectors have dim {rows.shape[1]}, the index has {self.dim}")
        with self._lock:
            self._vectors.update({key: row.copy() for key, row in zip(keys, rows, strict=True)})

    def remove(self, keys: Iterable[str]) -> int:
        """Drop `keys` (unknown ones ignored); returns how many were removed."""
        with self._lock:
            return sum(self._vectors.pop(key, None) is not None for key in list(keys))

    def get_vectors(self, keys: Sequence[str]) -> np.ndarray:
        """The stored vectors of `keys` (a copy); unknown keys raise KeyError."""
        with self._lock:
            return np.array([self._vectors[k] for k in keys], dtype=np.float32).reshape(len(keys), self.dim)

    def make_filter(self, keys: Iterable[str]) -> KeySet:
        """A filter keeping only `keys` that the index holds."""
        with self._lock:
            return KeySet(frozenset(k for k in keys if k in self._vectors), self.generation)

    def search(self, queries: np.ndarray, k: int,
               allowed: KeySet | Iterable[str] | None = None) -> list[list[tuple[str, float]]]:
        """For each query row, up to `k` (key, inner product) pairs, best first; `allowed` restricts the keys."""
        q = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            kept = allowed.keys if isinstance(allowed, KeySet) else None if allowed is None else set(allowed)
            keys = [key for key in self._vectors if kept is None or key in kept]
            if not keys:
                return [[] for _ in q]
            scores = q @ np.stack([self._vectors[key] for key in keys]).T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return [[(keys[j], float(row[j])) for j in top] for row, top in zip(scores, order, strict=True)]

    def compact(self) -> None:
        """Nothing to compact: removed vectors are gone at once."""

    def save(self, prefix: str | Path) -> None:
        """Write `<prefix>.exact.npz` (keys, vectors and meta)."""
        path = Path(f"{prefix}.exact.npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            keys = list(self._vectors)
            vectors = np.stack([self._vectors[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)
        np.savez(path, keys=np.array(keys, dtype=str), vectors=vectors, meta=json.dumps(self.meta))

    @classmethod
    def load(cls, prefix: str | Path, **params: Any) -> ExactIndex:
        """Read what `save` wrote (FileNotFoundError when nothing was, IndexCorrupt when unreadable)."""
        path = Path(f"{prefix}.exact.npz")
        if not path.is_file():
            raise FileNotFoundError(f"no index at {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                index = cls(int(data["vectors"].shape[1]), meta=json.loads(str(data["meta"])))
                index.add([str(k) for k in data["keys"]], data["vectors"])
        except (OSError, ValueError, KeyError) as exc:
            raise IndexCorrupt(f"cannot read index {path}: {exc}") from exc
        return index


class StubMemory:
    """A `RetrievalMemory` without vectors: a user's own and SHARED active events asked with the same
    question (ignoring case) match with score 1.0, whatever the image. Events are written to the store."""

    def __init__(self, store: EventStore, image_embedder: ImageEmbedder, text_embedder: TextEmbedder,
                 config: RetrievalConfig | None = None, home: str | Path | None = None, *,
                 index_type: type[VectorIndex] | None = None) -> None:
        self.store = store
        self.image_embedder = image_embedder
        self.text_embedder = text_embedder
        self.config = config or RetrievalConfig()
        self._forget_hooks: list[Callable[[], None]] = []

    def search(self, image: Image.Image | None, question: str, user_id: str | None,
               robot_id: str = "default", k: int | None = None, floor: float | None = None) -> list[Match]:
        """Visible active events asked with `question`, newest first (each scores 1: `floor` changes nothing)."""
        asked = question.strip().lower()
        found = [e for e in self.store.list_events(status=EventStatus.ACTIVE, robot_id=robot_id)
                 if e.question.strip().lower() == asked and (e.user_id == user_id or e.scope == Scope.SHARED)]
        found.sort(key=lambda e: e.created, reverse=True)
        return [Match(e, 1.0, 1.0, 1.0) for e in found[: k or self.config.top_k]]

    format_references = staticmethod(format_references)

    def add(self, event: Event, image: Image.Image | None = None) -> Event:
        """Write the event to the store (new or updated); a superseded event of the same user is retired."""
        upsert_event(self.store, event)
        if event.supersedes:
            try:
                old = self.store.get_event(event.supersedes)
            except NotFound:
                return event
            if old.user_id == event.user_id:
                self.store.update_event(replace(old, status=EventStatus.SUPERSEDED))
        return event

    def remove(self, event_ids: Iterable[str]) -> int:
        """No index to drop from."""
        return 0

    def forget_user(self, user_id: str) -> list[str]:
        """Delete the user from the store."""
        deleted = self.store.delete_user(user_id)
        for hook in self._forget_hooks:
            hook()
        return deleted

    def on_forget(self, hook: Callable[[], None]) -> None:
        """Call `hook` after every `forget_user`."""
        self._forget_hooks.append(hook)

    def ensure_fresh(self) -> str:
        """Nothing to load: the store is searched directly."""
        return "loaded"

    def close(self) -> None:
        """Nothing to save."""
