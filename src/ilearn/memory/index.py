"""VectorIndex: top-k inner-product search over string-keyed vectors on FAISS, with id filters.

- Below `hnsw_min_size` live vectors the index is exact (`IndexFlatIP`); from that size on it is an
  `IndexHNSWFlat` graph (inner product). HNSW stores the full float vectors, so the scores it returns
  are exact inner products: only the candidate set is approximate.
- Filters are bitmaps over labels (`faiss.IDSelectorBitmap`). A filter that keeps fewer than
  `exact_filter_fraction` of the vectors is answered by exact search over the flat vectors (HNSW recall
  falls under restrictive filters); a wider filter uses HNSW with `efSearch` raised in proportion.
- String keys map to int64 labels (positions). Removal marks a tombstone (HNSW cannot delete); dead
  labels are filtered out of every search and the index is compacted once they exceed
  `max_dead_fraction` of it. Adding or removing never needs a rebuild.
- `save`/`load` write `<prefix>.faiss` and a `<prefix>.json` manifest (keys by label, counts, ids hash,
  sha256 of the index file); `load` raises `IndexCorrupt` on any mismatch.
- Every method holds one lock: the server inserts while it queries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ilearn.errors import ILearnError, InvalidInput

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


class IndexCorrupt(ILearnError):
    """An index file or its manifest is unreadable or inconsistent; rebuild it from the store."""


@dataclass(frozen=True)
class IndexFilter:
    """A prepared filter: the labels a search may return (build with `VectorIndex.make_filter`)."""

    labels: np.ndarray  # int64, sorted
    bitmap: np.ndarray  # uint8, little-endian bit order, one bit per label
    generation: int  # the index generation it was built for (labels change on compaction)

    @property
    def count(self) -> int:
        return int(self.labels.size)


def ids_hash(keys: Iterable[str]) -> str:
    """sha256 over the sorted keys: identifies the set of ids an index holds."""
    h = hashlib.sha256()
    for key in sorted(keys):
        h.update(key.encode())
        h.update(b"\0")
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class VectorIndex:
    """Top-k inner-product search over L2-normalised vectors keyed by strings (see the module docstring)."""

    def __init__(self, dim: int, *, hnsw_min_size: int = 20_000, hnsw_m: int = 16, ef_construction: int = 80,
                 ef_search: int = 64, max_ef_search: int = 1024, exact_filter_fraction: float = 0.05,
                 max_dead_fraction: float = 0.25, meta: dict[str, Any] | None = None):
        if dim < 1:
            raise InvalidInput("index dim must be >= 1")
        if not 0.0 < max_dead_fraction <= 1.0:
            raise InvalidInput("max_dead_fraction must be in (0, 1]")
        self.dim = dim
        self.hnsw_min_size = hnsw_min_size
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.max_ef_search = max_ef_search
        self.exact_filter_fraction = exact_filter_fraction
        self.max_dead_fraction = max_dead_fraction
        self.meta: dict[str, Any] = dict(meta or {})
        self._lock = threading.RLock()
        self._keys: list[str | None] = []  # label -> key (None: tombstone)
        self._labels: dict[str, int] = {}  # key -> label
        self._dead = 0
        self._dead_sel: tuple[Any, np.ndarray] | None = None  # cached (selector, bitmap) of live labels
        self._generation = 0
        self._index: Any = self._new_index("flat")

    # ----------------------------------------------------------------- state
    @property
    def mode(self) -> str:
        """'flat' (exact) or 'hnsw'."""
        return "hnsw" if isinstance(self._index, faiss.IndexHNSW) else "flat"

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, key: object) -> bool:
        return key in self._labels

    def keys(self) -> list[str]:
        """The live keys."""
        with self._lock:
            return list(self._labels)

    def ids_hash(self) -> str:
        """sha256 of the sorted live keys."""
        with self._lock:
            return ids_hash(self._labels)

    def _new_index(self, mode: str) -> Any:
        if mode == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
            index.hnsw.efSearch = self.ef_search
            return index
        return faiss.IndexFlatIP(self.dim)

    def _flat(self) -> Any:
        return self._index if self.mode == "flat" else faiss.downcast_index(self._index.storage)

    def _vectors_view(self) -> np.ndarray:
        """Zero-copy (ntotal, dim) view of the stored vectors; valid until the next add."""
        n = self._index.ntotal
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return faiss.rev_swig_ptr(self._flat().get_xb(), n * self.dim).reshape(n, self.dim)

    # --------------------------------------------------------------- writes
    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Insert vectors under `keys` (a key already present is replaced)."""
        vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(len(keys), -1))
        if vectors.shape[1] != self.dim:
            raise InvalidInput(f"vectors have dim {vectors.shape[1]}, the index has {self.dim}")
        if len(set(keys)) != len(keys):
            raise InvalidInput("duplicate keys in one add")
        if not np.isfinite(vectors).all():
            raise InvalidInput("vectors contain NaN or inf")
        if not keys:
            return
        with self._lock:
            self._remove_labels([self._labels[k] for k in keys if k in self._labels])
            start = len(self._keys)
            if self.mode == "flat" and len(self._labels) + len(keys) >= self.hnsw_min_size:
                self._rebuild(extra=(list(keys), vectors))
                return
            self._index.add(vectors)
            for i, key in enumerate(keys):
                self._keys.append(key)
                self._labels[key] = start + i
            self._dead_sel = None

    def remove(self, keys: Iterable[str]) -> int:
        """Drop `keys` (unknown keys are ignored); returns how many were removed."""
        with self._lock:
            labels = [self._labels[k] for k in keys if k in self._labels]
            self._remove_labels(labels)
            if self._dead and self._dead > self.max_dead_fraction * len(self._keys):
                self._rebuild()
            return len(labels)

    def _remove_labels(self, labels: list[int]) -> None:
        for label in labels:
            key = self._keys[label]
            if key is not None:
                del self._labels[key]
                self._keys[label] = None
                self._dead += 1
        if labels:
            self._dead_sel = None

    def compact(self) -> None:
        """Drop tombstones and pick the mode for the live size (rebuilds the graph in HNSW mode)."""
        with self._lock:
            self._rebuild()

    def _rebuild(self, extra: tuple[list[str], np.ndarray] | None = None) -> None:
        live = [(label, key) for label, key in enumerate(self._keys) if key is not None]
        old = self._vectors_view()
        vecs = old[[label for label, _ in live]] if live else np.zeros((0, self.dim), np.float32)
        keys = [key for _, key in live]
        if extra is not None:
            keys += extra[0]
            vecs = np.concatenate([vecs, extra[1]])
        mode = "hnsw" if len(keys) >= self.hnsw_min_size else "flat"
        index = self._new_index(mode)
        if len(keys):
            index.add(np.ascontiguousarray(vecs))
        logger.info("index rebuilt: %d vectors, %s (dropped %d tombstones)", len(keys), mode, self._dead)
        self._index = index
        self._keys = list(keys)
        self._labels = {k: i for i, k in enumerate(keys)}
        self._dead = 0
        self._dead_sel = None
        self._generation += 1

    # ---------------------------------------------------------------- reads
    def get_vectors(self, keys: Sequence[str]) -> np.ndarray:
        """The stored vectors of `keys` (a copy); unknown keys raise KeyError."""
        with self._lock:
            labels = [self._labels[k] for k in keys]
            return np.array(self._vectors_view()[labels], dtype=np.float32).reshape(len(keys), self.dim)

    def make_filter(self, keys: Iterable[str]) -> IndexFilter:
        """A reusable filter that keeps only `keys` (unknown keys are ignored)."""
        with self._lock:
            labels = np.array(sorted({self._labels[k] for k in keys if k in self._labels}), dtype=np.int64)
            return IndexFilter(labels, self._bitmap(labels), self._generation)

    def _bitmap(self, labels: np.ndarray) -> np.ndarray:
        mask = np.zeros(max(len(self._keys), 1), dtype=bool)
        mask[labels] = True
        return np.packbits(mask, bitorder="little")

    def _live_selector(self) -> Any | None:
        if not self._dead:
            return None
        if self._dead_sel is None:
            bitmap = self._bitmap(np.fromiter(self._labels.values(), dtype=np.int64, count=len(self._labels)))
            self._dead_sel = (faiss.IDSelectorBitmap(len(self._keys), faiss.swig_ptr(bitmap)), bitmap)
        return self._dead_sel[0]

    def search(self, queries: np.ndarray, k: int,
               allowed: IndexFilter | Iterable[str] | None = None) -> list[list[tuple[str, float]]]:
        """For each query row, up to `k` (key, inner product) pairs, best first; `allowed` restricts the keys."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        q = q.reshape(1, -1) if q.ndim == 1 else q
        if q.shape[1] != self.dim:
            raise InvalidInput(f"query has dim {q.shape[1]}, the index has {self.dim}")
        if k < 1:
            raise InvalidInput("k must be >= 1")
        with self._lock:
            live = len(self._labels)
            if live == 0:
                return [[] for _ in range(len(q))]
            if allowed is not None and not (isinstance(allowed, IndexFilter) and allowed.generation == self._generation):
                allowed = self.make_filter(allowed if not isinstance(allowed, IndexFilter)
                                           else [self._keys[i] for i in allowed.labels if i < len(self._keys)])
            if allowed is not None and allowed.count == 0:
                return [[] for _ in range(len(q))]
            kk = min(k, live if allowed is None else allowed.count)
            if allowed is None:
                sel = self._live_selector()
                if self.mode == "flat":
                    scores, labels = self._index.search(q, kk, params=faiss.SearchParameters(sel=sel) if sel else None)
                else:
                    params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, kk))
                    if sel is not None:
                        params.sel = sel
                    scores, labels = self._index.search(q, kk, params=params)
            else:
                sel = faiss.IDSelectorBitmap(len(self._keys), faiss.swig_ptr(allowed.bitmap))
                if self.mode == "flat" or allowed.count < self.exact_filter_fraction * live:
                    scores, labels = self._flat().search(q, kk, params=faiss.SearchParameters(sel=sel))
                else:
                    ef = int(min(self.max_ef_search, max(self.ef_search * live / allowed.count, kk)))
                    scores, labels = self._index.search(q, kk, params=faiss.SearchParametersHNSW(sel=sel, efSearch=ef))
            return [[(self._keys[int(lab)], float(s)) for s, lab in zip(srow, lrow, strict=True)
                     if lab >= 0 and self._keys[int(lab)] is not None] for srow, lrow in zip(scores, labels, strict=True)]

    # ---------------------------------------------------------- persistence
    def save(self, prefix: str | Path) -> None:
        """Write `<prefix>.faiss` and `<prefix>.json` atomically (the manifest last)."""
        prefix = Path(prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        data_path, manifest_path = _paths(prefix)
        with self._lock:
            tmp = data_path.with_name(data_path.name + ".tmp")
            faiss.write_index(self._index, str(tmp))
            os.replace(tmp, data_path)
            manifest = {
                "format": FORMAT_VERSION, "dim": self.dim, "mode": self.mode, "ntotal": int(self._index.ntotal),
                "count": len(self._labels), "ids_hash": ids_hash(self._labels), "keys": self._keys,
                "file_sha256": _file_sha256(data_path), "meta": self.meta,
                "params": {"hnsw_min_size": self.hnsw_min_size, "hnsw_m": self.hnsw_m,
                           "ef_construction": self.ef_construction, "ef_search": self.ef_search,
                           "max_ef_search": self.max_ef_search, "exact_filter_fraction": self.exact_filter_fraction,
                           "max_dead_fraction": self.max_dead_fraction},
            }
            tmp = manifest_path.with_name(manifest_path.name + ".tmp")
            tmp.write_text(json.dumps(manifest))
            os.replace(tmp, manifest_path)
        logger.debug("index saved to %s (%d vectors)", data_path, len(self._labels))

    @classmethod
    def load(cls, prefix: str | Path, **overrides: Any) -> VectorIndex:
        """Read an index saved by `save`. Missing files raise FileNotFoundError, bad ones IndexCorrupt.

        `overrides` replace saved search parameters (e.g. ef_search from the current config).
        """
        data_path, manifest_path = _paths(Path(prefix))
        if not data_path.is_file() or not manifest_path.is_file():
            raise FileNotFoundError(f"no index at {data_path}")
        try:
            manifest = json.loads(manifest_path.read_text())
            keys, dim = manifest["keys"], int(manifest["dim"])
            if manifest.get("format") != FORMAT_VERSION:
                raise IndexCorrupt(f"index format {manifest.get('format')} is not {FORMAT_VERSION}")
            if _file_sha256(data_path) != manifest["file_sha256"]:
                raise IndexCorrupt(f"checksum mismatch for {data_path}")
            raw = faiss.read_index(str(data_path))
        except IndexCorrupt:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise IndexCorrupt(f"cannot read index {data_path}: {exc}") from exc
        live = {k: i for i, k in enumerate(keys) if k is not None}
        if raw.d != dim or raw.ntotal != len(keys) or len(live) != manifest["count"] \
                or ids_hash(live) != manifest["ids_hash"]:
            raise IndexCorrupt(f"index {data_path} disagrees with its manifest")
        params = {**manifest.get("params", {}), **overrides}
        index = cls(dim, meta=manifest.get("meta"), **params)
        if isinstance(raw, faiss.IndexHNSW):
            raw.hnsw.efSearch = index.ef_search
        index._index = raw
        index._keys = list(keys)
        index._labels = live
        index._dead = len(keys) - len(live)
        return index


def _paths(prefix: Path) -> tuple[Path, Path]:
    return prefix.with_name(prefix.name + ".faiss"), prefix.with_name(prefix.name + ".json")
