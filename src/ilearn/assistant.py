"""The turn pipeline: feedback -> clarify -> retrieve -> answer, every turn persisted at once; session close."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ilearn.config import Config
from ilearn.dialogue import choice, prompts
from ilearn.dialogue.clarify import Clarifier, make_clarifier
from ilearn.errors import InvalidInput, NotFound, SessionClosed
from ilearn.images import decode_image, load_image, to_rgb
from ilearn.memory import calibration
from ilearn.memory.store import EventStore
from ilearn.models.base import VisionLanguageModel
from ilearn.types import (
    Event,
    EventStatus,
    Feedback,
    ImageRef,
    Label,
    Role,
    Session,
    Turn,
    TurnKind,
    answer_key,
)

logger = logging.getLogger(__name__)

_QUESTION_START = re.compile(
    r"^(what|which|who|whom|whose|where|when|why|how|is|are|was|were|do|does|did|can|could|should|would|will|"
    r"may|tell me|show me|explain|describe|name|identify)\b"
)


def looks_like_question(text: str) -> bool:
    """True for an utterance that asks something (as opposed to a bare reaction such as 'thanks')."""
    low = text.strip().lower()
    return low.endswith("?") or bool(_QUESTION_START.match(low))


@dataclass
class Reference:
    """A past event the assistant used for an answer (shown to the user)."""

    event_id: str
    question: str
    answer: str
    score: float


@dataclass
class Reply:
    session_id: str
    text: str
    kind: TurnKind
    turn_id: str
    model_version: str
    precise_question: str | None = None
    references: list[Reference] = field(default_factory=list)
    feedback: Feedback | None = None  # the decoded reaction to the previous answer, if any
    new_session: bool = False  # the turn started a new session (new image)
    timings_ms: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0


class Assistant:
    """A vision-language assistant that clarifies, retrieves corrected answers and learns from its users.

    Build it with `Assistant.from_config(config)`; talk to it with `respond(...)`; end a dialogue with
    `close_session(...)` (idle sessions are closed for you).
    """

    def __init__(
        self,
        config: Config,
        vlm: VisionLanguageModel,
        store: EventStore,
        *,
        memory: Any | None = None,
        feedback_decoder: Any | None = None,
        clarifier: Clarifier | None = None,
        registry: Any | None = None,
    ):
        self.config = config
        self.vlm = vlm
        self.store = store
        self.memory = memory
        self.feedback_decoder = feedback_decoder
        self.clarifier = clarifier or make_clarifier(
            config.clarify.method if config.clarify.enabled else "never", vlm)
        self.registry = registry
        self._lock = threading.RLock()
        self._learning: threading.Thread | None = None
        self.last_learn: Any = None  # the LearnOutcome of the latest background update
        self._images: OrderedDict[str, Image.Image] = OrderedDict()  # sha256 -> decoded image (small LRU)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: Config | dict | str | Path | None = None, **overrides: Any) -> Assistant:
        """Build the whole assistant from settings; its parts come from `ilearn.runtime.build_runtime`.

        `config` may be a Config, a dict of settings, or a path to a JSON settings file.
        """
        if config is None:
            config = Config()
        elif isinstance(config, dict):
            config = Config.from_dict(config)
        elif isinstance(config, (str, Path)):
            config = Config.load(config)
        if overrides:
            config = config.override(**overrides)
        from ilearn.runtime import build_runtime

        parts = build_runtime(config)
        assistant = cls(config, parts.vlm, parts.store, memory=parts.memory, feedback_decoder=parts.decoder,
                        clarifier=parts.clarifier, registry=parts.registry)
        assistant.recover()
        return assistant

    # ------------------------------------------------------------------ the turn
    def respond(
        self,
        user_id: str,
        text: str,
        image: bytes | str | Path | Image.Image | None = None,
        session_id: str | None = None,
    ) -> Reply:
        """Answer one user turn. Creates a session when `session_id` is None.

        Raises InvalidInput / InvalidImage for bad input, NotFound for an unknown session, SessionClosed for a
        closed one; nothing is written in those cases.
        """
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        text = self._check_text(text)
        user_id = self._check_user(user_id)
        image_ref, pil, data = self._check_image(image)
        with self._lock:
            self._sync_model()
            session, new_session = self._session_for(user_id, session_id, image_ref)
            if image_ref is not None:
                self.store.put_image(data, image_ref)
                self._remember_image(image_ref.sha256, pil)
            turns = list(session.turns)
            user_turn = Turn(Role.USER, text, TurnKind.QUESTION, session_id=session.id, image=image_ref)
            last = _last_assistant(turns)

            # 1. the user's reaction to the previous answer (ReSpect)
            feedback = None
            if last is not None and last.kind != TurnKind.CLARIFICATION and self.feedback_decoder is not None:
                tf = time.perf_counter()
                feedback = self.feedback_decoder.decode([*turns, user_turn])
                timings["feedback"] = _ms(tf)
                user_turn.feedback = feedback
                calibration.record_reuse_outcome(self.memory, last.id, last.text, feedback)
            is_reaction = (last is not None and last.kind == TurnKind.CLARIFICATION) or (
                feedback is not None and (feedback.correction or not looks_like_question(text))
            )
            if is_reaction:
                user_turn.kind = TurnKind.REACTION
            ts = time.perf_counter()
            self.store.add_turn(user_turn)
            timings["store"] = _ms(ts)

            exchange_image = pil if pil is not None else self._session_image(turns)
            if last is not None and last.kind == TurnKind.CLARIFICATION:
                outcome = self._after_clarification(session, text, exchange_image, turns, timings)
            elif is_reaction and feedback is not None:
                reply_text = prompts.acknowledge(feedback.label.value, feedback.correction)
                outcome = _Outcome(Turn(Role.ASSISTANT, reply_text, TurnKind.REACTION, session_id=session.id,
                                        model_version=self.vlm.version))
            else:
                outcome = self._new_request(session, text, exchange_image, timings, _rejected_answers(turns))
            reply = outcome.turn

            ts = time.perf_counter()
            self.store.add_turn(reply)
            timings["store"] += _ms(ts)
        timings["total"] = _ms(t0)
        return Reply(
            session_id=session.id, text=reply.text, kind=reply.kind, turn_id=reply.id,
            model_version=reply.model_version or self.vlm.version, precise_question=reply.precise_question,
            references=self._references(reply.retrieved, outcome.scores), feedback=feedback,
            new_session=new_session, timings_ms=timings, prompt_tokens=outcome.prompt_tokens,
        )

    def _new_request(self, session: Session, text: str, image, timings: dict, avoid: list[str]) -> _Outcome:
        """A new question: point at the panel a request describes when the image is a board of panels
        (`ilearn.dialogue.choice`); else ask which meaning the user wants when it is ambiguous (Chain of
        Question), else answer."""
        if image is not None and (expression := choice.referring_expression(text)) is not None \
                and (panels := choice.split_panels(image)) is not None:
            return self._point(session, expression, panels, timings, avoid)
        tc = time.perf_counter()
        decision = self.clarifier.assess(text, image is not None)
        timings["clarify"] = _ms(tc)
        if decision.ambiguous and self.config.clarify.max_clarifications > 0 and image is not None:
            return self._clarification(session, decision.question)
        return self._answer(session, self.clarifier.precise(text), image, timings, avoid)

    def _after_clarification(self, session: Session, text: str, image, turns: list[Turn], timings: dict) -> _Outcome:
        """The user replied to a clarifying question: resolve the precise question, or ask once more (bounded)."""
        request = _open_request(turns)
        original = request.text if request is not None else text
        tc = time.perf_counter()
        precise = self.clarifier.resolve(original, text)
        timings["clarify"] = _ms(tc)
        asked = _clarifications_since(turns, request)
        if precise is None and asked < self.config.clarify.max_clarifications:
            decision = self.clarifier.assess(original, image is not None)
            return self._clarification(session, decision.question or prompts.CLARIFY_AGAIN)
        return self._answer(session, precise or self.clarifier.fallback(original, text), image, timings,
                            _rejected_answers(turns))

    def _point(self, session: Session, expression: str, panels: list[Image.Image], timings: dict,
               avoid: list[str]) -> _Outcome:
        """Pick the panel `expression` describes, never one the user turned down or already accepted in this
        dialogue. The answer turn carries the chosen panel as its image and the expression as its precise
        question: what construct.py distils the pick from."""
        ta = time.perf_counter()
        taken = choice.slots_in(avoid) | choice.slots_in(_accepted_answers(session.turns))
        pick = choice.choose(self.vlm, panels, expression, taken)
        timings["answer"] = _ms(ta)
        if pick is None:
            return _Outcome(Turn(Role.ASSISTANT, prompts.NOT_SURE, TurnKind.ANSWER, session_id=session.id,
                                 model_version=self.vlm.version, precise_question=expression))
        ref, _, data = self._check_image(pick.panel)
        self.store.put_image(data, ref)
        return _Outcome(Turn(Role.ASSISTANT, choice.pick_text(pick.slot), TurnKind.ANSWER, session_id=session.id,
                             model_version=self.vlm.version, precise_question=expression, image=ref))

    def _clarification(self, session: Session, question: str) -> _Outcome:
        return _Outcome(Turn(Role.ASSISTANT, question, TurnKind.CLARIFICATION, session_id=session.id,
                             model_version=self.vlm.version))

    def _answer(self, session: Session, question: str, image, timings: dict, avoid: list[str]) -> _Outcome:
        """Answer `question`: reuse a decisive reference, else ask the model with the references in context.

        `avoid`: answers the user rejected earlier in this dialogue; they are never given again (references
        carrying them are dropped, the model is asked for another reply, and if it has none the assistant
        says it is not sure)."""
        rejected = {answer_key(a) for a in avoid}
        matches = []
        if self.memory is not None and self.config.retrieval.enabled and image is not None:
            tr = time.perf_counter()
            matches = self.memory.search(image, question, session.user_id, session.robot_id)
            matches = [m for m in matches if answer_key(m.event.answer) not in rejected]
            timings["retrieve"] = _ms(tr)
        ta = time.perf_counter()
        from ilearn.memory.retrieval import reusable

        rc = self.config.retrieval
        top = reusable(matches, calibration.reuse_threshold(self.memory, rc.reuse_threshold), rc.reuse_margin,
                       rc.reuse_min_text_sim)
        prompt_tokens = 0
        if top is not None:
            # A confident, decisive match decides the answer: reuse the corrected answer (Dual-Modality Retrieval).
            text = prompts.reused_answer(top.event.answer)
        else:
            references = self.memory.format_references(matches) if matches else ""
            messages = prompts.answer_messages(question, image, references)
            generation = self.vlm.generate(messages, max_new_tokens=self.config.model.max_new_tokens, avoid=avoid)
            text = generation.text.strip() or "I don't know."
            if answer_key(text) in rejected:
                text = prompts.NOT_SURE
            prompt_tokens = generation.prompt_tokens
        timings["answer"] = _ms(ta)
        turn = Turn(Role.ASSISTANT, text, TurnKind.ANSWER, session_id=session.id, model_version=self.vlm.version,
                    retrieved=[m.event.id for m in matches], precise_question=question)
        calibration.note_answer(self.memory, turn.id, matches, reused=top is not None)
        return _Outcome(turn, {m.event.id: m.score for m in matches}, prompt_tokens)

    # ------------------------------------------------------------------ sessions
    def close_session(self, session_id: str) -> list[Event]:
        """End a dialogue and distil it into history events (idempotent: a second close adds nothing)."""
        from ilearn.learning.construct import close_and_distil

        with self._lock:
            events = close_and_distil(self.store, session_id, self.feedback_decoder)
            self._index(events)
        self._maybe_learn_in_background()
        return events

    def close_idle_sessions(self, now: float | None = None) -> list[Event]:
        """Close sessions idle for longer than the configured timeout, and distil sessions left by a crash."""
        from ilearn.learning.construct import distil_pending

        with self._lock:
            events = distil_pending(self.store, self.config.session.idle_timeout_s, now=now,
                                    decoder=self.feedback_decoder)
            self._index(events)
            return events

    # ------------------------------------------------------------------ learning
    def learn(self, *, promote: bool = True, general: bool = True):
        """Train a candidate on the events so far, gate it against the serving model, promote it if better.

        Returns a `LearnOutcome`; the promoted version serves from the next turn on.
        """
        from ilearn.learning.update import learn

        if self.registry is None:
            raise InvalidInput("this assistant has no model registry: build it with Assistant.from_config")
        with self._lock:
            self._sync_model()
            outcome = learn(self.vlm, self.store, self.registry, self.config, promote=promote, general=general)
            self._sync_model()
            return outcome

    def new_events_since_training(self) -> int:
        """Events not in the latest model version's snapshot (trained or held out)."""
        versions = self.registry.list() if self.registry is not None else []
        seen: set[str] = set()
        if versions:
            seen = set(versions[-1].event_ids) | set(versions[-1].metrics.get("heldout_event_ids", []))
        return sum(1 for e in self.store.list_events(robot_id=self.config.robot_id) if e.id not in seen)

    def _maybe_learn_in_background(self) -> None:
        """Start a model update in a thread once `learn.auto_after_events` new events have accumulated.

        Training works on its own copy of the weights and the gate on freshly loaded models, so answers go on;
        a promoted version is picked up at the next turn.
        """
        every = self.config.learn.auto_after_events
        if every <= 0 or self.registry is None or (self._learning is not None and self._learning.is_alive()):
            return
        if self.new_events_since_training() < every:
            return
        self._learning = threading.Thread(target=self._learn_in_background, name="ilearn-learn", daemon=True)
        self._learning.start()

    def _learn_in_background(self) -> None:
        from ilearn.learning.update import learn

        try:
            gate_vlm = self.registry.load(self.config.model, self.registry.active_id())
            self.last_learn = learn(self.vlm, self.store, self.registry, self.config, gate_vlm=gate_vlm)
            logger.info("background update: %s", self.last_learn.summary())
        except Exception:  # a failed update must never take the assistant down
            logger.exception("background model update failed")

    def wait_for_learning(self, timeout: float | None = None) -> None:
        """Block until a background update (if any) has finished."""
        if self._learning is not None:
            self._learning.join(timeout)

    def recover(self) -> None:
        """On start: distil what a crash left behind and bring the vector index up to date."""
        self.close_idle_sessions()
        if self.memory is not None and hasattr(self.memory, "ensure_fresh"):
            self.memory.ensure_fresh()

    def forget_user(self, user_id: str) -> list[str]:
        """Delete every trace of a user: sessions, turns, events, vectors. Unknown user -> NotFound."""
        with self._lock:
            if self.memory is not None:
                return self.memory.forget_user(user_id)
            return self.store.delete_user(user_id)

    def close(self) -> None:
        """Save the vector index and close the store (call on shutdown; a crash is repaired on the next start)."""
        self.wait_for_learning()
        with self._lock:
            if self.memory is not None and hasattr(self.memory, "close"):
                self.memory.close()
            self.store.close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_session(self, session_id: str) -> Session:
        return self.store.get_session(session_id)

    # ------------------------------------------------------------------ helpers
    def _index(self, events: list[Event]) -> None:
        if self.memory is None:
            return
        for event in events:
            if event.status != EventStatus.ACTIVE or not event.answer.strip():
                continue  # kept for preference training only (a rejected answer with no correction)
            image = self._image(event.image.sha256) if event.image else None
            self.memory.add(event, image)

    def _sync_model(self) -> None:
        if self.registry is not None:
            self.registry.apply_active(self.vlm)

    def _session_for(self, user_id: str, session_id: str | None, image_ref: ImageRef | None) -> tuple[Session, bool]:
        if session_id is None:
            self.store.ensure_user(user_id)
            return self.store.create_session(Session(user_id=user_id, robot_id=self.config.robot_id)), True
        session = self.store.get_session(session_id)  # NotFound for unknown ids
        if session.user_id != user_id:
            raise NotFound(f"unknown session {session_id!r} for user {user_id!r}")
        if session.closed:
            raise SessionClosed(f"session {session_id!r} is closed; start a new one")
        current = _session_image_ref(session.turns)
        if (self.config.session.close_on_new_image and image_ref is not None and current is not None
                and current.sha256 != image_ref.sha256):
            self.close_session(session.id)  # a new object: the previous dialogue is over
            return self.store.create_session(Session(user_id=user_id, robot_id=session.robot_id)), True
        return session, False

    def _check_text(self, text: str) -> str:
        if not isinstance(text, str):
            raise InvalidInput("the message must be text")
        text = text.strip()
        if not text:
            raise InvalidInput("the message is empty")
        if len(text) > self.config.limits.max_message_chars:
            raise InvalidInput(
                f"the message has {len(text)} characters; the limit is {self.config.limits.max_message_chars}")
        return text

    @staticmethod
    def _check_user(user_id: str) -> str:
        if not isinstance(user_id, str) or not re.fullmatch(r"[A-Za-z0-9_.@:-]{1,128}", user_id):
            raise InvalidInput("user_id must be 1-128 characters of letters, digits and _ . @ : -")
        return user_id

    def _check_image(self, image) -> tuple[ImageRef | None, Image.Image | None, bytes | None]:
        if image is None:
            return None, None, None
        limits = self.config.limits
        if isinstance(image, Image.Image):
            import io

            buf = io.BytesIO()
            to_rgb(image).save(buf, format="PNG")
            pil, ref = decode_image(buf.getvalue(), max_pixels=limits.max_image_pixels)
            return ref, pil, buf.getvalue()
        pil, ref, data = load_image(image, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels)
        return ref, pil, data

    def _remember_image(self, sha: str, image: Image.Image | None) -> None:
        if image is None:
            return
        self._images[sha] = image
        self._images.move_to_end(sha)
        while len(self._images) > 32:
            self._images.popitem(last=False)

    def _image(self, sha: str) -> Image.Image:
        if sha not in self._images:
            pil, _ = decode_image(self.store.get_image_bytes(sha), max_pixels=self.config.limits.max_image_pixels)
            self._remember_image(sha, pil)
        return self._images[sha]

    def _session_image(self, turns: list[Turn]) -> Image.Image | None:
        ref = _session_image_ref(turns)
        return self._image(ref.sha256) if ref is not None else None

    def _references(self, event_ids: list[str], scores: dict[str, float]) -> list[Reference]:
        if not event_ids:
            return []
        return [Reference(e.id, e.question, e.answer, scores.get(e.id, 0.0)) for e in self.store.get_events(event_ids)]


@dataclass
class _Outcome:
    turn: Turn
    scores: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0


def _rejected_answers(turns: list[Turn]) -> list[str]:
    """The answers the user turned down (negative feedback) since their last approval in this dialogue."""
    rejected: list[str] = []
    answer: Turn | None = None
    for t in turns:
        if t.role == Role.ASSISTANT and t.kind == TurnKind.ANSWER:
            answer = t
        elif t.role == Role.USER and t.feedback is not None and answer is not None:
            if t.feedback.label == Label.NEGATIVE:
                rejected.append(answer.text)
            elif t.feedback.label == Label.POSITIVE:
                rejected = []
            answer = None
    return rejected


def _accepted_answers(turns: list[Turn]) -> list[str]:
    """The answers the user approved (positive feedback right after them) in this dialogue."""
    accepted: list[str] = []
    for prev, t in zip(turns, turns[1:], strict=False):
        if prev.role == Role.ASSISTANT and prev.kind == TurnKind.ANSWER and t.role == Role.USER \
                and t.feedback is not None and t.feedback.label == Label.POSITIVE:
            accepted.append(prev.text)
    return accepted


def _clarifications_since(turns: list[Turn], request: Turn | None) -> int:
    start = turns.index(request) if request is not None and request in turns else 0
    return sum(1 for t in turns[start:] if t.kind == TurnKind.CLARIFICATION)


def _last_assistant(turns: list[Turn]) -> Turn | None:
    return next((t for t in reversed(turns) if t.role == Role.ASSISTANT), None)


def _open_request(turns: list[Turn]) -> Turn | None:
    return next((t for t in reversed(turns) if t.role == Role.USER and t.kind == TurnKind.QUESTION), None)


def _session_image_ref(turns: list[Turn]) -> ImageRef | None:
    return next((t.image for t in reversed(turns) if t.image is not None and t.role == Role.USER), None)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


__all__ = ["Assistant", "Reference", "Reply", "looks_like_question"]
