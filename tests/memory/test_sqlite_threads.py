"""The SQLite store under many threads: every write lands, in order, and a failed write lets the next writer in."""

from __future__ import annotations

import threading

import pytest

from ilearn.memory.sqlite import open_store
from ilearn.types import Role, Session, Turn, TurnKind


def test_the_store_takes_writes_of_many_threads(tmp_path):
    """32 threads append turns at once, half of them to one shared session: every write lands, each session's
    turns are numbered 0..n-1 without gaps, and a failed transaction lets the next writer in."""
    store = open_store(tmp_path / "home")
    shared = store.create_session(Session(user_id="ana"))
    own = [store.create_session(Session(user_id=f"u{i}")) for i in range(16)]
    errors: list[BaseException] = []

    def write(session_id: str) -> None:
        try:
            for k in range(25):
                store.add_turn(Turn(Role.USER, f"turn {k}", TurnKind.QUESTION, session_id=session_id))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s.id,)) for s in [*own, *[shared] * 16]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for session, n in [(shared, 16 * 25), *((s, 25) for s in own)]:
        assert [t.seq for t in store.get_session(session.id).turns] == list(range(n))
    with pytest.raises(RuntimeError), store.transaction():
        store.add_turn(Turn(Role.USER, "undone", TurnKind.QUESTION, session_id=shared.id))
        raise RuntimeError("boom")
    writer = threading.Thread(target=store.add_turn, args=(Turn(Role.USER, "next", TurnKind.QUESTION,
                                                                  session_id=shared.id),))
    writer.start()
    writer.join(10)
    assert [t.text for t in store.get_session(shared.id).turns][-1] == "next"
