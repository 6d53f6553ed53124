"""`POST /v1/turns/stream`: a user turn (the multipart form of `/v1/turns/upload`) answered as server-sent events.

The events, in order:

- `start`: at once, before the model runs (`{}`), so a page can show that the assistant is working;
- `delta`: the reply's text in word chunks (`{"text": " word"}`);
- `reply`: the whole reply, as `POST /v1/turns` returns it (kind, options, references, model version);

or, when the turn fails after the stream began, `error` with the error body every route uses
(`{"error": {"message", "type", "code"}}`). Failures found before the turn runs (no key, a malformed form, an
image over the key's limit) are plain HTTP errors. Answers are generated whole (answers of different sessions
share one batched forward pass), so the words follow one another as soon as the answer is ready.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import StreamingResponse

from ilearn.errors import ILearnError
from ilearn.serve.auth import Caller, ServiceDep
from ilearn.serve.errors import ApiError, error_status, responses
from ilearn.serve.keys import ApiKey
from ilearn.serve.service import Service

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["native"])

_ID = r"^[A-Za-z0-9_.-]+$"
_USER = r"^[A-Za-z0-9_.@:-]+$"
_EVENTS = {200: {"content": {"text/event-stream": {"schema": {"type": "object", "description": "each event's data"}}},
                 "description": "server-sent events: start, delta (word chunks), then reply or error"}}


@router.post("/turns/stream", response_class=StreamingResponse, responses={**responses(), **_EVENTS})
def stream_turn(key: Caller, svc: ServiceDep,
                user: Annotated[str, Form(min_length=1, max_length=128, pattern=_USER)],
                text: Annotated[str, Form(min_length=1, max_length=20_000)],
                session_id: Annotated[str | None, Form(max_length=64, pattern=_ID)] = None,
                image: Annotated[UploadFile | None, File(description="the image file")] = None,
                ) -> StreamingResponse:
    """A user turn as a multipart form (`user`, `text`, optional `session_id` and `image`), the reply as
    server-sent events: `start`, `delta` word chunks, then `reply` (or `error`)."""
    data = None
    if image is not None:
        data = image.file.read(key.limits.max_image_bytes + 1)
        if len(data) > key.limits.max_image_bytes:
            raise ApiError(413, f"the image is over this key's limit of {key.limits.max_image_bytes} bytes")
    return StreamingResponse(_events(svc, key, user, text, data or None, session_id),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def sse(event: str, data: object) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def _events(svc: Service, key: ApiKey, user: str, text: str, image: bytes | None,
                  session_id: str | None) -> AsyncIterator[str]:
    yield sse("start", {})
    try:
        reply = await anyio.to_thread.run_sync(svc.turn, key, user, text, image, session_id, "stream")
    except (ApiError, ILearnError) as exc:
        status, message, kind = error_status(exc)
        yield sse("error", {"error": {"message": message, "type": kind, "code": status}})
        return
    except Exception:  # a bug: logged, reported without detail, as the other routes do
        logger.exception("a streamed turn failed")
        yield sse("error", {"error": {"message": "internal error", "type": "server_error", "code": 500}})
        return
    for piece in re.findall(r"\s*\S+", reply.text):
        yield sse("delta", {"text": piece})
    yield sse("reply", reply.model_dump())


__all__ = ["router", "sse"]
