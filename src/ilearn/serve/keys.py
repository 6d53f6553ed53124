"""API keys of the service: created and revoked with `ilearn keys ...`, stored hashed in `<home>/keys.db`, or, when
the deployment's store is PostgreSQL, in the store's own database and schema (table `api_keys`), so that every
worker of a fleet takes the keys created once (`keys_location`).

A key is `ilk_<id>_<secret>`: the id finds the row, the secret (32 random bytes) is checked against its
SHA-256 (a random 256-bit secret needs no slow password hash; the plain key is shown once, at creation).
Each key belongs to a robot (or a site: several robots may share one name) and has a role:

- `robot`: talks and gives feedback for its users; sees only its own robot's sessions and events;
- `admin`: everything a robot key does, plus learning, promoting, rolling back and forgetting users, for any robot.

User ids are namespaced by the key's robot (`<robot>:<user>`), so one client cannot act as another robot's users.
Limits per key: requests a minute, request body bytes and image bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ilearn.errors import InvalidInput, NotFound

ROLES = ("robot", "admin")
_ROBOT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN = re.compile(r"ilk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    robot TEXT NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    rate_per_minute INTEGER NOT NULL,
    max_body_bytes INTEGER NOT NULL,
    max_image_bytes INTEGER NOT NULL,
    created REAL NOT NULL,
    revoked REAL
)
"""


@dataclass(frozen=True)
class KeyLimits:
    """What one key may send."""

    rate_per_minute: int = 120
    """Requests a minute (a token bucket of this size, refilled continuously)."""
    max_body_bytes: int = 16_000_000
    """Largest request body (base64 images are a third larger than the image)."""
    max_image_bytes: int = 10_000_000
    """Largest image, after decoding base64."""

    def __post_init__(self) -> None:
        for name in ("rate_per_minute", "max_body_bytes", "max_image_bytes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be a positive integer")


@dataclass(frozen=True)
class ApiKey:
    """A key's row (never the secret)."""

    id: str
    robot: str
    role: str
    name: str
    limits: KeyLimits
    created: float
    revoked: float | None = None

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def check_robot(robot: str) -> str:
    """A robot (or site) name: 1-64 letters, digits and _ . - (no ':', which separates it from user ids)."""
    if not isinstance(robot, str) or not _ROBOT.fullmatch(robot):
        raise InvalidInput("a robot name must be 1-64 characters of letters, digits and _ . -")
    return robot


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def keys_location(keys_path: str, store_url: str, home: Path) -> str:
    """Where a deployment's keys live: `keys_path` when given (a SQLite file, or a postgresql:// URL), else the
    PostgreSQL store's database and schema when the store is one (every worker shares them), else keys.db in the
    home folder."""
    if keys_path:
        return keys_path
    if store_url.startswith(_POSTGRES):
        return store_url
    return str(home / "keys.db")


_POSTGRES = ("postgresql://", "postgres://")


class KeyStore:
    """The keys of one deployment (thread-safe): a small SQLite file (one connection, one lock), or a table in a
    PostgreSQL schema (`location` a postgresql:// URL with iLearn's `schema` parameter, as the store's)."""

    def __init__(self, location: str | Path) -> None:
        self.location = str(location)
        self._lock = threading.Lock()
        self._pg = self.location.startswith(_POSTGRES)
        if self._pg:
            self._pool, self._schema = _postgres_pool(self.location)
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('ilearn.keys.' || %s))", (self._schema,))
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema}")
                conn.execute(_SCHEMA.replace(" REAL", " DOUBLE PRECISION"))
        else:
            path = Path(self.location)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)

    def _run(self, sql: str, params: tuple = ()) -> tuple[list[tuple], int]:
        """(rows, rowcount) of one statement, written with ? placeholders."""
        if self._pg:
            with self._pool.connection() as conn:
                cursor = conn.execute(sql.replace("?", "%s"), params)
                return (cursor.fetchall() if cursor.description else []), cursor.rowcount
        with self._lock:
            cursor = self._db.execute(sql, params)
            return cursor.fetchall(), cursor.rowcount

    def create(self, robot: str, role: str = "robot", *, name: str = "",
               limits: KeyLimits | None = None) -> tuple[ApiKey, str]:
        """A new key; returns its row and the plain key (shown once, never stored)."""
        check_robot(robot)
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        limits = limits or KeyLimits()
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        row = ApiKey(key_id, robot, role, name, limits, time.time())
        self._run("INSERT INTO api_keys VALUES (?,?,?,?,?,?,?,?,?,NULL)",
                  (key_id, _digest(secret), robot, role, name, limits.rate_per_minute, limits.max_body_bytes,
                   limits.max_image_bytes, row.created))
        return row, f"ilk_{key_id}_{secret}"

    def verify(self, token: str) -> ApiKey | None:
        """The key's row for a valid, unrevoked plain key; None otherwise."""
        match = _TOKEN.fullmatch(token or "")
        if match is None:
            return None
        key_id, secret = match.groups()
        rows, _ = self._run("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        if not rows or rows[0][9] is not None:
            return None
        if not hmac.compare_digest(rows[0][1], _digest(secret)):
            return None
        return _key(rows[0])

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        query = "SELECT * FROM api_keys" + ("" if include_revoked else " WHERE revoked IS NULL") + " ORDER BY created"
        return [_key(row) for row in self._run(query)[0]]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key at once (NotFound for an unknown or already revoked id); every worker sharing the keys
        refuses it from its next request."""
        rows, count = self._run("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL RETURNING *",
                                (time.time(), key_id))
        if count == 0 or not rows:
            raise NotFound(f"no active key {key_id!r}")
        return _key(rows[0])

    def close(self) -> None:
        if self._pg:
            self._pool.close()
            return
        with self._lock:
            self._db.close()


def _postgres_pool(url: str):
    """A small connection pool on the schema of the store URL `url` (the keys table lives beside the events)."""
    from ilearn.errors import require_package

    require_package("psycopg_pool", extra="fleet")
    from psycopg_pool import ConnectionPool

    from ilearn.memory.postgres import parse_url

    conninfo, schema = parse_url(url)
    pool = ConnectionPool(conninfo, min_size=1, max_size=4, open=True, name=f"ilearn-keys-{schema}",
                          kwargs={"autocommit": True, "options": f"-c search_path={schema}",
                                  "application_name": f"ilearn keys {schema}"})
    return pool, schema


def _key(row: tuple) -> ApiKey:
    return ApiKey(row[0], row[2], row[3], row[4], KeyLimits(row[5], row[6], row[7]), row[8], row[9])


class RateLimiter:
    """A token bucket per key: `rate_per_minute` requests a minute, bursts up to the same number."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, last refill time)

    def take(self, key: ApiKey, now: float | None = None) -> float:
        """0 if the request may go now, else the seconds to wait before the next one."""
        now = time.monotonic() if now is None else now
        rate = key.limits.rate_per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key.id, (float(key.limits.rate_per_minute), now))
            tokens = min(float(key.limits.rate_per_minute), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[key.id] = (tokens, now)
                return (1.0 - tokens) / rate
            self._buckets[key.id] = (tokens - 1.0, now)
            return 0.0


__all__ = ["ROLES", "ApiKey", "KeyLimits", "KeyStore", "RateLimiter", "check_robot", "keys_location"]
