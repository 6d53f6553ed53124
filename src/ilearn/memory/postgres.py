"""The fleet EventStore: PostgreSQL through psycopg 3 and a connection pool, with a change feed.

    store = PostgresStore("postgresql://ilearn@db-host/ilearn?schema=home1")

Several processes (service workers, robots, a learner) share one store. Everything lives in one schema (the
URL's `schema` parameter, "ilearn" by default), created and migrated on open under an advisory lock, so two
processes starting at once migrate once. Every write is committed before the call returns; `transaction()`
groups writes (a nested block is a savepoint).

Change feed: a trigger on `events` appends (event id, insert/update/delete) to `event_changes` and sends a
NOTIFY on commit, so each process's vector index follows the store (`ilearn.memory.feed.FleetMemory`). The
trigger takes a transaction-level advisory lock of the schema before it writes the log, held to commit, so
event writers commit one at a time and the log's ids grow in commit order: a reader that has seen change N
has seen every change before it. `exclusive()` takes the same lock up front, for a decision (quarantine,
corroboration) that must read every committed event and write its outcome in the same transaction. The log
holds ids only (no user ids, no text) and is pruned (`prune_changes`).

Forgetting deletes the rows in one transaction and then VACUUMs the tables it touched, so the freed row
versions are cleared from the tables' pages; PostgreSQL's write-ahead log keeps them until its segments are
recycled (docs/fleet.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from ilearn.errors import ILearnError, InvalidInput, NotFound, SessionClosed
from ilearn.memory.sql import (
    EVENT_COLS,
    TURN_COLS,
    SQLStore,
    enum_value,
    event_from_row,
    event_values,
    feedback_from_json,
    feedback_to_json,
)
from ilearn.memory.sqlite import StoreUnavailable
from ilearn.memory.store import Lease, UserRecord
from ilearn.types import (
    Event,
    ImageRef,
    Role,
    Session,
    Turn,
    TurnKind,
    now,
)

logger = logging.getLogger(__name__)

DEFAULT_SCHEMA = "ilearn"
CHANNEL = "ilearn_event_changes"
"""The NOTIFY channel; the payload is the schema whose events changed."""
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LOCK = "pg_advisory_xact_lock(hashtext('ilearn.events.' || current_schema()))"
_SQL_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
"""Now on the database server's clock, in seconds since the epoch: every worker's leases are stamped and judged by
it, so workers whose clocks disagree agree on which lease expired."""


class SchemaError(ILearnError):
    """The schema was written by a newer iLearn, or the server cannot be used."""


# Ordered migrations: MIGRATIONS[i] upgrades a schema from version i to version i + 1. Never edit a released one.
# Ids sort byte-wise (COLLATE "C"), as in SQLite, whatever the database's locale.
MIGRATIONS: list[str] = ["""
    CREATE TABLE users (id TEXT COLLATE "C" PRIMARY KEY, created DOUBLE PRECISION NOT NULL,
        trusted BOOLEAN NOT NULL DEFAULT FALSE);
    CREATE TABLE images (sha256 TEXT COLLATE "C" PRIMARY KEY, data BYTEA NOT NULL, width INTEGER NOT NULL,
        height INTEGER NOT NULL, format TEXT NOT NULL, created DOUBLE PRECISION NOT NULL);
    CREATE TABLE sessions (id TEXT COLLATE "C" PRIMARY KEY, user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
        robot_id TEXT NOT NULL, closed BOOLEAN NOT NULL, created DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL, distilled BOOLEAN NOT NULL);
    CREATE INDEX sessions_user ON sessions(user_id);
    CREATE INDEX sessions_open ON sessions(closed, updated);
    CREATE TABLE turns (id TEXT COLLATE "C" PRIMARY KEY,
        session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
        role TEXT NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL, image_sha TEXT COLLATE "C" REFERENCES images(sha256),
        time DOUBLE PRECISION NOT NULL, model_version TEXT, retrieved TEXT NOT NULL, precise_question TEXT,
        feedback TEXT, UNIQUE (session_id, seq));
    CREATE INDEX turns_image ON turns(image_sha);
    CREATE TABLE events (id TEXT COLLATE "C" PRIMARY KEY, image_sha TEXT COLLATE "C" REFERENCES images(sha256),
        question TEXT NOT NULL, answer TEXT NOT NULL, user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
        robot_id TEXT NOT NULL, rejected TEXT NOT NULL, label TEXT NOT NULL, scope TEXT NOT NULL,
        status TEXT NOT NULL, session_id TEXT, model_version TEXT, supersedes TEXT, provenance TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL, confidence DOUBLE PRECISION NOT NULL);
    CREATE INDEX events_user ON events(user_id);
    CREATE INDEX events_robot ON events(robot_id);
    CREATE INDEX events_status ON events(status);
    CREATE INDEX events_session ON events(session_id);
    CREATE INDEX events_image ON events(image_sha);
    CREATE INDEX events_created ON events(created, id);
    CREATE TABLE embeddings (kind TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, dim INTEGER NOT NULL,
        vector BYTEA NOT NULL, PRIMARY KEY (kind, key));
    CREATE INDEX embeddings_key ON embeddings(key);
    CREATE TABLE model_versions (id TEXT COLLATE "C" PRIMARY KEY, parent TEXT, recipe TEXT NOT NULL,
        settings TEXT NOT NULL, event_ids TEXT NOT NULL, metrics TEXT NOT NULL, status TEXT NOT NULL, path TEXT,
        created DOUBLE PRECISION NOT NULL);
    CREATE TABLE event_changes (id BIGSERIAL PRIMARY KEY, event_id TEXT COLLATE "C" NOT NULL,
        op CHAR(1) NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT now());
    CREATE TABLE feed_state (pruned_upto BIGINT NOT NULL);
    INSERT INTO feed_state VALUES (0);
    CREATE FUNCTION log_event_change() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('ilearn.events.' || TG_TABLE_SCHEMA));
        INSERT INTO event_changes (event_id, op)
            VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END, left(TG_OP, 1));
        PERFORM pg_notify('ilearn_event_changes', TG_TABLE_SCHEMA);
        RETURN NULL;
    END $$;
    CREATE TRIGGER events_changed AFTER INSERT OR UPDATE OR DELETE ON events
        FOR EACH ROW EXECUTE FUNCTION log_event_change()
""", """
    CREATE TABLE user_records (user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id), kind TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL, data TEXT NOT NULL, image_sha TEXT COLLATE "C" REFERENCES images(sha256),
        created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL, PRIMARY KEY (user_id, kind, key));
    CREATE INDEX user_records_image ON user_records(image_sha)
""", """
    ALTER TABLE sessions ADD COLUMN next_seq INTEGER NOT NULL DEFAULT 0;
    UPDATE sessions s SET next_seq = t.n FROM (SELECT session_id, MAX(seq) + 1 AS n FROM turns GROUP BY session_id) t
        WHERE t.session_id = s.id
""", """
    CREATE TABLE leases (kind TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, holder TEXT NOT NULL,
        expires DOUBLE PRECISION NOT NULL, PRIMARY KEY (kind, key))
""", """
    ALTER TABLE turns ADD COLUMN answered_from TEXT COLLATE "C"
"""]

_UNUSED_IMAGE = ("SELECT 1 FROM turns WHERE image_sha = %(s)s UNION ALL SELECT 1 FROM events WHERE image_sha = %(s)s "
                 "UNION ALL SELECT 1 FROM user_records WHERE image_sha = %(s)s LIMIT 1")

_TURN_MARKS = ", ".join(f"%({c.strip()})s" for c in TURN_COLS.split(","))  # named, as `_turn_row` gives them
_ADD_USER = "INSERT INTO users (id, created, trusted) VALUES (%s, %s, FALSE) ON CONFLICT (id) DO NOTHING"


@dataclass(frozen=True)
class Change:
    """One entry of the change feed: an event inserted ("I"), updated ("U") or deleted ("D")."""

    id: int
    event_id: str
    op: str


def parse_url(url: str) -> tuple[str, str]:
    """(libpq connection URL, schema) of a store URL: postgresql://user@host:port/db?schema=name&...

    The `schema` parameter is iLearn's (default "ilearn": lower-case letters, digits, underscores); the other
    parameters are libpq's (sslmode, connect_timeout, ...)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise InvalidInput(f"a PostgreSQL store URL starts with postgresql://, not {url!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), DEFAULT_SCHEMA)
    if not _SCHEMA_NAME.match(schema):
        raise InvalidInput(f"schema {schema!r}: use lower-case letters, digits and underscores (at most 63)")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(("postgresql", parts.netloc, parts.path, rest, parts.fragment)), schema


_TEXT_ERRORS = {None, "22021", "22P05"}  # raised by psycopg itself (NUL), character not in repertoire, untranslatable


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Clear errors: InvalidInput for text PostgreSQL cannot hold (NUL characters, lone surrogates),
    StoreUnavailable when the server cannot serve (connection lost, a lock waited on too long). Nothing is written
    either way (the transaction rolls back; a broken connection leaves the pool)."""
    try:
        yield
    except (psycopg.DataError, UnicodeEncodeError) as exc:
        if isinstance(exc, psycopg.DataError) and exc.sqlstate not in _TEXT_ERRORS:
            raise
        raise InvalidInput(f"the text cannot be stored: {exc}".split("\n")[0]) from None
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise StoreUnavailable(f"PostgreSQL cannot serve the store now: {str(exc).strip().splitlines()[0]}") from exc


def _check_user_id(user_id: Any) -> None:
    if not isinstance(user_id, str) or not user_id:
        raise InvalidInput(f"a user id must be a non-empty string, not {user_id!r}")


def _image_ref(row: dict[str, Any]) -> ImageRef | None:
    """The image of a turn's or an event's row joined with its image's (`image_sha`, width, height, format)."""
    return ImageRef(row["image_sha"], row["width"], row["height"], row["format"]) if row["image_sha"] else None


class PostgresStore(SQLStore):
    """EventStore on PostgreSQL (see the module docstring): the same contract as `SQLiteStore`, plus a change feed.

    `url` is a postgresql:// URL (`parse_url`); `max_connections` bounds the pool (a turn needs one at a time per
    thread); `timeout` is how long, in seconds, a call waits for a free connection or a lock before failing.
    """

    MARK = "%s"
    NOW = _SQL_NOW

    def __init__(self, url: str, *, min_connections: int = 1, max_connections: int = 8,
                 timeout: float = 30.0) -> None:
        self.conninfo, self.schema = parse_url(url)
        self._timeout = timeout
        self._local = threading.local()
        options = f"-c search_path={self.schema} -c lock_timeout={int(timeout * 1000)}"
        self._kwargs = {"autocommit": True, "row_factory": dict_row, "options": options,
                        "application_name": f"ilearn {self.schema}"}  # what operators see in pg_stat_activity
        self._pool = ConnectionPool(self.conninfo, min_size=min_connections, max_size=max_connections,
                                    kwargs=self._kwargs, timeout=timeout, open=False,
                                    name=f"ilearn-{self.schema}")
        try:
            self._pool.open(wait=True, timeout=timeout)
        except psycopg.Error as exc:
            self._pool.close()
            raise SchemaError(f"cannot reach PostgreSQL at {_safe(self.conninfo)}: {exc}") from exc
        except Exception as exc:  # the pool's own PoolTimeout names no server
            self._pool.close()
            raise SchemaError(f"cannot reach PostgreSQL at {_safe(self.conninfo)}: {exc}") from exc
        try:
            self._version = self._migrate()
        except BaseException:
            self._pool.close()
            raise
        logger.info("opened PostgreSQL store %s, schema %s (version %d)", _safe(self.conninfo), self.schema,
                    self._version)

    # ------------------------------------------------------------------ connections, transactions
    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """The thread's transaction connection, or one from the pool for a single statement."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        if self._pool.closed:
            raise ILearnError(f"the store {self.schema} is closed")
        with _clear_errors(), self._pool.connection(timeout=self._timeout) as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically. A nested block is a savepoint: an exception undoes it (and, if it escapes,
        the outer block too); nothing is visible to others until the outermost block commits."""
        with self.held(), self._local.conn.transaction():
            yield

    @contextmanager
    def held(self) -> Iterator[None]:
        """The thread keeps one pool connection until the block ends, with no transaction of its own: each
        statement commits alone, or joins a `transaction` of the block (or one open around it)."""
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with self._connection() as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """A transaction that first takes the schema's event-write lock: no other process's event write
        commits until it ends, and every one committed before it is visible (module docstring)."""
        with self.transaction():
            self._execute(f"SELECT {_LOCK}")
            yield

    def _execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> psycopg.Cursor:
        with self._connection() as conn, _clear_errors():
            return conn.execute(sql, params)

    def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._connection() as conn, _clear_errors():
            return conn.execute(sql, params).fetchall()

    def _migrate(self) -> int:
        with self.transaction():
            self._execute("SELECT pg_advisory_xact_lock(hashtext('ilearn.migrate.' || %s))", (self.schema,))
            self._execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            self._execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = self._query("SELECT version FROM schema_version")
            version = rows[0]["version"] if rows else 0
            if version > len(MIGRATIONS):
                raise SchemaError(f"schema {self.schema} has version {version}, but this iLearn knows versions up "
                                  f"to {len(MIGRATIONS)}: upgrade iLearn to open it")
            for target in range(version + 1, len(MIGRATIONS) + 1):
                logger.info("migrating schema %s to version %d", self.schema, target)
                with self.transaction():
                    self._execute(MIGRATIONS[target - 1])
                    self._execute("DELETE FROM schema_version")
                    self._execute("INSERT INTO schema_version (version) VALUES (%s)", (target,))
        return len(MIGRATIONS)

    def close(self) -> None:
        """Close the pool; later calls raise."""
        self._pool.close()

    # ------------------------------------------------------------------ users
    def ensure_user(self, user_id: str, *, trusted: bool | None = None) -> None:
        """Create the user if new; set `trusted` when given (new users are untrusted by default)."""
        if trusted is None:
            self._add_user(user_id)
            return
        with self.transaction():
            self._add_user(user_id)
            self._execute("UPDATE users SET trusted = %s WHERE id = %s", (bool(trusted), user_id))

    def _add_user(self, user_id: str) -> None:
        """Create the user if new: one statement, so no savepoint of its own inside a caller's transaction."""
        _check_user_id(user_id)
        self._execute(_ADD_USER, (user_id, now()))

    def delete_user(self, user_id: str) -> list[str]:
        """Hard-delete a user with their sessions, turns, events, and the images (and embeddings keyed by those
        images or events) that nobody else refers to; then VACUUM what it touched. Returns the deleted event ids."""
        with self.transaction():
            if not self._query("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (user_id,)):
                raise NotFound(f"unknown user {user_id!r}")
            event_ids = [r["id"] for r in self._query(
                "SELECT id FROM events WHERE user_id = %s ORDER BY created, id", (user_id,))]
            shas = {r["sha"] for r in self._query(
                "SELECT image_sha AS sha FROM events WHERE user_id = %(u)s AND image_sha IS NOT NULL UNION "
                "SELECT t.image_sha FROM turns t JOIN sessions s ON t.session_id = s.id "
                "WHERE s.user_id = %(u)s AND t.image_sha IS NOT NULL UNION "
                "SELECT image_sha FROM user_records WHERE user_id = %(u)s AND image_sha IS NOT NULL", {"u": user_id})}
            # other users' rows keep no reference to the deleted events (as SQLite's `_unlink_ids`)
            self._execute("UPDATE events SET supersedes = NULL WHERE supersedes = ANY(%s)", (event_ids,))
            self._execute("UPDATE turns SET answered_from = NULL WHERE answered_from = ANY(%s)", (event_ids,))
            self._execute("UPDATE turns SET retrieved = (SELECT COALESCE(json_agg(i ORDER BY n), '[]'::json)::text "
                          "FROM json_array_elements_text(retrieved::json) WITH ORDINALITY AS t(i, n) "
                          "WHERE i <> ALL(%(ids)s)) WHERE retrieved::jsonb ?| %(ids)s", {"ids": event_ids})
            self._execute("DELETE FROM events WHERE user_id = %s", (user_id,))
            self._execute("DELETE FROM sessions WHERE user_id = %s", (user_id,))  # turns cascade
            self._execute("DELETE FROM user_records WHERE user_id = %s", (user_id,))
            self._execute("DELETE FROM users WHERE id = %s", (user_id,))
            gone = [sha for sha in sorted(shas) if not self._query(_UNUSED_IMAGE, {"s": sha})]
            keys = gone + event_ids
            self._execute("DELETE FROM images WHERE sha256 = ANY(%s)", (keys,))
            self._execute("DELETE FROM embeddings WHERE key = ANY(%s)", (keys,))
        self.vacuum()
        logger.info("deleted user %s: %d events, %d images", user_id, len(event_ids), len(gone))
        return event_ids

    def vacuum(self) -> None:
        """VACUUM the tables a forget deletes from, so the deleted row versions leave their pages. Inside a
        transaction it does nothing (PostgreSQL refuses); the caller runs it after the commit."""
        if getattr(self._local, "conn", None) is None:
            self._execute("VACUUM events, sessions, turns, users, user_records, images, embeddings, event_changes")

    # ------------------------------------------------------------------ user records
    def put_user_record(self, record: UserRecord) -> UserRecord:
        """Insert or replace the record (user, kind, key), keeping its first `created`; its user is created if new."""
        with self.transaction(), self._row_errors("user_records", None, record.image):
            self._add_user(record.user_id)
            self._execute(
                "INSERT INTO user_records (user_id, kind, key, data, image_sha, created, updated) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (user_id, kind, key) DO UPDATE SET "
                "data = EXCLUDED.data, image_sha = EXCLUDED.image_sha, updated = EXCLUDED.updated",
                (record.user_id, record.kind, record.key, json.dumps(record.data),
                 record.image.sha256 if record.image is not None else None,
                 record.created, record.updated))
        return record

    def delete_user_record(self, user_id: str, kind: str, key: str) -> bool:
        """Delete one record, and its image (with the image's cached embeddings) if nothing else shows it."""
        with self.transaction():
            rows = self._query("DELETE FROM user_records WHERE user_id = %s AND kind = %s AND key = %s "
                               "RETURNING image_sha", (user_id, kind, key))
            if not rows:
                return False
            sha = rows[0]["image_sha"]
            if sha is not None and not self._query(_UNUSED_IMAGE, {"s": sha}):
                self._execute("DELETE FROM images WHERE sha256 = %s", (sha,))
                self._execute("DELETE FROM embeddings WHERE key = %s", (sha,))
        return True

    # ------------------------------------------------------------------ images
    def put_image(self, data: bytes, ref: ImageRef) -> ImageRef:
        """Store image bytes once under their sha256 (checked against `ref`); returns the stored ref."""
        if not data:
            raise InvalidInput("the image is empty (0 bytes)")
        digest = hashlib.sha256(data).hexdigest()
        if digest != ref.sha256:
            raise InvalidInput(f"image bytes hash to {digest[:12]}..., not to the ref's {ref.sha256[:12]}...")
        rows = self._query("WITH added AS (INSERT INTO images (sha256, data, width, height, format, created) "
                           "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (sha256) DO NOTHING "
                           "RETURNING sha256, width, height, format) "
                           "SELECT * FROM added UNION ALL SELECT sha256, width, height, format FROM images "
                           "WHERE sha256 = %s LIMIT 1",  # the stored ref, new or not, in one round trip
                           (digest, bytes(data), ref.width, ref.height, ref.format, now(), digest))
        if not rows:
            # another transaction stored the same image while this insert waited for it: the conflict made the
            # insert do nothing, and the statement's snapshot predates that row; a new statement sees it
            return self.get_image_ref(digest)
        r = rows[0]
        return ImageRef(r["sha256"], r["width"], r["height"], r["format"])

    def _image_refs(self, shas: set[str | None]) -> dict[str | None, ImageRef | None]:
        refs: dict[str | None, ImageRef | None] = {None: None}
        wanted = sorted(s for s in shas if s is not None)
        if wanted:
            for r in self._query("SELECT sha256, width, height, format FROM images WHERE sha256 = ANY(%s)",
                                 (wanted,)):
                refs[r["sha256"]] = ImageRef(r["sha256"], r["width"], r["height"], r["format"])
        return refs

    # ------------------------------------------------------------------ sessions and turns
    def create_session(self, session: Session) -> Session:
        """Store a new session (and any turns it already holds); its user is created if new (in the same
        statement: a session without turns is one round trip)."""
        _check_user_id(session.user_id)
        with self.transaction() if session.turns else nullcontext():
            cur = self._execute(
                f"WITH u AS ({_ADD_USER}) INSERT INTO sessions (id, user_id, robot_id, closed, created, updated, "
                "distilled, next_seq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (session.user_id, now(), session.id, session.user_id, session.robot_id, bool(session.closed),
                 session.created, max([session.updated, *(t.time for t in session.turns)]), bool(session.distilled),
                 len(session.turns)))
            if cur.rowcount == 0:
                raise InvalidInput(f"session {session.id!r} already exists")
            for seq, turn in enumerate(session.turns):
                turn.session_id = turn.session_id or session.id
                if turn.session_id != session.id:
                    raise InvalidInput(f"turn {turn.id!r} belongs to {turn.session_id!r}, not {session.id!r}")
                with self._row_errors("turns", turn.id, turn.image):
                    self._execute(f"INSERT INTO turns ({TURN_COLS}) VALUES ({_TURN_MARKS})",
                                  {**self._turn_row(turn), "seq": seq})
                turn.seq = seq
        return session

    @staticmethod
    def _session_from_row(r: dict[str, Any]) -> Session:
        return Session(user_id=r["user_id"], robot_id=r["robot_id"], id=r["id"], turns=[], closed=r["closed"],
                       created=r["created"], updated=r["updated"], distilled=r["distilled"])

    _TURN_SELECT = (f"SELECT {', '.join('t.' + c.strip() for c in TURN_COLS.split(','))}, i.width, i.height, "
                    "i.format FROM turns t LEFT JOIN images i ON i.sha256 = t.image_sha")

    @staticmethod
    def _turn_from_row(r: dict[str, Any]) -> Turn:
        return Turn(role=Role(r["role"]), text=r["text"], kind=TurnKind(r["kind"]), session_id=r["session_id"],
                    image=_image_ref(r), id=r["id"], time=r["time"], model_version=r["model_version"],
                    retrieved=json.loads(r["retrieved"]), precise_question=r["precise_question"],
                    feedback=feedback_from_json(r["feedback"]), seq=r["seq"], answered_from=r["answered_from"])

    def _turns_of(self, session_ids: list[str]) -> dict[str, list[Turn]]:
        out: dict[str, list[Turn]] = {sid: [] for sid in session_ids}
        for r in self._query(f"{self._TURN_SELECT} WHERE t.session_id = ANY(%s) ORDER BY t.session_id, t.seq",
                             (session_ids,)):
            out[r["session_id"]].append(self._turn_from_row(r))
        return out

    def get_session(self, session_id: str, *, with_turns: bool = True) -> Session:
        """A session, with its turns in order unless `with_turns` is False (one statement either way)."""
        if not with_turns:
            rows = self._query("SELECT * FROM sessions WHERE id = %s", (session_id,))
            if not rows:
                raise NotFound(f"unknown session {session_id!r}")
            return self._session_from_row(rows[0])
        # the session's row once, then one row per turn (with its image's size): a consistent read in one go
        rows = self._query(
            "SELECT s.user_id, s.robot_id, s.id AS sid, s.closed, s.created, s.updated, s.distilled, t.* "
            f"FROM sessions s LEFT JOIN ({self._TURN_SELECT}) t ON t.session_id = s.id "
            "WHERE s.id = %s ORDER BY t.seq", (session_id,))
        if not rows:
            raise NotFound(f"unknown session {session_id!r}")
        session = self._session_from_row({**rows[0], "id": rows[0]["sid"]})
        session.turns = [self._turn_from_row(r) for r in rows if r["id"] is not None]
        return session

    def _turn_row(self, turn: Turn) -> dict[str, Any]:
        return {"id": turn.id, "session_id": turn.session_id, "role": enum_value(Role, turn.role, "turn role"),
                "kind": enum_value(TurnKind, turn.kind, "turn kind"), "text": turn.text,
                "image_sha": turn.image.sha256 if turn.image is not None else None, "time": turn.time,
                "model_version": turn.model_version, "retrieved": json.dumps(list(turn.retrieved)),
                "precise_question": turn.precise_question, "feedback": feedback_to_json(turn.feedback),
                "answered_from": turn.answered_from}

    @staticmethod
    @contextmanager
    def _row_errors(table: str, row_id: str | None, image: ImageRef | None) -> Iterator[None]:
        """A row's constraint violations as the store's errors: its id taken (turns, events), its image not stored
        (the foreign key checks it in the same statement: no round trip of its own)."""
        try:
            yield
        except psycopg.errors.UniqueViolation as exc:
            if row_id is not None and exc.diag.constraint_name == f"{table}_pkey":
                raise InvalidInput(f"{table[:-1]} {row_id!r} already exists") from None
            raise
        except psycopg.errors.ForeignKeyViolation as exc:
            if image is not None and exc.diag.constraint_name == f"{table}_image_sha_fkey":
                raise NotFound(f"unknown image {image.sha256!r}: store it with put_image first") from None
            raise

    def add_turn(self, turn: Turn) -> Turn:
        """Append a turn to its open session: sets `turn.seq` (0-based) and returns the same turn. One statement:
        the session's row is updated (its next seq taken, locked till the end) and the turn inserted together, so
        turns added at once from several processes get distinct, ordered seqs."""
        row = self._turn_row(turn)
        with self._row_errors("turns", turn.id, turn.image):
            rows = self._query(
                "WITH s AS (UPDATE sessions SET next_seq = next_seq + 1, updated = GREATEST(updated, %(time)s) "
                "WHERE id = %(session_id)s AND NOT closed RETURNING next_seq - 1 AS seq) "
                f"INSERT INTO turns ({TURN_COLS}) SELECT {_TURN_MARKS.replace('%(seq)s', 's.seq')} FROM s "
                "RETURNING seq", row)
        if not rows:  # nothing written: say why
            found = self._query("SELECT closed FROM sessions WHERE id = %s", (turn.session_id,))
            if not found:
                raise NotFound(f"unknown session {turn.session_id!r}")
            raise SessionClosed(f"session {turn.session_id!r} is closed; start a new session")
        turn.seq = rows[0]["seq"]
        return turn

    # ------------------------------------------------------------------ events
    @staticmethod
    def _event_row(e: Event) -> tuple:
        return event_values(e, e.image.sha256 if e.image is not None else None)  # the foreign key checks the image

    def _select_events(self, tail: str, params: Sequence[Any], order: bool = True) -> list[Event]:
        """The events `SELECT ... FROM events WHERE <tail>` gives, each with its image's size and format read in
        the same statement; in (created, id) order when `order`."""
        rows = self._query(f"SELECT ev.*, i.width, i.height, i.format FROM (SELECT {EVENT_COLS} FROM events "
                           f"WHERE {tail}) ev LEFT JOIN images i ON i.sha256 = ev.image_sha"
                           + (" ORDER BY ev.created, ev.id" if order else ""), params)
        return [event_from_row(r, _image_ref(r)) for r in rows]

    def add_events(self, events: Sequence[Event]) -> None:
        """Store new events atomically (all or none); their users are created if new."""
        with self.transaction():
            for e in events:
                self._add_user(e.user_id)
                with self._row_errors("events", None, e.image):
                    cur = self._execute(f"INSERT INTO events ({EVENT_COLS}) VALUES ({self._marks(16)}) "
                                        f"ON CONFLICT (id) DO NOTHING", self._event_row(e))
                if cur.rowcount == 0:
                    raise InvalidInput(f"event {e.id!r} already exists")

    def find_events(self, event_ids: Sequence[str]) -> dict[str, Event]:
        """The events among `event_ids` that exist, by id (unknown ids are left out)."""
        ids = list(dict.fromkeys(event_ids))
        return {e.id: e for e in self._select_events("id = ANY(%s)", (ids,), order=False)} if ids else {}

    def update_event(self, event: Event) -> None:
        """Overwrite a stored event with `event` (same id)."""
        with self._row_errors("events", None, event.image):
            cur = self._execute(f"UPDATE events SET ({EVENT_COLS}) = ({self._marks(16)}) WHERE id = %s",
                                (*self._event_row(event), event.id))
        if cur.rowcount == 0:
            raise NotFound(f"unknown event {event.id!r}")

    # ------------------------------------------------------------------ embedding cache
    # ------------------------------------------------------------------ model versions
    # ------------------------------------------------------------------ leases
    def hold_lease(self, kind: str, key: str, holder: str, ttl_s: float) -> Lease:
        """Take or renew the lease for `ttl_s` seconds on the database server's clock (`EventStore.hold_lease`)."""
        row = self._query("INSERT INTO leases (kind, key, holder, expires) "
                          f"VALUES (%s, %s, %s, {_SQL_NOW} + %s::double precision) "
                          "ON CONFLICT (kind, key) DO UPDATE SET holder = EXCLUDED.holder, expires = EXCLUDED.expires "
                          "RETURNING expires", (kind, key, holder, float(ttl_s)))[0]
        return Lease(kind, key, holder, row["expires"], ttl_s > 0)

    # ------------------------------------------------------------------ change feed
    def last_change(self) -> int:
        """The id of the newest change (0 when none): a reader starting now reads the changes after it."""
        return self._query("SELECT COALESCE(MAX(id), 0) AS n FROM event_changes")[0]["n"]

    def changes_since(self, after: int, limit: int = 10_000) -> list[Change] | None:
        """The changes after change `after`, oldest first (at most `limit`); None when some of them were
        pruned already (the reader must then reload every active event)."""
        rows = self._query("SELECT f.pruned_upto AS pruned, c.id, c.event_id, c.op FROM feed_state f LEFT JOIN LATERAL "
                           "(SELECT id, event_id, op FROM event_changes WHERE id > %s ORDER BY id LIMIT %s) c ON TRUE "
                           "ORDER BY c.id", (after, limit))  # one round trip, a row even when nothing changed
        if after < rows[0]["pruned"]:
            return None
        return [Change(r["id"], r["event_id"], r["op"]) for r in rows if r["id"] is not None]

    def prune_changes(self, older_than_s: float = 3600.0) -> int:
        """Drop changes older than `older_than_s` seconds (readers further behind reload); returns how many."""
        with self.exclusive():
            rows = self._query("DELETE FROM event_changes WHERE at < now() - make_interval(secs => %s) "
                               "RETURNING id", (older_than_s,))
            if rows:
                self._execute("UPDATE feed_state SET pruned_upto = GREATEST(pruned_upto, %s)",
                              (max(r["id"] for r in rows),))
        return len(rows)

    def listen(self) -> ChangeListener:
        """A listener on its own connection that wakes when another process commits an event change."""
        return ChangeListener(self.conninfo, self.schema, self._kwargs)


class ChangeListener:
    """LISTEN on a dedicated connection; `wait` returns when this schema's events changed or after a timeout."""

    def __init__(self, conninfo: str, schema: str, kwargs: dict[str, Any]) -> None:
        self._conninfo, self._schema, self._kwargs = conninfo, schema, kwargs
        self._conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, **self._kwargs)
            self._conn.execute(f"LISTEN {CHANNEL}")
        return self._conn

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True when a change of this schema was announced. A lost connection
        is reopened on the next call (the caller reads the change log anyway, so nothing is missed)."""
        conn = self._connect()
        try:
            for note in conn.notifies(timeout=timeout, stop_after=1):
                if note.payload == self._schema:
                    return True
        except psycopg.OperationalError:
            conn.close()
            raise
        return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _safe(conninfo: str) -> str:
    """The connection URL without its password, for messages."""
    parts = urlsplit(conninfo)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def open_url(url: str, *, create: bool = True, **kwargs: Any) -> PostgresStore:
    """The store backend "postgresql" of `ilearn.plugins`: the schema a postgresql:// URL names (`parse_url`).

    With `create` false a schema that has no iLearn tables yet raises NotFound instead of starting an empty
    deployment."""
    if not create:
        conninfo, schema = parse_url(url)
        try:
            with psycopg.connect(conninfo, connect_timeout=10) as conn:
                found = conn.execute("SELECT to_regclass(%s)", (f"{schema}.schema_version",)).fetchone()[0]
        except psycopg.Error as exc:
            raise SchemaError(f"cannot reach PostgreSQL at {_safe(conninfo)}: {exc}") from exc
        if found is None:
            raise NotFound(f"no iLearn deployment in schema {schema} at {_safe(conninfo)}")
    return PostgresStore(url, **kwargs)
