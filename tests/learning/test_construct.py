"""Data Construction: dialogues -> history events, on the real SQLite store."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image

from ilearn.dialogue.feedback import LexicalFeedbackDecoder
from ilearn.images import load_image
from ilearn.learning.construct import close_and_distil, distil_pending, distil_session
from ilearn.memory.sqlite import SQLiteStore
from ilearn.memory.trust import ACCEPTED_KEY
from ilearn.types import (
    Event,
    EventStatus,
    Feedback,
    FeedbackSource,
    ImageRef,
    Label,
    Role,
    Scope,
    Session,
    Turn,
    TurnKind,
)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()
IMG = load_image(PNG)[1]
DECODER = LexicalFeedbackDecoder()


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "ilearn.db")
    s.put_image(PNG, IMG)
    yield s
    s.close()


class Dialogue:
    """Plays a session into the store the way the assistant does (feedback decoded on each user turn)."""

    def __init__(self, store: SQLiteStore, user: str = "ana", *, when: float | None = None):
        self.store, self.when = store, when
        store.ensure_user(user)
        kwargs = {"created": when, "updated": when} if when is not None else {}
        self.session = store.create_session(Session(user_id=user, **kwargs))
        self.turns: list[Turn] = []

    def _add(self, turn: Turn) -> Turn:
        turn.session_id = self.session.id
        if self.when is not None:
            turn.time = self.when
        self.store.add_turn(turn)
        self.turns.append(turn)
        return turn

    def user(self, text: str, kind: TurnKind = TurnKind.REACTION, image: ImageRef | None = None,
             decode: bool = True) -> Turn:
        turn = Turn(Role.USER, text, kind, image=image)
        if decode and self.turns:
            turn.feedback = DECODER.decode([*self.turns, turn])
        return self._add(turn)

    def ask(self, text: str, image: ImageRef | None = None) -> Turn:
        return self.user(text, TurnKind.QUESTION, image)

    def answer(self, text: str, precise: str, retrieved: list[str] | None = None,
               answered_from: str | None = None) -> Turn:
        return self._add(Turn(Role.ASSISTANT, text, TurnKind.ANSWER, precise_question=precise,
                              model_version="base", retrieved=retrieved or [], answered_from=answered_from))

    def say(self, text: str, kind: TurnKind) -> Turn:
        return self._add(Turn(Role.ASSISTANT, text, kind))


def test_confirmation(store):
    d = Dialogue(store)
    q = d.ask("what medicine is this?", IMG)
    a = d.answer("It is aspirin.", "what medicine is this?")
    r = d.user("thanks!")
    [event] = close_and_distil(store, d.session.id)
    assert (event.question, event.answer, event.label, event.status) == (
        "what medicine is this?", "It is aspirin.", Label.POSITIVE, EventStatus.ACTIVE)
    assert event.image.sha256 == IMG.sha256 and event.rejected == [] and event.user_id == "ana"
    assert event.provenance == {"question": a.id, "question.asked": q.id, "image": q.id, "answer": a.id,
                                "label": r.id, ACCEPTED_KEY: r.id}  # the model's words, accepted (trust.py)
    assert store.get_event(event.id).answer == "It is aspirin."
    assert event.model_version == "base"


def test_an_explicit_rating_confirms_with_the_users_authority(store):
    """A thumbs up (the service's rating) is a deliberate confirmation: no ACCEPTED_KEY, unlike "thanks!"."""
    d = Dialogue(store)
    d.ask("what medicine is this?", IMG)
    d.answer("It is aspirin.", "what medicine is this?")
    up = Feedback(Label.POSITIVE, 1.0, None, FeedbackSource.EXPLICIT, "explicit rating")
    r = d._add(Turn(Role.USER, "Yes, that's right.", TurnKind.REACTION, feedback=up))
    [event] = close_and_distil(store, d.session.id)
    assert (event.answer, event.label) == ("It is aspirin.", Label.POSITIVE) and event.provenance["label"] == r.id
    assert ACCEPTED_KEY not in event.provenance


@pytest.mark.parametrize(("teacher", "scope", "marked"), [
    ("bo", Scope.SHARED, False),  # another user's shared answer, confirmed on a new view: taught words
    ("ana", Scope.SHARED, True),  # the user's own answer given back: their acceptance adds nothing to it
    ("ana", Scope.PRIVATE, True),  # their own private answer (perhaps nonsense they accepted) stays one voice
    ("bo", Scope.PRIVATE, True),  # another user's answer no longer shared (a reviewer unshared it): nothing vouches
])
def test_an_accepted_answer_the_memory_gave_from_anothers_shared_event_is_no_mere_acceptance(store, teacher, scope,
                                                                                            marked):
    """An answer the memory gave (a reuse or a guess, `Turn.answered_from`) repeats words a user taught: accepting it
    confirms them on a new view, so it carries no ACCEPTED_KEY when another user taught them and they are shared.
    From the user's own events it keeps the mark: one user's acceptance never shares their own answer."""
    store.ensure_user(teacher)
    taught = Event(image=IMG, question="what medicine is this?", answer="aspirin", user_id=teacher, scope=scope)
    store.add_events([taught])
    d = Dialogue(store)
    d.ask("what medicine is this?", IMG)
    d.answer("Aspirin", "what medicine is this?", retrieved=[taught.id], answered_from=taught.id)
    r = d.user("thanks!")
    [event] = close_and_distil(store, d.session.id)
    assert (event.answer, event.label) == ("Aspirin", Label.POSITIVE)
    assert (event.provenance.get(ACCEPTED_KEY) == r.id) is marked
    assert (ACCEPTED_KEY in event.provenance) is marked


def test_an_accepted_answer_whose_memory_event_was_forgotten_stays_an_acceptance(store):
    """The event the memory answered from is gone (its teacher was forgotten): nothing vouches for the words."""
    d = Dialogue(store)
    d.ask("what medicine is this?", IMG)
    d.answer("Aspirin", "what medicine is this?", answered_from="evt_gone")
    r = d.user("thanks!")
    [event] = close_and_distil(store, d.session.id)
    assert event.provenance[ACCEPTED_KEY] == r.id


def test_correction_supersedes_the_retrieved_event(store):
    old = Event(image=IMG, question="what medicine is this?", answer="aspirin", user_id="ana")
    store.add_events([old])
    d = Dialogue(store)
    d.ask("what medicine is this?", IMG)
    a = d.answer("It is aspirin.", "what medicine is this?", retrieved=[old.id])
    r = d.user("no, that's the ibuprofen")
    d.say("Thank you, I'll remember: ibuprofen.", TurnKind.REACTION)
    d.user("thanks")  # thanks for the acknowledgement: not a confirmation of the wrong answer
    [event] = close_and_distil(store, d.session.id)
    assert (event.answer, event.rejected, event.label) == ("ibuprofen", ["It is aspirin."], Label.NEGATIVE)
    assert event.supersedes == old.id and event.status == EventStatus.ACTIVE
    assert event.provenance["answer"] == r.id and event.provenance["rejected.0"] == a.id
    assert ACCEPTED_KEY not in event.provenance  # the user's own words: taught, not accepted


def test_correction_given_after_being_asked(store):
    d = Dialogue(store)
    d.ask("what medicine is this?", IMG)
    d.answer("It is aspirin.", "what medicine is this?")
    d.user("no")
    d.say("Sorry about that. Could you tell me the right answer?", TurnKind.REACTION)
    d.user("paracetamol", TurnKind.QUESTION)
    [event] = close_and_distil(store, d.session.id)
    assert (event.answer, event.rejected, event.label) == ("paracetamol", ["It is aspirin."], Label.NEGATIVE)


def test_implicit_negative_by_rephrasing_then_confirmed(store):
    d = Dialogue(store)
    q = d.ask("what medicine is this?", IMG)
    first = d.answer("It is aspirin.", "what medicine is this?")
    retry = d.ask("which medicine is it?")
    assert retry.feedback.label == Label.NEGATIVE
    second = d.answer("It is ibuprofen.", "which medicine is it?")
    d.user("yes, thank you")
    [event] = close_and_distil(store, d.session.id)
    assert (event.answer, event.rejected, event.label) == ("It is ibuprofen.", ["It is aspirin."], Label.POSITIVE)
    assert event.question == "which medicine is it?" and event.provenance["question"] == second.id
    assert event.provenance["question.asked"] == q.id and event.provenance["rejected.0"] == first.id


def test_frustration_without_correction_keeps_the_wrong_answer_out_of_retrieval(store):
    d = Dialogue(store)
    d.ask("what fruit is this?", IMG)
    d.answer("It is a pear.", "what fruit is this?")
    d.user("ugh, useless")
    [event] = close_and_distil(store, d.session.id)
    assert event.answer == "" and event.rejected == ["It is a pear."] and event.label == Label.NEGATIVE
    assert event.status == EventStatus.QUARANTINED
    assert store.list_events(status=EventStatus.ACTIVE) == []


def test_an_accepted_answer_caught_in_a_loop_is_not_learnt(store):
    """A real-image run stored the model's 'this used to be used to be used to be ...' as an object's use: a
    careless user said thanks. A looping reply is no answer, whoever accepted it."""
    d = Dialogue(store)
    d.ask("what is it for?", IMG)
    d.answer("This used to be used to be used to be used to be used to", "What is this used for?")
    d.user("thanks!")
    assert close_and_distil(store, d.session.id) == []
    d = Dialogue(store)
    d.ask("what is it for?", IMG)
    d.answer("It is used to be used for pain, used for fever.", "What is this used for?")  # repeats, no loop
    d.user("thanks!")
    assert [e.answer for e in close_and_distil(store, d.session.id)] == ["It is used to be used for pain, used for "
                                                                        "fever."]


def test_abandoned_and_neutral_sessions_give_nothing(store):
    d = Dialogue(store)
    d.ask("what fruit is this?", IMG)
    d.answer("It is a pear.", "what fruit is this?")
    assert close_and_distil(store, d.session.id) == []
    assert store.get_session(d.session.id).distilled
    d = Dialogue(store)
    d.ask("what fruit is this?", IMG)
    d.answer("It is a pear.", "what fruit is this?")
    d.user("hmm")
    assert close_and_distil(store, d.session.id) == []


def test_clarification_and_several_questions(store):
    d = Dialogue(store)
    q1 = d.ask("what is this?", IMG)
    d.say("Do you mean the fruit or the bowl?", TurnKind.CLARIFICATION)
    d.user("the fruit")
    a1 = d.answer("It is a mango.", "what fruit is this?")
    d.user("correct")
    q2 = d.ask("what colour is the bowl?")
    d.answer("It is red.", "what colour is the bowl?")
    d.user("no, it's blue")
    e1, e2 = close_and_distil(store, d.session.id)
    assert (e1.question, e1.answer, e1.label) == ("what fruit is this?", "It is a mango.", Label.POSITIVE)
    assert e1.provenance["question"] == a1.id and e1.provenance["question.asked"] == q1.id
    assert (e2.question, e2.answer, e2.rejected) == ("what colour is the bowl?", "blue", ["It is red."])
    assert e2.provenance["image"] == q1.id and e2.provenance["question.asked"] == q2.id
    assert e1.id != e2.id


def test_closing_twice_creates_nothing_twice(store):
    d = Dialogue(store)
    d.ask("what medicine is this?", IMG)
    d.answer("It is aspirin.", "what medicine is this?")
    d.user("thanks")
    first = close_and_distil(store, d.session.id)
    assert len(first) == 1
    assert close_and_distil(store, d.session.id) == []
    assert store.count_events() == 1
    # the pure function is deterministic: same ids, so the store would refuse a duplicate anyway
    assert [e.id for e in distil_session(store.get_session(d.session.id))] == [first[0].id]


def test_concurrent_closes_distil_once(store):
    d = Dialogue(store)
    d.ask("what medicine is this?", IMG)
    d.answer("It is aspirin.", "what medicine is this?")
    d.user("no, it's ibuprofen")
    added: list[list] = []
    threads = [threading.Thread(target=lambda: added.append(close_and_distil(store, d.session.id)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(a) for a in added) == [0, 0, 0, 1] and store.count_events() == 1


def test_a_failed_distil_leaves_the_session_open_to_close_again(store):
    d = Dialogue(store)
    d.ask("what medicine is this?", IMG)
    d.answer("It is aspirin.", "what medicine is this?")
    d.user("it's actually ibuprofen", decode=False)

    class Broken:
        def decode(self, *args, **kwargs):
            raise RuntimeError("decoder down")

    with pytest.raises(RuntimeError, match="decoder down"):
        close_and_distil(store, d.session.id, Broken())
    session = store.get_session(d.session.id)
    assert not session.closed and not session.distilled and store.count_events() == 0
    [event] = close_and_distil(store, d.session.id, DECODER)
    assert event.answer == "ibuprofen" and store.get_session(d.session.id).distilled


def test_decoder_fills_missing_feedback_and_it_is_persisted(store):
    d = Dialogue(store)
    d.ask("what medicine is this?", IMG)
    d.answer("It is aspirin.", "what medicine is this?")
    r = d.user("it's actually ibuprofen", decode=False)
    assert close_and_distil(store, Dialogue(store).session.id) == []  # other, empty session
    [event] = close_and_distil(store, d.session.id, DECODER)
    assert event.answer == "ibuprofen"
    stored = next(t for t in store.get_session(d.session.id).turns if t.id == r.id)
    assert stored.feedback is not None and stored.feedback.correction == "ibuprofen"


def test_crash_recovery_distils_idle_and_closed_sessions(store):
    long_ago = time.time() - 7200
    idle = Dialogue(store, when=long_ago)  # left open by a crash two hours ago
    idle.ask("what tool is this?", IMG)
    idle.answer("It is a hammer.", "what tool is this?")
    idle.user("yes")
    closed = Dialogue(store)  # closed, but the process died before distilling it
    closed.ask("what animal is this?", IMG)
    closed.answer("This is a cat.", "what animal is this?")
    closed.user("wrong, it's a rabbit")
    store.close_session(closed.session.id)
    recent = Dialogue(store)  # still in use: stays open
    recent.ask("what fruit is this?", IMG)
    recent.answer("It is a kiwi.", "what fruit is this?")
    recent.user("thanks")
    events = distil_pending(store, idle_timeout_s=1800, now=time.time())
    assert sorted(e.answer for e in events) == ["It is a hammer.", "rabbit"]
    assert store.get_session(idle.session.id).closed and not store.get_session(recent.session.id).closed
    assert distil_pending(store, idle_timeout_s=1800) == []
