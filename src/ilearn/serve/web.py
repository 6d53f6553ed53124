"""The web page: `/` serves the chat and operator page, `/web/<file>` its scripts and style sheet.

Plain HTML, CSS and JavaScript modules shipped in the package (`ilearn/serve/web/`, package data): no CDN, no
framework, no build step. The page signs in with an API key and talks to the native API like any client
(docs/web.md); these routes need no key and serve no data, only the page's own files.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse, Response

from ilearn.errors import NotFound

router = APIRouter(include_in_schema=False)

_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml",
          ".png": "image/png"}
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def _asset(name: str) -> bytes:
    folder = resources.files("ilearn.serve").joinpath("web")
    path = folder.joinpath(name)
    if not path.is_file():
        raise NotFound(f"no page file {name!r}")
    return path.read_bytes()


@router.get("/", response_class=HTMLResponse)
def page() -> HTMLResponse:
    """The chat and operator page."""
    return HTMLResponse(_asset("index.html"), headers={
        **_HEADERS, "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                                               "media-src 'self' blob: mediastream:; object-src 'none'"})


@router.get("/web/{name}")
def asset(name: Annotated[str, Path(pattern=r"^[a-z0-9_-]+\.(js|css|svg|png)$")]) -> Response:
    """One of the page's files (plain names only: no folders, nothing outside the package's web folder)."""
    suffix = name[name.rindex("."):]
    return Response(_asset(name), media_type=_TYPES[suffix], headers=_HEADERS)


__all__ = ["router"]
