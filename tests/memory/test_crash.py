"""Crash safety of the SQLite store: a writer killed with SIGKILL loses no committed write and
leaves no transaction half-written."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import ilearn
from ilearn.memory.sqlite import SQLiteStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

SRC = str(Path(ilearn.__file__).resolve().parents[1])

# Each loop iteration is one transaction: a turn, an event named after the turn's seq, an embedding.
# The seq is printed only after the commit returned.
WRITER = """
import sys
import numpy as np
from ilearn.memory.sqlite import SQLiteStore
from ilearn.types import Event, Role, Session, Turn, TurnKind
store = SQLiteStore(sys.argv[1])
if not store.list_sessions():
    store.create_session(Session(user_id="u", id="ses_crash"))
while True:
    with store.transaction():
        turn = store.add_turn(Turn(Role.USER, "x" * 500, TurnKind.QUESTION, session_id="ses_crash"))
        store.add_events([Event(image=None, question="q", answer="a", user_id="u", id=f"evt_{turn.seq}")])
        store.put_embedding("text", f"evt_{turn.seq}", np.ones(64))
    print(turn.seq, flush=True)
"""

HALF_WRITTEN = """
import os, signal, sys
from ilearn.images import sha256_bytes
from ilearn.memory.sqlite import SQLiteStore
from ilearn.types import Event, ImageRef, Role, Session, Turn, TurnKind
store = SQLiteStore(sys.argv[1])
store.create_session(Session(user_id="u", id="ses_crash"))
store.add_turn(Turn(Role.USER, "committed", TurnKind.QUESTION, session_id="ses_crash"))
with store.transaction():
    data = b"image-bytes" * 1000
    ref = store.put_image(data, ImageRef(sha256_bytes(data)))
    store.add_turn(Turn(Role.USER, "half", TurnKind.QUESTION, session_id="ses_crash", image=ref))
    store.add_events([Event(image=ref, question="q", answer="a", user_id="u2") for _ in range(50)])
    store.close_session("ses_crash")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def run(script: str, db: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen([sys.executable, "-c", script, str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def test_sigkill_loses_no_committed_turn(tmp_path: Path) -> None:
    db = tmp_path / "ilearn.db"
    reported: set[int] = set()
    for kill_after in (40, 150, 5):  # three crashes; each restart recovers the previous one's log
        proc = run(WRITER, db)
        seen = 0
        for line in proc.stdout:
            reported.add(int(line))
            seen += 1
            if seen == kill_after:
                proc.send_signal(signal.SIGKILL)
                break
        reported.update(int(line) for line in proc.stdout.read().split())  # printed before the kill landed
        assert proc.wait(timeout=30) == -signal.SIGKILL, proc.stderr.read()

        assert integrity(db) == "ok"
        with SQLiteStore(db) as store:
            seqs = [t.seq for t in store.get_session("ses_crash").turns]
            assert seqs == list(range(len(seqs)))  # no gaps
            assert reported <= set(seqs)  # nothing reported as committed was lost
            # every transaction is whole: a turn, its event and its embedding, or none of them
            assert sorted(e.id for e in store.list_events()) == sorted(f"evt_{s}" for s in seqs)
            assert all(store.get_embedding("text", f"evt_{s}") is not None for s in seqs)
    assert len(reported) >= 195


def test_crash_inside_a_transaction_writes_nothing_of_it(tmp_path: Path) -> None:
    db = tmp_path / "ilearn.db"
    proc = run(HALF_WRITTEN, db)
    assert proc.wait(timeout=30) == -signal.SIGKILL, proc.stderr.read()
    assert integrity(db) == "ok"
    with SQLiteStore(db) as store:
        session = store.get_session("ses_crash")
        assert [t.text for t in session.turns] == ["committed"] and not session.closed
        assert store.count_events() == 0 and not store.has_user("u2")
        assert store._conn().execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0
