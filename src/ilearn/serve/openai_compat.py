"""OpenAI-compatible endpoint: `POST /v1/chat/completions` (plain and `stream: true`) and `GET /v1/models`.

- the last message is the user's turn: its text parts, and at most one `image_url` part, a data URL
  (`data:image/png;base64,...`); a remote http(s) URL gets a 400 unless the operator allows fetching;
- `user` is the user id within the key's robot (none: one user per key, `key-<key id>`);
- the session: the header `X-Session-Id` if sent, else the one the earlier messages continue (see
  `ilearn.serve.conversations`), else a new one; the reply's header `X-Session-Id` and its extension say which;
- iLearn's extension field `ilearn` (session, turn, kind, clarifying options, references with scores, model
  version) rides along in the reply and in the last stream chunk; standard clients ignore it;
- streaming (`stream: true`) sends the answer's words as server-sent events while the model writes them, where
  it can (`ilearn.serve.stream`), the rest of the reply in word chunks, then `data: [DONE]`; the response (its
  `X-Session-Id`) begins when the model starts writing, or with the whole reply.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import StreamingResponse

import ilearn.serve.schemas as schemas
from ilearn.errors import InvalidInput, NotFound, SessionClosed
from ilearn.serve.auth import Caller, ServiceDep
from ilearn.serve.conversations import digest
from ilearn.serve.errors import ApiError, responses
from ilearn.serve.keys import ApiKey
from ilearn.serve.payload import decode_base64, fetch_image
from ilearn.serve.scope import user_id
from ilearn.serve.service import Service
from ilearn.serve.stream import StreamedTurn, error_body
from ilearn.turn import ReplyStream

router = APIRouter(prefix="/v1", tags=["openai"])

DEFAULT_QUESTION = "What is this?"
"""The text of a turn that sends only an image (as in `ilearn chat`)."""


class _Message:
    """One chat message as the turn needs it: text, the image's URL (not yet decoded) and its digest key."""

    def __init__(self, message: schemas.ChatMessage) -> None:
        self.role = message.role
        content = message.content
        parts = [schemas.TextPart(type="text", text=content)] if isinstance(content, str) else list(content or [])
        self.text = "\n".join(p.text for p in parts if isinstance(p, schemas.TextPart)).strip()
        urls = [p.image_url.url for p in parts if isinstance(p, schemas.ImagePart)]
        if len(urls) > 1:
            raise InvalidInput("send at most one image per message")
        if urls and self.role != "user":
            raise InvalidInput("only user messages may carry an image")
        self.image_url = urls[0] if urls else None
        image_key = hashlib.sha256(self.image_url.encode()).hexdigest() if self.image_url else ""
        self.key = (self.role, self.text, image_key)


def _image(url: str, key: ApiKey, svc: Service) -> bytes:
    if url.lower().startswith("data:"):
        return decode_base64(url, key.limits.max_image_bytes)
    if url.lower().startswith(("http://", "https://")):
        if not svc.settings.allow_remote_images:
            raise InvalidInput("this server does not fetch remote image URLs; send the image as a data URL "
                               "(data:image/png;base64,...)")
        return fetch_image(url, key.limits.max_image_bytes, svc.settings.remote_image_timeout_s)
    raise InvalidInput("an image_url must be a data URL (data:image/png;base64,...)")


@router.get("/models", response_model=schemas.ModelList, responses=responses())
def list_models(key: Caller, svc: ServiceDep) -> schemas.ModelList:
    """The one model this server serves (whichever version is active answers)."""
    card = schemas.ModelCard(id=svc.settings.model_name, object="model", created=int(svc.started),
                             owned_by="ilearn")
    return schemas.ModelList(object="list", data=[card])


_STREAM = {200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                 "description": "the reply; with `stream: true`, server-sent events of chat.completion.chunk"}}


@router.post("/chat/completions", response_model=schemas.ChatResponse,
             responses={**responses(400, 404, 409), **_STREAM})
def chat_completions(body: schemas.ChatRequest, key: Caller, svc: ServiceDep, response: Response,
                     x_session_id: Annotated[str | None, Header(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = None):
    """One user turn, OpenAI style (module docstring: images, user, sessions, the `ilearn` extension)."""
    if body.model != svc.settings.model_name:
        raise ApiError(404, f"unknown model {body.model!r}; this server serves {svc.settings.model_name!r}")
    messages = [_Message(m) for m in body.messages]
    last = messages[-1]
    if last.role != "user":
        raise InvalidInput("the last message must be the user's")
    user = body.user or f"key-{key.id}"
    stored = user_id(key.robot, user)
    session_id, derived = x_session_id, False
    if session_id is None:
        session_id = svc.conversations.find(digest(stored, [m.key for m in messages[:-1]]))
        derived = session_id is not None
    text = last.text or DEFAULT_QUESTION

    def run(stream: ReplyStream | None = None) -> schemas.ReplyOut:
        try:
            url = last.image_url if session_id is not None else _latest_image(messages)
            reply = svc.turn(key, user, text, _image(url, key, svc) if url else None, session_id, "openai", stream)
        except (NotFound, SessionClosed):
            if not derived:
                raise
            url = _latest_image(messages)  # the remembered session is gone (closed, forgotten): start a new one
            reply = svc.turn(key, user, text, _image(url, key, svc) if url else None, None, "openai", stream)
        svc.conversations.remember(digest(stored, [*(m.key for m in messages), ("assistant", reply.text, "")]),
                                   reply.session_id, stored)
        return reply

    if body.stream:
        return _streamed(StreamedTurn(run, svc.stream_threads), body.model)
    reply = run()
    response.headers["X-Session-Id"] = reply.session_id
    return schemas.ChatResponse(
        id=f"chatcmpl-{reply.turn_id}", object="chat.completion", created=int(time.time()), model=body.model,
        ilearn=_extension(reply),
        choices=[schemas.ChatChoice(index=0, finish_reason="stop",
                                    message=schemas.ChatChoiceMessage(role="assistant", content=reply.text))])


def _extension(reply: schemas.ReplyOut) -> schemas.ChatExtension:
    return schemas.ChatExtension(session_id=reply.session_id, turn_id=reply.turn_id, kind=reply.kind,
                                 options=reply.options, references=reply.references,
                                 model_version=reply.model_version, precise_question=reply.precise_question,
                                 source=reply.source)


def _streamed(turn: StreamedTurn, model: str) -> StreamingResponse:
    """The turn as chat.completion.chunk events, the response begun when the model starts writing (or the turn
    ended): its session and turn are known then, for the header and the completion's id. A turn that fails
    before that is a plain HTTP error."""
    turn.wait_started()
    if not turn.streaming and turn.error is not None:
        raise turn.error
    session_id = turn.session_id or turn.reply.session_id
    turn_id = turn.turn_id or turn.reply.turn_id
    return StreamingResponse(_chunks(turn, f"chatcmpl-{turn_id}", int(time.time()), model),
                             media_type="text/event-stream",
                             headers={"X-Session-Id": session_id, "Cache-Control": "no-cache"})


def _latest_image(messages: list[_Message]) -> str | None:
    return next((m.image_url for m in reversed(messages) if m.image_url), None)


def _chunks(turn: StreamedTurn, completion_id: str, created: int, model: str) -> Iterator[str]:
    """The turn as chat.completion.chunk events: the role, the text pieces, the finish with the extension, [DONE];
    or an error event (`{"error": ...}`, as OpenAI's servers send one mid-stream)."""

    def event(delta: dict, finish: str | None = None, **extra) -> str:
        chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""})
    for kind, value in turn.events():
        if kind == "delta":
            yield event({"content": value})
        elif kind == "reply":
            yield event({}, "stop", ilearn=_extension(value).model_dump())
            yield "data: [DONE]\n\n"
        else:
            yield f"data: {json.dumps(error_body(value))}\n\n"


__all__ = ["router"]
