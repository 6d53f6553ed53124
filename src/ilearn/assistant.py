"""The turn: feedback -> clarify or point -> retrieve -> answer -> store, each a stage over a `TurnState`.

Sessions (`ilearn.sessions`), model versions (`ilearn.models.versions`) and the learning scheduler
(`ilearn.learning.scheduler`) are parts of their own. Turns of different sessions run at the same time, turns of
one session one after the other; a turn keeps the model version it started with (see `ilearn.sessions` for the
locks and what happens when a session is closed or its user forgotten meanwhile).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from ilearn.config import Config
from ilearn.dialogue import prompts
from ilearn.dialogue.clarify import Clarifier, make_clarifier
from ilearn.dialogue.feedback import FeedbackDecoder
from ilearn.dialogue.pointing import PointAtPanel
from ilearn.errors import NotFound
from ilearn.images import ImageCache
from ilearn.learning.guesses import Knowledge, base_guess, choose_guess, offer_fallback
from ilearn.learning.scheduler import LearningScheduler
from ilearn.memory import calibration
from ilearn.memory.store import EventStore
from ilearn.models.base import ImageEmbedder, VisionLanguageModel
from ilearn.models.batching import MicroBatcher
from ilearn.models.versions import ModelVersions
from ilearn.sessions import Sessions, session_image_ref
from ilearn.turn import (
    Reference,
    Reply,
    ReplyStream,
    Request,
    RequestStage,
    TurnState,
    check_request,
    clarifications_since,
    looks_like_question,
    open_request,
    rejected_answers,
)
from ilearn.types import Event, EventStatus, ImageRef, Role, Session, Turn, TurnKind, is_rejection, new_id
from ilearn.users.concepts import CONCEPT
from ilearn.users.fit import rewords
from ilearn.users.personal import PersonalMemory
from ilearn.users.profiles import KIND as PROFILE

if TYPE_CHECKING:
    from ilearn.learning.progress import OnProgress
    from ilearn.learning.registry import ForgottenVersions, ModelRegistry
    from ilearn.learning.update import LearnOutcome
    from ilearn.memory.base import RetrievalMemory

logger = logging.getLogger(__name__)


class Assistant:
    """A vision-language assistant that clarifies, retrieves corrected answers and learns from its users.

    Build it with `Assistant.from_config(config)`; talk to it with `respond(...)` (from as many threads as you
    like); end a dialogue with `close_session(...)` (idle sessions are closed by `close_idle_sessions`).
    """

    def __init__(
        self,
        config: Config,
        vlm: VisionLanguageModel,
        store: EventStore,
        *,
        memory: RetrievalMemory | None = None,
        feedback_decoder: FeedbackDecoder | None = None,
        clarifier: Clarifier | None = None,
        registry: ModelRegistry | None = None,
        versions: ModelVersions | None = None,
        request_stages: Sequence[RequestStage] | None = None,
        personal: PersonalMemory | None = None,
    ):
        self.config = config
        self.vlm = vlm
        """The base model (a promoted version serves from a model object of its own: `versions`)."""
        self.store = store
        self.memory = memory
        self.feedback_decoder = feedback_decoder
        self.registry = registry
        self.versions = versions or ModelVersions(vlm, registry)
        self.batcher = MicroBatcher(config.model.max_batch, split=config.model.batch_split)
        """Answers of turns running at the same time on the same model version, generated in one batch."""
        self.clarifier = clarifier or make_clarifier(
            config.clarify.method if config.clarify.enabled else "never", self.versions.served,
            settings=config.clarify, store=store)
        self.sessions = Sessions(store, config.session, config.robot_id)
        self.scheduler = LearningScheduler(store, registry, config, self.versions, memory=memory)
        self.personal = personal or PersonalMemory(store, _concept_embedder(memory), **asdict(config.personal))
        """Profiles and personal concepts (`ilearn.users`)."""
        self.request_stages: tuple[RequestStage, ...] = (self.personal.recognise, *(
            (PointAtPanel(config.limits.max_image_pixels),) if request_stages is None else tuple(request_stages)))
        self._images = ImageCache(store.get_image_bytes, max_pixels=config.limits.max_image_pixels)
        self._metrics: dict[str, dict[str, Any]] = {}  # version id -> its registry metrics (`_version_metrics`)
        self._knowledge = Knowledge()  # which events each version knows (`_knows`): verdicts only, no answers
        if memory is not None:  # a forget here or, on a fleet's store, in another process
            memory.on_forget(self._drop_picture_caches)

    def _version_metrics(self, version_id: str) -> dict[str, Any]:
        """The registry's metrics of model version `version_id` ({} for the base weights or an unknown version; one
        store read per version)."""
        if version_id == "base" or self.registry is None:
            return {}
        known = self._metrics.get(version_id)
        if known is None:
            try:
                known = dict(self.registry.get(version_id).metrics)
            except NotFound:
                known = {}
            self._metrics[version_id] = known
        return known

    def _fits_users(self, version_id: str) -> bool:
        """Whether the model version `version_id` was trained on user-aware rows (`ilearn.users.tuning`): it words
        its answers for the user itself, so the wording rules step aside."""
        from ilearn.users.tuning import USER_AWARE

        return bool(self._version_metrics(version_id).get(USER_AWARE))

    def _guesses_allowed(self, version_id: str) -> bool:
        """Whether the memory's guesses may overrule the answers of model version `version_id`: what its gate chose
        on its held-out events (`ilearn.learning.guesses`); always for the base weights and a version that never
        chose."""
        from ilearn.learning.guesses import allowed

        return allowed(self._version_metrics(version_id))

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
                        clarifier=parts.clarifier, registry=parts.registry, versions=parts.versions)
        assistant.recover()
        return assistant

    # ------------------------------------------------------------------ the turn
    def respond(
        self,
        user_id: str,
        text: str,
        image: bytes | str | Path | Image.Image | None = None,
        session_id: str | None = None,
        stream: ReplyStream | None = None,
    ) -> Reply:
        """Answer one user turn. Creates a session when `session_id` is None (or when `image` shows another
        object than the session's, under `session.close_on_new_image`).

        `stream`: where the answer's words go while the model writes them, when the model can stream and the
        words shown are the model's own (`_answer`); the reply, stored first, is the same as without it.

        Raises InvalidInput / InvalidImage for bad input, NotFound for an unknown (or forgotten) session,
        SessionClosed for a closed one; nothing is written in those cases. Thread-safe.
        """
        start = time.perf_counter()
        request = check_request(self.config.limits, user_id, text, image)
        with self._turn(request, session_id) as state:
            state.stream = stream
            if not self.personal.statement(state):  # what the user says about themselves and their things
                self._feedback(state)
            self._log_request(state)
            if state.reply is None:
                self._clarify_or_point(state)
            self._retrieve(state)
            self._answer(state)
            self._store(state)
        state.clock("total", start)
        return self._reply(state)

    @contextmanager
    def _turn(self, request: Request, session_id: str | None) -> Iterator[TurnState]:
        """The turn's state, for the time of the turn: the user's gate and the session's lock held, one model
        version taken. A turn showing another object than its session's closes that session and opens a new one."""
        with ExitStack() as held:
            held.enter_context(self.sessions.user(request.user_id))
            if session_id is None:
                session, new = held.enter_context(self.sessions.opened(request.user_id)), True
            else:
                session, new = held.enter_context(self.sessions.resumed(request.user_id, session_id)), False
                if self.sessions.object_changed(session, request.image_ref):
                    self.scheduler.note(len(self._close(session.id)))  # a new object: that dialogue is over
                    session = held.enter_context(self.sessions.opened(request.user_id, session.robot_id))
                    new = True
            model = held.enter_context(self.versions.hold())
            held.enter_context(self.batcher.turn())  # a batch about to start waits a little for this turn
            user_turn = Turn(Role.USER, request.text, TurnKind.QUESTION, session_id=session.id,
                             image=request.image_ref)
            image = request.image if request.image is not None else self._session_image(session)
            yield TurnState(request, model, session, new, user_turn, image=image,
                            avoid=rejected_answers(session.turns))

    def _feedback(self, state: TurnState) -> None:
        """1. The user's reaction to the previous answer (ReSpect); a reaction (or the reply to a clarifying
        question) is marked as such."""
        if state.last_reply is not None and not state.after_clarification and self.feedback_decoder is not None:
            start = time.perf_counter()
            state.feedback = self.feedback_decoder.decode([*state.history, state.user_turn])
            state.user_turn.feedback = state.feedback
            if state.feedback is not None:  # "no really. what is it?" turns down the answer it asks again after
                state.avoid = rejected_answers([*state.history, state.user_turn])
            calibration.record_reuse_outcome(self.memory, state.last_reply.id, state.last_reply.text, state.feedback)
            state.clock("feedback", start)
        fb = state.feedback
        reacts = fb is not None and (fb.correction or not looks_like_question(state.request.text))
        if state.after_clarification or reacts:
            state.user_turn.kind = TurnKind.REACTION

    def _log_request(self, state: TurnState) -> None:
        """The user's turn is persisted at once (with its image, in one transaction)."""
        start = time.perf_counter()
        request = state.request
        self._add_turn(state.user_turn, (request.image_ref, request.image_bytes) if request.image_ref else None)
        if request.image is not None:
            self._images.put(request.image_ref.sha256, request.image)
        state.clock("store", start)

    def _clarify_or_point(self, state: TurnState) -> None:
        """2. What the turn answers: the reply to a clarifying question resolves the precise question (or asks
        once more, bounded); a reaction is acknowledged; a new request goes to the scenario stages (pointing at a
        board's panel), else Chain of Question asks which meaning the user wants when it is ambiguous."""
        if state.after_clarification:
            self._resolve(state)
        elif state.user_turn.kind == TurnKind.REACTION and state.feedback is not None:
            state.reply = state.say(prompts.acknowledge(state.feedback.label.value, state.feedback.correction),
                                    TurnKind.REACTION)
        elif not any(stage(state) for stage in self.request_stages):
            start = time.perf_counter()
            decision = self.clarifier.assess(state.request.text, state.image is not None)
            state.clock("clarify", start)
            if decision.ambiguous and self.config.clarify.max_clarifications > 0 and state.image is not None:
                state.reply = state.say(decision.question, TurnKind.CLARIFICATION)
            else:
                state.question = self.clarifier.precise(state.request.text)

    def _resolve(self, state: TurnState) -> None:
        request = open_request(state.history)
        original = request.text if request is not None else state.request.text
        start = time.perf_counter()
        precise = self.clarifier.resolve(original, state.request.text)
        state.clock("clarify", start)
        asked = clarifications_since(state.history, request)
        if precise is None and asked < self.config.clarify.max_clarifications:
            decision = self.clarifier.assess(original, state.image is not None)
            state.reply = state.say(decision.question or prompts.CLARIFY_AGAIN, TurnKind.CLARIFICATION)
        else:
            state.question = precise or self.clarifier.fallback(original, state.request.text)

    def _retrieve(self, state: TurnState) -> None:
        """3. Dual-Modality Retrieval: past events like this image and question, in the user's scope, minus those
        whose answer the user turned down in this dialogue."""
        if state.question is None or state.image is None or self.memory is None or not self.config.retrieval.enabled:
            return
        from ilearn.memory.retrieval import references

        start = time.perf_counter()
        rc = self.config.retrieval
        session = state.session
        if rc.guess_threshold is not None:  # every nearest event is a candidate for a guess (`tentative`)
            found = self.memory.search(state.image, state.question, session.user_id, session.robot_id,
                                       k=rc.candidates, floor=-1.0)
        else:
            found = self.memory.search(state.image, state.question, session.user_id, session.robot_id)
        state.candidates = [m for m in found if not state.turned_down(m.event.answer)]
        state.matches = references(state.candidates, rc)
        state.clock("retrieve", start)

    def _answer(self, state: TurnState) -> None:
        """4. Reuse a decisive reference's corrected answer, else ask the model, with the references in context
        while the base model serves (`retrieval.prompt_references`). When the model's answer is not one the
        memory holds for this question and a past event about it comes close enough (`retrieval.guess_threshold`),
        that event's answer is offered instead, worded as a guess.

        An answer the user rejected earlier in this dialogue is never given again: the model is asked for another
        reply, and if it has none the assistant says it is not sure.

        A streamed turn (`state.stream`) gets the model's words as they come, unless the words shown may differ
        from them (an answer that must avoid rejected ones, one that may become a guess, or a profile whose answers
        are reworded): those, a reused answer and every reply that is not an answer arrive whole with the reply."""
        if state.question is None:
            return
        from ilearn.memory.retrieval import guess_overrules, reusable

        start = time.perf_counter()
        reply_id = new_id("trn")
        profile = self.personal.profiles.get(state.session.user_id)
        rc = self.config.retrieval
        top = reusable(state.matches, calibration.reuse_threshold(self.memory, rc.reuse_threshold), rc.reuse_margin,
                       rc.reuse_min_text_sim)
        own = None  # a tuned model's answer that a same-question reference carries stands (reuse_defers_to_model)
        if top is not None and rc.reuse_defers_to_model and state.model.version != "base":
            own = self._own_answer(state, profile)
        # a version tuned user-aware words its own answers; a reused answer is the teacher's words
        fitted_by_model = (top is None or own is not None) and self._fits_users(state.model.version)
        if own is not None:
            text, state.prompt_tokens, top = own.text.strip(), own.prompt_tokens, None
        elif top is not None:
            text, state.source = prompts.reused_answer(top.event.answer), "memory"
        else:
            shown = rc.prompt_references == "always" or (rc.prompt_references == "untuned"
                                                         and state.model.version == "base")
            references = self.memory.format_references(state.matches) if state.matches and shown else ""
            guess, weight, fallback, fallback_weight = None, None, None, None
            tuned = state.model.version != "base"
            if rc.guess_threshold is not None and self._guesses_allowed(state.model.version):
                # the memory's own events choose the weight and the gate; a tuned version's, for what it learnt
                guess, weight = choose_guess(state.candidates, rc, self.memory, tuned)
                if guess is None and tuned and rc.tuned_gate_known_only:  # refused by the tuned gate alone?
                    fallback, fallback_weight = base_guess(state.candidates, rc, self.memory)
            # a reply that may become a guess arrives whole, like one that must avoid rejected answers
            stream = (state.stream if not state.avoid and guess is None and fallback is None
                      and (fitted_by_model or not rewords(profile)) else None)
            if stream is not None:
                stream.begin(state.session.id, reply_id)
            generation = self._generate(state, profile, references, tuned=fitted_by_model,
                                        on_text=stream.text if stream is not None else None)
            text = generation.text.strip() or "I don't know."
            if state.turned_down(text):
                text = prompts.NOT_SURE
            state.prompt_tokens = generation.prompt_tokens
            # the version's answer, then whether it knows the guess's event, decide (`choose_guess`)
            if fallback is not None and offer_fallback(fallback, state.candidates, rc,
                                                       lambda event: self._knows(state, event), text):
                guess, weight = fallback, fallback_weight
            if guess is not None and guess_overrules(text, guess, state.matches, state.candidates,
                                                     min_text_sim=rc.reuse_min_text_sim, margin=rc.guess_margin,
                                                     weight=weight, references_stand=rc.guess_references_stand):
                text, top, fitted_by_model = prompts.reused_answer(guess.event.answer), guess, False
                state.source = "memory-guess"
        if text != prompts.NOT_SURE and not fitted_by_model:
            state.shown_text = self.personal.fit(text, profile)  # worded for the user; the log keeps the model's
        if state.source == "memory-guess":
            state.shown_text = prompts.tentative_answer(state.shown_text or text)
        state.clock("answer", start)
        state.reply = state.say(text, TurnKind.ANSWER, retrieved=[m.event.id for m in state.matches],
                                precise_question=state.question, id=reply_id,
                                answered_from=top.event.id if top is not None else None)
        judged = [top] if state.source == "memory-guess" else state.matches
        calibration.note_answer(self.memory, state.reply.id, judged, reused=state.source == "memory")

    def _carrying(self, text: str, matches: Sequence[Any]) -> list[Any]:
        """The matches about the same question (`retrieval.reuse_min_text_sim`) whose answer is the answer `text`."""
        from ilearn.memory.retrieval import carrying

        return carrying(text, matches, self.config.retrieval.reuse_min_text_sim)

    def _generate(self, state: TurnState, profile: Any, references: str, *, tuned: bool,
                  on_text: Any = None) -> Any:
        """The serving model's reply to the turn's question (with `references` in its prompt), avoiding the answers
        the user turned down."""
        messages = self.personal.prompted(prompts.answer_messages(state.question, state.image, references), profile,
                                          tuned=tuned)
        return self.batcher.generate(state.model.vlm, messages, avoid=state.avoid,
                                     max_new_tokens=self.config.model.max_new_tokens, on_text=on_text)

    def _knows(self, state: TurnState, event: Any) -> bool:
        """Whether the serving version gives `event`'s answer to the event's own question about its own picture
        (asked once per version and event, `ilearn.learning.guesses.Knowledge`); a picture the store no longer
        holds counts as known."""
        def answer_of(event: Any) -> str | None:
            try:
                image = self._images.get(event.image.sha256) if event.image is not None else None
            except NotFound:
                return None
            if image is None:
                return None
            asked = prompts.answer_messages(event.question, image, "")
            return self.batcher.generate(state.model.vlm, asked,
                                         max_new_tokens=self.config.model.max_new_tokens).text.strip()

        return self._knowledge.knows(state.model.version, event, answer_of)

    def _own_answer(self, state: TurnState, profile: Any) -> Any:
        """The serving model's answer without references (as a tuned version was trained) when a reference about the
        same question carries it, else None."""
        generation = self._generate(state, profile, "", tuned=self._fits_users(state.model.version))
        said = generation.text.strip()
        return generation if said and self._carrying(said, state.matches) and not state.turned_down(said) else None

    def _store(self, state: TurnState) -> None:
        """5. The reply is persisted (with the image it carries, in one transaction) before it is returned."""
        start = time.perf_counter()
        self._add_turn(state.reply, state.reply_image)
        state.clock("store", start)

    def _add_turn(self, turn: Turn, image: tuple[ImageRef, bytes] | None) -> None:
        """Store `turn`, and first the image it carries in the same transaction (a turn without one is a single
        write: no transaction to open, one round trip fewer to a database server)."""
        if image is None:
            self.store.add_turn(turn)
            return
        with self.store.transaction():
            self.store.put_image(image[1], image[0])
            self.store.add_turn(turn)

    def _reply(self, state: TurnState) -> Reply:
        reply = state.reply
        return Reply(
            session_id=state.session.id, text=state.shown_text or reply.text, kind=reply.kind, turn_id=reply.id,
            model_version=state.model.version, precise_question=reply.precise_question,
            references=self._references(state), feedback=state.feedback, new_session=state.new_session,
            timings_ms=state.timings, prompt_tokens=state.prompt_tokens,
            source=state.source if reply.kind == TurnKind.ANSWER else "model",
        )

    def _references(self, state: TurnState) -> list[Reference]:
        """The retrieved events shown with the answer (an event deleted meanwhile, by a forget, is left out)."""
        scores = {m.event.id: m.score for m in state.matches}
        events = []
        for event_id in state.reply.retrieved:
            try:
                events.append(self.store.get_event(event_id))
            except NotFound:
                continue
        return [Reference(e.id, e.question, e.answer, scores.get(e.id, 0.0)) for e in events]

    # ------------------------------------------------------------------ sessions
    def close_session(self, session_id: str) -> list[Event]:
        """End a dialogue and distil it into history events (idempotent: a second close adds nothing).

        Waits for a turn of the session in progress. NotFound for an unknown (or forgotten) session."""
        with self.sessions.user(self.sessions.owner(session_id)), self.sessions.lock(session_id):
            events = self._close(session_id)
        self.scheduler.note(len(events))
        return events

    def close_idle_sessions(self, now: float | None = None) -> list[Event]:
        """Close sessions idle for longer than the configured timeout, and distil sessions left by a crash.

        A session with a turn running (or its user being forgotten) is skipped: it is not idle."""
        events: list[Event] = []
        for session in self.sessions.pending(now):
            with self.sessions.try_hold(session.user_id, session.id) as held:
                if held and self.sessions.still_pending(session.id, now):
                    events += self._close(session.id)
        self.scheduler.note(len(events))
        return events

    def get_session(self, session_id: str) -> Session:
        return self.store.get_session(session_id)

    def _close(self, session_id: str) -> list[Event]:
        """Close and distil a session, index its events (caller holds the session's lock)."""
        from ilearn.learning.construct import close_and_distil

        events = close_and_distil(self.store, session_id, self.feedback_decoder)
        if self.memory is not None:
            for event in events:  # answered events are indexed; rejections only shared or not (trust rules)
                if (event.status == EventStatus.ACTIVE and event.answer.strip()) or is_rejection(event):
                    self.memory.add(event, self._images.get(event.image.sha256) if event.image else None)
        return events

    def _session_image(self, session: Session) -> Image.Image | None:
        ref = session_image_ref(session)
        return self._images.get(ref.sha256) if ref is not None else None

    # ------------------------------------------------------------------ learning
    def learn(self, *, promote: bool = True, general: bool = True, progress: OnProgress | None = None) -> LearnOutcome:
        """Train a candidate on the events so far, gate it against the serving model, promote it if better.

        Returns a `LearnOutcome`; the promoted version serves from the next turn on. Turns go on meanwhile.
        `progress` is told the phase and the fraction done as it goes (`ilearn.learning.progress`)."""
        return self.scheduler.run(promote=promote, general=general, progress=progress)

    def new_events_since_training(self) -> int:
        """Events not in the latest model version's snapshot (trained or held out)."""
        return self.scheduler.new_events_since_training()

    @property
    def last_learn(self) -> LearnOutcome | None:
        """The outcome of the latest background update."""
        return self.scheduler.last

    def wait_for_learning(self, timeout: float | None = None) -> None:
        """Block until a background update (if any) has finished."""
        self.scheduler.wait(timeout)

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> None:
        """On start: distil what a crash left behind and bring the vector index up to date."""
        self.close_idle_sessions()
        if self.memory is not None:
            self.memory.ensure_fresh()

    def forget_user(self, user_id: str) -> list[str]:
        """Delete every trace of a user (`forget`); returns the deleted event ids. Unknown user -> NotFound."""
        return self.forget(user_id).event_ids

    def forget(self, user_id: str) -> ForgetReport:
        """Delete every trace of a user and report it (`forget_user_data`). Unknown user -> NotFound.

        Waits for the user's turns in progress (their rows are deleted too); turns of the user that arrive
        meanwhile wait, then find their session gone (NotFound). A serving version trained on their events stops
        serving before the events are deleted (`ModelVersions.forget`). The process's caches of decoded pictures
        and image features are emptied too (`_drop_picture_caches`; also after a forget in another process of a
        fleet, which the memory reports)."""
        with self.sessions.user(user_id, exclusive=True):
            report = forget_user_data(self.store, self.memory, self.registry, self.config.home_path, user_id,
                                      versions=self.versions)
        self._knowledge.forget(report.event_ids)
        if self.memory is None:  # else the memory's forget ran the hook
            self._drop_picture_caches()
        return report

    def _drop_picture_caches(self) -> None:
        """Empty the caches of decoded pictures and of their vision features (`forget`): they are by content, so
        a forgotten user's pictures cannot be told from others'."""
        self._images.clear()
        self.versions.clear_caches()

    def close(self) -> None:
        """Save the vector index and close the store (call on shutdown; a crash is repaired on the next start)."""
        self.wait_for_learning()
        if self.memory is not None:
            self.memory.close()
        self.store.close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ForgetReport:
    """What forgetting a user deleted (`forget_user_data`)."""

    user_id: str
    event_ids: list[str] = field(default_factory=list)
    sessions: int = 0
    turns: int = 0
    images: int = 0
    vectors: int = 0
    exports: list[str] = field(default_factory=list)
    versions: ForgottenVersions | None = None
    profile: bool = False
    """They had a profile (`ilearn.users`), now deleted."""
    concepts: int = 0
    """Their personal things (`ilearn.users`), deleted with their photos."""
    served: str | None = None
    """The version this process serves after the forget (None: not switched here; its workers switch at their
    next turn)."""
    note: str | None = None
    """Why `served` is not the active version (e.g. the model server refused it), else None."""

    def summary(self) -> str:
        lines = [f"forgot user {self.user_id!r}: {len(self.event_ids)} event(s), {self.sessions} session(s) "
                 f"({self.turns} turns), {self.images} image(s), {self.vectors} indexed vector(s) deleted, "
                 f"the index compacted"]
        if self.profile or self.concepts:
            lines.append(f"  their profile ({'deleted' if self.profile else 'none'}) and {self.concepts} personal "
                         f"thing(s), deleted with their photos")
        if self.exports:
            lines.append(f"  exports under the home that held them, deleted: {', '.join(self.exports)}")
        v = self.versions
        if v is not None and v.trained:
            lines.append(f"  model versions trained on them, retired and their weights deleted: {', '.join(v.trained)}"
                         if not v.undeleted else
                         f"  model versions trained on them, retired: {', '.join(v.trained)}")
        if v is not None and v.undeleted:
            lines.append("  weights NOT deleted (delete the folders by hand, or forget again to retry): "
                         + "; ".join(f"{vid}: {error}" for vid, error in sorted(v.undeleted.items())))
        if v is not None and v.replaced:
            now = (f"{v.active_after} serves now" if self.served in (None, v.active_after)
                   else f"{v.active_after} is active, {self.served} serves: {self.note}")
            lines.append(f"  the serving model {v.active_before} was one of them: {now} "
                         f"(run `ilearn learn` to train one on the remaining shared events)")
        if v is not None and set(v.scrubbed) - set(v.trained):
            lines.append(f"  their ids and gate examples removed from: {', '.join(sorted(set(v.scrubbed) - set(v.trained)))}")
        return "\n".join(lines)


def _concept_embedder(memory: RetrievalMemory | None) -> ImageEmbedder:
    """The image embedder personal concepts are recognised with: the retrieval memory's, else the model-free stub."""
    if memory is not None:
        return memory.image_embedder
    from ilearn.models.embedders import StubImageEmbedder

    return StubImageEmbedder()


def forget_user_data(store: EventStore, memory: RetrievalMemory | None, registry: ModelRegistry | None,
                     home: Path | None, user_id: str, *, versions: ModelVersions | None = None) -> ForgetReport:
    """Delete every trace of `user_id` and report it: model versions trained on their events (retired, weights
    deleted, the serving one replaced by a clean one: `ModelRegistry.forget_events`; with `versions`, this
    process's served model switched from them at once: `ModelVersions.forget`), their sessions, turns, events,
    images and vectors (the index compacted, the WAL emptied), their ids in other rows, and the exports under
    `home` that held their events. Unknown user -> NotFound."""
    if not store.has_user(user_id):
        raise NotFound(f"unknown user {user_id!r}")
    sessions = store.list_sessions(user_id=user_id)
    own = store.list_events(user_id=user_id)
    shas = {e.image.sha256 for e in own if e.image is not None} | {
        t.image.sha256 for s in sessions for t in s.turns if t.image is not None}
    report = ForgetReport(user_id, sessions=len(sessions), turns=sum(len(s.turns) for s in sessions),
                          vectors=sum(e.status == EventStatus.ACTIVE for e in own),
                          profile=bool(store.list_user_records(user_id, PROFILE)),
                          concepts=len(store.list_user_records(user_id, CONCEPT)))
    if registry is not None:
        report.versions = registry.forget_events([e.id for e in own])
        if versions is not None and report.versions.trained:
            report.served = versions.forget(report.versions.trained)
            report.note = versions.note
    report.event_ids = memory.forget_user(user_id) if memory is not None else store.delete_user(user_id)
    for sha in shas:
        try:
            store.get_image_bytes(sha)
        except NotFound:
            report.images += 1
    if home is not None:
        report.exports = _delete_exports(Path(home), set(report.event_ids))
    logger.info("%s", report.summary())
    return report


def _delete_exports(home: Path, event_ids: set[str]) -> list[str]:
    """Delete the dataset exports under `home` (folders with a `snapshot.json`) that hold any of `event_ids`."""
    deleted = []
    for snapshot in sorted(home.rglob("snapshot.json")):
        try:
            record = json.loads(snapshot.read_text())
            held = set(record.get("event_ids", [])) | set(record.get("skipped_event_ids", []))
        except (OSError, ValueError, AttributeError, TypeError):
            continue
        folder = snapshot.parent
        if held & event_ids and folder != home:
            shutil.rmtree(folder)
            deleted.append(str(folder.relative_to(home)))
    return deleted


__all__ = ["Assistant", "ForgetReport", "Reference", "Reply", "forget_user_data", "looks_like_question"]
