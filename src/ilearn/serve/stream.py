"""`POST /v1/turns/stream`: a user turn (the multipart form of `/v1/turns/upload`) answered as server-sent events,
and `StreamedTurn`, which runs a turn and hands out its answer's words while the model writes them (this route and
`/v1/chat/completions` with `stream: true`).

The events, in order:

- `start`: at once, before the model runs (`{}`), so a page can show that the assistant is working;
- `delta`: the reply's text in pieces (`{"text": " word"}`): while the model writes the answer, where it can
  (`ilearn.models.streaming`), then the rest of the reply (everything not streamed: a clarifying question, a
  reused answer, an answer fitted to a profile, the last word the streamer held back) in word chunks; the pieces
  joined are the reply's text;
- `reply`: the whole reply, as `POST /v1/turns` returns it (kind, options, references, model version), sent
  after the turn is stored;

or, when the turn fails after the stream began, `error` with the error body every route uses
(`{"error": {"message", "type", "code"}}`); pieces sent before it were never stored. Failures found before the
turn runs (no key, a malformed form, an image over the key's limit) are plain HTTP errors.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import StreamingResponse

import ilearn.serve.schemas as schemas
from ilearn.errors import ILearnError
from ilearn.serve.auth import Caller, ServiceDep
from ilearn.serve.errors import ApiError, error_status, responses
from ilearn.turn import ReplyStream

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["native"])

_ID = r"^[A-Za-z0-9_.-]+$"
_USER = r"^[A-Za-z0-9_.@:-]+$"
_EVENTS = {200: {"content": {"text/event-stream": {"schema": {"type": "object", "description": "each event's data"}}},
                 "description": "server-sent events: start, delta (text pieces), then reply or error"}}


@router.post("/turns/stream", response_class=StreamingResponse, responses={**responses(), **_EVENTS})
def stream_turn(key: Caller, svc: ServiceDep,
                user: Annotated[str, Form(min_length=1, max_length=128, pattern=_USER)],
                text: Annotated[str, Form(min_length=1, max_length=20_000)],
                session_id: Annotated[str | None, Form(max_length=64, pattern=_ID)] = None,
                image: Annotated[UploadFile | None, File(description="the image file")] = None,
                ) -> StreamingResponse:
    """A user turn as a multipart form (`user`, `text`, optional `session_id` and `image`), the reply as
    server-sent events: `start`, `delta` pieces of text (while the model writes them), then `reply` (or
    `error`)."""
    data = None
    if image is not None:
        data = image.file.read(key.limits.max_image_bytes + 1)
        if len(data) > key.limits.max_image_bytes:
            raise ApiError(413, f"the image is over this key's limit of {key.limits.max_image_bytes} bytes")
    turn = StreamedTurn(lambda stream: svc.turn(key, user, text, data or None, session_id, "stream", stream),
                        svc.stream_threads)
    return StreamingResponse(_events(turn),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def sse(event: str, data: object) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def words(text: str) -> list[str]:
    """`text` in word chunks (each with the whitespace before it); joined, `text` without trailing whitespace."""
    return re.findall(r"\s*\S+", text)


def error_body(exc: BaseException) -> dict:
    """The error body every route uses, for an exception raised by a turn (a bug: logged, without detail)."""
    if isinstance(exc, ApiError | ILearnError):
        status, message, kind = error_status(exc)
        return {"error": {"message": message, "type": kind, "code": status}}
    logger.error("a streamed turn failed", exc_info=exc)
    return {"error": {"message": "internal error", "type": "server_error", "code": 500}}


class StreamedTurn:
    """A turn run on a thread of its own (at most `slots` at once), its answer's words handed out while the model
    writes them: the turn's `ReplyStream` (`Assistant.respond(stream=...)`).

    `run(stream)` runs the turn and returns its reply. `events()` yields ("delta", piece) while the model writes,
    then the rest of the reply's text as more deltas and ("reply", reply), or ("error", exception).
    `wait_started()` blocks until the model starts writing or the turn ended; then `session_id` and `turn_id`
    name the reply's session and turn (both None when the turn ended without streaming: see `reply`, `error`)."""

    def __init__(self, run: Callable[[ReplyStream], schemas.ReplyOut], slots: threading.Semaphore) -> None:
        self._run = run
        self._slots = slots
        self._queue: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._started = threading.Event()
        self.session_id: str | None = None
        self.turn_id: str | None = None
        self.reply: schemas.ReplyOut | None = None
        self.error: BaseException | None = None
        threading.Thread(target=self._work, name="ilearn-stream", daemon=True).start()

    # -- the assistant's side (ReplyStream) -------------------------------------------------------------------
    def begin(self, session_id: str, turn_id: str) -> None:
        self.session_id, self.turn_id = session_id, turn_id
        self._started.set()

    def text(self, piece: str) -> None:
        self._queue.put(("delta", piece))

    def _work(self) -> None:
        try:
            with self._slots:
                self.reply = self._run(self)
            self._queue.put(("reply", self.reply))
        except BaseException as exc:  # noqa: BLE001 (handed to the client as an error event)
            self.error = exc
            self._queue.put(("error", exc))
        finally:
            self._started.set()

    # -- the client's side ------------------------------------------------------------------------------------
    def wait_started(self) -> None:
        """Until the model starts writing the answer, or the turn ended (`reply` or `error` set)."""
        self._started.wait()

    @property
    def streaming(self) -> bool:
        """Whether the model started writing the answer (pieces may have been sent)."""
        return self.turn_id is not None

    def events(self) -> Iterator[tuple[str, object]]:
        """The turn's events (class docstring)."""
        sent = ""
        while True:
            kind, value = self._queue.get()
            if kind == "delta":
                sent += value
                yield kind, value
                continue
            if kind == "reply":
                text = value.text
                if not text.startswith(sent):  # guarded against by the streamer (ilearn.models.streaming)
                    logger.warning("streamed words %r are not the start of the reply %r", sent, text)
                for piece in words(text[len(sent):] if text.startswith(sent) else ""):
                    yield "delta", piece
            yield kind, value
            return


def _events(turn: StreamedTurn) -> Iterator[str]:
    yield sse("start", {})
    for kind, value in turn.events():
        if kind == "delta":
            yield sse("delta", {"text": value})
        elif kind == "reply":
            yield sse("reply", value.model_dump())
        else:
            yield sse("error", error_body(value))


__all__ = ["StreamedTurn", "error_body", "router", "sse", "words"]
