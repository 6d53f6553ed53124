"""`ilearn serve`: the learning assistant as an HTTP service (needs the `serve` extra).

`create_app(runtime_or_assistant)` builds the FastAPI app (see `ilearn.serve.app`); nothing is built at import.
"""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any):
    """See `ilearn.serve.app.create_app` (imported on first use: FastAPI is an optional dependency)."""
    from ilearn.errors import require_package

    require_package("fastapi", extra="serve")
    from ilearn.serve.app import create_app as factory

    return factory(*args, **kwargs)


__all__ = ["create_app"]
