"""The embedded EventStore: one SQLite file in WAL mode, safe across threads and process crashes.

Durability: every write runs in a ``BEGIN IMMEDIATE`` transaction that is committed before the call
returns. WAL with ``synchronous=NORMAL`` keeps every committed transaction through a crash of the
process (kill -9); ``synchronous="FULL"`` also keeps it through a power cut, at the cost of an fsync
per commit. Images are stored once, as blobs keyed by their sha256, so deleting them is part of the
same transaction as deleting what refers to them. Deletes overwrite freed pages (``secure_delete``).

Threads: each thread gets its own connection (WAL lets readers run while one writer writes).
Writers of one process queue on a lock of the store before they take SQLite's (held from ``BEGIN
IMMEDIATE`` to ``COMMIT`` only), so many threads writing at once are served in turn as soon as the
previous commit is done, instead of polling SQLite's lock with sleeps of up to 100 ms each (SQLite's
busy handler); writers of other processes still wait on SQLite's lock. Both waits give up after
``timeout`` seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ilearn.config import DB_NAME
from ilearn.errors import ILearnError, InvalidInput, NotFound, SessionClosed
from ilearn.memory.sql import (
    EVENT_COLS,
    TURN_COLS,
    SQLStore,
    check_text,
    enum_value,
    event_from_row,
    event_values,
    feedback_from_json,
    feedback_to_json,
)
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



class SchemaError(ILearnError):
    """The database file was written by a newer iLearn, or is not an iLearn database."""


class StoreUnavailable(ILearnError):
    """The database cannot be written: the disk is full, the home is read-only, or it is locked too long."""


def _unavailable(path: Path, exc: sqlite3.Error) -> StoreUnavailable:
    """A one-line error naming what is wrong with the database at `path` (nothing was written)."""
    text = str(exc).lower()
    if "full" in text:
        why = "the disk is full; free some space (nothing of this write was kept)"
    elif "readonly" in text or "read-only" in text or "unable to open" in text:
        why = "the home folder or the database file is read-only (or missing); check its permissions"
    elif "locked" in text or "busy" in text:
        why = "another process or thread kept it locked too long; try again"
    else:
        why = f"it failed: {exc}"
    return StoreUnavailable(f"cannot write to the iLearn database {path}: {why}")


def _script(conn: sqlite3.Connection, script: str) -> None:
    """Run `;`-separated DDL inside the current transaction (executescript would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """The initial schema."""
    _script(conn, """
        CREATE TABLE users (id TEXT PRIMARY KEY, created REAL NOT NULL, trusted INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE images (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL, width INTEGER NOT NULL,
            height INTEGER NOT NULL, format TEXT NOT NULL, created REAL NOT NULL);
        CREATE TABLE sessions (id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id),
            robot_id TEXT NOT NULL, closed INTEGER NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
            distilled INTEGER NOT NULL);
        CREATE INDEX sessions_user ON sessions(user_id);
        CREATE INDEX sessions_open ON sessions(closed, updated);
        CREATE TABLE turns (id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
            role TEXT NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL,
            image_sha TEXT REFERENCES images(sha256), time REAL NOT NULL, model_version TEXT,
            retrieved TEXT NOT NULL, precise_question TEXT, feedback TEXT, UNIQUE (session_id, seq));
        CREATE INDEX turns_image ON turns(image_sha);
        CREATE TABLE events (id TEXT PRIMARY KEY, image_sha TEXT REFERENCES images(sha256),
            question TEXT NOT NULL, answer TEXT NOT NULL, user_id TEXT NOT NULL REFERENCES users(id),
            robot_id TEXT NOT NULL, rejected TEXT NOT NULL, label TEXT NOT NULL, scope TEXT NOT NULL,
            status TEXT NOT NULL, session_id TEXT, model_version TEXT, supersedes TEXT,
            provenance TEXT NOT NULL, created REAL NOT NULL, confidence REAL NOT NULL);
        CREATE INDEX events_user ON events(user_id);
        CREATE INDEX events_robot ON events(robot_id);
        CREATE INDEX events_status ON events(status);
        CREATE INDEX events_scope ON events(scope);
        CREATE INDEX events_session ON events(session_id);
        CREATE INDEX events_image ON events(image_sha);
        CREATE INDEX events_created ON events(created, id);
        CREATE TABLE embeddings (kind TEXT NOT NULL, key TEXT NOT NULL, dim INTEGER NOT NULL,
            vector BLOB NOT NULL, PRIMARY KEY (kind, key));
        CREATE INDEX embeddings_key ON embeddings(key);
        CREATE TABLE model_versions (id TEXT PRIMARY KEY, parent TEXT, recipe TEXT NOT NULL,
            settings TEXT NOT NULL, event_ids TEXT NOT NULL, metrics TEXT NOT NULL, status TEXT NOT NULL,
            path TEXT, created REAL NOT NULL);
    """)


def _migrate_v2(conn: sqlite3.Connection) -> None:
    """Records of a user about themselves (profiles, personal concepts: `ilearn.users`)."""
    _script(conn, """
        CREATE TABLE user_records (user_id TEXT NOT NULL REFERENCES users(id), kind TEXT NOT NULL,
            key TEXT NOT NULL, data TEXT NOT NULL, image_sha TEXT REFERENCES images(sha256),
            created REAL NOT NULL, updated REAL NOT NULL, PRIMARY KEY (user_id, kind, key));
        CREATE INDEX user_records_image ON user_records(image_sha);
    """)


def _migrate_v3(conn: sqlite3.Connection) -> None:
    """Leases of live processes (`EventStore.hold_lease`: the vLLM adapters each worker serves)."""
    _script(conn, """
        CREATE TABLE leases (kind TEXT NOT NULL, key TEXT NOT NULL, holder TEXT NOT NULL, expires REAL NOT NULL,
            PRIMARY KEY (kind, key));
    """)


def _migrate_v4(conn: sqlite3.Connection) -> None:
    """The event an answer turn's words came from when the memory answered (`Turn.answered_from`)."""
    _script(conn, "ALTER TABLE turns ADD COLUMN answered_from TEXT")


# Ordered migrations: MIGRATIONS[i] upgrades a database from version i to version i + 1.
# A schema change is one new function appended here; never edit a released one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_v1, _migrate_v2, _migrate_v3, _migrate_v4]

_UNUSED_IMAGE = ("SELECT 1 FROM turns WHERE image_sha = ?1 UNION ALL SELECT 1 FROM events WHERE image_sha = ?1 "
                 "UNION ALL SELECT 1 FROM user_records WHERE image_sha = ?1 LIMIT 1")

_SQL_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
"""Now on SQLite's clock, in seconds since the epoch (leases are stamped with it, never with a worker's)."""


class SQLiteStore(SQLStore):
    """EventStore over one SQLite file (see the module docstring for durability and threading)."""

    MARK = "?"
    NOW = _SQL_NOW

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", timeout: float = 30.0) -> None:
        """Open (creating and migrating if needed) the database at `path`.

        `synchronous` is "NORMAL" (survives process crashes) or "FULL" (also power loss); `timeout` is
        how long, in seconds, a writer waits for another writer before failing.
        """
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise InvalidInput(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._timeout = timeout
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._writer = threading.Lock()  # one write transaction of this process at a time (module docstring)
        self._closed = False
        self._checkpoint_due = False  # a forget's checkpoint was blocked by a reader: retried after writes
        try:
            self._version = self._migrate()
        except BaseException:
            self.close()
            raise
        logger.info("opened %s (schema version %d)", self.path, self._version)

    # ------------------------------------------------------------------ connections, transactions
    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise ILearnError(f"the store {self.path} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None,
                                       check_same_thread=False)
            except sqlite3.OperationalError as exc:
                raise _unavailable(self.path, exc) from exc
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                conn.close()
                raise _unavailable(self.path, exc) from exc
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise SchemaError(f"{self.path} is not a usable SQLite database: {exc}") from exc
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            conn.execute("PRAGMA secure_delete=ON")
            conn.row_factory = sqlite3.Row
            self._local.conn, self._local.depth = conn, 0
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically. A nested block joins the outer transaction as a savepoint: an
        exception undoes the nested block (and, if it escapes, the outer one too); nothing is visible
        to others until the outermost block commits."""
        conn = self._conn()
        depth = self._local.depth
        begin, commit, undo = (
            ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK") if depth == 0
            else (f"SAVEPOINT sp{depth}", f"RELEASE sp{depth}", f"ROLLBACK TO sp{depth}; RELEASE sp{depth}"))
        if depth == 0 and not self._writer.acquire(timeout=self._timeout):
            raise sqlite3.OperationalError(f"database is locked: another thread of this process has been "
                                           f"writing to {self.path} for over {self._timeout} s")
        try:
            try:
                conn.execute(begin)
            except sqlite3.OperationalError as exc:
                raise _unavailable(self.path, exc) from exc
            self._local.depth = depth + 1
            try:
                yield
                conn.execute(commit)
            except BaseException as exc:
                if conn.in_transaction:
                    for statement in undo.split("; "):
                        conn.execute(statement)
                if isinstance(exc, sqlite3.OperationalError) and depth == 0:
                    raise _unavailable(self.path, exc) from exc
                raise
            finally:
                self._local.depth = depth
        finally:
            if depth == 0:
                self._writer.release()
        if depth == 0 and self._checkpoint_due:
            self._retry_checkpoint()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, params).fetchall()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """One statement in a write transaction (the caller's, when one is open)."""
        with self.transaction():
            return self._conn().execute(sql, params)

    def _migrate(self) -> int:
        conn = self._conn()
        with self.transaction():  # IMMEDIATE: two processes opening at once migrate only once
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = conn.execute("SELECT version FROM schema_version").fetchall()
            tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                  "AND name != 'schema_version'").fetchone()[0]
            if len(rows) > 1 or (rows and (not isinstance(rows[0][0], int) or isinstance(rows[0][0], bool))):
                raise SchemaError(f"{self.path}: its schema version row is damaged ({[r[0] for r in rows]!r}); "
                                  f"restore the file from a backup")
            if not rows and tables:
                raise SchemaError(f"{self.path} has tables but no schema version row; restore it from a backup")
            version = rows[0][0] if rows else 0
            if version > len(MIGRATIONS):
                raise SchemaError(
                    f"{self.path} has schema version {version}, but this iLearn knows versions up to "
                    f"{len(MIGRATIONS)}: upgrade iLearn to open it")
            for target in range(version + 1, len(MIGRATIONS) + 1):
                logger.info("migrating %s to schema version %d", self.path, target)
                with self.transaction():
                    MIGRATIONS[target - 1](conn)
                    conn.execute("DELETE FROM schema_version")
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
        return len(MIGRATIONS)

    def close(self) -> None:
        """Close every connection (of every thread); later calls raise."""
        if self._checkpoint_due and not self._closed:
            try:
                self.checkpoint()
            except sqlite3.Error as exc:
                logger.warning("WAL checkpoint on close failed: %s", exc)
        with self._conns_lock:
            self._closed = True
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    # ------------------------------------------------------------------ users
    def ensure_user(self, user_id: str, *, trusted: bool | None = None) -> None:
        """Create the user if new; set `trusted` when given (new users are untrusted by default)."""
        if not isinstance(user_id, str) or not user_id:
            raise InvalidInput(f"a user id must be a non-empty string, not {user_id!r}")
        check_text(user_id, "the user id")
        with self.transaction():
            self._conn().execute("INSERT OR IGNORE INTO users (id, created, trusted) VALUES (?, ?, ?)",
                                 (user_id, now(),
                                  int(bool(trusted))))
            if trusted is not None:
                self._conn().execute("UPDATE users SET trusted = ? WHERE id = ?", (int(trusted), user_id))

    def delete_user(self, user_id: str) -> list[str]:
        """Hard-delete a user with their sessions, turns, events, and the images (and embeddings
        keyed by those images or events) that nobody else refers to. Returns the deleted event ids."""
        conn = self._conn()
        with self.transaction():
            if not self.has_user(user_id):
                raise NotFound(f"unknown user {user_id!r}")
            event_ids = [r[0] for r in conn.execute(
                "SELECT id FROM events WHERE user_id = ? ORDER BY created, id", (user_id,))]
            shas = {r[0] for r in conn.execute(
                "SELECT image_sha FROM events WHERE user_id = ?1 AND image_sha IS NOT NULL UNION "
                "SELECT t.image_sha FROM turns t JOIN sessions s ON t.session_id = s.id "
                "WHERE s.user_id = ?1 AND t.image_sha IS NOT NULL UNION "
                "SELECT image_sha FROM user_records WHERE user_id = ?1 AND image_sha IS NOT NULL", (user_id,))}
            conn.execute("DELETE FROM events WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))  # turns cascade
            conn.execute("DELETE FROM user_records WHERE user_id = ?", (user_id,))
            self._unlink_ids(conn, event_ids)
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
            gone = [sha for sha in sorted(shas) if not conn.execute(_UNUSED_IMAGE, (sha,)).fetchone()]
            for key in gone + event_ids:
                conn.execute("DELETE FROM images WHERE sha256 = ?", (key,))
                conn.execute("DELETE FROM embeddings WHERE key = ?", (key,))
        # Old page versions linger in the write-ahead log; fold it into the file and empty it (waiting up to
        # `timeout` for readers of older snapshots; if one still holds on, after each later write and on close).
        self._checkpoint_due = True
        if self._local.depth == 0 and not self.checkpoint():
            logger.warning("WAL checkpoint after deleting %s was blocked by a reader; retried after each write", user_id)
        logger.info("deleted user %s: %d events, %d images", user_id, len(event_ids), len(gone))
        return event_ids

    @staticmethod
    def _unlink_ids(conn: sqlite3.Connection, event_ids: list[str]) -> None:
        """Remove deleted event ids from the rows that name them: other events' `supersedes` and the events
        other users' turns retrieved or were answered from."""
        for i in range(0, len(event_ids), 500):
            chunk = event_ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            conn.execute(f"UPDATE events SET supersedes = NULL WHERE supersedes IN ({marks})", chunk)
            conn.execute(f"UPDATE turns SET answered_from = NULL WHERE answered_from IN ({marks})", chunk)
        gone = set(event_ids)
        for event_id in event_ids:
            for row in conn.execute("SELECT id, retrieved FROM turns WHERE instr(retrieved, ?) > 0",
                                    (event_id,)).fetchall():
                kept = [i for i in json.loads(row[1]) if i not in gone]
                conn.execute("UPDATE turns SET retrieved = ? WHERE id = ?", (json.dumps(kept), row[0]))

    def checkpoint(self) -> bool:
        """Copy the write-ahead log into the database file and empty it; False when a reader blocked it (it is
        then retried after each later write and on close)."""
        conn = self._conn()
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        self._checkpoint_due = bool(busy)
        return not busy

    def _retry_checkpoint(self) -> None:
        conn = self._conn()
        conn.execute("PRAGMA busy_timeout=0")  # a writer never waits for a reader here
        try:
            self.checkpoint()
        except sqlite3.OperationalError:
            pass
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")

    # ------------------------------------------------------------------ user records
    def put_user_record(self, record: UserRecord) -> UserRecord:
        """Insert or replace the record (user, kind, key), keeping its first `created`; its user is created if new."""
        data = json.dumps(record.data)
        for what, text in (("kind", record.kind), ("key", record.key), ("data", data)):
            check_text(text, f"the record's {what}")
        with self.transaction():
            self.ensure_user(record.user_id)
            self._conn().execute(
                "INSERT INTO user_records (user_id, kind, key, data, image_sha, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, kind, key) DO UPDATE SET data = excluded.data, "
                "image_sha = excluded.image_sha, updated = excluded.updated",
                (record.user_id, record.kind, record.key, data, self._image_sha(record.image), record.created,
                 record.updated))
        return record

    def delete_user_record(self, user_id: str, kind: str, key: str) -> bool:
        """Delete one record, and its image (with the image's cached embeddings) if nothing else shows it."""
        conn = self._conn()
        with self.transaction():
            row = conn.execute("SELECT image_sha FROM user_records WHERE user_id = ? AND kind = ? AND key = ?",
                               (user_id, kind, key)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM user_records WHERE user_id = ? AND kind = ? AND key = ?", (user_id, kind, key))
            sha = row[0]
            if sha is not None and not conn.execute(_UNUSED_IMAGE, (sha,)).fetchone():
                conn.execute("DELETE FROM images WHERE sha256 = ?", (sha,))
                conn.execute("DELETE FROM embeddings WHERE key = ?", (sha,))
        self._checkpoint_due = True  # the old pages leave the write-ahead log too (as for a forgotten user)
        if self._local.depth == 0:
            self.checkpoint()
        return True

    # ------------------------------------------------------------------ images
    def put_image(self, data: bytes, ref: ImageRef) -> ImageRef:
        """Store image bytes once under their sha256 (checked against `ref`); returns the stored ref."""
        if not data:
            raise InvalidInput("the image is empty (0 bytes)")
        digest = hashlib.sha256(data).hexdigest()
        if digest != ref.sha256:
            raise InvalidInput(f"image bytes hash to {digest[:12]}..., not to the ref's {ref.sha256[:12]}...")
        with self.transaction():
            self._conn().execute(
                "INSERT OR IGNORE INTO images (sha256, data, width, height, format, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (digest, sqlite3.Binary(data), ref.width, ref.height, ref.format,
                 now()))
        return self.get_image_ref(digest)

    def _image_sha(self, ref: ImageRef | None) -> str | None:
        if ref is None:
            return None
        if not self._query("SELECT 1 FROM images WHERE sha256 = ?", (ref.sha256,)):
            raise NotFound(f"unknown image {ref.sha256!r}: store it with put_image first")
        return ref.sha256

    def _image_refs(self, shas: set[str | None]) -> dict[str | None, ImageRef | None]:
        refs: dict[str | None, ImageRef | None] = {None: None}
        for sha in shas - {None}:
            refs[sha] = self.get_image_ref(sha)  # type: ignore[arg-type]
        return refs

    # ------------------------------------------------------------------ sessions and turns
    def create_session(self, session: Session) -> Session:
        """Store a new session (and any turns it already holds); its user is created if new."""
        with self.transaction():
            self.ensure_user(session.user_id)
            try:
                self._conn().execute(
                    "INSERT INTO sessions (id, user_id, robot_id, closed, created, updated, distilled) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (session.id, session.user_id, session.robot_id, int(session.closed), session.created,
                     session.updated, int(session.distilled)))
            except sqlite3.IntegrityError:
                raise InvalidInput(f"session {session.id!r} already exists") from None
            for turn in session.turns:
                turn.session_id = turn.session_id or session.id
                if turn.session_id != session.id:
                    raise InvalidInput(f"turn {turn.id!r} belongs to {turn.session_id!r}, not {session.id!r}")
                self._insert_turn(turn)
        return session

    def _session_from_row(self, row: sqlite3.Row) -> Session:
        return Session(user_id=row["user_id"], robot_id=row["robot_id"], id=row["id"], turns=[],
                       closed=bool(row["closed"]), created=row["created"], updated=row["updated"],
                       distilled=bool(row["distilled"]))

    def _turns_of(self, session_ids: list[str]) -> dict[str, list[Turn]]:
        out: dict[str, list[Turn]] = {sid: [] for sid in session_ids}
        rows: list[sqlite3.Row] = []
        for i in range(0, len(session_ids), 500):
            chunk = session_ids[i:i + 500]
            rows += self._query(f"SELECT {TURN_COLS} FROM turns WHERE session_id IN "
                                f"({self._marks(len(chunk))}) ORDER BY session_id, seq", chunk)
        refs = self._image_refs({r["image_sha"] for r in rows})
        for r in rows:
            out[r["session_id"]].append(Turn(
                role=Role(r["role"]), text=r["text"], kind=TurnKind(r["kind"]), session_id=r["session_id"],
                image=refs[r["image_sha"]], id=r["id"], time=r["time"], model_version=r["model_version"],
                retrieved=json.loads(r["retrieved"]), precise_question=r["precise_question"],
                feedback=feedback_from_json(r["feedback"]), seq=r["seq"], answered_from=r["answered_from"]))
        return out

    def get_session(self, session_id: str, *, with_turns: bool = True) -> Session:
        """A session, with its turns in order unless `with_turns` is False."""
        rows = self._query("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if not rows:
            raise NotFound(f"unknown session {session_id!r}")
        session = self._session_from_row(rows[0])
        if with_turns:
            session.turns = self._turns_of([session_id])[session_id]
        return session

    def _insert_turn(self, turn: Turn) -> None:
        check_text(turn.text, "the turn's text")
        conn = self._conn()
        role, kind = enum_value(Role, turn.role, "turn role"), enum_value(TurnKind, turn.kind, "turn kind")
        seq = conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM turns WHERE session_id = ?",
                           (turn.session_id,)).fetchone()[0]
        try:
            conn.execute(f"INSERT INTO turns ({TURN_COLS}) VALUES ({self._marks(13)})", (
                turn.id, turn.session_id, seq, role, kind, turn.text, self._image_sha(turn.image), turn.time,
                turn.model_version, json.dumps(list(turn.retrieved)), turn.precise_question,
                feedback_to_json(turn.feedback), turn.answered_from))
        except sqlite3.IntegrityError:
            raise InvalidInput(f"turn {turn.id!r} already exists") from None
        conn.execute("UPDATE sessions SET updated = MAX(updated, ?) WHERE id = ?", (turn.time, turn.session_id))
        turn.seq = seq

    def add_turn(self, turn: Turn) -> Turn:
        """Append a turn to its open session: sets `turn.seq` (0-based) and returns the same turn."""
        with self.transaction():
            rows = self._query("SELECT closed FROM sessions WHERE id = ?", (turn.session_id,))
            if not rows:
                raise NotFound(f"unknown session {turn.session_id!r}")
            if rows[0][0]:
                raise SessionClosed(f"session {turn.session_id!r} is closed; start a new session")
            self._insert_turn(turn)
        return turn

    # ------------------------------------------------------------------ events
    def _event_row(self, e: Event) -> tuple:
        values = event_values(e, None)
        for what, text in (("question", e.question), ("answer", e.answer), ("user id", e.user_id),
                           *(("rejected answer", r) for r in e.rejected)):
            check_text(text, f"the event's {what}")
        return (e.id, self._image_sha(e.image), *values[2:])

    def _select_events(self, tail: str, params: Sequence[Any], order: bool = True) -> list[Event]:
        """The events `SELECT ... FROM events WHERE <tail>` gives; in (created, id) order when `order`."""
        rows = self._query(f"SELECT * FROM (SELECT {EVENT_COLS} FROM events WHERE {tail})"
                           + (" ORDER BY created, id" if order else ""), params)
        refs = self._image_refs({r["image_sha"] for r in rows})
        return [event_from_row(r, refs[r["image_sha"]]) for r in rows]

    def add_events(self, events: Sequence[Event]) -> None:
        """Store new events atomically (all or none); their users are created if new."""
        with self.transaction():
            for e in events:
                self.ensure_user(e.user_id)
                try:
                    self._conn().execute(f"INSERT INTO events ({EVENT_COLS}) VALUES ({self._marks(16)})",
                                         self._event_row(e))
                except sqlite3.IntegrityError:
                    raise InvalidInput(f"event {e.id!r} already exists") from None

    def update_event(self, event: Event) -> None:
        """Overwrite a stored event with `event` (same id)."""
        with self.transaction():
            row = self._event_row(event)
            cur = self._conn().execute(
                f"UPDATE events SET ({EVENT_COLS}) = ({self._marks(16)}) WHERE id = ?", (*row, event.id))
            if cur.rowcount == 0:
                raise NotFound(f"unknown event {event.id!r}")

    # ------------------------------------------------------------------ embedding cache
    # ------------------------------------------------------------------ model versions
    # ------------------------------------------------------------------ leases
    def hold_lease(self, kind: str, key: str, holder: str, ttl_s: float) -> Lease:
        """Take or renew the lease for `ttl_s` seconds on SQLite's clock (`EventStore.hold_lease`)."""
        with self.transaction():
            self._conn().execute(f"INSERT OR REPLACE INTO leases (kind, key, holder, expires) "
                                 f"VALUES (?, ?, ?, {_SQL_NOW} + ?)", (kind, key, holder, float(ttl_s)))
            row = self._query("SELECT expires FROM leases WHERE kind = ? AND key = ?", (kind, key))[0]
        return Lease(kind, key, holder, row["expires"], ttl_s > 0)


def open_store(home: Path, **kwargs: Any) -> SQLiteStore:
    """The SQLite store of a deployment folder (`home/ilearn.db`), creating the folder if needed."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(home / DB_NAME, **kwargs)


def sqlite_path(url: str) -> Path:
    """The database file of a SQLite URL: sqlite:///relative/x.db or sqlite:////absolute/x.db (as SQLAlchemy)."""
    path = url.removeprefix("sqlite:///")
    if path == url or not path or path == ":memory:":
        raise InvalidInput(f"a SQLite store URL names a file, e.g. sqlite:///ilearn-data/ilearn.db; not {url!r}")
    return Path(path)


def open_url(url: str, *, create: bool = True, **kwargs: Any) -> SQLiteStore:
    """The store backend "sqlite" of `ilearn.plugins`: the database at a SQLite URL (`sqlite_path`).

    With `create` false a missing file raises NotFound instead of starting an empty deployment."""
    path = sqlite_path(url)
    if not path.is_file():
        if not create:
            raise NotFound(f"no iLearn deployment at {path} (talk to the assistant first, e.g. `ilearn chat`)")
        path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(path, **kwargs)
