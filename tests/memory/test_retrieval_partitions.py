"""The retrieval memory on a PartitionedIndex: scopes answered by partitions, as with key filters."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from memory_helpers import FakeStore, image_ref, make_event, make_image

from ilearn.config import RetrievalConfig
from ilearn.memory.index import FaissIndex
from ilearn.memory.partitioned import PartitionedIndex
from ilearn.memory.retrieval import DualModalityMemory, partition_of
from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder
from ilearn.types import Scope

OBJECTS = [make_image(c, mark=m) for c, m in [((200, 40, 40), 4), ((40, 40, 200), 20), ((40, 200, 40), 10),
                                              ((200, 200, 40), 14), ((120, 40, 160), 24), ((30, 160, 160), 6)]]
Q = "what is this?"
SHARED_R1 = partition_of("", "r1", Scope.SHARED)


def memory(store, home, index_type=PartitionedIndex, **cfg) -> DualModalityMemory:
    config = RetrievalConfig(**{"image_weight": 0.7, "text_weight": 0.3, "threshold": 0.8, **cfg})
    return DualModalityMemory(store, StubImageEmbedder(), HashingTextEmbedder(), config, home, index_type=index_type)


def found(matches) -> list[tuple[float, str]]:
    """(score, id) best first, ties by id (events taught with one picture and question tie at 1.0)."""
    return sorted((-round(m.score, 5), m.event.id) for m in matches)


def test_same_matches_as_key_filters_over_one_index(tmp_path):
    """A random history of teaching on two robots: every user's search on every robot finds the same events with
    the same scores through partitions as through one FaissIndex with key filters, and only visible ones."""
    stores = FakeStore(), FakeStore()
    mems = [memory(s, tmp_path / name, index_type=t) for s, name, t in
            zip(stores, ("one", "parts"), (FaissIndex, PartitionedIndex), strict=True)]
    rng = random.Random(3)
    users, robots = ["alice", "bob", "carol", "dan"], ["r1", "r2"]
    for step in range(40):
        obj = rng.randrange(len(OBJECTS))
        answer = f"thing {obj}" if rng.random() < 0.8 else f"lie {step}"
        event = make_event(stores[0], OBJECTS[obj], answer, rng.choice(users), robot_id=rng.choice(robots),
                           scope=Scope.SHARED if rng.random() < 0.15 else Scope.PRIVATE)
        image_ref(stores[1], OBJECTS[obj])
        kept = [m.add(event, OBJECTS[obj]) for m in mems]
        assert kept[0].scope == kept[1].scope and kept[0].status == kept[1].status
    parts = mems[1].index.partitions()
    assert SHARED_R1 in parts and len(parts) > 4
    for user in [*users, "erin", None]:
        for robot in robots:
            for obj in OBJECTS:
                one, by_parts = (m.search(obj, Q, user, robot, k=50) for m in mems)
                assert found(by_parts) == found(one)
                assert all(m.event.user_id == user or (m.event.robot_id == robot and m.event.scope == Scope.SHARED)
                           for m in by_parts)


def test_an_event_moves_to_the_shared_partition_when_corroborated(tmp_path):
    store = FakeStore()
    mem = memory(store, tmp_path)
    a = mem.add(make_event(store, OBJECTS[0], "ibuprofen", "alice", robot_id="r1"), OBJECTS[0])
    assert mem.index.partition_of(a.id) == partition_of("alice", "r1", Scope.PRIVATE)
    assert mem.search(OBJECTS[0], Q, "carol", "r1") == []
    b = mem.add(make_event(store, OBJECTS[0], "Ibuprofen", "bob", robot_id="r1"), OBJECTS[0])
    assert b.scope == Scope.SHARED and store.get_event(a.id).scope == Scope.SHARED
    assert {mem.index.partition_of(a.id), mem.index.partition_of(b.id)} == {SHARED_R1}
    assert partition_of("alice", "r1", Scope.PRIVATE) not in mem.index.partitions()  # emptied, dropped
    assert sorted(m.event.id for m in mem.search(OBJECTS[0], Q, "carol", "r1")) == sorted([a.id, b.id])
    assert mem.search(OBJECTS[0], Q, "carol", "r2") == []


def test_a_users_events_shared_on_another_robot_stay_visible_to_them(tmp_path):
    store = FakeStore()
    mem = memory(store, tmp_path)
    there = mem.add(make_event(store, OBJECTS[1], "mug", "alice", robot_id="r2", scope=Scope.SHARED), OBJECTS[1])
    mine = mem.add(make_event(store, OBJECTS[2], "plant", "alice", robot_id="r2"), OBJECTS[2])
    assert [m.event.id for m in mem.search(OBJECTS[1], Q, "alice", "r1")] == [there.id]
    assert [m.event.id for m in mem.search(OBJECTS[2], Q, "alice", "r1")] == [mine.id]
    assert mem.search(OBJECTS[1], Q, "bob", "r1") == [] and mem.search(OBJECTS[2], Q, "bob", "r2") == []
    assert [m.event.id for m in mem.search(OBJECTS[1], Q, "bob", "r2")] == [there.id]


def test_reload_keeps_partitions_and_moves_what_the_store_changed(tmp_path):
    store = FakeStore()
    mem = memory(store, tmp_path)
    a = mem.add(make_event(store, OBJECTS[0], "ibuprofen", "alice", robot_id="r1"), OBJECTS[0])
    mem.close()
    again = memory(store, tmp_path)
    assert again.index.partition_of(a.id) == partition_of("alice", "r1", Scope.PRIVATE)
    assert again.ensure_fresh() == "loaded"
    store.update_event(replace(store.get_event(a.id), scope=Scope.SHARED))  # changed behind the index's back
    assert again.ensure_fresh() == "updated" and again.index.partition_of(a.id) == SHARED_R1
    assert [m.event.id for m in again.search(OBJECTS[0], Q, "bob", "r1")] == [a.id]


def test_a_single_index_on_disk_is_rebuilt_into_partitions_and_its_files_removed(tmp_path):
    store = FakeStore()
    one = memory(store, tmp_path, index_type=FaissIndex)
    a = one.add(make_event(store, OBJECTS[0], "ibuprofen", "alice", robot_id="r1"), OBJECTS[0])
    one.close()
    assert (tmp_path / "index" / "events.faiss").exists()
    parts = memory(store, tmp_path)
    assert a.id in parts.index and not (tmp_path / "index" / "events.faiss").exists()
    assert not (tmp_path / "index" / "events.npy").exists()
    assert [m.event.id for m in parts.search(OBJECTS[0], Q, "alice", "r1")] == [a.id]


def test_forget_user_leaves_no_vector_in_any_partition_file(tmp_path):
    # HNSW partitions with float32 graph storage: the graph file keeps its own copy of each vector
    store = FakeStore()
    mem = memory(store, tmp_path, hnsw_min_size=4, index_storage="flat")
    taught = {}
    for user in ("alice", "bob"):
        for i, obj in enumerate(OBJECTS):
            scope = Scope.SHARED if i >= 4 else Scope.PRIVATE  # 4 private each, 4 shared in all: HNSW
            e = mem.add(make_event(store, obj, f"{user} {i}", user, robot_id="r1", question=f"{user} q{i}",
                                   scope=scope), obj)
            taught[e.id] = (user, mem.index.get_vectors([e.id])[0].tobytes())
    index = mem.index
    assert isinstance(index, PartitionedIndex)
    assert {index.partition(p).mode for p in index.partitions()} == {"hnsw"}
    mem.save()
    files = lambda: [p.read_bytes() for p in (tmp_path / "index").iterdir() if p.is_file()]  # noqa: E731
    assert all(any(vec in data for data in files()) for _, vec in taught.values())
    mem.forget_user("alice")
    assert partition_of("alice", "r1", Scope.PRIVATE) not in index.partitions() and index.dead == 0
    for user, vec in taught.values():
        assert any(vec in data for data in files()) == (user == "bob")
    again = memory(store, tmp_path)
    assert again.ensure_fresh() == "loaded" and sorted(again.index.keys()) == sorted(
        k for k, (u, _) in taught.items() if u == "bob")
    assert np.isfinite(again.index.get_vectors(again.index.keys())).all()


@pytest.mark.parametrize("robot_wide", [False, True])
def test_scope_filters_name_partitions_not_keys(tmp_path, robot_wide):
    store = FakeStore()
    mem = memory(store, tmp_path)
    for user in ("alice", "bob"):
        mem.add(make_event(store, OBJECTS[0], f"{user}'s", user, robot_id="r1"), OBJECTS[0])
    scope = mem._scope_filter(None if robot_wide else "alice", "r1", robot_wide=robot_wide)
    own = {partition_of(u, "r1", Scope.PRIVATE) for u in (("alice", "bob") if robot_wide else ("alice",))}
    assert scope.whole == {SHARED_R1} | own and scope.keys == ()
