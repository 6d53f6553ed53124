"""Every error the service returns is JSON in the OpenAI shape: `{"error": {"message", "type", "code"}}`.

iLearn's own exceptions map to 4xx (InvalidInput 400, NotFound 404, SessionClosed 409); request validation is a
422 with the field that failed; a store that cannot serve now (locked too long, a lost database connection, a full
disk) is a logged 503 with `Retry-After` and nothing written, so a client or a load balancer tries again or
elsewhere; anything else is a logged 500 with no detail (a bug, never bad input).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ilearn.errors import ILearnError, InvalidInput, MissingDependency, NotFound, SessionClosed
from ilearn.memory.sqlite import StoreUnavailable

logger = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    message: str
    type: str
    code: int


class ErrorResponse(BaseModel):
    """What every 4xx and 5xx reply carries."""

    error: ErrorBody


class ApiError(Exception):
    """An HTTP error with a message the caller can act on."""

    def __init__(self, status: int, message: str, kind: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers


_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error", 413: "request_too_large",
          415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error", 503: "unavailable"}
UNAVAILABLE = "the store cannot serve this request now (nothing was written); try again"
RETRY_AFTER = {"Retry-After": "1"}


def error_response(status: int, message: str, kind: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    kind = kind or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status,
                        headers=headers)


def _status(exc: ILearnError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, SessionClosed):
        return 409
    if isinstance(exc, InvalidInput):
        return 400
    if isinstance(exc, StoreUnavailable):
        return 503
    return 500


def error_status(exc: ApiError | ILearnError) -> tuple[int, str, str]:
    """(status, message, type) of an error as a reply shows it (a 5xx without detail)."""
    if isinstance(exc, ApiError):
        status, message = exc.status, exc.message
    else:
        status, message = _status(exc), str(exc)
    if status == 503 and isinstance(exc, StoreUnavailable):
        message = UNAVAILABLE
    elif status >= 500 and not isinstance(exc, MissingDependency):
        message = "internal error"
    return status, message, _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.kind, exc.headers)

    @app.exception_handler(ILearnError)
    async def _ilearn(request: Request, exc: ILearnError) -> JSONResponse:
        status, message, kind = error_status(exc)
        if status >= 500:
            logger.error("%s on %s: %s", type(exc).__name__, request.url.path, exc)
        return error_response(status, message, kind, RETRY_AFTER if status == 503 else None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error")


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error replies a route documents in the OpenAPI schema (every route: 400, 401, 413, 422, 429, 503)."""
    described = {400: "Bad input", 401: "No key, or a wrong or revoked key", 403: "The key's role may not do this",
                 404: "Not found in the caller's scope", 409: "Conflicts with the session's state",
                 413: "Body or image over the key's limit", 422: "The request does not match the schema",
                 429: "Over the key's request rate",
                 502: "The model server refused the change (the active version is unchanged)",
                 503: "The store cannot serve now (nothing written): try again after Retry-After"}
    wanted = sorted({400, 401, 413, 422, 429, 503, *statuses})
    return {s: {"model": ErrorResponse, "description": described[s]} for s in wanted}


__all__ = ["ApiError", "ErrorResponse", "error_response", "error_status", "install_error_handlers", "responses"]
