"""docs/serve.md's route table lists every route the app serves, and nothing it does not serve."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "serve.md"


def served_routes(routes, prefix: str = "") -> set[tuple[str, str]]:
    """(method, path) of every route, those of included routers too (HEAD left out: it follows GET)."""
    out: set[tuple[str, str]] = set()
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's included router
            out |= served_routes(route.original_router.routes, prefix + route.include_context.prefix)
        else:
            out |= {(m, prefix + route.path) for m in getattr(route, "methods", None) or () if m != "HEAD"}
    return out


def documented_routes() -> set[tuple[str, str]]:
    text = DOC.read_text()
    table = text[text.index("## Every route"):]
    table = table[: table.index("\n## ", 1)]
    return {(m, p) for m, p in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)", table)}


def test_the_route_table_lists_every_route_the_app_serves(served):
    app_routes = served_routes(served.app.routes)
    assert ("POST", "/v1/turns/stream") in app_routes and ("GET", "/") in app_routes  # the walk finds them all
    documented = documented_routes()
    assert sorted(app_routes - documented) == []  # served, not documented
    assert sorted(documented - app_routes) == []  # documented, not served
