"""Many conversations at once: sessions in parallel, one session in order, one model version per turn, and
what a turn sees when another thread closes its session, forgets its user or promotes a model meanwhile."""

from __future__ import annotations

import threading
import time

import pytest

from helpers import make_png
from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.errors import NotFound, SessionClosed
from ilearn.memory.sqlite import open_store
from ilearn.models.stub import StubVLM
from ilearn.models.versions import ModelVersions
from ilearn.sessions import UserGate
from ilearn.types import Role

QUESTION = "What is this medicine called?"


class Switch:
    """A registry stand-in: which version is active; applying one tags the model copy with it (optionally
    blocking until `release`d, like a slow load)."""

    def __init__(self, block: bool = False) -> None:
        self.active = "base"
        self.loading = threading.Event()
        self.release = threading.Event()
        self.block = block

    def active_id(self) -> str:
        return self.active

    def apply(self, vlm, version_id: str) -> bool:
        self.loading.set()
        if self.block:
            assert self.release.wait(10)
        vlm.version = version_id
        return True


class Gate:
    """A responder whose generate calls block until `release` is set (the first `hold` after the first `skip`);
    logs entries and exits."""

    def __init__(self, hold: int = 1, skip: int = 0) -> None:
        self.hold, self.skip = hold, skip
        self.entered = threading.Event()
        self.release = threading.Event()
        self.log: list[str] = []
        self._lock = threading.Lock()

    def responder(self):
        def respond(messages) -> str:
            with self._lock:
                n = sum(1 for e in self.log if e == "enter")
                self.log.append("enter")
            if self.skip <= n < self.skip + self.hold:
                self.entered.set()
                assert self.release.wait(10), "never released"
            with self._lock:
                self.log.append("exit")
            return f"answer {n}"
        return respond


def build(tmp_path, responder, versions_source=None) -> Assistant:
    config = Config(home=str(tmp_path / "home"))
    vlm = StubVLM(responder=responder)
    versions = ModelVersions(vlm, versions_source) if versions_source is not None else None
    return Assistant(config, vlm, open_store(tmp_path / "home"), versions=versions)


def start(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    """Run fn in a thread; the dict gets 'value' or 'error'."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args, **kwargs)
        except Exception as exc:  # reported to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def finish(thread: threading.Thread, out: dict):
    thread.join(15)
    assert not thread.is_alive(), "the call never returned"
    if "error" in out:
        raise out["error"]
    return out["value"]


def complete_pairs(assistant: Assistant, session_id: str) -> list[str]:
    turns = assistant.get_session(session_id).turns
    roles = [t.role for t in turns]
    assert roles == [Role.USER, Role.ASSISTANT] * (len(turns) // 2), "a half-written turn"
    return [t.text for t in turns]


def test_turns_of_different_sessions_run_at_the_same_time(tmp_path):
    meet = threading.Barrier(2, timeout=10)  # both model calls must be in flight at once

    def responder(messages):
        meet.wait()
        return "aspirin"

    assistant = build(tmp_path, responder)
    calls = [start(assistant.respond, user, QUESTION, image=make_png()) for user in ("ana", "bob")]
    replies = [finish(*c) for c in calls]
    assert [r.text for r in replies] == ["aspirin", "aspirin"]


def test_turns_of_one_session_run_in_order(tmp_path):
    gate = Gate(hold=2)
    assistant = build(tmp_path, gate.responder())
    session = start(assistant.respond, "ana", QUESTION, image=make_png())
    assert gate.entered.wait(10)
    sid = _session_of(assistant, "ana")
    second = start(assistant.respond, "ana", "What is the dose of this?", session_id=sid)
    time.sleep(0.3)  # room for the second turn to overtake the first, if it could
    gate.release.set()
    a, b = finish(*session), finish(*second)
    assert gate.log == ["enter", "exit", "enter", "exit"]  # the second model call only after the first
    assert b.session_id == a.session_id == sid
    assert complete_pairs(assistant, sid)[1::2] == [a.text, b.text]


def test_forget_waits_for_the_users_running_turn_then_deletes_it(tmp_path):
    gate = Gate(skip=1)
    assistant = build(tmp_path, gate.responder())
    other = assistant.respond("bob", QUESTION, image=make_png())  # another user: untouched
    turn = start(assistant.respond, "ana", QUESTION, image=make_png((10, 200, 10)))
    assert gate.entered.wait(10)
    sid = _session_of(assistant, "ana")
    forget = start(assistant.forget_user, "ana")
    time.sleep(0.3)
    assert forget[0].is_alive()  # waits for the turn
    gate.release.set()
    reply = finish(*turn)
    finish(*forget)
    assert reply.session_id == sid and not assistant.store.has_user("ana")
    with pytest.raises(NotFound):
        assistant.get_session(sid)  # the answered turn was deleted with the rest of the user
    with pytest.raises(NotFound):
        assistant.respond("ana", "What is the dose of this?", session_id=sid)  # a clear error, nothing written
    assert not assistant.store.has_user("ana")
    assert complete_pairs(assistant, other.session_id)


def test_close_waits_for_the_running_turn_and_later_turns_get_session_closed(tmp_path):
    gate = Gate()
    assistant = build(tmp_path, gate.responder())
    turn = start(assistant.respond, "ana", QUESTION, image=make_png())
    assert gate.entered.wait(10)
    sid = _session_of(assistant, "ana")
    closing = start(assistant.close_session, sid)
    time.sleep(0.3)
    assert closing[0].is_alive()
    gate.release.set()
    reply = finish(*turn)
    finish(*closing)
    assert complete_pairs(assistant, sid) == [QUESTION, reply.text]
    with pytest.raises(SessionClosed):
        assistant.respond("ana", "What is the dose of this?", session_id=sid)
    assert len(assistant.get_session(sid).turns) == 2


def test_idle_close_skips_a_session_with_a_turn_running(tmp_path):
    gate = Gate()
    assistant = build(tmp_path, gate.responder())
    turn = start(assistant.respond, "ana", QUESTION, image=make_png())
    assert gate.entered.wait(10)
    sid = _session_of(assistant, "ana")
    assistant.close_idle_sessions(now=time.time() + 1e6)
    assert not assistant.get_session(sid).closed  # busy, so not idle
    gate.release.set()
    finish(*turn)
    assistant.close_idle_sessions(now=time.time() + 1e6)
    session = assistant.get_session(sid)
    assert session.closed and session.distilled


def test_a_turn_keeps_its_model_version_while_a_promotion_serves_the_next_turns(tmp_path):
    gate = Gate()
    switch = Switch()
    assistant = build(tmp_path, gate.responder(), switch)
    running = start(assistant.respond, "ana", QUESTION, image=make_png())
    assert gate.entered.wait(10)
    switch.active = "v1"  # promoted while ana's turn is in the model
    bob = assistant.respond("bob", QUESTION, image=make_png())
    assert bob.model_version == "v1"
    gate.release.set()
    ana = finish(*running)
    assert ana.model_version == "base"
    # bob's turn ran on a model object of its own; the base object was never changed
    assert assistant.vlm.version == "base" and len(assistant.vlm.calls) == 1
    served = assistant.versions.current().vlm
    assert served is not assistant.vlm and served.version == "v1"
    switch.active = "base"  # rollback: instant, the base object serves again
    assert assistant.respond("bob", QUESTION, image=make_png()).model_version == "base"
    for reply in (ana, bob):
        assert assistant.get_session(reply.session_id).turns[-1].model_version == reply.model_version


def test_turns_do_not_wait_for_a_version_that_is_loading(tmp_path):
    switch = Switch(block=True)
    assistant = build(tmp_path, lambda messages: "aspirin", switch)
    switch.active = "v1"
    loading = start(assistant.versions.refresh)  # e.g. the learning thread after a promotion
    assert switch.loading.wait(10)
    turn = start(assistant.respond, "ana", QUESTION, image=make_png())
    assert finish(*turn).model_version == "base"  # served by the previous version, without waiting
    switch.release.set()
    assert finish(*loading).version == "v1"
    assert assistant.respond("ana", QUESTION, image=make_png()).model_version == "v1"


def test_a_version_that_fails_to_load_does_not_fail_turns(tmp_path):
    class Broken(Switch):
        def apply(self, vlm, version_id):
            raise NotFound(f"the weights of {version_id} are missing")

    switch = Broken()
    assistant = build(tmp_path, lambda messages: "aspirin", switch)
    switch.active = "v1"
    assert assistant.respond("ana", QUESTION, image=make_png()).model_version == "base"


def test_a_waiting_forget_goes_before_new_turns_of_the_user():
    gate, order = UserGate(), []
    gate.acquire_shared()  # a running turn
    writer = threading.Thread(target=lambda: (gate.acquire_exclusive(), order.append("forget"),
                                              gate.release_exclusive()))
    writer.start()
    deadline = time.time() + 10
    while gate.acquire_shared(blocking=False):  # until the writer waits, new turns still get in
        gate.release_shared()
        assert time.time() < deadline
        time.sleep(0.01)
    reader = threading.Thread(target=lambda: (gate.acquire_shared(), order.append("turn"), gate.release_shared()))
    reader.start()
    gate.release_shared()
    writer.join(10)
    reader.join(10)
    assert order == ["forget", "turn"]


def _session_of(assistant: Assistant, user: str) -> str:
    sessions = assistant.store.list_sessions(user_id=user, open_only=True, with_turns=False)
    assert len(sessions) == 1
    return sessions[0].id


def test_turns_are_answered_while_the_model_learns_in_the_background(tmp_path):
    """A background update (training, gate, promotion) takes no lock a turn needs."""
    from test_retrieval_loop import bottle

    config = Config(home=str(tmp_path / "home")).override(
        model={"backend": "tiny", "max_new_tokens": 4}, feedback={"method": "lexical"},
        retrieval={"enabled": False},
        learn={"recipe": "sft", "max_steps": 60, "batch_size": 4, "general_limit": 4, "replay": 0,
               "auto_after_events": 4})
    assistant = Assistant.from_config(config)
    for i in range(4):
        r = assistant.respond(f"user{i}", QUESTION, image=bottle(shift=i - 2))
        assistant.respond(f"user{i}", "No, that's ibuprofen.", session_id=r.session_id)
        assistant.close_session(r.session_id)  # the fourth event starts the update
    assert assistant.scheduler.running()
    reply = assistant.respond("ana", QUESTION, image=bottle())
    assert assistant.scheduler.running()  # answered while the update still runs
    assert assistant.get_session(reply.session_id).turns[-1].id == reply.turn_id
    assistant.wait_for_learning(timeout=300)
    assert assistant.last_learn is not None and assistant.last_learn.version is not None
    assistant.close()


# ------------------------------------------------------------------------------------------ stress (tiny model)
STRESS_TURNS = 1000
STRESS_THREADS = 32


def test_stress_32_threads_1000_turns_with_promotion_rollback_and_forget(tmp_path):
    """32 threads talk to one tiny-model runtime (16 users, two threads each); a version is promoted, rolled
    back, and one user forgotten while they talk. Every answered turn is stored (those of the forgotten user
    answered before the forget are gone), no session holds half a turn, and no exception reaches a caller."""
    from test_retrieval_loop import bottle

    config = Config(home=str(tmp_path / "home")).override(
        model={"backend": "tiny", "max_new_tokens": 4}, feedback={"method": "lexical"})
    assistant = Assistant.from_config(config)
    registry = assistant.registry
    weights = assistant.vlm.save(tmp_path / "v1", parts=("projector",))
    version = registry.register(path=weights, recipe="sft")
    photos = {u: bottle(cap=(40 * (u % 6), 200 - 30 * (u % 5), 60 + 20 * (u % 4)), shift=u % 3 - 1)
              for u in range(16)}
    forgotten = "user3"
    lock = threading.Lock()
    answered: list[tuple[str, float, float, object]] = []  # user, started, returned, reply
    errors: list[BaseException] = []
    expected: list[BaseException] = []
    marks: dict[str, float] = {}
    budget = iter(range(STRESS_TURNS))

    def take() -> bool:
        with lock:
            return next(budget, None) is not None

    def turn(user: str, text: str, **kwargs):
        started = time.perf_counter()
        try:
            reply = assistant.respond(user, text, **kwargs)
        except NotFound as exc:  # only a turn of the forgotten user that continues a session the forget deleted
            if user != forgotten or "forget_start" not in marks or "session_id" not in kwargs:
                raise
            with lock:
                expected.append(exc)
            return None
        with lock:
            answered.append((user, started, time.perf_counter(), reply))
        return reply

    def talk(index: int) -> None:
        u = index % 16
        user = f"user{u}"
        try:
            while take():
                first = turn(user, QUESTION, image=photos[u])
                if first is None or not take():
                    continue
                reaction = "thanks!" if index % 3 else f"No, that's medicine {u}."
                if turn(user, reaction, session_id=first.session_id) is not None and index % 2:
                    try:
                        assistant.close_session(first.session_id)
                    except NotFound:
                        if user != forgotten:
                            raise
        except BaseException as exc:  # reported below
            errors.append(exc)

    def control() -> None:
        try:
            for at, name, action in ((250, "promote", lambda: registry.promote(version.id)),
                                     (500, "rollback", registry.rollback),
                                     (700, "forget", lambda: assistant.forget_user(forgotten))):
                while len(answered) < at and not errors:
                    time.sleep(0.005)
                marks[f"{name}_start"] = time.perf_counter()
                action()
                marks[f"{name}_done"] = time.perf_counter()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=talk, args=(i,)) for i in range(STRESS_THREADS)]
    threads.append(threading.Thread(target=control))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    assert errors == []
    assert set(marks) == {f"{n}_{w}" for n in ("promote", "rollback", "forget") for w in ("start", "done")}

    stored = {t.id: t for s in assistant.store.list_sessions() for t in s.turns}
    for s in assistant.store.list_sessions():
        complete_pairs(assistant, s.id)
    assert len(answered) + len(expected) >= STRESS_TURNS - STRESS_THREADS
    for user, started, returned, reply in answered:
        if user == forgotten and returned < marks["forget_start"]:
            assert reply.turn_id not in stored  # deleted by the forget
        elif user != forgotten or started > marks["forget_done"]:
            assert stored[reply.turn_id].model_version == reply.model_version  # every answered turn is stored
        if started > marks["rollback_done"]:
            assert reply.model_version == "base"
    assert {r.model_version for *_, r in answered} == {"base", version.id}
    before = {r.session_id for user, _, returned, r in answered
              if user == forgotten and returned < marks["forget_start"]}
    assert before and not before & {s.id for s in assistant.store.list_sessions()}
    assert not before & {e.session_id for e in assistant.store.list_events()}  # no event of theirs came back
    active = {e.id for e in assistant.store.list_events(status="active")}
    assert set(assistant.memory.index.keys()) == active  # no vector without its row, none of the forgotten
    assert assistant.sessions.busy() == 0
    assistant.close()
