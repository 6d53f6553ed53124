"""FaissIndex: top-k inner-product search over string-keyed vectors on FAISS, with id filters (the default
`ilearn.memory.base.VectorIndex`, registered as index "faiss").

Layout. Every vector lives once as float32 in one contiguous matrix (`_vecs`, row = label); scores returned
are always exact inner products computed from it. Below `hnsw_min_size` live vectors, search is exact (one
BLAS matrix-vector product, or a gather of the kept rows under a filter). From that size on, an HNSW graph
over a compact copy of the vectors (`storage`: 8-bit scalar-quantised codes by default, "fp16", or "flat"
float32) finds candidates and the best `rerank` of them are re-ranked exactly on the float32 rows.

Filters (`make_filter`, or any iterable of keys) are bitmaps over labels:
- up to `gather_max` kept vectors: exact search over the gathered float32 rows;
- fewer than `exact_filter_fraction` of the live vectors: a scan of only the kept rows' compact codes
  (`faiss.IDSelectorBitmap`; rows outside the filter are never read), then exact re-ranking. HNSW recall
  falls under restrictive filters (the graph walks through excluded nodes), this does not;
- wider filters: HNSW with the filter and `efSearch` raised in proportion (up to `max_ef_search`).

Measured (`python benchmarks/retrieval.py index --size 10k 100k --dims 1664 1280 384`, one thread, on a
2-core machine shared with other jobs; benchmarks/results/retrieval/index.json; ms are per query, wall p50 /
CPU-time p99, recall@10 against exact numpy search in the same run). 100k fused 1664-d events (look-alike
families): numpy exact 25.5 ms; HNSW (M 32, efC 80, sq8, efSearch 128, re-rank 40) 0.88 / 1.30, recall 1.0;
efSearch 64 0.44 / 0.65, recall 1.0. A filter keeping 10%: numpy (gather + matmul) 11.0 ms; code scan +
re-rank 3.29 / 3.89, recall 1.0; filtered HNSW (efSearch 640) 5.88 / 7.51, recall 0.969; 1%: code scan 0.33,
filtered HNSW recall 0.78; 20%: filtered HNSW 3.95, recall 0.997, code scan 6.48; 30%: HNSW 2.93 / code scan
9.49. Hence code scan below 20% (`exact_filter_fraction`), filtered HNSW above. Exact mode at 10k: 1.98 ms
(1664-d) vs HNSW 0.37; at 5k 0.93 vs 0.23: HNSW from 5k (`hnsw_min_size`). Wall-clock p99 is 4-9 ms for
every path while other jobs hold the cores (the thread waits for a time slice); see the benchmark JSON.
At 1M events (index_1m*.json): 384-d, defaults: HNSW 0.56 ms, recall 0.9985; 1664-d built with M 16 /
efC 40 only (11 min): recall 0.58 (efSearch 256: 0.68). A 10% filter there keeps 100k rows: the code scan
takes 28 ms (384-d) / 44 ms (1664-d) and filtered HNSW recall is 0.93 / 0.55. A filter's cost grows with
what it keeps, however fast each row is: scopes that large are answered by partitions instead
(`ilearn.memory.partitioned.PartitionedIndex`, index "partitioned": one FaissIndex per robot's shared events
and per robot and user). 1M events at 384-d in 10 robots x 100k (index_1m_scopes.json), a user's scope
(their robot's shared partition + their own, 9.6% of the events): p50 / p99 1.55 / 6.16 ms (CPU p99 2.30),
recall@10 0.954 against numpy exact search on the scope; efSearch 256: 2.56 / 2.93 ms, 0.977; the code scan
of the same scope's rows in one index of all events: 9.02 / 13.79 ms, recall 1.0. 1664-d, 5 robots x 100k
(1M x 1664-d does not fit in the memory this machine could spare; a scope query reads the same 100k + 200
rows as at 1M; index_500k_scopes_1664.json): 4.32 / 8.67 ms, recall 0.964; code scan 28.9 / 40.6 ms.

Removal marks a tombstone (HNSW cannot delete) and zeroes its float32 row, so no saved `.npy` holds a
removed vector; dead labels are filtered out of every search and the index is compacted (graph rebuilt,
quantiser retrained) once they exceed `max_dead_fraction`, or on `compact()`. Until then the HNSW graph keeps
its own copy of a removed vector (its code): forgetting a user compacts. Adding or removing never needs a
rebuild. `save`/`load` write `<prefix>.faiss` (the graph), `<prefix>.npy` (the float32
vectors) and a `<prefix>.json` manifest (keys by label, counts, ids hash, sha256 of both files); `load`
raises `IndexCorrupt` on any mismatch. Every method holds one lock: the server inserts while it queries.
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

from ilearn.errors import InvalidInput
from ilearn.memory.base import IndexCorrupt

logger = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 3: the manifest hashes its keys in label order (a permuted key list is refused)
STORAGES = ("sq8", "fp16", "flat")
SQ_MARGIN = 0.1  # the 8-bit quantiser's range is the trained min/max widened by 10% each side (later vectors)
TRAIN_SAMPLE = 100_000


@dataclass(frozen=True)
class IndexFilter:
    """A prepared filter: the labels a search may return (build with `FaissIndex.make_filter`)."""

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


def keys_sha256(keys: Sequence[str | None]) -> str:
    """sha256 over the keys in label order (tombstones included): which vector row belongs to which key."""
    return hashlib.sha256(json.dumps(list(keys)).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def query_matrix(queries: np.ndarray, dim: int, k: int) -> np.ndarray:
    """The queries as a contiguous float32 (n, dim) matrix (one vector: one row), checked: their width, k >= 1,
    finite values (InvalidInput otherwise)."""
    q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
    q = q.reshape(1, -1) if q.ndim == 1 else q
    if q.shape[1] != dim:
        raise InvalidInput(f"query has dim {q.shape[1]}, the index has {dim}")
    if k < 1:
        raise InvalidInput("k must be >= 1")
    if not np.isfinite(q).all():
        raise InvalidInput("query contains NaN or inf")
    return q


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores, best first."""
    if k < scores.size:
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.argsort(-scores[part], kind="stable")]
    return np.argsort(-scores, kind="stable")[:k]


class FaissIndex:
    """Top-k inner-product search over L2-normalised vectors keyed by strings (see the module docstring)."""

    def __init__(self, dim: int, *, hnsw_min_size: int = 5_000, hnsw_m: int = 32, ef_construction: int = 80,
                 ef_search: int = 128, max_ef_search: int = 1024, exact_filter_fraction: float = 0.2,
                 max_dead_fraction: float = 0.25, storage: str = "sq8", rerank: int = 40, gather_max: int = 256,
                 meta: dict[str, Any] | None = None):
        if dim < 1:
            raise InvalidInput("index dim must be >= 1")
        if not 0.0 < max_dead_fraction <= 1.0:
            raise InvalidInput("max_dead_fraction must be in (0, 1]")
        if storage not in STORAGES:
            raise InvalidInput(f"index storage must be one of {STORAGES}, not {storage!r}")
        if rerank < 1 or ef_search < 1 or hnsw_m < 2 or ef_construction < 1 or gather_max < 0:
            raise InvalidInput("rerank, ef_search, ef_construction >= 1, hnsw_m >= 2, gather_max >= 0 required")
        self.dim = dim
        self.hnsw_min_size = hnsw_min_size
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.max_ef_search = max_ef_search
        self.exact_filter_fraction = exact_filter_fraction
        self.max_dead_fraction = max_dead_fraction
        self.storage = storage
        self.rerank = rerank
        self.gather_max = gather_max
        self.meta: dict[str, Any] = dict(meta or {})
        self._lock = threading.RLock()
        self._keys: list[str | None] = []  # label -> key (None: tombstone)
        self._labels: dict[str, int] = {}  # key -> label
        self._vecs = np.zeros((0, dim), dtype=np.float32)  # capacity >= len(self._keys); rows = labels
        self._alive = np.zeros(0, dtype=bool)
        self._dead = 0
        self._dead_sel: tuple[Any, np.ndarray] | None = None  # cached (selector, bitmap) of live labels
        self._generation = 0
        self._graph: Any = None  # faiss IndexHNSW* in hnsw mode

    # ----------------------------------------------------------------- state
    @property
    def mode(self) -> str:
        """'flat' (exact) or 'hnsw'."""
        return "flat" if self._graph is None else "hnsw"

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, key: object) -> bool:
        return key in self._labels

    @property
    def dead(self) -> int:
        """Tombstones: removed labels still taking a row (and, in HNSW mode, a graph node) until compaction."""
        return self._dead

    def keys(self) -> list[str]:
        """The live keys."""
        with self._lock:
            return list(self._labels)

    def ids_hash(self) -> str:
        """sha256 of the sorted live keys."""
        with self._lock:
            return ids_hash(self._labels)

    def params(self) -> dict[str, Any]:
        """The constructor settings (saved in the manifest)."""
        return {"hnsw_min_size": self.hnsw_min_size, "hnsw_m": self.hnsw_m, "ef_construction": self.ef_construction,
                "ef_search": self.ef_search, "max_ef_search": self.max_ef_search,
                "exact_filter_fraction": self.exact_filter_fraction, "max_dead_fraction": self.max_dead_fraction,
                "storage": self.storage, "rerank": self.rerank, "gather_max": self.gather_max}

    @property
    def vectors(self) -> np.ndarray:
        """Read-only view of the float32 rows by label (tombstones as zero rows); valid until the next write."""
        view = self._vecs[: len(self._keys)]
        view.flags.writeable = False
        return view

    def _new_graph(self, train: np.ndarray) -> Any:
        if self.storage == "flat":
            graph = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        else:
            qt = faiss.ScalarQuantizer.QT_8bit if self.storage == "sq8" else faiss.ScalarQuantizer.QT_fp16
            graph = faiss.IndexHNSWSQ(self.dim, qt, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            sq = faiss.downcast_index(graph.storage).sq
            sq.rangestat = faiss.ScalarQuantizer.RS_minmax
            sq.rangestat_arg = SQ_MARGIN
            graph.train(train)
        graph.hnsw.efConstruction = self.ef_construction
        graph.hnsw.efSearch = self.ef_search
        return graph

    # --------------------------------------------------------------- writes
    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Insert vectors under `keys` (a key already present is replaced)."""
        keys = list(keys)
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
            self._append(vectors)
            for i, key in enumerate(keys):
                self._keys.append(key)
                self._labels[key] = start + i
            self._dead_sel = None
            if self._graph is not None:
                self._graph.add(vectors)
            elif len(self._labels) >= self.hnsw_min_size:
                self._rebuild()

    def reserve(self, capacity: int) -> None:
        """Allocate room for `capacity` vectors at once (bulk loads: avoids copies while the matrix grows)."""
        with self._lock:
            if capacity > len(self._vecs):
                self._grow(capacity)

    def _grow(self, cap: int) -> None:
        n = len(self._keys)
        grown = np.empty((cap, self.dim), dtype=np.float32)
        grown[:n] = self._vecs[:n]
        alive = np.zeros(cap, dtype=bool)
        alive[:n] = self._alive[:n]
        self._vecs, self._alive = grown, alive

    def _append(self, vectors: np.ndarray) -> None:
        n, need = len(self._keys), len(self._keys) + len(vectors)
        if need > len(self._vecs):
            self._grow(need if n == 0 else max(need, int(len(self._vecs) * 1.5) + 64))
        self._vecs[n:need] = vectors
        self._alive[n:need] = True

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
                self._alive[label] = False
                self._vecs[label] = 0.0
                self._dead += 1
        if labels:
            self._dead_sel = None

    def compact(self) -> None:
        """Drop tombstones and pick the mode for the live size (rebuilds the graph in HNSW mode)."""
        with self._lock:
            self._rebuild()

    def _rebuild(self) -> None:
        n = len(self._keys)
        live = np.flatnonzero(self._alive[:n])
        keys = [self._keys[i] for i in live]
        vecs = np.ascontiguousarray(self._vecs[live]) if self._dead else self._vecs[:n]
        graph = None
        if len(keys) >= self.hnsw_min_size and len(keys):
            sample = vecs if len(vecs) <= TRAIN_SAMPLE else vecs[np.linspace(0, len(vecs) - 1, TRAIN_SAMPLE).astype(int)]
            graph = self._new_graph(np.ascontiguousarray(sample))
            graph.add(vecs)
        logger.info("index rebuilt: %d vectors, %s (dropped %d tombstones)", len(keys),
                    "hnsw" if graph is not None else "flat", self._dead)
        if self._dead:
            self._vecs, self._alive = vecs, np.ones(len(keys), dtype=bool)
        self._graph = graph
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
            return np.array(self._vecs[labels], dtype=np.float32).reshape(len(keys), self.dim)

    @property
    def generation(self) -> int:
        """Bumped whenever labels change (compaction): filters made before no longer apply."""
        return self._generation

    def make_filter(self, keys: Iterable[str]) -> IndexFilter:
        """A reusable filter that keeps only `keys` (unknown keys are ignored).

        Costs about 1 us per key (Python dict lookups): a caller that filters by the same large key set on
        every query (a user's events) should keep the prepared filter while the index generation holds."""
        with self._lock:
            get = self._labels.get
            labels = np.array([get(k, -1) for k in keys], dtype=np.int64)
            labels = labels[labels >= 0]
            labels = np.sort(labels) if isinstance(keys, (set, frozenset, dict)) else np.unique(labels)
            return IndexFilter(labels, self._bitmap(labels), self._generation)

    def _bitmap(self, labels: np.ndarray) -> np.ndarray:
        mask = np.zeros(max(len(self._keys), 1), dtype=bool)
        mask[labels] = True
        return np.packbits(mask, bitorder="little")

    def _live_selector(self) -> Any | None:
        if not self._dead:
            return None
        if self._dead_sel is None:
            bitmap = np.packbits(self._alive[: len(self._keys)], bitorder="little")
            self._dead_sel = (faiss.IDSelectorBitmap(len(self._keys), faiss.swig_ptr(bitmap)), bitmap)
        return self._dead_sel[0]

    def search(self, queries: np.ndarray, k: int,
               allowed: IndexFilter | Iterable[str] | None = None) -> list[list[tuple[str, float]]]:
        """For each query row, up to `k` (key, inner product) pairs, best first; `allowed` restricts the keys."""
        q = query_matrix(queries, self.dim, k)
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
                rows = self._exact_all(q, kk) if self._graph is None else \
                    self._graph_search(q, kk, self._live_selector(), self.ef_search)
            elif self._graph is None or allowed.count <= self.gather_max:
                rows = self._exact_rows(q, kk, allowed.labels)
            else:
                sel = faiss.IDSelectorBitmap(len(self._keys), faiss.swig_ptr(allowed.bitmap))
                if allowed.count < self.exact_filter_fraction * live:
                    rows = self._code_scan(q, kk, sel)
                else:
                    ef = int(min(self.max_ef_search, self.ef_search * live / allowed.count))
                    rows = self._graph_search(q, kk, sel, ef)
            return [[(self._keys[lab], s) for lab, s in row] for row in rows]

    def _exact_all(self, q: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        scores = self._vecs[: len(self._keys)] @ q.T
        scores[~self._alive[: len(self._keys)]] = -np.inf
        out = []
        for col in scores.T:
            top = _top(col, k)
            out.append([(int(i), float(col[i])) for i in top])
        return out

    def _exact_rows(self, q: np.ndarray, k: int, labels: np.ndarray) -> list[list[tuple[int, float]]]:
        scores = self._vecs[labels] @ q.T
        out = []
        for col in scores.T:
            top = _top(col, k)
            out.append([(int(labels[i]), float(col[i])) for i in top])
        return out

    def _rerank(self, q: np.ndarray, k: int, cand: np.ndarray) -> list[list[tuple[int, float]]]:
        out = []
        for qi, row in zip(q, cand, strict=True):
            labs = row[row >= 0]
            labs = labs[self._alive[labs]]
            scores = self._vecs[labs] @ qi
            top = _top(scores, k)
            out.append([(int(labs[i]), float(scores[i])) for i in top])
        return out

    def _graph_search(self, q: np.ndarray, k: int, sel: Any | None, ef: int) -> list[list[tuple[int, float]]]:
        kk = max(k, self.rerank)
        params = faiss.SearchParametersHNSW(efSearch=max(ef, kk))
        if sel is not None:
            params.sel = sel
        _, cand = self._graph.search(q, kk, params=params)
        return self._rerank(q, k, cand)

    def _code_scan(self, q: np.ndarray, k: int, sel: Any) -> list[list[tuple[int, float]]]:
        """Scan only the filter's rows of the compact codes, then re-rank exactly."""
        storage = faiss.downcast_index(self._graph.storage)
        _, cand = storage.search(q, max(k, self.rerank), params=faiss.SearchParameters(sel=sel))
        return self._rerank(q, k, cand)

    # ---------------------------------------------------------- persistence
    def save(self, prefix: str | Path) -> None:
        """Write `<prefix>.faiss`, `<prefix>.npy` and `<prefix>.json` atomically (the manifest last)."""
        prefix = Path(prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        graph_path, vec_path, manifest_path = _paths(prefix)
        with self._lock:
            tmp = graph_path.with_name(graph_path.name + ".tmp")
            faiss.write_index(self._graph if self._graph is not None else faiss.IndexFlatIP(self.dim), str(tmp))
            os.replace(tmp, graph_path)
            tmp = vec_path.with_name(vec_path.name + ".tmp")
            with tmp.open("wb") as fh:
                np.save(fh, self._vecs[: len(self._keys)])
            os.replace(tmp, vec_path)
            manifest = {
                "format": FORMAT_VERSION, "dim": self.dim, "mode": self.mode, "ntotal": len(self._keys),
                "count": len(self._labels), "ids_hash": ids_hash(self._labels), "keys": self._keys,
                "keys_sha256": keys_sha256(self._keys),
                "file_sha256": file_sha256(graph_path), "vectors_sha256": file_sha256(vec_path),
                "meta": self.meta, "params": self.params(),
            }
            tmp = manifest_path.with_name(manifest_path.name + ".tmp")
            tmp.write_text(json.dumps(manifest))
            os.replace(tmp, manifest_path)
        logger.debug("index saved to %s (%d vectors)", graph_path, len(self._labels))

    @classmethod
    def load(cls, prefix: str | Path, **overrides: Any) -> FaissIndex:
        """Read an index saved by `save`. Missing files raise FileNotFoundError, bad ones IndexCorrupt.

        `overrides` replace saved search parameters (e.g. ef_search from the current config); a different
        `storage` or `hnsw_m` than the file's raises IndexCorrupt (the graph must be rebuilt).
        """
        graph_path, vec_path, manifest_path = _paths(Path(prefix))
        if not all(p.is_file() for p in (graph_path, vec_path, manifest_path)):
            raise FileNotFoundError(f"no index at {graph_path}")
        try:
            manifest = json.loads(manifest_path.read_text())
            if not isinstance(manifest, dict):
                raise IndexCorrupt(f"index manifest {manifest_path} is not a JSON object")
            if manifest.get("format") != FORMAT_VERSION:
                raise IndexCorrupt(f"index format {manifest.get('format')} is not {FORMAT_VERSION}")
            keys, dim, saved = manifest["keys"], int(manifest["dim"]), manifest["params"]
            if not isinstance(keys, list) or not isinstance(saved, dict) \
                    or not all(k is None or isinstance(k, str) for k in keys):
                raise IndexCorrupt(f"index manifest {manifest_path} has malformed keys or parameters")
            if keys_sha256(keys) != manifest.get("keys_sha256"):
                raise IndexCorrupt(f"the keys of {manifest_path} are not those the vectors were saved with")
            if file_sha256(graph_path) != manifest["file_sha256"] or file_sha256(vec_path) != manifest["vectors_sha256"]:
                raise IndexCorrupt(f"checksum mismatch for {graph_path} or {vec_path}")
            raw = faiss.read_index(str(graph_path))
            vecs = np.load(vec_path, allow_pickle=False)
        except IndexCorrupt:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise IndexCorrupt(f"cannot read index {graph_path}: {exc}") from exc
        params = {**saved, **overrides}
        for name in ("storage", "hnsw_m"):
            if params[name] != saved[name] and manifest["mode"] == "hnsw":
                raise IndexCorrupt(f"index {graph_path} has {name}={saved[name]}, {params[name]} asked")
        live = {k: i for i, k in enumerate(keys) if k is not None}
        hnsw = isinstance(raw, faiss.IndexHNSW)
        if raw.d != dim or vecs.shape != (len(keys), dim) or vecs.dtype != np.float32 \
                or (hnsw and raw.ntotal != len(keys)) or hnsw != (manifest["mode"] == "hnsw") \
                or len(live) != manifest["count"] or ids_hash(live) != manifest["ids_hash"]:
            raise IndexCorrupt(f"index {graph_path} disagrees with its manifest")
        index = cls(dim, meta=manifest.get("meta"), **params)
        if hnsw:
            raw.hnsw.efSearch = index.ef_search
            index._graph = raw
        index._vecs = np.ascontiguousarray(vecs)
        index._alive = np.array([k is not None for k in keys], dtype=bool)
        index._keys = list(keys)
        index._labels = live
        index._dead = len(keys) - len(live)
        return index


def _paths(prefix: Path) -> tuple[Path, Path, Path]:
    return (prefix.with_name(prefix.name + ".faiss"), prefix.with_name(prefix.name + ".npy"),
            prefix.with_name(prefix.name + ".json"))
