"""The HTTP API's request and reply bodies (pydantic: only here, for the OpenAPI schema and validation)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

UserId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@:-]+$",
                              description="the user within the key's robot")]
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


# ---------------------------------------------------------------------------------------------- turns
class TurnRequest(BaseModel):
    """A user turn as JSON; the image (optional) as base64 or a data URL."""

    model_config = ConfigDict(extra="forbid")
    user: UserId
    text: Annotated[str, Field(min_length=1, max_length=20_000)]
    image_base64: str | None = Field(None, description="the image's bytes in base64, or a data:image/...;base64 URL")
    session_id: Id | None = Field(None, description="continue this session (none: a new one)")


class ReferenceOut(BaseModel):
    event_id: str
    question: str
    answer: str
    score: float
    image_sha256: str | None = Field(None, description="the event's image (`GET /v1/images/{sha256}`)")


class FeedbackOut(BaseModel):
    label: str
    confidence: float
    correction: str | None
    source: str


class ReplyOut(BaseModel):
    """What the assistant said, and what it was based on."""

    session_id: str
    turn_id: str
    text: str
    kind: Literal["answer", "clarification", "reaction", "question"]
    options: list[str] = Field(default_factory=list, description="the choices a clarifying question offers")
    references: list[ReferenceOut] = Field(default_factory=list)
    model_version: str
    precise_question: str | None = None
    new_session: bool = False
    feedback: FeedbackOut | None = Field(None, description="how the user's turn was read as feedback")
    source: Literal["model", "memory", "memory-guess"] = Field(
        "model", description="where an answer came from: the model's words, a past event's answer given outright, "
                             "or the nearest past event's answer worded as a guess")


# ---------------------------------------------------------------------------------------------- sessions
class TurnOut(BaseModel):
    id: str
    role: str
    kind: str
    text: str
    image_sha256: str | None = None
    model_version: str | None = None
    precise_question: str | None = None
    references: list[str] = Field(default_factory=list)
    feedback: FeedbackOut | None = None
    time: float


class SessionOut(BaseModel):
    id: str
    user: str
    robot: str
    closed: bool
    created: float
    updated: float
    turns: list[TurnOut]


class EventOut(BaseModel):
    id: str
    user: str
    robot: str
    question: str
    answer: str
    rejected: list[str]
    label: str
    scope: str
    status: str
    session_id: str | None
    model_version: str | None
    supersedes: str | None
    image_sha256: str | None
    created: float


class CloseOut(BaseModel):
    session_id: str
    events: list[EventOut]


class FeedbackRequest(BaseModel):
    """Thumbs up or down on the session's latest answer, with the right answer for a thumbs down if known."""

    model_config = ConfigDict(extra="forbid")
    rating: Literal["up", "down"]
    correction: Annotated[str, Field(min_length=1, max_length=2_000)] | None = None
    turn_id: Id | None = Field(None, description="the answer judged (it must be the latest; none: the latest)")


class EventsOut(BaseModel):
    events: list[EventOut]


class KeyOut(BaseModel):
    """The caller's own key (never its secret)."""

    id: str
    robot: str
    role: Literal["robot", "admin"]


class ForgetOut(BaseModel):
    robot: str
    user: str
    deleted_events: int
    retired_versions: list[str] = Field(default_factory=list, description=(
        "model versions trained on the user's events: retired, their weights deleted"))
    served: str | None = Field(None, description=(
        "when one of them was serving: the version this worker serves now (other workers switch at their next "
        "turn)"))
    note: str | None = Field(None, description="why `served` is not the active version (the model server refused it)")
    weights_not_deleted: dict[str, str] = Field(default_factory=dict, description=(
        "versions whose weights folder could not be deleted (id -> the error): delete them by hand, or forget "
        "again to retry"))


# ---------------------------------------------------------------------------------------------- learning
class LearnRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    promote: bool = Field(True, description="promote the candidate when the gate passes it")
    general: bool = Field(True, description="check forgetting on the general set")


class JobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    promote: bool
    general: bool
    created: float
    started: float | None
    finished: float | None
    outcome: dict[str, Any] | None = Field(None, description="decision (promoted, refused, nothing to learn), "
                                                             "version, the gate's reasons")
    error: str | None
    progress: float = Field(0.0, ge=0.0, le=1.0, description="the fraction done, 0 to 1")
    phase: Literal["distilling", "training", "gating", "done"] | None = Field(
        None, description="where a running job is (none while queued; where it stopped when failed)")
    step: int = Field(0, description="training steps done (training)")
    steps: int = Field(0, description="training steps in all (training)")
    candidate: int = Field(1, description="the candidate setting being trained, from 1")
    candidates: int = Field(1, description="candidate settings trained one after the other")
    detail: str = Field("", description="the phase in words: 'candidate 1 of 2: training step 3 of 10'")


class JobsOut(BaseModel):
    jobs: list[JobOut]


class VersionOut(BaseModel):
    id: str
    parent: str | None
    recipe: str
    status: str
    events: int
    created: float
    metrics: dict[str, Any]


class VersionsOut(BaseModel):
    serving: str = Field(description="the active version in the registry")
    served: str = Field(description="the version this worker's turns get now")
    note: str | None = Field(None, description="why `served` is not `serving` (e.g. the model server refused it)")
    versions: list[VersionOut]


# ---------------------------------------------------------------------------------------------- openai
class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageUrl(BaseModel):
    url: Annotated[str, Field(min_length=1)]
    detail: str | None = None


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageUrl


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[Annotated[TextPart | ImagePart, Field(discriminator="type")]] | None = None


class ChatRequest(BaseModel):
    """The OpenAI chat request; sampling settings are accepted and ignored (answers are greedy)."""

    model_config = ConfigDict(extra="ignore")
    model: Annotated[str, Field(min_length=1, max_length=200)]
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=500)]
    stream: bool = False
    user: UserId | None = Field(None, description="the user id (within the key's robot); none: the key's own")
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatChoiceMessage
    finish_reason: str


class ChatExtension(BaseModel):
    """iLearn's extension field (`ilearn`), which standard clients ignore."""

    session_id: str
    turn_id: str
    kind: str
    options: list[str]
    references: list[ReferenceOut]
    model_version: str
    precise_question: str | None
    source: str = "model"
    """Where an answer came from: model, memory (outright) or memory-guess (`ReplyOut.source`)."""


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    ilearn: ChatExtension


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class FeedbackAck(BaseModel):
    """The assistant's acknowledgement of explicit feedback (stored in the session like a spoken one)."""

    session_id: str
    turn_id: str
    text: str


class DatasetOut(BaseModel):
    """A training dataset in TRL's standard columns; `images` name `images/<sha256>.png`, fetched from
    `GET /v1/images/{sha256}`."""

    kind: str
    rows: list[dict[str, Any]]
