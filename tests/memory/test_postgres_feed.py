"""Several processes on one PostgreSQL store: each one's index follows the store's change feed (FleetMemory).

Two memories with their own home folders and their own store connections stand for two workers; the last test
runs the teacher in a real second process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from memory_helpers import make_event, make_image

from ilearn.config import RetrievalConfig
from ilearn.memory.feed import FleetMemory
from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder
from ilearn.types import EventStatus, Scope
from postgres_helpers import count_rows, fresh_schema

PILLS = make_image((200, 40, 40), mark=4)
MUG = make_image((40, 40, 200), mark=20)
Q = "what is this?"
CONFIG = RetrievalConfig(image_weight=0.7, text_weight=0.3, threshold=0.8)


@pytest.fixture
def url():
    yield from fresh_schema()


@pytest.fixture
def open_worker(url, tmp_path):
    """Opens a worker (its own store connection pool and home folder) on the shared schema; closes them all."""
    from ilearn.memory.postgres import PostgresStore

    opened = []

    def open_(name: str, **cfg) -> FleetMemory:
        store = PostgresStore(url, max_connections=4)
        config = RetrievalConfig(**{**CONFIG.__dict__, **cfg})
        mem = FleetMemory(store, StubImageEmbedder(), HashingTextEmbedder(), config, tmp_path / name, poll_s=0.2)
        opened.append(mem)
        return mem

    yield open_
    for mem in opened:
        mem.close()
        mem.store.close()


def pause_follower(mem: FleetMemory) -> None:
    """Stop the memory's follower thread (it catches up only when it searches or decides)."""
    mem._stop.set()
    mem._thread.join()


def answers(matches) -> list[str]:
    return [m.event.answer for m in matches]


def test_a_correction_taught_through_one_worker_is_retrieved_by_another(open_worker) -> None:
    a, b = open_worker("a"), open_worker("b")
    wrong = a.add(make_event(a.store, PILLS, "aspirin", "alice", scope=Scope.SHARED), PILLS)
    assert answers(b.search(PILLS, Q, "bob")) == ["aspirin"]  # b's next search, no waiting
    fixed = a.supersede(wrong.id, make_event(a.store, PILLS, "ibuprofen", "alice", scope=Scope.SHARED), PILLS)
    assert answers(b.search(PILLS, Q, "bob")) == ["ibuprofen"]
    assert wrong.id not in b.index and fixed.id in b.index
    assert b.store.get_event(wrong.id).status == EventStatus.SUPERSEDED


def test_the_follower_thread_indexes_without_a_search(open_worker) -> None:
    a, b = open_worker("a"), open_worker("b")
    event = a.add(make_event(a.store, MUG, "mug", "alice"), MUG)
    deadline = time.monotonic() + 20  # NOTIFY wakes b at once; the deadline only bounds a broken feed
    while event.id not in b.index and time.monotonic() < deadline:
        time.sleep(0.05)
    assert event.id in b.index and b._meta[event.id].user_id == "alice"


def test_a_forget_anywhere_empties_every_index(open_worker, tmp_path: Path) -> None:
    a, b = open_worker("a"), open_worker("b")
    taught = [a.add(make_event(a.store, img, ans, "alice", scope=Scope.SHARED), img)
              for img, ans in ((PILLS, "ibuprofen"), (MUG, "mug"))]
    kept = a.add(make_event(a.store, MUG, "cup", "carol"), MUG)
    told = {"a": 0, "b": 0}  # the process's caches of pictures empty themselves (`on_forget`)
    for name, mem in (("a", a), ("b", b)):
        mem.on_forget(lambda name=name: told.__setitem__(name, told[name] + 1))
    assert answers(b.search(PILLS, Q, "bob")) == ["ibuprofen"]
    assert len(b._query_cache) == 1  # the query's picture, by its pixels
    assert sorted(a.forget_user("alice")) == sorted(e.id for e in taught)
    b.catch_up()
    assert told["a"] >= 1 and told["b"] >= 1 and len(b._query_cache) == 0
    assert b.search(PILLS, Q, "bob") == [] and b.search(MUG, Q, "alice") == []
    assert set(b.index.keys()) == {kept.id} and b.index.dead == 0  # compacted: no tombstone keeps a vector
    saved = type(b.index).load(tmp_path / "b" / "index" / "events")  # and saved so
    assert set(saved.keys()) == {kept.id}
    rows = b.store._query("SELECT * FROM event_changes")
    assert rows and all(set(r) == {"id", "event_id", "op", "at"} for r in rows)  # ids only: no user, no text
    assert not b.store._query("SELECT 1 FROM event_changes WHERE event_id ILIKE '%alice%'")


def test_quarantine_is_decided_on_what_every_worker_taught(open_worker) -> None:
    a = open_worker("a", sharing="trusted")
    b = open_worker("b", sharing="trusted")
    pause_follower(b)  # b neither follows nor searches: only the feed read under the store's lock tells it
    a.store.ensure_user("teacher", trusted=True)
    shared = a.add(make_event(a.store, PILLS, "ibuprofen", "teacher"), PILLS)
    assert b.store.get_event(shared.id).scope == Scope.SHARED and shared.id not in b.index
    lie = b.add(make_event(b.store, PILLS, "candy", "mallory"), PILLS)
    assert lie.status == EventStatus.QUARANTINED
    assert answers(a.search(PILLS, Q, "carol")) == ["ibuprofen"] and lie.id not in a.index


def test_events_not_admitted_yet_are_not_followed(open_worker) -> None:
    a, b = open_worker("a"), open_worker("b")
    event = make_event(a.store, PILLS, "ibuprofen", "alice", scope=Scope.SHARED)
    a.store.add_events([event])  # distilled, the rules not applied yet (a worker between the two steps)
    b.catch_up()
    assert event.id not in b.index
    a.add(event, PILLS)
    assert answers(b.search(PILLS, Q, "bob")) == ["ibuprofen"]


def test_a_worker_away_past_the_pruned_changes_reloads(open_worker) -> None:
    a, b = open_worker("a"), open_worker("b")
    pause_follower(b)  # b is away
    event = a.add(make_event(a.store, PILLS, "ibuprofen", "alice", scope=Scope.SHARED), PILLS)
    assert a.store.prune_changes(older_than_s=0) >= 1 and count_rows(a.store, "event_changes") == 0
    assert a.store.changes_since(0) is None
    assert answers(b.search(PILLS, Q, "bob")) == ["ibuprofen"] and event.id in b.index


def test_a_memory_needs_a_store_with_a_feed(tmp_path: Path) -> None:
    from ilearn.memory.sqlite import SQLiteStore

    with SQLiteStore(tmp_path / "x.db") as store, pytest.raises(TypeError, match="change feed"):
        FleetMemory(store, StubImageEmbedder(), HashingTextEmbedder(), CONFIG, tmp_path / "home")


TEACHER = textwrap.dedent("""
    import sys
    from memory_helpers import make_event, make_image
    from ilearn.config import RetrievalConfig
    from ilearn.memory.feed import FleetMemory
    from ilearn.memory.postgres import PostgresStore
    from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder
    from ilearn.types import Scope

    url, home = sys.argv[1], sys.argv[2]
    store = PostgresStore(url)
    mem = FleetMemory(store, StubImageEmbedder(), HashingTextEmbedder(),
                      RetrievalConfig(image_weight=0.7, text_weight=0.3, threshold=0.8), home)
    pills = make_image((200, 40, 40), mark=4)
    wrong = mem.add(make_event(store, pills, "aspirin", "alice", scope=Scope.SHARED), pills)
    mem.supersede(wrong.id, make_event(store, pills, "ibuprofen", "alice", scope=Scope.SHARED), pills)
    print("taught", flush=True)
    sys.stdin.readline()  # stay alive until the parent has looked
    mem.close()
    store.close()
""")


def test_two_processes_share_what_they_are_taught(open_worker, url, tmp_path: Path) -> None:
    here = open_worker("here")
    assert here.search(PILLS, Q, "bob") == []
    tests = Path(__file__).resolve().parent
    env_path = f"{tests}:{tests.parent.parent / 'src'}"
    teacher = subprocess.Popen([sys.executable, "-c", TEACHER, url, str(tmp_path / "teacher")], cwd=tests,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={"PYTHONPATH": env_path, "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    try:
        assert teacher.stdout.readline().strip() == "taught"
        assert answers(here.search(PILLS, Q, "bob")) == ["ibuprofen"]
    finally:
        teacher.communicate("done\n", timeout=60)
    assert teacher.returncode == 0


def test_a_writer_holding_the_event_lock_never_waits_on_a_reader_that_waits_for_a_connection(url, tmp_path) -> None:
    """The lock order that keeps a busy worker from stalling: a connection first, then the memory's locks. With
    one pooled connection, a writer holds it and the store's event-write lock while a search thread waits for a
    connection; the writer's own catch-up must not wait for that thread (it held the follow lock while waiting
    for the pool, and both waited until the pool's timeout: every turn under load failed with "lock timeout")."""
    import threading

    from ilearn.memory.postgres import PostgresStore

    store = PostgresStore(url, max_connections=1, timeout=5.0)
    mem = FleetMemory(store, StubImageEmbedder(), HashingTextEmbedder(), CONFIG, tmp_path / "w", poll_s=0.2)
    pause_follower(mem)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            mem.catch_up()
        except BaseException as exc:  # the failure is the assertion below
            errors.append(exc)

    try:
        with store.exclusive():  # the writer: the only connection and the event-write lock
            other = threading.Thread(target=reader)
            other.start()
            time.sleep(0.5)  # the reader is waiting for the connection now
            start = time.monotonic()
            mem.catch_up()  # the writer's catch-up under the lock, as `_decision` does
            waited = time.monotonic() - start
        other.join(10)
        assert waited < 2.0 and errors == [] and not other.is_alive()
    finally:
        mem.close()
        store.close()
