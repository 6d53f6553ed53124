"""One turn: the validated request, the state the stages fill in, the reply, and what the stages read from the
dialogue so far (answers turned down or accepted, the open request, clarifications asked)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from ilearn.config import LimitsConfig
from ilearn.errors import InvalidInput
from ilearn.images import load_image, png_image
from ilearn.models.versions import ModelHandle
from ilearn.types import Feedback, ImageRef, Label, Role, Session, Turn, TurnKind, answer_key

if TYPE_CHECKING:
    from ilearn.memory.base import Match

_QUESTION_START = re.compile(
    r"^(what|which|who|whom|whose|where|when|why|how|is|are|was|were|do|does|did|can|could|should|would|will|"
    r"may|tell me|show me|explain|describe|name|identify)\b"
)
_USER_ID = re.compile(r"[A-Za-z0-9_.@:-]{1,128}")


def looks_like_question(text: str) -> bool:
    """True for an utterance that asks something (as opposed to a bare reaction such as 'thanks')."""
    low = text.strip().lower()
    return low.endswith("?") or bool(_QUESTION_START.match(low))


# ---------------------------------------------------------------------------------------------- the request
@dataclass(frozen=True)
class Request:
    """A user turn as received, validated: nothing is written for a request that fails validation."""

    user_id: str
    text: str
    image: Image.Image | None = None
    image_ref: ImageRef | None = None
    image_bytes: bytes | None = None


def check_request(limits: LimitsConfig, user_id: str, text: str,
                  image: bytes | str | Path | Image.Image | None) -> Request:
    """The validated request (InvalidInput / InvalidImage for bad input)."""
    if not isinstance(text, str):
        raise InvalidInput("the message must be text")
    text = text.strip()
    if not text:
        raise InvalidInput("the message is empty")
    if len(text) > limits.max_message_chars:
        raise InvalidInput(f"the message has {len(text)} characters; the limit is {limits.max_message_chars}")
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
        raise InvalidInput("user_id must be 1-128 characters of letters, digits and _ . @ : -")
    if image is None:
        return Request(user_id, text)
    if isinstance(image, Image.Image):
        pil, ref, data = png_image(image, max_pixels=limits.max_image_pixels)
    else:
        pil, ref, data = load_image(image, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels)
    return Request(user_id, text, pil, ref, data)


# ---------------------------------------------------------------------------------------------- the state
@dataclass
class TurnState:
    """What one turn knows, filled in stage by stage (feedback -> clarify or point -> retrieve -> answer -> store).

    `reply` set by a stage ends the turn's decision: the later stages up to `store` leave it as it is.
    """

    request: Request
    model: ModelHandle
    """The model version this turn uses from start to end."""
    session: Session
    """The session, with the turns before this one."""
    new_session: bool
    user_turn: Turn
    image: Image.Image | None = None
    """The image the exchange is about: this turn's, else the session's latest."""
    feedback: Feedback | None = None
    """The decoded reaction to the previous answer."""
    question: str | None = None
    """The precise question to answer."""
    avoid: list[str] = field(default_factory=list)
    """Answers the user turned down in this dialogue; never given again."""
    matches: list[Match] = field(default_factory=list)
    """Events scoring >= retrieval.threshold: the references."""
    candidates: list[Match] = field(default_factory=list)
    """Events scoring >= the lower `retrieval.guess_threshold` as well (what a guess is chosen from)."""
    source: str = "model"
    """Where the answer came from: "model", "memory" (a reference's answer outright) or "memory-guess"."""
    reply: Turn | None = None
    reply_image: tuple[ImageRef, bytes] | None = None
    """An image the reply carries (a picked panel), stored with it."""
    prompt_tokens: int = 0
    stream: ReplyStream | None = None
    """Where the answer's words go while the model writes them (a streamed turn)."""
    shown_text: str | None = None
    """The reply's words as the user sees them, when they differ from the stored turn's (fitted to the user's
    profile: `ilearn.users.fit`; the log and what is learnt keep the model's own words)."""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def history(self) -> list[Turn]:
        """The session's turns before this one."""
        return self.session.turns

    @property
    def last_reply(self) -> Turn | None:
        """The assistant's previous turn in this session."""
        return next((t for t in reversed(self.history) if t.role == Role.ASSISTANT), None)

    @property
    def after_clarification(self) -> bool:
        """The user answers a clarifying question."""
        last = self.last_reply
        return last is not None and last.kind == TurnKind.CLARIFICATION

    def say(self, text: str, kind: TurnKind, **fields) -> Turn:
        """The assistant's turn in this session, stamped with this turn's model version."""
        return Turn(Role.ASSISTANT, text, kind, session_id=self.session.id, model_version=self.model.version,
                    **fields)

    def turned_down(self, answer: str) -> bool:
        """Whether `answer` is one the user turned down in this dialogue (`avoid`), as the same answer."""
        return answer_key(answer) in {answer_key(a) for a in self.avoid}

    def clock(self, stage: str, start: float) -> None:
        """Add the milliseconds since `start` to the stage's timing."""
        self.timings[stage] = self.timings.get(stage, 0.0) + (time.perf_counter() - start) * 1000.0


class ReplyStream(Protocol):
    """Where a streamed turn's answer goes while the model writes it (`Assistant.respond(stream=...)`)."""

    def begin(self, session_id: str, turn_id: str) -> None:
        """The model starts writing the answer (the assistant's turn `turn_id` of this session); `text` pieces may
        follow."""
        ...

    def text(self, piece: str) -> None:
        """The next piece of the answer's text: the pieces joined are a prefix of the reply's text."""
        ...


class RequestStage(Protocol):
    """A scenario's own way to handle a new request (e.g. pointing at a board's panel)."""

    def __call__(self, state: TurnState) -> bool:
        """Handle the request (set `state.reply`) and return True, or return False to leave it to the turn."""
        ...


# ---------------------------------------------------------------------------------------------- the reply
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
    source: str = "model"
    """Where an answer came from: "model" (the serving model's words), "memory" (a past event's answer, given
    outright: `retrieval.reuse_threshold`) or "memory-guess" (the nearest past event's answer, worded as a guess:
    `retrieval.guess_threshold`)."""


# ---------------------------------------------------------------------------------------------- the dialogue
def rejected_answers(turns: list[Turn]) -> list[str]:
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


def accepted_answers(turns: list[Turn]) -> list[str]:
    """The answers the user approved (positive feedback right after them) in this dialogue."""
    accepted: list[str] = []
    for prev, t in zip(turns, turns[1:], strict=False):
        if prev.role == Role.ASSISTANT and prev.kind == TurnKind.ANSWER and t.role == Role.USER \
                and t.feedback is not None and t.feedback.label == Label.POSITIVE:
            accepted.append(prev.text)
    return accepted


def open_request(turns: list[Turn]) -> Turn | None:
    """The user's latest question (what a clarification is about)."""
    return next((t for t in reversed(turns) if t.role == Role.USER and t.kind == TurnKind.QUESTION), None)


def clarifications_since(turns: list[Turn], request: Turn | None) -> int:
    """Clarifying questions asked since `request` (all of them when None)."""
    start = turns.index(request) if request is not None and request in turns else 0
    return sum(1 for t in turns[start:] if t.kind == TurnKind.CLARIFICATION)


__all__ = ["Reference", "Reply", "ReplyStream", "Request", "RequestStage", "TurnState", "check_request", "looks_like_question"]
