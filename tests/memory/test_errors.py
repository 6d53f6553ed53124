"""Issue 20, item 6: the store and the index give one clear error for each bad case and lose nothing."""

from __future__ import annotations

import errno
import json
import os
import sqlite3

import numpy as np
import pytest

from ilearn.errors import InvalidInput
from ilearn.memory.base import IndexCorrupt
from ilearn.memory.index import FaissIndex
from ilearn.memory.lock import HomeLock, HomeLocked
from ilearn.memory.sqlite import SchemaError, SQLiteStore, StoreUnavailable
from ilearn.types import Event, Role, Session, Turn, TurnKind


def test_a_full_disk_is_named_and_the_store_stays_consistent(tmp_path):
    store = SQLiteStore(tmp_path / "ilearn.db")
    store.add_events([Event(None, "q", "kept", "ana")])
    pages = store._conn().execute("PRAGMA page_count").fetchone()[0]
    store._conn().execute(f"PRAGMA max_page_count = {pages + 1}")  # SQLite's own "disk full" (SQLITE_FULL)
    with pytest.raises(StoreUnavailable, match="the disk is full"):
        store.add_events([Event(None, "q", "x" * 3000, "bob") for _ in range(20)])
    assert [e.answer for e in store.list_events()] == ["kept"]  # all of the failed write undone
    assert not store.has_user("bob")
    store.close()


def test_a_read_only_home_is_named(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(sqlite3, "connect", refuse)
    with pytest.raises(StoreUnavailable, match="read-only"):
        SQLiteStore(tmp_path / "ilearn.db")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "home"))

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(HomeLocked, match="read-only"):
        HomeLock(tmp_path / "home").acquire()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes to read-only files")
def test_a_read_only_database_file_is_named(tmp_path):
    SQLiteStore(tmp_path / "ilearn.db").close()
    (tmp_path / "ilearn.db").chmod(0o400)
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StoreUnavailable, match="read-only"):
            SQLiteStore(tmp_path / "ilearn.db").add_events([Event(None, "q", "a", "ana")])
    finally:
        tmp_path.chmod(0o700)


def test_text_with_a_lone_surrogate_is_refused_before_anything_is_written(tmp_path):
    store = SQLiteStore(tmp_path / "ilearn.db")
    store.create_session(Session("ana", id="ses_1"))
    with pytest.raises(InvalidInput, match="lone surrogate"):
        store.add_turn(Turn(Role.USER, "what is \ud83d this?", TurnKind.QUESTION, session_id="ses_1"))
    with pytest.raises(InvalidInput, match="lone surrogate"):
        store.add_events([Event(None, "q", "ibu\udcffprofen", "ana")])
    with pytest.raises(InvalidInput, match="lone surrogate"):
        store.ensure_user("an\ud800a")
    assert store.get_session("ses_1").turns == [] and store.list_events() == []
    store.close()


@pytest.mark.parametrize("damage", ["DELETE FROM schema_version", "UPDATE schema_version SET version = 'two'",
                                    "INSERT INTO schema_version VALUES (1)"])
def test_a_damaged_schema_version_is_named(tmp_path, damage):
    SQLiteStore(tmp_path / "ilearn.db").close()
    conn = sqlite3.connect(tmp_path / "ilearn.db")
    conn.execute(damage)
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="schema version"):
        SQLiteStore(tmp_path / "ilearn.db")


def saved_index(tmp_path) -> tuple[FaissIndex, np.ndarray]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = FaissIndex(8)
    index.add([f"k{i}" for i in range(6)], vectors)
    index.save(tmp_path / "ix")
    return index, vectors


@pytest.mark.parametrize("manifest", [[], "a string", 3, {"format": 3, "keys": "k0"}])
def test_an_index_manifest_that_is_not_an_object_is_corrupt(tmp_path, manifest):
    saved_index(tmp_path)
    (tmp_path / "ix.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt):
        FaissIndex.load(tmp_path / "ix")


def test_a_permuted_index_manifest_is_refused(tmp_path):
    _, vectors = saved_index(tmp_path)
    manifest = json.loads((tmp_path / "ix.json").read_text())
    manifest["keys"][0], manifest["keys"][1] = manifest["keys"][1], manifest["keys"][0]  # same set, same hash
    (tmp_path / "ix.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt, match="not those the vectors were saved with"):
        FaissIndex.load(tmp_path / "ix")
