from __future__ import annotations

import threading

import numpy as np
import pytest

from ilearn.errors import InvalidInput
from ilearn.memory.index import FaissIndex, IndexCorrupt


def unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def keys(n: int, start: int = 0) -> list[str]:
    return [f"evt_{i}" for i in range(start, start + n)]


@pytest.fixture(params=["flat", "hnsw"])
def index(request) -> FaissIndex:
    ix = FaissIndex(16, hnsw_min_size=10**9 if request.param == "flat" else 50, ef_search=64)
    ix.add(keys(200), unit(200, 16))
    assert ix.mode == request.param
    return ix


def test_add_search_returns_the_vector_itself_first(index):
    x = unit(200, 16)
    hits = index.search(x[:5], 3)
    assert [h[0][0] for h in hits] == keys(5)
    assert hits[0][0][1] == pytest.approx(1.0, abs=1e-5)
    assert len(hits[0]) == 3 and hits[0][0][1] >= hits[0][1][1] >= hits[0][2][1]


def test_remove_without_rebuild_and_never_returned(index):
    x = unit(200, 16)
    assert index.remove(["evt_3", "nope"]) == 1
    assert "evt_3" not in index and len(index) == 199
    assert all(k != "evt_3" for k, _ in index.search(x[3], 50)[0])
    index.add(["evt_3"], x[3:4])  # re-insert after removal
    assert index.search(x[3], 1)[0][0][0] == "evt_3"


def test_filter_keeps_only_allowed(index):
    x = unit(200, 16)
    allowed = ["evt_10", "evt_20", "evt_30"]
    hits = index.search(x[3], 10, allowed=allowed)[0]
    assert sorted(k for k, _ in hits) == sorted(allowed)
    assert index.search(x[3], 5, allowed=[])[0] == []
    prepared = index.make_filter(["evt_3", "evt_4"])
    assert index.search(x[3], 5, allowed=prepared)[0][0][0] == "evt_3"


def test_replace_key_updates_vector(index):
    x = unit(200, 16)
    index.add(["evt_0"], x[7:8])
    assert len(index) == 200
    np.testing.assert_allclose(index.get_vectors(["evt_0"])[0], x[7], atol=1e-6)


def test_compaction_after_many_removals(index):
    index.remove(keys(150))
    assert len(index) == 50 and index._dead == 0  # compacted: more than a quarter was dead
    x = unit(200, 16)
    assert index.search(x[160], 1)[0][0][0] == "evt_160"


def test_bad_input_is_refused(index):
    with pytest.raises(InvalidInput):
        index.add(["a"], np.zeros((1, 8), np.float32))
    with pytest.raises(InvalidInput):
        index.add(["a"], np.full((1, 16), np.nan, np.float32))
    with pytest.raises(InvalidInput):
        index.search(np.zeros(8, np.float32), 3)
    assert len(index) == 200


def test_save_load_round_trip(index, tmp_path):
    index.remove(["evt_1"])
    index.save(tmp_path / "ix")
    loaded = FaissIndex.load(tmp_path / "ix")
    assert loaded.mode == index.mode and len(loaded) == 199 and "evt_1" not in loaded
    x = unit(200, 16)
    assert loaded.search(x[9], 1)[0][0][0] == "evt_9"
    loaded.add(["new"], x[1:2])  # still writable after load
    assert loaded.search(x[1], 1)[0][0][0] == "new"


def test_load_detects_missing_and_corrupt(index, tmp_path):
    with pytest.raises(FileNotFoundError):
        FaissIndex.load(tmp_path / "nothing")
    index.save(tmp_path / "ix")
    data = (tmp_path / "ix.faiss").read_bytes()
    (tmp_path / "ix.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexCorrupt):
        FaissIndex.load(tmp_path / "ix")
    index.save(tmp_path / "ix")
    (tmp_path / "ix.json").write_text("{not json")
    with pytest.raises(IndexCorrupt):
        FaissIndex.load(tmp_path / "ix")


def test_switches_to_hnsw_at_min_size():
    ix = FaissIndex(8, hnsw_min_size=100)
    ix.add(keys(99), unit(99, 8))
    assert ix.mode == "flat"
    ix.add(keys(1, 99), unit(1, 8, seed=5))
    assert ix.mode == "hnsw" and len(ix) == 100


def test_hnsw_recall_vs_exact_on_random_data():
    d, n = 32, 3000
    x, q = unit(n, d, 1), unit(50, d, 2)
    ix = FaissIndex(d, hnsw_min_size=100, ef_search=64)
    ix.add(keys(n), x)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    got = ix.search(q, 10)
    recall = np.mean([len({f"evt_{i}" for i in t} & {k for k, _ in g}) / 10 for t, g in zip(truth, got, strict=True)])
    assert recall >= 0.9
    # a restrictive filter (2%) is answered exactly
    allowed = keys(60)
    got = ix.search(q, 10, allowed=allowed)
    truth = np.argsort(-(q @ x[:60].T), axis=1)[:, :10]
    assert all([k for k, _ in g] == [f"evt_{i}" for i in t] for t, g in zip(truth, got, strict=True))


def clustered(n: int, d: int, seed: int, views: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors in objects of ~`views` noisy views each, and 40 new views of stored objects."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // views, d)).astype(np.float32)

    def views_of(idx: np.ndarray) -> np.ndarray:
        v = centres[idx] + 0.6 * rng.standard_normal((len(idx), d)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    obj = rng.integers(0, len(centres), n)
    return views_of(obj), views_of(obj[rng.integers(0, n, 40)])


def recall_at_10(got: list[list[tuple[str, float]]], truth: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean([len({f"evt_{labels[i]}" for i in t} & {k for k, _ in g}) / 10
                          for t, g in zip(truth, got, strict=True)]))


@pytest.mark.parametrize("storage", ["sq8", "fp16", "flat"])
def test_every_search_path_matches_exact_search(storage):
    """HNSW (unfiltered), the code scan (restrictive filter) and filtered HNSW (wide filter): recall@10 against
    exact numpy search, exact scores, and only allowed keys."""
    d, n = 96, 3000
    x, q = clustered(n, d, seed=3)
    ix = FaissIndex(d, hnsw_min_size=500, storage=storage, gather_max=50, exact_filter_fraction=0.2)
    ix.add(keys(n), x)
    assert ix.mode == "hnsw"
    every = np.arange(n)
    assert recall_at_10(ix.search(q, 10), np.argsort(-(q @ x.T), axis=1)[:, :10], every) >= 0.95
    rng = np.random.default_rng(4)
    for share in (0.1, 0.5):  # 10%: code scan + re-rank; 50%: HNSW with the filter and a wider beam
        kept = np.sort(rng.choice(n, int(n * share), replace=False))
        got = ix.search(q, 10, allowed=ix.make_filter([f"evt_{i}" for i in kept]))
        allowed = {f"evt_{i}" for i in kept}
        assert all(k in allowed for row in got for k, _ in row)
        assert recall_at_10(got, np.argsort(-(q @ x[kept].T), axis=1)[:, :10], kept) >= 0.95
        for row in got:  # scores are exact inner products, best first
            vecs = ix.get_vectors([k for k, _ in row])
            np.testing.assert_allclose([s for _, s in row], vecs @ q[got.index(row)], rtol=1e-5, atol=1e-5)
            assert all(a[1] >= b[1] for a, b in zip(row, row[1:], strict=False))


def test_removed_vectors_never_returned_by_any_path():
    d, n = 32, 1200
    x, _ = clustered(n, d, seed=5)
    ix = FaissIndex(d, hnsw_min_size=200, gather_max=20, max_dead_fraction=0.9)
    ix.add(keys(n), x)
    gone = [f"evt_{i}" for i in range(0, n, 3)]
    ix.remove(gone)
    assert ix._dead == len(gone)  # tombstones, no rebuild
    wide = ix.make_filter(keys(n))  # all keys: HNSW with the filter
    narrow = ix.make_filter(keys(100))  # code scan
    for allowed in (None, wide, narrow):
        got = ix.search(x[:30], 10, allowed=allowed)
        assert not {k for row in got for k, _ in row} & set(gone)
        assert all(len(row) == 10 for row in got)


def test_load_refuses_an_other_format_or_storage(tmp_path):
    ix = FaissIndex(16, hnsw_min_size=50)
    ix.add(keys(200), unit(200, 16))
    ix.save(tmp_path / "ix")
    with pytest.raises(IndexCorrupt):
        FaissIndex.load(tmp_path / "ix", storage="flat")  # the graph holds sq8 codes
    assert FaissIndex.load(tmp_path / "ix", ef_search=128).ef_search == 128
    vec = tmp_path / "ix.npy"
    data = bytearray(vec.read_bytes())
    data[-5] ^= 0xFF
    vec.write_bytes(bytes(data))
    with pytest.raises(IndexCorrupt):
        FaissIndex.load(tmp_path / "ix")
    vec.unlink()
    with pytest.raises(FileNotFoundError):
        FaissIndex.load(tmp_path / "ix")


def test_bad_settings_are_refused():
    with pytest.raises(InvalidInput):
        FaissIndex(8, storage="pq")
    with pytest.raises(InvalidInput):
        FaissIndex(8, rerank=0)


def test_concurrent_inserts_and_queries():
    ix = FaissIndex(16, hnsw_min_size=300)
    x = unit(1000, 16)
    ix.add(keys(100), x[:100])
    errors: list[Exception] = []

    def writer():
        try:
            for i in range(100, 1000, 10):
                ix.add(keys(10, i), x[i:i + 10])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    allowed = keys(50)
    while t.is_alive():
        assert ix.search(x[0], 1)[0][0][0] == "evt_0"
        assert {k for k, _ in ix.search(x[0], 10, allowed=allowed)[0]} <= set(allowed)
    t.join()
    assert not errors and len(ix) == 1000 and ix.mode == "hnsw"


def test_make_filter_ignores_unknown_and_duplicate_keys(index):
    f = index.make_filter(["evt_5", "evt_5", "nope", "evt_2"])
    assert f.count == 2 and list(f.labels) == sorted(f.labels)
    assert {k for k, _ in index.search(unit(200, 16)[5], 10, allowed=f)[0]} == {"evt_2", "evt_5"}
    assert index.make_filter(k for k in ["evt_7"]).count == 1  # any iterable
