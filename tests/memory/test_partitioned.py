"""PartitionedIndex: scoped search by whole partitions, exact merging, compaction and files per partition."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ilearn.errors import InvalidInput
from ilearn.memory.base import IndexCorrupt, PartitionedVectorIndex, VectorIndex
from ilearn.memory.index import FaissIndex
from ilearn.memory.partitioned import PartitionedIndex

D = 16


def unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


PARTS = ("robotA", "robotB", "alice@A", "bob@A", "alice@B")
SIZES = (300, 250, 40, 60, 20)  # the robots' partitions above hnsw_min_size (HNSW), the users' below (exact)


@pytest.fixture(params=["sq8", "flat"])
def index(request) -> tuple[PartitionedIndex, dict[str, np.ndarray], dict[str, str]]:
    """A PartitionedIndex over PARTS, its vectors by key and the partition of each key."""
    ix = PartitionedIndex(D, hnsw_min_size=100, ef_search=256, storage=request.param)
    x = unit(sum(SIZES))
    vectors, where, start = {}, {}, 0
    for name, size in zip(PARTS, SIZES, strict=True):
        keys = [f"{name}/{i}" for i in range(size)]
        ix.add(keys, x[start:start + size], partition=name)
        for i, k in enumerate(keys):
            vectors[k], where[k] = x[start + i], name
        start += size
    return ix, vectors, where


def exact(vectors: dict[str, np.ndarray], keep: set[str], q: np.ndarray, k: int) -> list[str]:
    keys = sorted(keep)
    s = np.stack([vectors[key] for key in keys]) @ q
    return [keys[i] for i in np.argsort(-s, kind="stable")[:k]]


def test_is_a_partitioned_vector_index_and_faiss_is_not():
    assert isinstance(PartitionedIndex(4), PartitionedVectorIndex) and isinstance(PartitionedIndex(4), VectorIndex)
    assert not isinstance(FaissIndex(4), PartitionedVectorIndex)
    with pytest.raises(InvalidInput):
        PartitionedIndex(4, storage="pq")


def test_partitions_are_exact_or_hnsw_by_their_own_size(index):
    ix, _, _ = index
    assert ix.partitions() == dict(zip(PARTS, SIZES, strict=True)) and len(ix) == sum(SIZES)
    assert [ix.partition(p).mode for p in PARTS] == ["hnsw", "hnsw", "flat", "flat", "flat"]


def test_scoped_search_returns_only_the_scope_and_agrees_with_exact_search(index):
    ix, vectors, where = index
    extra = ["alice@B/3", "robotB/7"]  # single keys beside whole partitions (alice's events shared elsewhere)
    scope = ix.make_filter(extra, partitions=["robotA", "alice@A"])
    keep = {k for k, p in where.items() if p in ("robotA", "alice@A")} | set(extra)
    assert scope.count == len(keep)
    # queries: every out-of-scope vector itself (its own best match elsewhere), then in-scope ones
    outside = [k for k in vectors if k not in keep]
    queries = [vectors[k] for k in outside] + [vectors[k] for k in sorted(keep)[::7]]
    for q, hits in zip(queries, ix.search(np.stack(queries), 10, allowed=scope), strict=True):
        got = [k for k, _ in hits]
        assert set(got) <= keep
        assert got == exact(vectors, keep, q, 10)
        assert [s for _, s in hits] == pytest.approx([float(vectors[k] @ q) for k in got], abs=1e-5)


def test_unfiltered_and_key_filtered_search_merge_every_partition(index):
    ix, vectors, where = index
    q = unit(20, seed=1)
    for qi, hits in zip(q, ix.search(q, 10), strict=True):
        assert [k for k, _ in hits] == exact(vectors, set(vectors), qi, 10)
    keys = [k for k in vectors if k.endswith("/5") or k.endswith("/11")]  # a plain key filter over partitions
    for qi, hits in zip(q, ix.search(q, 3, allowed=keys), strict=True):
        assert [k for k, _ in hits] == exact(vectors, set(keys), qi, 3)
    assert ix.search(q[0], 5, allowed=ix.make_filter(partitions=["nobody"])) == [[]]


def test_move_changes_the_scope_and_stale_filters_are_rebuilt(index):
    ix, vectors, _ = index
    mine = ix.make_filter(partitions=["alice@A"])
    generation = ix.generation
    assert ix.move(["alice@A/0", "nope"], "robotA") == 1 and ix.move(["alice@A/1"], "alice@A") == 0
    assert ix.partition_of("alice@A/0") == "robotA" and ix.generation > generation
    q = vectors["alice@A/0"]
    assert "alice@A/0" not in [k for k, _ in ix.search(q, 50, allowed=mine)[0]]
    assert ix.search(q, 1, allowed=ix.make_filter(partitions=["robotA"]))[0][0][0] == "alice@A/0"
    np.testing.assert_array_equal(ix.get_vectors(["alice@A/0"])[0], q)
    # an add of a key held elsewhere moves it too (replacing its vector)
    ix.add(["bob@A/0"], vectors["bob@A/0"][None], partition="alice@A")
    assert ix.partitions()["bob@A"] == SIZES[3] - 1 and ix.partition_of("bob@A/0") == "alice@A"


def test_compaction_keeps_every_live_vector(index):
    ix, vectors, where = index
    gone = [k for i, k in enumerate(vectors) if i % 5 == 0]  # under max_dead_fraction: no compaction yet
    assert ix.remove(gone + ["nope"]) == len(gone)
    assert ix.dead == len(gone)
    ix.compact()
    assert ix.dead == 0 and sorted(ix.keys()) == sorted(set(vectors) - set(gone))
    live = sorted(ix.keys())
    np.testing.assert_array_equal(ix.get_vectors(live), np.stack([vectors[k] for k in live]))
    for name in PARTS:  # each live vector is found by itself, in its partition
        keys = [k for k in live if where[k] == name]
        hits = ix.search(np.stack([vectors[k] for k in keys]), 1, allowed=ix.make_filter(partitions=[name]))
        assert [h[0][0] for h in hits] == keys
    assert ix.remove([k for k in live if where[k] == "alice@B"]) and "alice@B" not in ix.partitions()


def test_save_writes_changed_partitions_and_deletes_the_files_of_removed_ones(index, tmp_path):
    ix, vectors, where = index
    ix.save(tmp_path / "ix")
    files = lambda: sorted(p.name for p in tmp_path.iterdir())  # noqa: E731
    first = files()
    assert len(first) == 1 + 3 * len(PARTS)
    ix.save(tmp_path / "ix")
    assert files() == first  # nothing changed, nothing rewritten
    bob = [k for k in vectors if where[k] == "bob@A"]
    ix.remove(bob)  # a forgotten user: their partition and its files go
    ix.remove(["robotA/1"])
    ix.compact()
    ix.save(tmp_path / "ix")
    manifest = json.loads((tmp_path / "ix.json").read_text())
    assert [p["name"] for p in manifest["parts"]] == sorted(set(PARTS) - {"bob@A"})
    assert len(files()) == 1 + 3 * (len(PARTS) - 1) and files() != first
    needles = [vectors[k].tobytes() for k in [*bob, "robotA/1"]]
    assert not any(n in p.read_bytes() for p in tmp_path.iterdir() for n in needles)
    again = PartitionedIndex.load(tmp_path / "ix")
    assert sorted(again.keys()) == sorted(ix.keys()) and again.partitions() == ix.partitions()
    q = unit(5, seed=2)
    assert again.search(q, 10) == ix.search(q, 10)


def test_load_refuses_damaged_or_foreign_files(index, tmp_path):
    ix, _, _ = index
    with pytest.raises(FileNotFoundError):
        PartitionedIndex.load(tmp_path / "nothing")
    ix.save(tmp_path / "ix")
    manifest = json.loads((tmp_path / "ix.json").read_text())
    number = manifest["parts"][2]["file"]
    part = tmp_path / f"ix.p{number}.npy"
    data = part.read_bytes()
    part.write_bytes(data[:-4] + b"\0\0\0\0")
    with pytest.raises(IndexCorrupt):
        PartitionedIndex.load(tmp_path / "ix")
    part.write_bytes(data)
    PartitionedIndex.load(tmp_path / "ix")
    swapped = {**manifest, "parts": [{**manifest["parts"][0], "name": "robotB"}, *manifest["parts"][1:]]}
    (tmp_path / "ix.json").write_text(json.dumps(swapped))  # a partition under another's name
    with pytest.raises(IndexCorrupt):
        PartitionedIndex.load(tmp_path / "ix")
    (tmp_path / "ix.json").write_text(json.dumps({**manifest, "count": manifest["count"] + 1}))
    with pytest.raises(IndexCorrupt):
        PartitionedIndex.load(tmp_path / "ix")
    single = FaissIndex(D)
    single.add(["a"], unit(1))
    single.save(tmp_path / "one")
    with pytest.raises(IndexCorrupt, match="not the manifest of a partitioned index"):
        PartitionedIndex.load(tmp_path / "one")
    ix.save(tmp_path / "one")  # replaces the single index's files, which kept their own vectors
    assert not (tmp_path / "one.faiss").exists() and not (tmp_path / "one.npy").exists()
    assert len(PartitionedIndex.load(tmp_path / "one")) == len(ix)


def test_bad_input_changes_nothing():
    ix = PartitionedIndex(D)
    with pytest.raises(InvalidInput):
        ix.add(["a"], np.full((1, D), np.nan, dtype=np.float32), partition="p")
    with pytest.raises(InvalidInput):
        ix.add(["a", "a"], unit(2), partition="p")
    with pytest.raises(InvalidInput):
        ix.add(["a"], unit(1)[:, :4], partition="p")
    assert len(ix) == 0 and ix.partitions() == {}
    with pytest.raises(InvalidInput):
        ix.search(unit(1), 0)
    with pytest.raises(InvalidInput, match="NaN"):
        ix.search(np.full(D, np.nan, dtype=np.float32), 3)
    with pytest.raises(InvalidInput, match="dim"):
        ix.search(unit(1)[:, :4], 3)
