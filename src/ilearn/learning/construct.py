"""Data Construction (iLearnRobot): distil a finished dialogue into history events.

A session is walked turn by turn. A user QUESTION opens a *request*; clarification replies refine it and
the assistant's ANSWER turn carries the precise question it answered. The feedback decoded on the next
user turn (``Turn.feedback``, set by the feedback module) judges the most recent answer:

- positive: that answer is the correct one (label POSITIVE);
- negative with a correction: the correction becomes the answer, the wrong answer goes to ``rejected``
  (label NEGATIVE, meaning "the model was wrong, the user corrected it"); the event ``supersedes`` the
  retrieved event whose answer the wrong answer repeated, if any (``Turn.retrieved``);
- negative without a correction: the wrong answer goes to ``rejected``; a rephrased question (a QUESTION
  turn whose feedback is negative) keeps the same request open, so a later confirmed or corrected answer
  completes it (then the event has both an answer and rejected answers: DPO material);
- neutral, or no reaction at all (abandoned session): nothing is learned from that answer.

One request gives at most one event, in this representation:

===============================  =========  ================  ==========================================
outcome                          label      answer            status
===============================  =========  ================  ==========================================
confirmed                        POSITIVE   the model's       ACTIVE
corrected                        NEGATIVE   the correction    ACTIVE
only rejected, never answered    NEGATIVE   "" (empty)        QUARANTINED: never retrieved, never in SFT or
                                                              DPO (no answer); used by KTO and rewards
                                                              once the trust rules share it (a rejection)
neutral / no reaction            (no event)
===============================  =========  ================  ==========================================

A pick on a board of panels (`ilearn.dialogue.choice`: the answer turn carries the chosen panel as its image
and the user's description as its precise question) is an event of its own about that panel: question
``choice.PANEL_QUESTION``, the description as the answer when the reaction right after the pick is
positive, as a rejected answer when it is negative (a description in that reaction names another panel, so
it is never taken as a correction). Later turns do not judge it.

``provenance`` maps each field to the id of the turn it came from (``question``, ``question.asked``,
``image``, ``answer``, ``label``, ``rejected.<i>``); a model answer confirmed in words also carries
``trust.ACCEPTED_KEY`` (the accepting reaction's turn): the user accepted those words rather than taught them,
so a trusted user's "Thanks!" is one voice for sharing them, not authority (an explicit rating, a thumbs up
through the service, is a deliberate confirmation and carries no such mark; nor does an answer the memory gave from
another user's shared event, ``Turn.answered_from``: those are taught words the user confirmed on a new view).
Event ids are derived from the session and request turn ids, so distilling the same session twice yields the same
ids (and the store refuses duplicates).

Retiring a superseded event is left to ``DualModalityMemory.add`` when the new event is indexed: it owns
the rule of who may retire whose event and quarantines corrections that contradict corroborated answers.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

from ilearn.dialogue.choice import PANEL_QUESTION
from ilearn.dialogue.corrections import answers_match
from ilearn.dialogue.exchange import FeedbackDecoder
from ilearn.errors import NotFound
from ilearn.memory.store import EventStore
from ilearn.memory.trust import ACCEPTED_KEY, DESCRIPTION_KEY
from ilearn.text import contains_answer, looping
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

logger = logging.getLogger(__name__)


@dataclass
class _Request:
    """One question being worked out in a session (the future event)."""

    asked: Turn  # the user turn that opened it
    image: ImageRef | None
    image_src: str | None
    question: str
    question_src: str
    last_answer: Turn | None = None
    answer: str = ""
    answer_src: str | None = None
    label: Label | None = None
    label_src: str | None = None
    confidence: float = 1.0
    corrected: bool = False
    rated: bool = False  # the answer was confirmed by an explicit rating (thumbs up), not in words
    answered_from: str | None = None  # the event whose answer the memory gave, when the accepted answer was one
    model_version: str | None = None
    pointed: str | None = None  # a pick: the description it was asked for, its answer when accepted
    judged: bool = False  # a pick has had its one reaction
    rejected: list[tuple[str, Turn]] = field(default_factory=list)  # (wrong answer, its turn)
    supersede_from: list[tuple[str, list[str]]] = field(default_factory=list)  # (wrong answer, retrieved ids)


def event_id_for(session_id: str, turn_id: str) -> str:
    """Deterministic event id of the request opened by `turn_id` in `session_id`."""
    return "evt_" + hashlib.sha256(f"{session_id}:{turn_id}".encode()).hexdigest()[:12]


def distil_session(session: Session, decoder: FeedbackDecoder | None = None,
                   store: EventStore | None = None) -> list[Event]:
    """The events of one dialogue (see the module docstring). Pure: writes nothing.

    `decoder` decodes user turns that carry no feedback yet (e.g. sessions logged without a decoder);
    `store`, when given, is used to find which retrieved event a corrected answer came from (`supersedes`).
    """
    events, _ = _distil(session, decoder, store)
    return events


def _distil(session: Session, decoder: FeedbackDecoder | None,
            store: EventStore | None) -> tuple[list[Event], dict[str, Feedback]]:
    turns = sorted(session.turns, key=lambda t: t.seq)
    decoded: dict[str, Feedback] = {}
    requests: list[_Request] = []
    current: _Request | None = None
    image: ImageRef | None = None
    image_src: str | None = None
    for i, turn in enumerate(turns):
        if turn.image is not None and turn.role == Role.USER:
            image, image_src = turn.image, turn.id
        if turn.role == Role.USER:
            feedback = turn.feedback
            if feedback is None and decoder is not None and i > 0:
                feedback = decoder.decode(turns[: i + 1])
                if feedback is not None:
                    turn.feedback = feedback
                    decoded[turn.id] = feedback
            if current is not None and current.last_answer is not None and feedback is not None \
                    and not current.judged:
                _apply(current, feedback, turn)
            if current is not None and current.pointed:
                current.judged = True  # only the reaction right after a pick judges it
            retry = feedback is not None and feedback.label == Label.NEGATIVE
            rephrased = retry and current is not None and not current.pointed and turn.image is None
            if turn.kind == TurnKind.QUESTION and not rephrased:
                current = _Request(asked=turn, image=image, image_src=image_src, question=turn.text,
                                   question_src=turn.id)
                requests.append(current)
        elif turn.kind == TurnKind.ANSWER and turn.image is not None and turn.precise_question:
            # a pick on a board (dialogue/choice.py): an event about the chosen panel, judged by the reaction
            # right after it; its answer is the user's description
            current = _Request(asked=turn, image=turn.image, image_src=turn.id, question=PANEL_QUESTION,
                               question_src=turn.id, last_answer=turn, pointed=turn.precise_question)
            requests.append(current)
        elif turn.kind == TurnKind.ANSWER:
            if current is None or current.pointed:  # no recorded question: its precise question opens the request
                current = _Request(asked=turn, image=image, image_src=image_src,
                                   question=turn.precise_question or "", question_src=turn.id)
                requests.append(current)
            current.last_answer = turn
            if turn.precise_question:
                current.question, current.question_src = turn.precise_question, turn.id
    events = [e for r in requests if (e := _event(session, r, store)) is not None]
    return events, decoded


def _apply(req: _Request, feedback: Feedback, reaction: Turn) -> None:
    """Apply the user's decoded reaction to the request's most recent answer."""
    answer = req.last_answer
    assert answer is not None
    text = req.pointed or answer.text
    if req.pointed:
        feedback = Feedback(feedback.label, feedback.confidence)  # "no, I mean X" describes another panel
    if feedback.label == Label.POSITIVE:
        if req.corrected or any(t.id == answer.id for _, t in req.rejected):
            return  # a "thanks" after a correction confirms the correction, not the wrong answer
        if looping(text):
            return  # a model's loop ("used to be used to be used to be") accepted by a careless user is no answer
        req.answer, req.answer_src = text, answer.id
        req.label, req.label_src, req.confidence = Label.POSITIVE, reaction.id, feedback.confidence
        req.rated = feedback.source == FeedbackSource.EXPLICIT
        req.answered_from = answer.answered_from
        req.model_version = answer.model_version
    elif feedback.label == Label.NEGATIVE:
        if not any(t.id == answer.id for _, t in req.rejected):
            req.rejected.append((text, answer))
            if answer.retrieved:
                req.supersede_from.append((answer.text, list(answer.retrieved)))
        if req.answer_src == answer.id:  # it had been confirmed, now it is rejected
            req.answer, req.answer_src, req.label = "", None, None
        if feedback.correction:
            req.answer, req.answer_src, req.corrected = feedback.correction, reaction.id, True
            req.label, req.label_src, req.confidence = Label.NEGATIVE, reaction.id, feedback.confidence
            req.model_version = answer.model_version
        elif req.label is None:
            req.label_src, req.confidence = reaction.id, feedback.confidence
            req.model_version = answer.model_version


def _event(session: Session, req: _Request, store: EventStore | None) -> Event | None:
    if not req.answer and not req.rejected:
        return None  # never answered, or answers met with neutral / no reaction
    provenance = {"question": req.question_src, "question.asked": req.asked.id}
    if req.pointed:
        provenance[DESCRIPTION_KEY] = req.asked.id  # the answer is the user's description: descriptions never compete
    if req.image_src:
        provenance["image"] = req.image_src
    if req.answer_src:
        provenance["answer"] = req.answer_src
        if not req.corrected and not req.pointed and not req.rated and req.label_src \
                and not _confirms_shared(store, req.answered_from, session.user_id):
            provenance[ACCEPTED_KEY] = req.label_src  # the model's words, accepted: a voice, not a lesson (trust.py)
    if req.label_src:
        provenance["label"] = req.label_src
    for i, (_, turn) in enumerate(req.rejected):
        provenance[f"rejected.{i}"] = turn.id
    answered = bool(req.answer)
    event = Event(
        image=req.image, question=req.question, answer=req.answer, user_id=session.user_id,
        robot_id=session.robot_id, rejected=_unique([text for text, _ in req.rejected]),
        label=req.label or Label.NEGATIVE,
        status=EventStatus.ACTIVE if answered else EventStatus.QUARANTINED,
        id=event_id_for(session.id, req.asked.id), session_id=session.id, model_version=req.model_version,
        provenance=provenance, confidence=req.confidence,
    )
    if req.corrected and store is not None:
        event.supersedes = _superseded(store, req.supersede_from)
    return event


def _confirms_shared(store: EventStore | None, event_id: str | None, user_id: str) -> bool:
    """Whether the accepted answer was the memory's, from an answer another user taught and the memory shares (the
    user confirmed taught words on a new view); an answer from the user's own events, or from an event the store no
    longer holds, is not."""
    if store is None or event_id is None:
        return False
    try:
        source = store.get_event(event_id)
    except NotFound:
        return False
    return source.user_id != user_id and source.scope == Scope.SHARED


def _unique(texts: list[str]) -> list[str]:
    out: list[str] = []
    for t in texts:
        if not any(answers_match(t, o) for o in out):
            out.append(t)
    return out


def _superseded(store: EventStore, candidates: list[tuple[str, list[str]]]) -> str | None:
    """The retrieved event whose answer the wrong answer repeated (first match), if any."""
    for wrong, ids in candidates:
        try:
            retrieved = store.get_events(ids)
        except NotFound:
            retrieved = []
        for old in retrieved:
            if old.answer and (answers_match(old.answer, wrong) or contains_answer(wrong, old.answer)):
                return old.id
    return None


def close_and_distil(store: EventStore, session_id: str, decoder: FeedbackDecoder | None = None) -> list[Event]:
    """Close the session (if open) and distil it once; returns the events added ([] when already distilled).

    One transaction marks the session closed and distilled (of two concurrent closes, one marks it; the other
    adds nothing), reads it, and writes its events and the feedback decoded on the way: a failure leaves the
    session as it was, to be closed again.
    """
    with store.transaction():
        if not store.mark_distilled(session_id):
            return []
        session = store.get_session(session_id)
        events, decoded = _distil(session, decoder, store)
        for turn_id, feedback in decoded.items():
            store.update_turn_feedback(turn_id, feedback)
        if events:
            store.add_events(events)
    logger.info("session %s distilled into %d event(s)", session_id, len(events))
    return events


def distil_pending(store: EventStore, idle_timeout_s: float, now: float | None = None,
                   decoder: FeedbackDecoder | None = None) -> list[Event]:
    """Close sessions idle for longer than `idle_timeout_s` and distil every closed, undistilled session.

    Run on start (crash recovery) and periodically; returns the events added.
    """
    now = time.time() if now is None else now
    events: list[Event] = []
    for session in store.list_sessions(open_only=True, idle_before=now - idle_timeout_s):
        events += close_and_distil(store, session.id, decoder)
    for session in store.list_sessions(undistilled=True):
        if session.closed:
            events += close_and_distil(store, session.id, decoder)
    return events
