"""The key check every `/v1` route depends on: 401 without a valid key, 429 over its rate, 413 over its body
limit, 403 for a robot key on an admin route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ilearn.serve.errors import ApiError
from ilearn.serve.keys import ApiKey
from ilearn.serve.service import Service

_bearer = HTTPBearer(auto_error=False, description="an API key made with `ilearn keys create`")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def service(request: Request) -> Service:
    return request.app.state.service


def caller(request: Request,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiKey:
    """The caller's key, checked against its limits."""
    if credentials is None:
        raise ApiError(401, "no API key: send the header 'Authorization: Bearer <key>'", headers=_CHALLENGE)
    svc = service(request)
    key = svc.keys.verify(credentials.credentials)
    if key is None:
        raise ApiError(401, "the API key is wrong or revoked", headers=_CHALLENGE)
    wait = svc.limiter.take(key)
    if wait > 0:
        raise ApiError(429, f"over this key's limit of {key.limits.rate_per_minute} requests a minute",
                       headers={"Retry-After": str(max(1, round(wait)))})
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > key.limits.max_body_bytes:
        raise ApiError(413, f"the body has {length} bytes; this key's limit is {key.limits.max_body_bytes}")
    return key


def admin(key: Annotated[ApiKey, Depends(caller)]) -> ApiKey:
    """The caller's key if it is an admin key (403 otherwise)."""
    if not key.admin:
        raise ApiError(403, "this route needs an admin key; a robot key talks and gives feedback only")
    return key


Caller = Annotated[ApiKey, Depends(caller)]
Admin = Annotated[ApiKey, Depends(admin)]
ServiceDep = Annotated[Service, Depends(service)]

__all__ = ["Admin", "Caller", "ServiceDep", "admin", "caller", "service"]
