"""The app factory: `create_app(runtime_or_assistant)` -> FastAPI. Nothing is built at import time.

    from ilearn.runtime import build_runtime
    app = create_app(build_runtime(config))          # the app owns the assistant and closes it on shutdown
    uvicorn.run(app)

Routes: the native API (`ilearn.serve.native`, `.stream`, `.operator`), the OpenAI-compatible endpoint
(`ilearn.serve.openai_compat`), the web page at `/` (`ilearn.serve.web`), `/healthz` (the process is up),
`/readyz` (it answers turns), `/metrics` (Prometheus text), `/docs` (OpenAPI).
Turns run in worker threads (`ServeSettings.threads` at once); on shutdown uvicorn lets open requests finish,
then queued learning jobs are dropped, a running one gets `shutdown_timeout_s`, and the store is closed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import ilearn.serve.native as native
import ilearn.serve.openai_compat as openai_compat
import ilearn.serve.operator as operator
import ilearn.serve.profiles as profiles
import ilearn.serve.stream as stream
import ilearn.serve.web as web
from ilearn.assistant import Assistant
from ilearn.runtime import Runtime
from ilearn.serve.errors import ErrorResponse, error_response, install_error_handlers
from ilearn.serve.service import Service
from ilearn.serve.settings import ServeSettings

logger = logging.getLogger(__name__)


def assistant_from_runtime(runtime: Runtime) -> Assistant:
    """The assistant over a runtime's parts, with what a crash left behind recovered."""
    assistant = Assistant(runtime.config, runtime.vlm, runtime.store, memory=runtime.memory,
                          feedback_decoder=runtime.decoder, clarifier=runtime.clarifier, registry=runtime.registry,
                          versions=getattr(runtime, "versions", None))
    assistant.recover()
    return assistant


def create_app(target: Runtime | Assistant, settings: ServeSettings | None = None, *, worker: str = "") -> FastAPI:
    """The HTTP service over an Assistant (the caller closes it) or a Runtime (the app builds the assistant over
    it and closes it on shutdown). `worker`: which worker process of `ilearn serve --workers N` this is (its home
    folder's name), said by `/readyz` so that an operator or a benchmark can tell the workers apart."""
    settings = settings or ServeSettings()
    if isinstance(target, Assistant):
        service = Service.build(target, settings, owns_assistant=False)
    else:
        service = Service.build(assistant_from_runtime(target), settings, owns_assistant=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        service.ready = True
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(service.shutdown)

    app = FastAPI(title="iLearn", version="1", lifespan=lifespan,
                  description="A vision-language assistant that learns from its users: the native API under "
                              "/v1, an OpenAI-compatible /v1/chat/completions. Bearer API keys from "
                              "`ilearn keys create`.")
    app.state.service = service
    install_error_handlers(app)
    app.include_router(native.router)
    app.include_router(stream.router)
    app.include_router(operator.router)
    app.include_router(openai_compat.router)
    app.include_router(profiles.router)
    app.include_router(web.router)
    _health_routes(app, service, worker)
    app.add_middleware(Observe, service=service)
    return app


def _health_routes(app: FastAPI, service: Service, worker: str) -> None:
    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"model": ErrorResponse, "description": "Not ready"}})
    def readyz() -> dict[str, str]:
        """The service answers turns (503 while starting or shutting down); `worker` names the worker process of
        `ilearn serve --workers N` that answered (absent with one process)."""
        if not service.ready:
            return error_response(503, "not ready", "unavailable")
        version = service.assistant.versions.current().version
        service.metrics.serving(version)
        return {"status": "ready", "model_version": version, **({"worker": worker} if worker else {})}

    @app.get("/metrics", tags=["ops"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    def metrics() -> Response:
        """Turns, latency, learning jobs and the model version, in Prometheus' text format."""
        service.metrics.jobs_running.set(service.jobs.active())
        return Response(service.metrics.render(), media_type=service.metrics.content_type)


class Observe:
    """Counts requests by route and status, and refuses bodies over the server's limit (413) before the app
    reads them: a declared Content-Length is checked at once, a chunked body is read up to the limit."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.service.settings.max_body_bytes
        status = 500
        request = Request(scope)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            response = error_response(413 if length.isdigit() else 400,
                                      f"the body is over the server's limit of {limit} bytes"
                                      if length.isdigit() else "invalid Content-Length")
            await response(scope, receive, send)
            self._count(scope, response.status_code)
            return
        if length is None and scope["method"] in {"POST", "PUT", "PATCH"}:
            receive = await _buffered(receive, limit)
            if receive is None:
                response = error_response(413, f"the body is over the server's limit of {limit} bytes")
                await response(scope, _no_body, send)
                self._count(scope, 413)
                return

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            self._count(scope, status)

    def _count(self, scope: Scope, status: int) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        self.service.metrics.requests.labels(scope["method"], path, str(status)).inc()


async def _buffered(receive: Receive, limit: int) -> Receive | None:
    """A receive that replays the whole body, or None when it is over `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return None
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


__all__ = ["create_app"]
