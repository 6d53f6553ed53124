"""The PostgreSQL store beyond the shared contract: URLs, migrations, text it cannot hold, the change log."""

from __future__ import annotations

import threading

import psycopg
import pytest

from ilearn.errors import InvalidInput, NotFound
from ilearn.memory import postgres as pg
from ilearn.memory.postgres import PostgresStore, SchemaError, open_url, parse_url
from ilearn.types import Event, EventStatus, Role, Session, Turn, TurnKind
from postgres_helpers import count_rows, drop_schema, fresh_schema, server_url


@pytest.fixture
def url():
    yield from fresh_schema()


@pytest.fixture
def store(url):
    s = PostgresStore(url)
    yield s
    s.close()


def test_urls_name_the_server_and_the_schema() -> None:
    assert parse_url("postgresql://bot:pw@db:5433/fleet?schema=home_1&sslmode=require") == (
        "postgresql://bot:pw@db:5433/fleet?sslmode=require", "home_1")
    assert parse_url("postgres://db/fleet") == ("postgresql://db/fleet", "ilearn")
    with pytest.raises(InvalidInput, match="lower-case letters"):
        parse_url("postgresql://db/fleet?schema=Robert');DROP")
    with pytest.raises(InvalidInput, match="starts with postgresql://"):
        parse_url("sqlite:///x.db")


def test_an_unreachable_server_is_a_clear_error_naming_it_without_the_password() -> None:
    with pytest.raises(SchemaError, match=r"cannot reach PostgreSQL at postgresql://127.0.0.1:9/x") as info:
        PostgresStore("postgresql://bot:secret@127.0.0.1:9/x?connect_timeout=2", timeout=3)
    assert "secret" not in str(info.value)


def test_text_postgresql_cannot_hold_is_refused_and_nothing_is_written(store) -> None:
    session = store.create_session(Session(user_id="u"))
    for bad in ("nul\x00byte", "lone \ud800 surrogate"):
        with pytest.raises(InvalidInput, match="cannot be stored"):
            store.add_turn(Turn(Role.USER, bad, TurnKind.QUESTION, session_id=session.id))
        with pytest.raises(InvalidInput, match="cannot be stored"):
            store.add_events([Event(image=None, question="ok", answer="fine", user_id="u", id="evt_ok"),
                              Event(image=None, question=bad, answer="a", user_id="u")])
    assert store.get_session(session.id).turns == [] and store.count_events() == 0
    store.add_turn(Turn(Role.USER, "still works", TurnKind.QUESTION, session_id=session.id))
    assert [t.seq for t in store.get_session(session.id).turns] == [0]


def test_two_processes_opening_at_once_migrate_once(url) -> None:
    stores, errors = [], []

    def open_() -> None:
        try:
            stores.append(PostgresStore(url, max_connections=2))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(stores) == 4
    assert stores[0]._query("SELECT version FROM schema_version") == [{"version": len(pg.MIGRATIONS)}]
    for s in stores:
        s.close()


def test_a_migration_upgrades_and_a_failed_one_changes_nothing(url, monkeypatch) -> None:
    with PostgresStore(url) as store:
        store.ensure_user("old_user", trusted=True)
    released = list(pg.MIGRATIONS)
    monkeypatch.setattr(pg, "MIGRATIONS", [*released, "CREATE TABLE half_done (x INT); SELECT 1/0"])
    with pytest.raises(psycopg.errors.DivisionByZero):
        PostgresStore(url)
    monkeypatch.setattr(pg, "MIGRATIONS", [*released,
                                           "ALTER TABLE users ADD COLUMN display_name TEXT NOT NULL DEFAULT ''"])
    latest = len(released) + 1
    with PostgresStore(url) as store:
        assert store.schema_version == latest and store.is_trusted("old_user")
        assert store._query("SELECT display_name FROM users") == [{"display_name": ""}]
        assert store._query("SELECT to_regclass('half_done') AS t") == [{"t": None}]
    monkeypatch.setattr(pg, "MIGRATIONS", pg.MIGRATIONS[:1])
    with pytest.raises(SchemaError, match=f"version {latest}.*upgrade iLearn"):
        PostgresStore(url)


def test_open_url_without_create_refuses_an_empty_schema(url) -> None:
    with pytest.raises(NotFound, match="no iLearn deployment in schema"):
        open_url(url, create=False)
    open_url(url).close()
    open_url(url, create=False).close()


def test_every_event_write_is_in_the_change_log_in_commit_order(store) -> None:
    start = store.last_change()
    e1 = Event(image=None, question="q", answer="a", user_id="u", id="evt_1")
    e2 = Event(image=None, question="q", answer="b", user_id="v", id="evt_2")
    store.add_events([e1, e2])
    e1.status = EventStatus.SUPERSEDED
    store.update_event(e1)
    with pytest.raises(RuntimeError), store.transaction():  # rolled back: no change
        store.add_events([Event(image=None, question="q", answer="c", user_id="u", id="evt_3")])
        raise RuntimeError
    store.delete_user("v")
    changes = store.changes_since(start)
    assert [(c.event_id, c.op) for c in changes] == [("evt_1", "I"), ("evt_2", "I"), ("evt_1", "U"), ("evt_2", "D")]
    assert [c.id for c in changes] == sorted(c.id for c in changes) and store.last_change() == changes[-1].id
    assert store.changes_since(changes[-1].id) == []


def test_writers_in_other_schemas_never_meet(url) -> None:
    other = f"{server_url()}?schema=t_other_{id(url) % 100000}"
    try:
        with PostgresStore(url) as a, PostgresStore(other) as b:
            listener = a.listen()
            try:
                listener.wait(0.01)  # LISTEN is in place before b writes
                b.add_events([Event(image=None, question="q", answer="a", user_id="u")])
                assert listener.wait(0.5) is False  # b's NOTIFY names its own schema
                assert a.count_events() == 0 and a.last_change() == 0 and count_rows(b, "events") == 1
                a.add_events([Event(image=None, question="q", answer="a", user_id="u")])
                assert listener.wait(5) is True
            finally:
                listener.close()
    finally:
        drop_schema(other.rsplit("=", 1)[1])


def test_two_workers_storing_the_same_photo_at_once_both_get_it(url) -> None:
    """Two workers store one photo at once (clients send the same picture): the second insert waits for the
    first's transaction, does nothing on the conflict, and still returns the stored ref."""
    from memory_helpers import image_ref, make_image

    photo = make_image((200, 40, 40), mark=4)
    with PostgresStore(url) as a, PostgresStore(url) as b:
        stored, release, got, failed = threading.Event(), threading.Event(), [], []

        def first() -> None:
            with a.transaction():
                image_ref(a, photo)
                stored.set()
                release.wait(10)

        def second() -> None:
            try:
                got.append(image_ref(b, photo))
            except Exception as exc:  # the failure is the assertion below
                failed.append(exc)

        one = threading.Thread(target=first)
        one.start()
        assert stored.wait(10)
        two = threading.Thread(target=second)
        two.start()
        two.join(0.5)
        assert two.is_alive()  # waits for the first transaction's row
        release.set()
        one.join(10)
        two.join(10)
        assert failed == [] and len(got) == 1 and got[0].width == 32
        assert count_rows(a, "images") == 1


def test_a_lost_connection_is_a_clear_error_and_the_next_call_works(store) -> None:
    from ilearn.memory.sqlite import StoreUnavailable

    store.ensure_user("ana")
    with psycopg.connect(server_url(), autocommit=True) as admin:  # the server drops the store's connections
        dropped = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                                (f"ilearn {store.schema}",)).fetchall()
    assert dropped
    with pytest.raises(StoreUnavailable, match="PostgreSQL cannot serve the store now"):
        for _ in range(8):  # every pooled connection was dropped; the first use of one fails clearly
            store.ensure_user("bob")
    assert store.has_user("ana")  # the broken connections left the pool; new ones serve


WRITER = """
import sys
import numpy as np
from ilearn.memory.postgres import PostgresStore
from ilearn.types import Event, Role, Session, Turn, TurnKind
store = PostgresStore(sys.argv[1])
store.create_session(Session(user_id="u", id="ses_crash"))
while True:
    with store.transaction():
        turn = store.add_turn(Turn(Role.USER, "x" * 500, TurnKind.QUESTION, session_id="ses_crash"))
        store.add_events([Event(image=None, question="q", answer="a", user_id="u", id=f"evt_{turn.seq}_{i}")
                          for i in range(3)])
        store.put_embedding("text", f"evt_{turn.seq}", np.ones(64))
    print(turn.seq, flush=True)
"""


def test_a_writer_killed_mid_write_loses_no_commit_and_leaves_nothing_half_written(url) -> None:
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import ilearn

    env = {**os.environ, "PYTHONPATH": str(Path(ilearn.__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True, env=env)
    committed = [int(writer.stdout.readline()) for _ in range(30)]  # printed only after each commit returned
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    with PostgresStore(url) as store:
        turns = store.get_session("ses_crash").turns
        seqs = [t.seq for t in turns]
        assert seqs == list(range(len(seqs))) and set(committed) <= set(seqs)  # every commit kept, no gap
        events = store.list_events()
        assert sorted(e.id for e in events) == sorted(f"evt_{s}_{i}" for s in seqs for i in range(3))  # all or none
        assert all(store.get_embedding("text", f"evt_{s}") is not None for s in seqs)
        assert [(c.event_id, c.op) for c in store.changes_since(0)] == [(f"evt_{s}_{i}", "I") for s in seqs
                                                                         for i in range(3)]


def test_the_turn_counter_migration_numbers_on_after_the_stored_turns(url, monkeypatch) -> None:
    """A schema of version 2 (turns numbered by MAX(seq) + 1) moved to 3 (the session's next_seq): a session's
    next turn follows its stored ones, an empty session starts at 0."""
    monkeypatch.setattr(pg, "MIGRATIONS", pg.MIGRATIONS[:2])
    old = PostgresStore(url)
    session = Session(user_id="u")  # turns as a version-2 store wrote them
    old._execute("INSERT INTO users (id, created) VALUES ('u', 0)")
    old._execute("INSERT INTO sessions (id, user_id, robot_id, closed, created, updated, distilled) "
                 "VALUES (%s, 'u', 'r', FALSE, 0, 0, FALSE), ('ses_empty', 'u', 'r', FALSE, 0, 0, FALSE)",
                 (session.id,))
    for seq in range(3):
        old._execute("INSERT INTO turns (id, session_id, seq, role, kind, text, time, retrieved) "
                     "VALUES (%s, %s, %s, 'user', 'question', 'q', 0, '[]')", (f"t{seq}", session.id, seq))
    old.close()
    monkeypatch.undo()
    store = PostgresStore(url)
    try:
        assert store.schema_version == len(pg.MIGRATIONS) >= 3
        assert store.add_turn(Turn(Role.USER, "next", TurnKind.QUESTION, session_id=session.id)).seq == 3
        assert store.add_turn(Turn(Role.USER, "first", TurnKind.QUESTION, session_id="ses_empty")).seq == 0
        assert [t.seq for t in store.get_session(session.id).turns] == [0, 1, 2, 3]
    finally:
        store.close()


def test_a_follow_up_turn_and_a_close_cost_few_round_trips(url, tmp_path, monkeypatch) -> None:
    """What a fleet worker pays per turn to the server (benchmarks/store_round_trips.py has the whole dialogue):
    a follow-up turn without an image reads its session and the served version and writes its two turns, one
    statement each, with no transaction block around them."""
    from ilearn.assistant import Assistant
    from ilearn.config import Config

    sent: list[str] = []
    execute, enter = psycopg.Cursor.execute, psycopg.Transaction.__enter__
    turn_thread = threading.get_ident()  # the index's change-feed follower talks to the server on its own thread

    def counted_execute(self, query, params=None, **kwargs):
        if threading.get_ident() == turn_thread:
            sent.append(str(query).split()[0])
        return execute(self, query, params, **kwargs)

    def counted_enter(self):
        if threading.get_ident() == turn_thread:
            sent.append("BEGIN")
        return enter(self)

    config = Config(home=str(tmp_path), store=url).override(model={"backend": "stub"})
    with Assistant.from_config(config) as assistant:
        first = assistant.respond("ana", "What is this medicine called?")
        monkeypatch.setattr(psycopg.Cursor, "execute", counted_execute)
        monkeypatch.setattr(psycopg.Transaction, "__enter__", counted_enter)
        assistant.respond("ana", "No, that's ibuprofen.", session_id=first.session_id)
        follow_up = list(sent)
        sent.clear()
        [event] = assistant.close_session(first.session_id)
        monkeypatch.undo()
    assert "BEGIN" not in follow_up and len(follow_up) <= 4, follow_up
    # the close: the owner read, then one transaction that marks the session closed and distilled, reads it once
    # and writes the event (its user's row with it); the trust rules' and the index's share follow
    assert event.answer == "ibuprofen"
    assert sent[:4] == ["SELECT", "BEGIN", "UPDATE", "SELECT"], sent  # owner; mark; the session with its turns
    assert len(sent) - sent.count("BEGIN") <= 14 and sent.count("BEGIN") <= 4, sent  # 35 round trips before: 28
