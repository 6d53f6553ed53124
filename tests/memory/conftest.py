"""Fixtures for memory tests: a store (the real SQLite one, and the in-memory fake)."""

from __future__ import annotations

import faiss
import pytest
from memory_helpers import FakeStore

faiss.omp_set_num_threads(1)


@pytest.fixture(params=["sqlite", "fake"])
def mem_store(request, tmp_path):
    """The real SQLite store (skipped if not importable) and the fake, so both honour the contract."""
    if request.param == "fake":
        yield FakeStore()
        return
    sqlite = pytest.importorskip("ilearn.memory.sqlite")
    s = sqlite.SQLiteStore(tmp_path / "ilearn.db")
    yield s
    s.close()
