"""The SQLite event store: round-trips, images, transactions, filters, forgetting, migrations, threads."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from ilearn.errors import InvalidInput, NotFound, SessionClosed
from ilearn.images import sha256_bytes
from ilearn.memory import sqlite as sqlite_mod
from ilearn.memory.sqlite import SchemaError, SQLiteStore, open_store
from ilearn.memory.store import EventStore
from ilearn.types import (
    Event,
    EventStatus,
    Feedback,
    FeedbackSource,
    ImageRef,
    Label,
    ModelStatus,
    ModelVersion,
    Role,
    Scope,
    Session,
    Turn,
    TurnKind,
)


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(tmp_path / "home")
    yield s
    s.close()


def image(store: SQLiteStore, payload: bytes) -> ImageRef:
    return store.put_image(payload, ImageRef(sha256_bytes(payload), 4, 3, "PNG"))


def session_with_turns(store: SQLiteStore, user: str = "alice", img: ImageRef | None = None) -> Session:
    session = store.create_session(Session(user_id=user, robot_id="r1"))
    store.add_turn(Turn(Role.USER, "what is this?", TurnKind.QUESTION, session_id=session.id, image=img))
    store.add_turn(Turn(Role.ASSISTANT, "a mug", TurnKind.ANSWER, session_id=session.id, model_version="m0",
                        retrieved=["evt_a", "evt_b"], precise_question="what object is this?"))
    return session


def count(store: SQLiteStore, table: str) -> int:
    with sqlite3.connect(store.path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_open_store_creates_db_with_durable_settings(tmp_path: Path) -> None:
    with open_store(tmp_path / "new" / "home") as store:
        assert store.path == tmp_path / "new" / "home" / "ilearn.db" and store.path.is_file()
        assert isinstance(store, EventStore)
        conn = store._conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        assert store.schema_version == len(sqlite_mod.MIGRATIONS)
    with pytest.raises(InvalidInput, match="synchronous"):
        SQLiteStore(tmp_path / "x.db", synchronous="OFF")


def test_session_and_turns_round_trip(store: SQLiteStore) -> None:
    img = image(store, b"pixels-1")
    session = Session(user_id="alice", robot_id="r1", created=100.0, updated=100.0)
    store.create_session(session)
    turns = [
        Turn(Role.USER, "what is this?", TurnKind.QUESTION, session_id=session.id, image=img, time=101.5),
        Turn(Role.ASSISTANT, "which one, left or right?", TurnKind.CLARIFICATION, session_id=session.id,
             model_version="mv_1", time=102.0),
        Turn(Role.USER, "the left", TurnKind.REACTION, session_id=session.id, time=103.0),
        Turn(Role.ASSISTANT, "a red mug", TurnKind.ANSWER, session_id=session.id, model_version="mv_1",
             retrieved=["evt_1", "evt_2"], precise_question="what is the left object?", time=104.0),
        Turn(Role.USER, "no, a cup", TurnKind.REACTION, session_id=session.id, time=105.0,
             feedback=Feedback(Label.NEGATIVE, 0.75, "a cup", FeedbackSource.EXPLICIT, "user corrected")),
    ]
    for i, turn in enumerate(turns):
        assert store.add_turn(turn) is turn and turn.seq == i
    session.turns, session.updated = turns, 105.0
    got = store.get_session(session.id)
    assert got == session
    assert isinstance(got.turns[0].role, Role) and isinstance(got.turns[0].kind, TurnKind)
    assert isinstance(got.turns[4].feedback.source, FeedbackSource) and got.turns[0].image == img
    assert store.get_session(session.id, with_turns=False).turns == []

    fb = Feedback(Label.POSITIVE, 0.9)
    store.update_turn_feedback(turns[2].id, fb)
    assert store.get_session(session.id).turns[2].feedback == fb
    store.update_turn_feedback(turns[2].id, None)
    assert store.get_session(session.id).turns[2].feedback is None


def test_create_session_with_turns_assigns_seq(store: SQLiteStore) -> None:
    session = Session(user_id="bob", turns=[Turn(Role.USER, "hi", TurnKind.QUESTION),
                                           Turn(Role.ASSISTANT, "hello", TurnKind.ANSWER)])
    store.create_session(session)
    got = store.get_session(session.id)
    assert [(t.seq, t.text, t.session_id) for t in got.turns] == [(0, "hi", session.id), (1, "hello", session.id)]
    assert store.has_user("bob") and not store.is_trusted("bob")
    with pytest.raises(InvalidInput, match="already exists"):
        store.create_session(Session(user_id="bob", id=session.id))


def test_event_and_model_version_round_trip(store: SQLiteStore) -> None:
    img = image(store, b"pixels-2")
    event = Event(image=img, question="what colour is the cup?", answer="blue", user_id="u1", robot_id="r2",
                  rejected=["green", "teal"], label=Label.NEGATIVE, scope=Scope.SHARED,
                  status=EventStatus.QUARANTINED, session_id="ses_1", model_version="mv_2", supersedes="evt_0",
                  provenance={"question": "trn_1", "answer": "trn_3"}, created=12.25, confidence=0.6)
    no_image = Event(image=None, question="q", answer="a", user_id="u1")
    store.add_events([event, no_image])
    assert store.get_event(event.id) == event and store.get_event(no_image.id) == no_image
    assert store.get_events([no_image.id, event.id]) == [no_image, event]
    got = store.get_event(event.id)
    assert isinstance(got.status, EventStatus) and isinstance(got.scope, Scope) and isinstance(got.label, Label)

    event.status, event.answer = EventStatus.SUPERSEDED, "navy"
    store.update_event(event)
    assert store.get_event(event.id) == event

    mv = ModelVersion(id="mv_2", parent="mv_1", recipe="dpo", settings={"lr": 1e-4, "parts": ["projector"]},
                      event_ids=[event.id], metrics={"learning": {"acc": 0.5}}, path="/x/mv_2", created=3.5)
    store.add_model_version(mv)
    assert store.get_model_version("mv_2") == mv
    mv.status, mv.metrics = ModelStatus.ACTIVE, {"learning": {"acc": 0.8}}
    store.update_model_version(mv)
    assert store.get_model_version("mv_2") == mv and isinstance(store.get_model_version("mv_2").status, ModelStatus)
    store.add_model_version(ModelVersion(id="mv_1", created=1.0))
    assert [v.id for v in store.list_model_versions()] == ["mv_1", "mv_2"]
    with pytest.raises(InvalidInput, match="already exists"):
        store.add_model_version(ModelVersion(id="mv_1"))


def test_invalid_enum_values_are_refused(store: SQLiteStore) -> None:
    with pytest.raises(InvalidInput, match="invalid status 'gone'"):
        store.add_events([Event(image=None, question="q", answer="a", user_id="u", status="gone")])
    assert count(store, "events") == 0
    with pytest.raises(InvalidInput, match="invalid status"):
        store.list_events(status="gone")


def test_images_are_stored_once(store: SQLiteStore) -> None:
    a = image(store, b"same-bytes")
    b = image(store, b"same-bytes")
    assert a == b and count(store, "images") == 1
    assert store.get_image_bytes(a.sha256) == b"same-bytes"
    with pytest.raises(InvalidInput, match="hash to"):
        store.put_image(b"other", a)
    with pytest.raises(InvalidInput, match="empty"):
        store.put_image(b"", a)
    missing = ImageRef("0" * 64)
    with pytest.raises(NotFound, match="put_image first"):
        store.add_events([Event(image=missing, question="q", answer="a", user_id="u")])
    assert count(store, "events") == 0


def test_embedding_cache(store: SQLiteStore) -> None:
    assert store.get_embedding("image", "k") is None
    store.put_embedding("image", "k", np.arange(5, dtype=np.float64))
    v = store.get_embedding("image", "k")
    assert v.dtype == np.float32 and v.tolist() == [0, 1, 2, 3, 4]
    v[0] = 9  # a writable copy
    store.put_embedding("image", "k", np.ones(3))
    assert store.get_embedding("image", "k").tolist() == [1, 1, 1]
    with pytest.raises(InvalidInput, match="1-D"):
        store.put_embedding("image", "k", np.ones((2, 2)))


def test_transaction_rolls_back_everything(store: SQLiteStore) -> None:
    session = store.create_session(Session(user_id="u"))
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.add_turn(Turn(Role.USER, "one", TurnKind.QUESTION, session_id=session.id))
            store.add_events([Event(image=None, question="q", answer="a", user_id="u")])
            with store.transaction():  # nested joins the outer one
                store.put_embedding("text", "t", np.ones(2))
            raise RuntimeError("boom")
    assert store.get_session(session.id).turns == [] and store.count_events() == 0
    assert store.get_embedding("text", "t") is None

    # a failing nested block is undone; the outer one still commits what it did
    with store.transaction():
        store.add_turn(Turn(Role.USER, "kept", TurnKind.QUESTION, session_id=session.id))
        with pytest.raises(InvalidInput):
            store.add_events([Event(image=None, question="q", answer="a", user_id="u", id="evt_x"),
                              Event(image=None, question="q", answer="a", user_id="u", id="evt_x")])
    assert [t.text for t in store.get_session(session.id).turns] == ["kept"] and store.count_events() == 0


def test_list_events_filters(store: SQLiteStore) -> None:
    def ev(i: int, **kw) -> Event:
        return Event(image=None, question=f"q{i}", answer="a", id=f"evt_{i}", created=float(10 - i), **kw)

    events = [
        ev(0, user_id="u1", robot_id="r1", scope=Scope.PRIVATE, session_id="s1"),
        ev(1, user_id="u1", robot_id="r2", scope=Scope.SHARED, status=EventStatus.SUPERSEDED),
        ev(2, user_id="u2", robot_id="r1", scope=Scope.SHARED, status=EventStatus.QUARANTINED, session_id="s2"),
        ev(3, user_id="u2", robot_id="r1", scope=Scope.PRIVATE, session_id="s1"),
    ]
    store.add_events(events)

    def ids(**kw) -> list[str]:
        return [e.id for e in store.list_events(**kw)]

    assert ids() == ["evt_3", "evt_2", "evt_1", "evt_0"]  # by created
    assert ids(user_id="u1") == ["evt_1", "evt_0"]
    assert ids(robot_id="r1") == ["evt_3", "evt_2", "evt_0"]
    assert ids(status=EventStatus.ACTIVE) == ["evt_3", "evt_0"]
    assert ids(status=[EventStatus.SUPERSEDED, EventStatus.QUARANTINED]) == ["evt_2", "evt_1"]
    assert ids(scope=Scope.SHARED) == ["evt_2", "evt_1"]
    assert ids(session_id="s1", user_id="u2") == ["evt_3"]
    assert ids(robot_id="r1", limit=2) == ["evt_3", "evt_2"]
    assert store.count_events(robot_id="r1", scope="private") == 2
    assert [e.id for e in store.iter_events(robot_id="r1", batch_size=1)] == ids(robot_id="r1")
    assert list(store.iter_events(batch_size=3)) == store.list_events()
    with pytest.raises(TypeError):
        store.count_events(colour="red")


def test_sessions_listing_close_and_distill(store: SQLiteStore) -> None:
    a = store.create_session(Session(user_id="u1", created=1.0, updated=1.0))
    b = store.create_session(Session(user_id="u2", created=2.0, updated=50.0))
    store.add_turn(Turn(Role.USER, "x", TurnKind.QUESTION, session_id=a.id, time=40.0))
    assert store.get_session(a.id).updated == 40.0

    def ids(**kw) -> list[str]:
        return [s.id for s in store.list_sessions(**kw)]

    assert ids() == [a.id, b.id] and ids(user_id="u2") == [b.id] and ids(idle_before=45.0) == [a.id]
    assert [t.text for t in store.list_sessions(user_id="u1")[0].turns] == ["x"]
    closed = store.close_session(a.id)
    assert closed.closed and len(closed.turns) == 1 and store.close_session(a.id).closed
    assert ids(open_only=True) == [b.id]
    store.mark_distilled(a.id)
    assert ids(undistilled=True) == [b.id] and store.get_session(a.id).distilled
    assert store.list_users() == ["u1", "u2"]
    store.ensure_user("u1", trusted=True)
    assert store.is_trusted("u1") and not store.is_trusted("u2")
    store.ensure_user("u1")  # does not reset trust
    assert store.is_trusted("u1")


def test_closed_session_refuses_turns(store: SQLiteStore) -> None:
    session = store.create_session(Session(user_id="u"))
    store.close_session(session.id)
    with pytest.raises(SessionClosed, match=session.id):
        store.add_turn(Turn(Role.USER, "late", TurnKind.QUESTION, session_id=session.id))
    assert store.get_session(session.id).turns == []


def test_unknown_ids_raise_not_found(store: SQLiteStore) -> None:
    cases = [
        (lambda: store.get_session("ses_x"), "unknown session 'ses_x'"),
        (lambda: store.add_turn(Turn(Role.USER, "t", TurnKind.QUESTION, session_id="ses_x")),
         "unknown session 'ses_x'"),
        (lambda: store.close_session("ses_x"), "unknown session 'ses_x'"),
        (lambda: store.mark_distilled("ses_x"), "unknown session 'ses_x'"),
        (lambda: store.update_turn_feedback("trn_x", None), "unknown turn 'trn_x'"),
        (lambda: store.get_event("evt_x"), "unknown event 'evt_x'"),
        (lambda: store.get_events(["evt_x", "evt_y"]), r"unknown events \['evt_x', 'evt_y'\]"),
        (lambda: store.update_event(Event(image=None, question="q", answer="a", user_id="u", id="evt_x")),
         "unknown event 'evt_x'"),
        (lambda: store.get_model_version("mv_x"), "unknown model version 'mv_x'"),
        (lambda: store.update_model_version(ModelVersion(id="mv_x")), "unknown model version 'mv_x'"),
        (lambda: store.get_image_bytes("abc"), "unknown image 'abc'"),
        (lambda: store.is_trusted("u_x"), "unknown user 'u_x'"),
        (lambda: store.delete_user("u_x"), "unknown user 'u_x'"),
    ]
    for call, message in cases:
        with pytest.raises(NotFound, match=message) as info:
            call()
        assert str(info.value).startswith("unknown")  # readable, not KeyError's quoted repr


def test_delete_user_removes_exactly_their_data(store: SQLiteStore) -> None:
    shared = image(store, b"shared-image")
    private = image(store, b"alice-only-image")
    bob_only = image(store, b"bob-only-image")
    a_ses = session_with_turns(store, "alice", private)
    store.add_turn(Turn(Role.USER, "secret-alice-marker", TurnKind.REACTION, session_id=a_ses.id, image=shared))
    b_ses = session_with_turns(store, "bob", bob_only)
    a_events = [Event(image=shared, question="secret-alice-marker", answer="x", user_id="alice", id="evt_a1"),
                Event(image=private, question="q", answer="y", user_id="alice", id="evt_a2")]
    b_events = [Event(image=shared, question="q", answer="z", user_id="bob", id="evt_b1")]
    store.add_events(a_events + b_events)
    for key in (shared.sha256, private.sha256, bob_only.sha256, "evt_a1", "evt_b1"):
        store.put_embedding("image", key, np.ones(4))

    assert store.delete_user("alice") == ["evt_a1", "evt_a2"]

    assert not store.has_user("alice") and store.list_users() == ["bob"]
    with pytest.raises(NotFound):
        store.get_session(a_ses.id)
    assert [e.id for e in store.list_events()] == ["evt_b1"]
    assert store.list_sessions() == [store.get_session(b_ses.id)] and len(store.get_session(b_ses.id).turns) == 2
    assert store.get_image_bytes(shared.sha256) == b"shared-image"  # bob's event still uses it
    assert store.get_image_bytes(bob_only.sha256) == b"bob-only-image"
    with pytest.raises(NotFound):
        store.get_image_bytes(private.sha256)
    assert store.get_embedding("image", private.sha256) is None and store.get_embedding("image", "evt_a1") is None
    assert store.get_embedding("image", shared.sha256) is not None
    assert store.get_embedding("image", "evt_b1") is not None
    assert count(store, "turns") == 2 and count(store, "images") == 2
    # really gone: no trace in the database file or its write-ahead log
    files = [p for p in store.path.parent.iterdir() if p.name.startswith("ilearn.db")]
    for f in files:
        data = f.read_bytes()
        assert b"secret-alice-marker" not in data and b"alice-only-image" not in data, f.name
    with pytest.raises(NotFound):
        store.delete_user("alice")


def _v1_database(path: Path) -> None:
    """A database as iLearn's schema version 1 left it, made without SQLiteStore."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    sqlite_mod._migrate_v1(conn)
    conn.execute("INSERT INTO users (id, created, trusted) VALUES ('old_user', 1.0, 1)")
    conn.execute("COMMIT")
    conn.close()


def test_migration_upgrades_an_old_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    _v1_database(path)

    def v2(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE users ADD COLUMN display_name TEXT NOT NULL DEFAULT ''")

    latest = len(sqlite_mod.MIGRATIONS) + 1
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", [*sqlite_mod.MIGRATIONS, v2])
    with SQLiteStore(path) as store:
        assert store.schema_version == latest
        assert store.has_user("old_user") and store.is_trusted("old_user")
        cols = [r[1] for r in store._conn().execute("PRAGMA table_info(users)")]
        assert "display_name" in cols
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(latest,)]


def test_failed_migration_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    _v1_database(path)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", [*sqlite_mod.MIGRATIONS, broken])
    with pytest.raises(RuntimeError, match="migration bug"):
        SQLiteStore(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'half_done'").fetchall()


def test_newer_schema_and_foreign_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (999)")
    with pytest.raises(SchemaError, match="schema version 999.*upgrade iLearn"):
        SQLiteStore(path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SchemaError, match="not a usable SQLite database"):
        SQLiteStore(junk)


def test_concurrent_threads_lose_nothing(store: SQLiteStore) -> None:
    shared = store.create_session(Session(user_id="u"))
    n_threads, n_each = 6, 25
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            own = store.create_session(Session(user_id=f"user{k}"))
            for i in range(n_each):
                store.add_turn(Turn(Role.USER, f"{k}-{i}", TurnKind.QUESTION, session_id=shared.id))
                with store.transaction():
                    store.add_turn(Turn(Role.USER, f"{i}", TurnKind.QUESTION, session_id=own.id))
                    store.add_events([Event(image=None, question=f"{k}-{i}", answer="a", user_id=f"user{k}")])
                store.list_events(user_id=f"user{k}")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    turns = store.get_session(shared.id).turns
    assert [t.seq for t in turns] == list(range(n_threads * n_each))
    assert {t.text for t in turns} == {f"{k}-{i}" for k in range(n_threads) for i in range(n_each)}
    assert store.count_events() == n_threads * n_each
    for s in store.list_sessions():
        if s.id != shared.id:
            assert [t.text for t in s.turns] == [str(i) for i in range(n_each)]
