"""The PostgreSQL server the fleet tests use: one fresh schema per test, dropped afterwards.

The server is `ILEARN_TEST_POSTGRES` (default postgresql://postgres@127.0.0.1:5432/test, what the project's
machines and CI start). Without a reachable server the tests skip, saying why; with the environment variable CI
set they fail instead, so a CI run never passes by skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_URL = os.environ.get("ILEARN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason} (start the server or set ILEARN_TEST_POSTGRES)")


def server_url() -> str:
    """The server's URL, after checking it answers (skip or fail otherwise, see the module docstring)."""
    try:
        import psycopg
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        _unavailable(f"{exc.name} is not installed (pip install 'ilearn[fleet]')")
    try:
        with psycopg.connect(PG_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        _unavailable(f"no PostgreSQL server answers at {PG_URL}: {str(exc).strip()}")
    return PG_URL


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def fresh_schema() -> Iterator[str]:
    """A store URL naming a schema no other test uses; the schema is dropped when the test ends."""
    base = server_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}schema={schema}"
    finally:
        drop_schema(schema)


def count_rows(store, table: str) -> int:
    """Rows of `table` in a PostgresStore or SQLiteStore (read around the store's own API)."""
    if hasattr(store, "schema") and hasattr(store, "conninfo"):
        return store._query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]
    import sqlite3

    with sqlite3.connect(store.path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
