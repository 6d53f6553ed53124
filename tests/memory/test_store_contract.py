"""The EventStore contract, run against every store backend: SQLite and PostgreSQL (tests/postgres_helpers.py).

Each PostgreSQL test gets a schema of its own, so runs side by side never meet. Backend-specific behaviour
(files, migrations, the change feed) is tested in test_sqlite.py and test_postgres*.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from ilearn import plugins
from ilearn.config import store_scheme
from ilearn.errors import InvalidInput, NotFound, SessionClosed
from ilearn.images import sha256_bytes
from ilearn.memory.store import EventStore, UserRecord, upsert_event
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
from postgres_helpers import count_rows, fresh_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path):
    """A URL of an empty store of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ilearn.db'}"
    else:
        yield from fresh_schema()


@pytest.fixture
def store(store_url: str):
    s = plugins.create("store", store_scheme(store_url), store_url)
    yield s
    s.close()


def image(store, payload: bytes) -> ImageRef:
    return store.put_image(payload, ImageRef(sha256_bytes(payload), 4, 3, "PNG"))


def session_with_turns(store, user: str = "alice", img: ImageRef | None = None) -> Session:
    session = store.create_session(Session(user_id=user, robot_id="r1"))
    store.add_turn(Turn(Role.USER, "what is this?", TurnKind.QUESTION, session_id=session.id, image=img))
    store.add_turn(Turn(Role.ASSISTANT, "a mug", TurnKind.ANSWER, session_id=session.id, model_version="m0",
                        retrieved=["evt_a", "evt_b"], precise_question="what object is this?"))
    return session


def test_opens_by_url_reopens_and_keeps_data(store_url: str) -> None:
    scheme = store_scheme(store_url)
    with pytest.raises(NotFound, match="no iLearn deployment"):
        plugins.create("store", scheme, store_url, create=False)
    first = plugins.create("store", scheme, store_url)
    assert isinstance(first, EventStore) and first.schema_version >= 1
    first.ensure_user("ana", trusted=True)
    first.close()
    with pytest.raises(Exception, match="closed"):
        first.has_user("ana")
    again = plugins.create("store", scheme, store_url, create=False)
    assert again.is_trusted("ana") and again.schema_version == first.schema_version
    again.close()


def test_session_and_turns_round_trip(store) -> None:
    img = image(store, b"pixels-1")
    session = Session(user_id="alice", robot_id="r1", created=100.0, updated=100.0)
    store.create_session(session)
    turns = [
        Turn(Role.USER, "what is this?", TurnKind.QUESTION, session_id=session.id, image=img, time=101.5),
        Turn(Role.ASSISTANT, "which one, left or right?", TurnKind.CLARIFICATION, session_id=session.id,
             model_version="mv_1", time=102.0),
        Turn(Role.USER, "the left", TurnKind.REACTION, session_id=session.id, time=103.0),
        Turn(Role.ASSISTANT, "a red mug", TurnKind.ANSWER, session_id=session.id, model_version="mv_1",
             retrieved=["evt_1", "evt_2"], precise_question="what is the left object?", time=104.0,
             answered_from="evt_2"),
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
    with pytest.raises(InvalidInput, match="already exists"):
        store.add_turn(turns[0])


def test_create_session_with_turns_assigns_seq(store) -> None:
    session = Session(user_id="bob", turns=[Turn(Role.USER, "hi", TurnKind.QUESTION),
                                           Turn(Role.ASSISTANT, "hello", TurnKind.ANSWER)])
    store.create_session(session)
    got = store.get_session(session.id)
    assert [(t.seq, t.text, t.session_id) for t in got.turns] == [(0, "hi", session.id), (1, "hello", session.id)]
    assert store.has_user("bob") and not store.is_trusted("bob")
    with pytest.raises(InvalidInput, match="already exists"):
        store.create_session(Session(user_id="bob", id=session.id))


def test_event_and_model_version_round_trip(store) -> None:
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
    upsert_event(store, Event(image=None, question="q2", answer="b", user_id="u2", id="evt_up"))
    upsert_event(store, Event(image=None, question="q2", answer="c", user_id="u2", id="evt_up"))
    assert store.get_event("evt_up").answer == "c"
    with pytest.raises(InvalidInput, match="already exists"):
        store.add_events([no_image])

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


def test_invalid_values_are_refused_and_nothing_is_written(store) -> None:
    with pytest.raises(InvalidInput, match="invalid status 'gone'"):
        store.add_events([Event(image=None, question="q", answer="a", user_id="u", status="gone")])
    with pytest.raises(InvalidInput, match="user id"):
        store.add_events([Event(image=None, question="q", answer="a", user_id="")])
    with pytest.raises(InvalidInput, match="user id"):
        store.ensure_user("")
    assert count_rows(store, "events") == 0
    with pytest.raises(InvalidInput, match="invalid status"):
        store.list_events(status="gone")


def test_images_are_stored_once(store) -> None:
    a = image(store, b"same-bytes")
    b = image(store, b"same-bytes")
    assert a == b and count_rows(store, "images") == 1
    assert store.get_image_bytes(a.sha256) == b"same-bytes"
    with pytest.raises(InvalidInput, match="hash to"):
        store.put_image(b"other", a)
    with pytest.raises(InvalidInput, match="empty"):
        store.put_image(b"", a)
    missing = ImageRef("0" * 64)
    with pytest.raises(NotFound, match="put_image first"):
        store.add_events([Event(image=missing, question="q", answer="a", user_id="u")])
    assert count_rows(store, "events") == 0


def test_rows_naming_a_missing_image_or_a_taken_id_are_refused_and_write_nothing(store) -> None:
    """The PostgreSQL store leaves these checks to its constraints (no round trip of their own): the same errors
    as SQLite's, nothing written, no turn number used up."""
    from dataclasses import replace

    missing = ImageRef("0" * 64)
    session = store.create_session(Session(user_id="u"))
    with pytest.raises(NotFound, match="put_image first"):
        store.add_turn(Turn(Role.USER, "q", TurnKind.QUESTION, session_id=session.id, image=missing))
    first = store.add_turn(Turn(Role.USER, "one", TurnKind.QUESTION, session_id=session.id))
    with pytest.raises(InvalidInput, match=f"turn {first.id!r} already exists"):
        store.add_turn(Turn(Role.USER, "again", TurnKind.QUESTION, session_id=session.id, id=first.id))
    store.add_turn(Turn(Role.ASSISTANT, "two", TurnKind.ANSWER, session_id=session.id))
    assert [(t.seq, t.text) for t in store.get_session(session.id).turns] == [(0, "one"), (1, "two")]
    with pytest.raises(NotFound, match="unknown session 'ses_none'"):
        store.add_turn(Turn(Role.USER, "q", TurnKind.QUESTION, session_id="ses_none"))
    store.close_session(session.id)
    with pytest.raises(SessionClosed):
        store.add_turn(Turn(Role.USER, "late", TurnKind.QUESTION, session_id=session.id))
    assert len(store.get_session(session.id).turns) == 2

    event = Event(image=None, question="q", answer="a", user_id="u")
    store.add_events([event])
    with pytest.raises(NotFound, match="put_image first"):
        store.update_event(replace(event, image=missing, answer="b"))
    assert store.get_event(event.id).answer == "a"
    with pytest.raises(NotFound, match="put_image first"):
        store.put_user_record(UserRecord("u", "concept", "c1", {"name": "Bobby"}, missing))
    assert store.list_user_records("u", "concept") == []


def test_embedding_cache(store) -> None:
    assert store.get_embedding("image", "k") is None
    store.put_embedding("image", "k", np.arange(5, dtype=np.float64))
    v = store.get_embedding("image", "k")
    assert v.dtype == np.float32 and v.tolist() == [0, 1, 2, 3, 4]
    v[0] = 9  # a writable copy
    store.put_embedding("image", "k", np.ones(3))
    assert store.get_embedding("image", "k").tolist() == [1, 1, 1]
    with pytest.raises(InvalidInput, match="1-D"):
        store.put_embedding("image", "k", np.ones((2, 2)))


def test_transaction_rolls_back_everything(store) -> None:
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


def test_list_events_filters_and_order(store) -> None:
    def ev(i: int, **kw) -> Event:
        return Event(image=None, question=f"q{i}", answer="a", id=f"evt_{i}", created=float(10 - i), **kw)

    store.add_events([
        ev(0, user_id="u1", robot_id="r1", scope=Scope.PRIVATE, session_id="s1"),
        ev(1, user_id="u1", robot_id="r2", scope=Scope.SHARED, status=EventStatus.SUPERSEDED),
        ev(2, user_id="u2", robot_id="r1", scope=Scope.SHARED, status=EventStatus.QUARANTINED, session_id="s2"),
        ev(3, user_id="u2", robot_id="r1", scope=Scope.PRIVATE, session_id="s1"),
    ])
    # the same time: ties are broken by id, byte-wise (upper case before lower case, whatever the locale)
    store.add_events([Event(image=None, question="t", answer="a", user_id="u3", id=i, created=0.5)
                      for i in ("evt_b", "evt_B", "evt_a")])

    def ids(**kw) -> list[str]:
        return [e.id for e in store.list_events(**kw)]

    assert ids() == ["evt_B", "evt_a", "evt_b", "evt_3", "evt_2", "evt_1", "evt_0"]
    assert ids(user_id="u1") == ["evt_1", "evt_0"]
    assert ids(robot_id="r1") == ["evt_3", "evt_2", "evt_0"]
    assert ids(status=EventStatus.ACTIVE, user_id="u2") == ["evt_3"]
    assert ids(status=[EventStatus.SUPERSEDED, EventStatus.QUARANTINED]) == ["evt_2", "evt_1"]
    assert ids(scope=Scope.SHARED) == ["evt_2", "evt_1"]
    assert ids(session_id="s1", user_id="u2") == ["evt_3"]
    assert ids(robot_id="r1", limit=2) == ["evt_3", "evt_2"]
    assert store.count_events(robot_id="r1", scope="private") == 2
    assert [e.id for e in store.iter_events(robot_id="r1", batch_size=1)] == ids(robot_id="r1")
    assert list(store.iter_events(batch_size=2)) == store.list_events()
    with pytest.raises(TypeError):
        store.count_events(colour="red")


def test_sessions_listing_close_and_distill(store) -> None:
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
    assert store.mark_distilled(a.id) is True and store.mark_distilled(a.id) is False  # marked once
    assert ids(undistilled=True) == [b.id] and store.get_session(a.id).distilled
    assert store.list_users() == ["u1", "u2"]
    store.ensure_user("u1", trusted=True)
    assert store.is_trusted("u1") and not store.is_trusted("u2")
    store.ensure_user("u1")  # does not reset trust
    assert store.is_trusted("u1")
    store.ensure_user("u1", trusted=False)
    assert not store.is_trusted("u1")


def test_closed_session_refuses_turns(store) -> None:
    session = store.create_session(Session(user_id="u"))
    store.close_session(session.id)
    with pytest.raises(SessionClosed, match=session.id):
        store.add_turn(Turn(Role.USER, "late", TurnKind.QUESTION, session_id=session.id))
    assert store.get_session(session.id).turns == []


def test_unknown_ids_raise_not_found(store) -> None:
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
        assert str(info.value).startswith("unknown")


def test_delete_user_removes_exactly_their_data(store) -> None:
    shared = image(store, b"shared-image")
    private = image(store, b"alice-only-image")
    bob_only = image(store, b"bob-only-image")
    a_ses = session_with_turns(store, "alice", private)
    store.add_turn(Turn(Role.USER, "secret-alice-marker", TurnKind.REACTION, session_id=a_ses.id, image=shared))
    b_ses = session_with_turns(store, "bob", bob_only)
    store.add_turn(Turn(Role.ASSISTANT, "x", TurnKind.ANSWER, session_id=b_ses.id, answered_from="evt_a1",
                        retrieved=["evt_a1", "evt_b1", "evt_a2"]))
    a_events = [Event(image=shared, question="secret-alice-marker", answer="x", user_id="alice", id="evt_a1"),
                Event(image=private, question="q", answer="y", user_id="alice", id="evt_a2")]
    store.add_events(a_events + [Event(image=shared, question="q", answer="z", user_id="bob", id="evt_b1",
                                       supersedes="evt_a2")])
    for key in (shared.sha256, private.sha256, bob_only.sha256, "evt_a1", "evt_b1"):
        store.put_embedding("image", key, np.ones(4))

    assert store.delete_user("alice") == ["evt_a1", "evt_a2"]

    assert not store.has_user("alice") and store.list_users() == ["bob"]
    with pytest.raises(NotFound):
        store.get_session(a_ses.id)
    assert [e.id for e in store.list_events()] == ["evt_b1"]
    bob_turns = store.get_session(b_ses.id).turns
    assert store.list_sessions() == [store.get_session(b_ses.id)] and len(bob_turns) == 3
    # bob's rows no longer name alice's events
    assert bob_turns[2].answered_from is None and bob_turns[2].retrieved == ["evt_b1"]
    assert store.get_event("evt_b1").supersedes is None
    assert store.get_image_bytes(shared.sha256) == b"shared-image"  # bob's event still uses it
    assert store.get_image_bytes(bob_only.sha256) == b"bob-only-image"
    with pytest.raises(NotFound):
        store.get_image_bytes(private.sha256)
    assert store.get_embedding("image", private.sha256) is None and store.get_embedding("image", "evt_a1") is None
    assert store.get_embedding("image", shared.sha256) is not None
    assert store.get_embedding("image", "evt_b1") is not None
    assert count_rows(store, "turns") == 3 and count_rows(store, "images") == 2
    with pytest.raises(NotFound):
        store.delete_user("alice")


def test_concurrent_threads_lose_nothing(store) -> None:
    shared = store.create_session(Session(user_id="u"))
    n_threads, n_each = 6, 15
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


def test_marking_distilled_closes_the_session_and_counts_once_among_threads(store) -> None:
    session = store.create_session(Session(user_id="u"))
    marked: list[bool] = []
    threads = [threading.Thread(target=lambda: marked.append(store.mark_distilled(session.id))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(marked) == [False] * 5 + [True]
    stored = store.get_session(session.id)
    assert stored.closed and stored.distilled


def test_user_records_round_trip_replace_and_delete(store) -> None:

    img = image(store, b"bobby")
    first = store.put_user_record(UserRecord("ana", "concept", "c1", {"name": "Bobby", "kind": "mug"}, img))
    assert store.has_user("ana")  # a record creates its user, so forgetting the user finds it
    store.put_user_record(UserRecord("ana", "profile", "profile", {"answer_length": "short"}))
    store.put_user_record(UserRecord("bob", "concept", "c1", {"name": "Max"}))
    again = store.put_user_record(UserRecord("ana", "concept", "c1", {"name": "Rex", "kind": "mug"}, img,
                                             created=first.created + 10))
    (concept,) = store.list_user_records("ana", "concept")
    assert concept.data == {"name": "Rex", "kind": "mug"} and concept.image == img
    assert concept.created == first.created and concept.updated == again.updated  # replaced, first seen kept
    assert [r.data["name"] for r in store.list_user_records("bob", "concept")] == ["Max"]
    assert store.list_user_records("nobody", "concept") == []
    store.put_embedding("image:x", img.sha256, np.ones(3))
    assert store.delete_user_record("ana", "concept", "c1") is True
    assert store.delete_user_record("ana", "concept", "c1") is False
    assert store.list_user_records("ana", "concept") == []
    with pytest.raises(NotFound):  # nothing else showed the image: gone with the record, its vector too
        store.get_image_bytes(img.sha256)
    assert store.get_embedding("image:x", img.sha256) is None
    assert store.list_user_records("ana", "profile")[0].data == {"answer_length": "short"}


def test_a_record_keeps_an_image_others_still_show(store) -> None:

    img = image(store, b"shared")
    session_with_turns(store, "bob", img)
    store.put_user_record(UserRecord("ana", "concept_view", "v1", {}, img))
    assert store.delete_user_record("ana", "concept_view", "v1")
    assert store.get_image_bytes(img.sha256) == b"shared"  # bob's turn still shows it


def test_delete_user_removes_their_records_and_record_images(store) -> None:

    mine, shown = image(store, b"ana's mug"), image(store, b"bob's too")
    session_with_turns(store, "bob", shown)
    store.put_user_record(UserRecord("ana", "concept_view", "v1", {"v": 1}, mine))
    store.put_user_record(UserRecord("ana", "concept_view", "v2", {"v": 2}, shown))
    store.put_user_record(UserRecord("ana", "profile", "profile", {"name": "Ana"}))
    store.put_user_record(UserRecord("bob", "profile", "profile", {"name": "Bob"}))
    store.delete_user("ana")
    assert not store.has_user("ana") and store.list_user_records("ana", "profile") == []
    assert count_rows(store, "user_records") == 1
    with pytest.raises(NotFound):
        store.get_image_bytes(mine.sha256)
    assert store.get_image_bytes(shown.sha256) == b"bob's too"


def test_leases_are_taken_renewed_listed_and_given_up(store):
    def held(kind):
        return [(lease.key, lease.holder, lease.live) for lease in store.list_leases(kind)]

    assert store.list_leases("vllm-adapter") == []
    first = store.hold_lease("vllm-adapter", "ilearn-v1-aaaaaaaa", "host-a:11", 100.0)
    store.hold_lease("vllm-adapter", "ilearn-v1-bbbbbbbb", "host-b:12", 50.5)
    store.hold_lease("other", "ilearn-v1-aaaaaaaa", "host-c:13", 1000.0)  # kinds apart
    renewed = store.hold_lease("vllm-adapter", "ilearn-v1-aaaaaaaa", "host-a:11", 200.0)
    assert renewed.expires - first.expires == pytest.approx(100.0, abs=5.0) and renewed.live
    assert held("vllm-adapter") == [("ilearn-v1-aaaaaaaa", "host-a:11", True), ("ilearn-v1-bbbbbbbb", "host-b:12", True)]
    store.drop_lease("vllm-adapter", "ilearn-v1-bbbbbbbb")
    store.drop_lease("vllm-adapter", "never-held")
    assert [lease.key for lease in store.list_leases("vllm-adapter")] == ["ilearn-v1-aaaaaaaa"]
    assert held("other") == [("ilearn-v1-aaaaaaaa", "host-c:13", True)]
    store.hold_lease("other", "ilearn-v1-aaaaaaaa", "host-d:14", 0.0)  # taken over, and over at once
    assert held("other") == [("ilearn-v1-aaaaaaaa", "host-d:14", False)]


def test_leases_run_on_the_stores_clock_not_the_workers(store, monkeypatch):
    """A worker whose clock is an hour behind still holds a live lease for as long as it asked (stamped by its own
    clock, the lease would have expired an hour ago), and the short lease of one whose clock is an hour ahead
    expires when it should for every worker (it would have lived an hour)."""
    import time

    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3600.0)  # this worker's clock runs an hour behind
    lease = store.hold_lease("vllm-adapter", "behind", "host-a:11", 30.0)
    assert lease.expires == pytest.approx(real() + 30.0, abs=5.0)
    monkeypatch.setattr(time, "time", lambda: real() + 3600.0)  # another's runs an hour ahead
    store.hold_lease("vllm-adapter", "ahead", "host-b:12", 0.2)
    time.sleep(0.3)
    assert {lease.key: lease.live for lease in store.list_leases("vllm-adapter")} == {"behind": True, "ahead": False}
