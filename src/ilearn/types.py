"""The data model: plain dataclasses shared by every part of the loop (see DESIGN.md)."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum


def new_id(prefix: str) -> str:
    """A short unique id with a readable prefix, e.g. ``ses_3f2a9c1b7d0e``."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def now() -> float:
    return time.time()


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class TurnKind(StrEnum):
    QUESTION = "question"  # a user's request about the image
    CLARIFICATION = "clarification"  # the assistant asks which meaning the user wants
    ANSWER = "answer"  # the assistant answers a (precise) question
    REACTION = "reaction"  # a user's reaction to an answer or a reply to a clarification


class Label(StrEnum):
    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"


class FeedbackSource(StrEnum):
    IMPLICIT = "implicit"
    EXPLICIT = "explicit"


class Scope(StrEnum):
    PRIVATE = "private"  # visible to the user who taught it
    SHARED = "shared"  # visible to every user of the robot


class EventStatus(StrEnum):
    ACTIVE = "active"
    SUPERSEDED = "superseded"  # corrected by a later event
    QUARANTINED = "quarantined"  # conflicts with a corroborated answer; waits for resolution
    DELETED = "deleted"


class ModelStatus(StrEnum):
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"
    REJECTED = "rejected"


@dataclass(frozen=True)
class ImageRef:
    """An image stored once, addressed by the sha256 of its bytes."""

    sha256: str
    width: int = 0
    height: int = 0
    format: str = ""


@dataclass
class Feedback:
    label: Label
    confidence: float = 1.0
    correction: str | None = None
    source: FeedbackSource = FeedbackSource.IMPLICIT
    rationale: str = ""


@dataclass
class Turn:
    role: Role
    text: str
    kind: TurnKind
    session_id: str = ""
    image: ImageRef | None = None
    id: str = field(default_factory=lambda: new_id("trn"))
    time: float = field(default_factory=now)
    model_version: str | None = None
    retrieved: list[str] = field(default_factory=list)  # event ids used as references
    precise_question: str | None = None  # the question the assistant answered (after clarification)
    feedback: Feedback | None = None  # decoded reaction to the previous answer (user turns)
    seq: int = 0  # position in the session, assigned by the store
    answered_from: str | None = None  # the event whose answer the memory gave (a reuse or a guess); None: the model's


@dataclass
class Session:
    user_id: str
    robot_id: str = "default"
    id: str = field(default_factory=lambda: new_id("ses"))
    turns: list[Turn] = field(default_factory=list)
    closed: bool = False
    created: float = field(default_factory=now)
    updated: float = field(default_factory=now)
    distilled: bool = False


@dataclass
class Event:
    """iLearnRobot's history event: what was asked about an image and what the right answer is."""

    image: ImageRef | None
    question: str  # the precise question
    answer: str  # the correct answer (confirmed or corrected)
    user_id: str
    robot_id: str = "default"
    rejected: list[str] = field(default_factory=list)  # wrong answers the user turned down
    label: Label = Label.POSITIVE
    scope: Scope = Scope.PRIVATE
    status: EventStatus = EventStatus.ACTIVE
    id: str = field(default_factory=lambda: new_id("evt"))
    session_id: str | None = None
    model_version: str | None = None
    supersedes: str | None = None
    provenance: dict[str, str] = field(default_factory=dict)  # field name -> turn id it came from
    created: float = field(default_factory=now)
    confidence: float = 1.0


def is_rejection(event: Event) -> bool:
    """Whether `event` is a rejection: no answer, only answers its user turned down (live, not retired). Never
    retrieved; the negatives that KTO and REINFORCE learn from (`ilearn.learning.construct`)."""
    return event.status in (EventStatus.ACTIVE, EventStatus.QUARANTINED) and not event.answer.strip() \
        and any(r.strip() for r in event.rejected)


@dataclass
class ModelVersion:
    id: str
    parent: str | None = None
    recipe: str = "base"
    settings: dict = field(default_factory=dict)
    event_ids: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    status: ModelStatus = ModelStatus.CANDIDATE
    path: str | None = None  # folder holding the adapter / weights of this version
    created: float = field(default_factory=now)


_ARTICLES = frozenset({"a", "an", "the"})


def answer_key(answer: str) -> str:
    """Lower-case words without punctuation or articles: when two answers are the same answer. Stricter than the
    answer judge's `ilearn.text.normalise_text` about what a word is (letters and digits only) and looser about
    articles, which it drops anywhere. Letters and digits of any script: "アスピリン" and "イブプロフェン" are two
    answers, not two empty keys."""
    return " ".join(w for w in re.findall(r"[^\W_]+", answer.casefold()) if w not in _ARTICLES)
