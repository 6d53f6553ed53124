"""Property-based checks against the OpenAPI schema (schemathesis): whatever a client sends, valid or not, the
service answers with a documented status and a body that fits the schema, never a server error.

Each route gets a bounded number of generated requests (derandomized, so a run is repeatable), valid ones and
invalid ones, with a robot key, an admin key and no key."""

from __future__ import annotations

import pytest
from serve_helpers import require

schemathesis = require("schemathesis", "dev")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from serve_helpers import live_server  # noqa: E402

from ilearn.serve.keys import KeyLimits  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live(served):
    """A real server: schemathesis' in-process client would run the app's lifespan (and its shutdown) per call."""
    with live_server(served.app) as (_, url):
        yield url


@pytest.fixture(scope="module")
def fuzz_keys(served) -> dict[str, dict[str, str]]:
    """Keys whose rate limit lets every generated request through (a 429 would hide what the route does)."""
    unlimited = KeyLimits(rate_per_minute=1_000_000)
    keys = served.app.state.service.keys
    tokens = {role: keys.create("r1" if role == "robot" else "site", role, limits=unlimited)[1]
              for role in ("robot", "admin")}
    return {role: {"Authorization": f"Bearer {token}"} for role, token in tokens.items()}


def _failures(url: str, headers: dict[str, str], examples: int, skip: frozenset[str] = frozenset()) -> list[str]:
    """Run every operation's generated requests; the failures, one line each."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in skip:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def check(case):
                case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=120)

            try:
                check()
            except Unsatisfiable:  # no invalid request exists (a route without parameters)
                continue
            except Exception as exc:  # collect every route's failure, then report them together
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:2000]}")
    return failures


def test_a_robot_key_never_gets_a_server_error_or_a_reply_outside_the_schema(live, fuzz_keys):
    failures = _failures(live, fuzz_keys["robot"], examples=15)
    assert not failures, "\n\n".join(failures)


def test_an_admin_key_never_gets_a_server_error_or_a_reply_outside_the_schema(live, fuzz_keys):
    # a learning job per example would train for minutes: POST /v1/learn is tested in test_learning_jobs.py
    failures = _failures(live, fuzz_keys["admin"], examples=6, skip=frozenset({"POST /v1/learn"}))
    assert not failures, "\n\n".join(failures)


def test_no_key_never_gets_a_server_error(live):
    failures = _failures(live, {}, examples=3)
    assert not failures, "\n\n".join(failures)
