"""What the routes do, over one Assistant: turns, explicit feedback, sessions, events, forgetting, models.

Routes (`native.py`, `openai_compat.py`) only translate HTTP to these calls; every call takes the caller's key
and stays in its scope (`scope.py`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING

import ilearn.serve.schemas as schemas
from ilearn.assistant import Assistant, ForgetReport
from ilearn.dialogue import prompts
from ilearn.errors import InvalidInput, NotFound
from ilearn.memory import calibration
from ilearn.models.openai import RemoteModelError
from ilearn.serve.conversations import Conversations
from ilearn.serve.errors import ApiError
from ilearn.serve.jobs import Job, LearningJobs
from ilearn.serve.keys import ApiKey, KeyStore, RateLimiter, keys_location
from ilearn.serve.metrics import Metrics
from ilearn.serve.scope import can_see, check_session, split_user, user_id
from ilearn.serve.settings import ServeSettings
from ilearn.turn import Reply, ReplyStream, open_request
from ilearn.types import Event, EventStatus, Feedback, FeedbackSource, Label, Role, Session, Turn, TurnKind

if TYPE_CHECKING:
    from ilearn.types import ModelVersion

logger = logging.getLogger(__name__)


@dataclass
class Service:
    """The assistant and the service's own parts, shared by every request of one app."""

    assistant: Assistant
    keys: KeyStore
    settings: ServeSettings
    metrics: Metrics
    jobs: LearningJobs
    limiter: RateLimiter
    conversations: Conversations
    owns_assistant: bool
    started: float = field(default_factory=time.time)
    ready: bool = False
    stream_threads: threading.BoundedSemaphore = field(init=False)
    """Streamed turns running at once on threads of their own (`ilearn.serve.stream`): `settings.threads`."""

    def __post_init__(self) -> None:
        self.stream_threads = threading.BoundedSemaphore(self.settings.threads)

    @classmethod
    def build(cls, assistant: Assistant, settings: ServeSettings, *, owns_assistant: bool) -> Service:
        """The service over `assistant`, its keys where `keys_location` says (`settings.keys_path`, else the
        PostgreSQL store's schema, else keys.db in the home)."""
        config = assistant.config
        keys_path = keys_location(settings.keys_path, config.store_url, config.home_path)
        metrics = Metrics()
        jobs = LearningJobs(assistant.learn, on_done=lambda job: _job_done(metrics, job))
        return cls(assistant, KeyStore(keys_path), settings, metrics, jobs, RateLimiter(),
                   Conversations(settings.conversations), owns_assistant)

    # ------------------------------------------------------------------ turns
    def turn(self, key: ApiKey, user: str, text: str, image: bytes | None, session_id: str | None,
             api: str, stream: ReplyStream | None = None) -> schemas.ReplyOut:
        """One user turn of `user` of the key's robot; the reply as the API shows it (`stream`: where the answer's
        words go while the model writes them, `Assistant.respond`)."""
        if image is not None and len(image) > key.limits.max_image_bytes:
            raise ApiError(413, f"the image has {len(image)} bytes; this key's limit is {key.limits.max_image_bytes}")
        start = time.perf_counter()
        self.metrics.turns_in_flight.inc()
        try:
            reply = self.assistant.respond(user_id(key.robot, user), text, image=image, session_id=session_id,
                                           stream=stream)
        finally:
            self.metrics.turns_in_flight.dec()
        self.metrics.turn_seconds.labels(api).observe(time.perf_counter() - start)
        self.metrics.turns.labels(reply.kind.value, api).inc()
        self.metrics.serving(reply.model_version)
        return self.reply_out(reply)

    def reply_out(self, reply: Reply) -> schemas.ReplyOut:
        images = self._reference_images([r.event_id for r in reply.references])
        return schemas.ReplyOut(
            session_id=reply.session_id, turn_id=reply.turn_id, text=reply.text, kind=reply.kind.value,
            options=self.options(reply), model_version=reply.model_version, precise_question=reply.precise_question,
            references=[schemas.ReferenceOut(event_id=r.event_id, question=r.question, answer=r.answer,
                                             score=round(float(r.score), 4), image_sha256=images.get(r.event_id))
                        for r in reply.references],
            new_session=reply.new_session, feedback=_feedback_out(reply.feedback), source=reply.source)

    def _reference_images(self, event_ids: list[str]) -> dict[str, str]:
        """Event id -> the sha256 of its image, for the references of a reply (an event deleted meanwhile: none)."""
        out = {}
        for event_id in event_ids:
            try:
                event = self.assistant.store.get_event(event_id)
            except NotFound:
                continue
            if event.image is not None:
                out[event_id] = event.image.sha256
        return out

    def options(self, reply: Reply) -> list[str]:
        """The choices a clarifying question offers: the clarifier's options for the request it is about."""
        if reply.kind != TurnKind.CLARIFICATION:
            return []
        session = self.assistant.store.get_session(reply.session_id)
        request = open_request([t for t in session.turns if t.id != reply.turn_id])
        if request is None:
            return []
        return list(self.assistant.clarifier.assess(request.text, True).options)

    # ------------------------------------------------------------------ sessions
    def session(self, key: ApiKey, session_id: str) -> Session:
        """The session if the key may see it (NotFound otherwise, as for an unknown id)."""
        return check_session(key, self.assistant.store.get_session(session_id))

    def close(self, key: ApiKey, session_id: str) -> list[Event]:
        check_session(key, self.assistant.store.get_session(session_id, with_turns=False))
        return self.assistant.close_session(session_id)

    def feedback(self, key: ApiKey, session_id: str, request: schemas.FeedbackRequest) -> Turn:
        """Thumbs up or down (with a correction) on the session's latest answer, recorded as the user's reaction
        turn, exactly where spoken feedback goes: the same events come out of the session when it closes."""
        if request.correction is not None and request.rating == "up":
            raise InvalidInput("a correction comes with a thumbs down (rating 'down')")
        correction = request.correction.strip() if request.correction else None
        label = Label.POSITIVE if request.rating == "up" else Label.NEGATIVE
        feedback = Feedback(label, 1.0, correction or None, FeedbackSource.EXPLICIT, "explicit rating")
        sessions, store = self.assistant.sessions, self.assistant.store
        owner = check_session(key, store.get_session(session_id, with_turns=False)).user_id
        with sessions.user(owner), sessions.resumed(owner, session_id) as session:
            answer = next((t for t in reversed(session.turns) if t.role == Role.ASSISTANT), None)
            if answer is None or answer.kind != TurnKind.ANSWER:
                raise ApiError(409, "the session's latest reply is not an answer: there is nothing to rate")
            if request.turn_id is not None and request.turn_id != answer.id:
                raise ApiError(409, f"feedback is taken on the session's latest answer ({answer.id}) only")
            words = f"No, it's {correction}." if correction else ("Yes, that's right." if label == Label.POSITIVE
                                                                   else "No, that's wrong.")
            reaction = Turn(Role.USER, words, TurnKind.REACTION, session_id=session.id, feedback=feedback)
            ack = Turn(Role.ASSISTANT, prompts.acknowledge(label.value, feedback.correction), TurnKind.REACTION,
                       session_id=session.id, model_version=answer.model_version)
            with store.transaction():
                store.add_turn(reaction)
                store.add_turn(ack)
            calibration.record_reuse_outcome(self.assistant.memory, answer.id, answer.text, feedback)
        self.metrics.feedback.labels(request.rating).inc()
        return ack

    # ------------------------------------------------------------------ events and users
    def events(self, key: ApiKey, *, robot: str | None, user: str | None, status: str | None,
               limit: int) -> list[Event]:
        """Events in the caller's scope: a robot key its robot's, an admin key any robot's (or the one named)."""
        if robot is not None and not key.admin and robot != key.robot:
            raise NotFound(f"unknown robot {robot!r}")
        robot = robot or (None if key.admin else key.robot)
        if user is not None and robot is None:
            raise InvalidInput("name the robot (?robot=) to list one user's events")
        try:
            state = EventStatus(status) if status else None
        except ValueError:
            raise InvalidInput(f"status must be one of {[s.value for s in EventStatus]}") from None
        store = self.assistant.store
        if user is not None:
            events = store.iter_events(user_id=user_id(robot, user), status=state)
        else:
            events = (e for e in store.iter_events(status=state) if robot is None or split_user(e.user_id)[0] == robot)
        return list(islice((e for e in events if can_see(key, e.user_id)), limit))

    def dataset(self, key: ApiKey, kind: str, *, robot: str | None, user: str | None) -> list[dict]:
        """The `kind` dataset (sft, dpo, kto, rewards) of the events in the caller's scope, with event ids."""
        from ilearn.learning.datasets import build

        events = self.events(key, robot=robot, user=user, status=None, limit=10**9)
        return build(kind, events, with_ids=True, learn=self.assistant.config.learn)

    def image(self, key: ApiKey, sha256: str) -> bytes:
        """An image that an event in the caller's scope shows (NotFound otherwise, as for an unknown one)."""
        store = self.assistant.store
        robot = None if key.admin else key.robot
        seen = any(e.image is not None and e.image.sha256 == sha256
                   for e in store.iter_events() if robot is None or split_user(e.user_id)[0] == robot)
        if not seen:
            raise NotFound(f"unknown image {sha256}")
        return store.get_image_bytes(sha256)

    def forget(self, robot: str, user: str) -> ForgetReport:
        """Every trace of the user deleted (NotFound for an unknown user), its conversation digests too; what was
        deleted and, when a version trained on their events served, what serves now."""
        stored = user_id(robot, user)
        self.conversations.forget_user(stored)
        report = self.assistant.forget(stored)
        if report.served is not None:
            self.metrics.serving(report.served)
        return report

    # ------------------------------------------------------------------ models
    def promote(self, version_id: str) -> str:
        """Make `version_id` active and serve it from the next turn on; its id (`_change`)."""
        registry = self._registry()
        return self._change(lambda: registry.promote(version_id))

    def rollback(self) -> str:
        """Make the version active before the current one active again and serve it; its id (`_change`)."""
        registry = self._registry()
        return self._change(registry.rollback)

    def _change(self, change: Callable[[], ModelVersion]) -> str:
        """Run the registry `change` through the model versions (`ModelVersions.change`). With a vLLM server
        (`model.publish` "vllm-lora") the change commits only once the server serves the version, as with
        `ilearn models promote`: a refused adapter is a 502 with the server's reason, the registry unchanged."""
        try:
            version = self.assistant.versions.change(change)
        except RemoteModelError as exc:
            raise ApiError(502, f"the model server did not take the change, the active version is unchanged: "
                                f"{exc}") from exc
        self.metrics.serving(version.id)
        return version.id

    def _registry(self):
        if self.assistant.registry is None:
            raise ApiError(409, "this assistant has no model registry")
        return self.assistant.registry

    # ------------------------------------------------------------------ lifecycle
    def shutdown(self) -> None:
        """Stop learning jobs (the running one gets `shutdown_timeout_s`), then close what the app built."""
        self.ready = False
        self.jobs.shutdown(self.settings.shutdown_timeout_s)
        if self.owns_assistant:
            self.assistant.close()
        self.keys.close()


def _job_done(metrics: Metrics, job: Job) -> None:
    metrics.jobs.labels(job.outcome["decision"] if job.outcome else "failed").inc()
    if job.outcome and job.outcome["promoted"]:
        metrics.serving(job.outcome["version"])


def _feedback_out(feedback: Feedback | None) -> schemas.FeedbackOut | None:
    if feedback is None:
        return None
    return schemas.FeedbackOut(label=feedback.label.value, confidence=round(float(feedback.confidence), 4),
                               correction=feedback.correction, source=feedback.source.value)


def turn_out(turn: Turn) -> schemas.TurnOut:
    return schemas.TurnOut(id=turn.id, role=turn.role.value, kind=turn.kind.value, text=turn.text,
                           image_sha256=turn.image.sha256 if turn.image else None, model_version=turn.model_version,
                           precise_question=turn.precise_question, references=list(turn.retrieved),
                           feedback=_feedback_out(turn.feedback), time=turn.time)


def session_out(session: Session) -> schemas.SessionOut:
    robot, user = split_user(session.user_id)
    return schemas.SessionOut(id=session.id, user=user, robot=robot,
                              closed=session.closed, created=session.created, updated=session.updated,
                              turns=[turn_out(t) for t in session.turns])


def event_out(event: Event) -> schemas.EventOut:
    robot, user = split_user(event.user_id)
    return schemas.EventOut(id=event.id, user=user, robot=robot,
                            question=event.question, answer=event.answer, rejected=list(event.rejected),
                            label=event.label.value, scope=event.scope.value, status=event.status.value,
                            session_id=event.session_id, model_version=event.model_version,
                            supersedes=event.supersedes, image_sha256=event.image.sha256 if event.image else None,
                            created=event.created)


def job_out(job: Job) -> schemas.JobOut:
    p = job.progress
    where = {} if p is None else {"progress": round(p.fraction, 4), "phase": p.phase, "step": p.step,
                                  "steps": p.steps, "candidate": p.candidate, "candidates": p.candidates,
                                  "detail": p.describe()}
    return schemas.JobOut(id=job.id, status=job.status, promote=job.promote, general=job.general,
                          created=job.created, started=job.started, finished=job.finished, outcome=job.outcome,
                          error=job.error, **where)


__all__ = ["Service", "event_out", "job_out", "session_out", "turn_out"]
