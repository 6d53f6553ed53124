"""What the two SQL event stores (`ilearn.memory.sqlite`, `ilearn.memory.postgres`) share: the row formats, and
the reads and one-statement writes whose SQL is the same in both dialects but for the driver's parameter mark
(written here with "?" and turned into the store's by `SQLStore._sql`).

A store subclasses `SQLStore` and gives `MARK` (sqlite3's "?", psycopg's "%s"), `NOW` (now on the database's
clock, in seconds since the epoch), `_query` (rows readable by column name), `_execute` (one statement, committed
unless a transaction of the caller's is open; its cursor's `rowcount` read after), `_select_events`, `_image_refs`
and `get_session`. What differs (transactions, upserts, migrations, the change feed) stays in each store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from ilearn.errors import InvalidInput, NotFound
from ilearn.memory.store import Lease, UserRecord
from ilearn.types import (
    Event,
    EventStatus,
    Feedback,
    FeedbackSource,
    ImageRef,
    Label,
    ModelStatus,
    ModelVersion,
    Scope,
    Session,
)

EVENT_COLS = ("id, image_sha, question, answer, user_id, robot_id, rejected, label, scope, status, "
              "session_id, model_version, supersedes, provenance, created, confidence")
TURN_COLS = ("id, session_id, seq, role, kind, text, image_sha, time, model_version, retrieved, "
             "precise_question, feedback, answered_from")
MODEL_COLS = "id, parent, recipe, settings, event_ids, metrics, status, path, created"


def qmarks(n: int) -> str:
    """`n` "?" marks, comma-separated: the shared statements are written with "?" (`SQLStore._sql`)."""
    return ", ".join("?" * n)


def check_text(text: str, what: str) -> None:
    """InvalidInput for text a database cannot store as UTF-8 (a lone surrogate, e.g. half of an emoji)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid Unicode text (a lone surrogate at character {exc.start})") from None


def enum_value(cls: type, value: Any, what: str) -> str:
    """The stored string of an enum member, or InvalidInput for a value outside the enum."""
    try:
        return cls(value).value
    except ValueError:
        raise InvalidInput(f"invalid {what} {value!r}; use one of {[m.value for m in cls]}") from None


def feedback_from_json(text: str | None) -> Feedback | None:
    if text is None:
        return None
    d = json.loads(text)
    return Feedback(label=Label(d["label"]), confidence=d["confidence"], correction=d["correction"],
                    source=FeedbackSource(d["source"]), rationale=d["rationale"])


def feedback_to_json(fb: Feedback | None) -> str | None:
    if fb is None:
        return None
    enum_value(Label, fb.label, "feedback label")
    enum_value(FeedbackSource, fb.source, "feedback source")
    return json.dumps(asdict(fb))


def event_values(e: Event, image_sha: str | None) -> tuple:
    """The values of `EVENT_COLS` for `e` (InvalidInput for an event without a user id or with a field outside its
    enum), `image_sha` as the store checked it."""
    if not isinstance(e.user_id, str) or not e.user_id:
        raise InvalidInput(f"event {e.id!r} has no user id")
    return (e.id, image_sha, e.question, e.answer, e.user_id, e.robot_id, json.dumps(list(e.rejected)),
            enum_value(Label, e.label, "label"), enum_value(Scope, e.scope, "scope"),
            enum_value(EventStatus, e.status, "status"), e.session_id, e.model_version, e.supersedes,
            json.dumps(dict(e.provenance)), e.created, e.confidence)


def event_from_row(row: Any, image: ImageRef | None) -> Event:
    """The event of a row of `EVENT_COLS`, its image looked up by the caller."""
    return Event(image=image, question=row["question"], answer=row["answer"], user_id=row["user_id"],
                 robot_id=row["robot_id"], rejected=json.loads(row["rejected"]), label=Label(row["label"]),
                 scope=Scope(row["scope"]), status=EventStatus(row["status"]), id=row["id"],
                 session_id=row["session_id"], model_version=row["model_version"], supersedes=row["supersedes"],
                 provenance=json.loads(row["provenance"]), created=row["created"], confidence=row["confidence"])


class SQLStore:
    """The EventStore methods both SQL stores run alike (see the module docstring for what a store gives)."""

    MARK = "?"
    NOW = ""

    def _query(self, sql: str, params: Any = ()) -> list[Any]:
        raise NotImplementedError

    def _execute(self, sql: str, params: Any = ()) -> Any:
        raise NotImplementedError

    def _select_events(self, tail: str, params: Sequence[Any], order: bool = True) -> list[Event]:
        """The events `SELECT ... FROM events WHERE <tail>` gives; in (created, id) order when `order`."""
        raise NotImplementedError

    def _image_refs(self, shas: set[str | None]) -> dict[str | None, ImageRef | None]:
        raise NotImplementedError

    def get_session(self, session_id: str, *, with_turns: bool = True) -> Session:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _marks(self, n: int) -> str:
        """`n` of this store's marks, comma-separated (for a store's own statements)."""
        return self._sql(qmarks(n))

    def _sql(self, sql: str) -> str:
        """`sql` written with "?" marks, in this store's marks."""
        return sql if self.MARK == "?" else sql.replace("?", self.MARK)

    @property
    def schema_version(self) -> int:
        """The schema version of the open store."""
        return self._version

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ users
    def has_user(self, user_id: str) -> bool:
        """Whether the user is known."""
        return bool(self._query(self._sql("SELECT 1 FROM users WHERE id = ?"), (user_id,)))

    def _user_column(self, user_id: str, column: str) -> Any:
        rows = self._query(self._sql(f"SELECT {column} FROM users WHERE id = ?"), (user_id,))
        if not rows:
            raise NotFound(f"unknown user {user_id!r}")
        return rows[0][column]

    def is_trusted(self, user_id: str) -> bool:
        """Whether the user's corrections are trusted (unknown user: NotFound)."""
        return bool(self._user_column(user_id, "trusted"))

    def user_since(self, user_id: str) -> float:
        """When the user was first seen (unknown user: NotFound)."""
        return float(self._user_column(user_id, "created"))

    def list_users(self) -> list[str]:
        """Every user id, oldest first."""
        return [r["id"] for r in self._query("SELECT id FROM users ORDER BY created, id")]

    def list_user_records(self, user_id: str, kind: str) -> list[UserRecord]:
        """The user's records of `kind`, oldest first."""
        rows = self._query(self._sql("SELECT * FROM user_records WHERE user_id = ? AND kind = ? "
                                     "ORDER BY created, key"), (user_id, kind))
        refs = self._image_refs({r["image_sha"] for r in rows})
        return [UserRecord(r["user_id"], r["kind"], r["key"], json.loads(r["data"]), refs[r["image_sha"]],
                           r["created"], r["updated"]) for r in rows]

    # ------------------------------------------------------------------ images
    def get_image_ref(self, sha256: str) -> ImageRef:
        """The stored metadata of an image."""
        rows = self._query(self._sql("SELECT sha256, width, height, format FROM images WHERE sha256 = ?"),
                           (sha256,))
        if not rows:
            raise NotFound(f"unknown image {sha256!r}")
        r = rows[0]
        return ImageRef(r["sha256"], r["width"], r["height"], r["format"])

    def get_image_bytes(self, sha256: str) -> bytes:
        """The original bytes of a stored image."""
        rows = self._query(self._sql("SELECT data FROM images WHERE sha256 = ?"), (sha256,))
        if not rows:
            raise NotFound(f"unknown image {sha256!r}")
        return bytes(rows[0]["data"])

    # ------------------------------------------------------------------ sessions and turns
    def list_sessions(self, *, user_id: str | None = None, open_only: bool = False,
                      idle_before: float | None = None, undistilled: bool = False,
                      with_turns: bool = True) -> list[Session]:
        """Sessions oldest first, filtered by user, open, last activity before a time, not distilled."""
        where, params = ["1 = 1"], []
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        if open_only:
            where.append("NOT closed")
        if idle_before is not None:
            where.append("updated < ?")
            params.append(idle_before)
        if undistilled:
            where.append("NOT distilled")
        rows = self._query(self._sql(f"SELECT * FROM sessions WHERE {' AND '.join(where)} ORDER BY created, id"),
                           params)
        sessions = [self._session_from_row(r) for r in rows]
        if with_turns and sessions:
            turns = self._turns_of([s.id for s in sessions])
            for s in sessions:
                s.turns = turns[s.id]
        return sessions

    def update_turn_feedback(self, turn_id: str, feedback: Feedback | None) -> None:
        """Set (or clear) the decoded feedback of a turn."""
        cur = self._execute(self._sql("UPDATE turns SET feedback = ? WHERE id = ?"),
                            (feedback_to_json(feedback), turn_id))
        if cur.rowcount == 0:
            raise NotFound(f"unknown turn {turn_id!r}")

    def close_session(self, session_id: str) -> Session:
        """Close a session (closing twice is harmless); returns it with its turns."""
        if self._execute(self._sql("UPDATE sessions SET closed = TRUE WHERE id = ?"), (session_id,)).rowcount == 0:
            raise NotFound(f"unknown session {session_id!r}")
        return self.get_session(session_id)

    def mark_distilled(self, session_id: str) -> bool:
        """Close the session and record that its events have been constructed; False when it was marked
        already. One statement: of two concurrent calls, one gets True (the other waits for the row, then finds
        it marked)."""
        cur = self._execute(self._sql("UPDATE sessions SET closed = TRUE, distilled = TRUE "
                                      "WHERE id = ? AND NOT distilled"), (session_id,))
        if cur.rowcount == 0:
            self.get_session(session_id, with_turns=False)  # NotFound for an unknown session
        return cur.rowcount == 1

    # ------------------------------------------------------------------ events
    def get_event(self, event_id: str) -> Event:
        """One event by id."""
        return self.get_events([event_id])[0]

    def find_events(self, event_ids: Sequence[str]) -> dict[str, Event]:
        """The events among `event_ids` that exist, by id (unknown ids are left out), 500 ids a statement."""
        ids = list(dict.fromkeys(event_ids))
        found: dict[str, Event] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            found.update((e.id, e) for e in self._select_events(self._sql(f"id IN ({qmarks(len(chunk))})"), chunk,
                                                                order=False))
        return found

    def get_events(self, event_ids: Sequence[str]) -> list[Event]:
        """Events in the order of `event_ids`; any unknown id raises NotFound naming it."""
        found = self.find_events(event_ids)
        missing = [i for i in dict.fromkeys(event_ids) if i not in found]
        if missing:
            raise NotFound(f"unknown event {missing[0]!r}" if len(missing) == 1 else f"unknown events {missing}")
        return [found[i] for i in event_ids]

    def _event_filter(self, user_id: str | None = None, robot_id: str | None = None,
                      status: EventStatus | Sequence[EventStatus] | None = None, scope: Scope | None = None,
                      session_id: str | None = None) -> tuple[str, list[Any]]:
        """(the WHERE condition, written with "?" marks, and its parameters) of `list_events`' filters."""
        where, params = ["1 = 1"], []
        for column, value in (("user_id", user_id), ("robot_id", robot_id), ("session_id", session_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if scope is not None:
            where.append("scope = ?")
            params.append(enum_value(Scope, scope, "scope"))
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({qmarks(len(statuses))})")
            params += [enum_value(EventStatus, s, "status") for s in statuses]
        return " AND ".join(where), params

    def list_events(self, *, user_id: str | None = None, robot_id: str | None = None,
                    status: EventStatus | Sequence[EventStatus] | None = None, scope: Scope | None = None,
                    session_id: str | None = None, limit: int | None = None) -> list[Event]:
        """Events oldest first, filtered by user, robot, status (one or several), scope and session."""
        where, params = self._event_filter(user_id, robot_id, status, scope, session_id)
        tail = f"{where} ORDER BY created, id"
        if limit is not None:
            tail += " LIMIT ?"
            params.append(int(limit))
        return self._select_events(self._sql(tail), params)

    def iter_events(self, *, batch_size: int = 1000, **filters: Any) -> Iterator[Event]:
        """Like `list_events`, but in pages, so a large store is never held in memory at once."""
        where, params = self._event_filter(**filters)
        after: tuple[float, str] = (float("-inf"), "")
        while True:
            events = self._select_events(self._sql(f"{where} AND (created, id) > (?, ?) ORDER BY created, id "
                                                   "LIMIT ?"), [*params, *after, batch_size])
            yield from events
            if len(events) < batch_size:
                return
            after = (events[-1].created, events[-1].id)

    def count_events(self, **filters: Any) -> int:
        """How many events match the filters of `list_events`."""
        where, params = self._event_filter(**filters)
        return self._query(self._sql(f"SELECT COUNT(*) AS n FROM events WHERE {where}"), params)[0]["n"]

    # ------------------------------------------------------------------ embedding cache
    def get_embedding(self, kind: str, key: str) -> np.ndarray | None:
        """A cached float32 vector, or None."""
        rows = self._query(self._sql("SELECT dim, vector FROM embeddings WHERE kind = ? AND key = ?"), (kind, key))
        if not rows:
            return None
        return np.frombuffer(rows[0]["vector"], dtype=np.float32, count=rows[0]["dim"]).copy()

    def put_embedding(self, kind: str, key: str, vector: np.ndarray) -> None:
        """Cache a 1-D vector (stored as float32), replacing any previous one."""
        v = np.asarray(vector, dtype=np.float32)
        if v.ndim != 1 or v.size == 0:
            raise InvalidInput(f"an embedding must be a non-empty 1-D vector, not shape {v.shape}")
        self._execute(self._sql("INSERT INTO embeddings (kind, key, dim, vector) VALUES (?, ?, ?, ?) "
                                "ON CONFLICT (kind, key) DO UPDATE SET dim = excluded.dim, vector = excluded.vector"),
                      (kind, key, v.size, v.tobytes()))

    # ------------------------------------------------------------------ model versions
    @staticmethod
    def _model_row(v: ModelVersion) -> tuple:
        return (v.id, v.parent, v.recipe, json.dumps(v.settings), json.dumps(list(v.event_ids)),
                json.dumps(v.metrics), enum_value(ModelStatus, v.status, "model status"), v.path, v.created)

    @staticmethod
    def _model_from_row(r: Any) -> ModelVersion:
        return ModelVersion(id=r["id"], parent=r["parent"], recipe=r["recipe"], settings=json.loads(r["settings"]),
                            event_ids=json.loads(r["event_ids"]), metrics=json.loads(r["metrics"]),
                            status=ModelStatus(r["status"]), path=r["path"], created=r["created"])

    def add_model_version(self, version: ModelVersion) -> None:
        """Register a new model version."""
        cur = self._execute(self._sql(f"INSERT INTO model_versions ({MODEL_COLS}) VALUES ({qmarks(9)}) "
                                      "ON CONFLICT (id) DO NOTHING"), self._model_row(version))
        if cur.rowcount == 0:
            raise InvalidInput(f"model version {version.id!r} already exists")

    def get_model_version(self, version_id: str) -> ModelVersion:
        """One model version by id."""
        rows = self._query(self._sql(f"SELECT {MODEL_COLS} FROM model_versions WHERE id = ?"), (version_id,))
        if not rows:
            raise NotFound(f"unknown model version {version_id!r}")
        return self._model_from_row(rows[0])

    def list_model_versions(self) -> list[ModelVersion]:
        """Every model version, oldest first."""
        rows = self._query(f"SELECT {MODEL_COLS} FROM model_versions ORDER BY created, id")
        return [self._model_from_row(r) for r in rows]

    def update_model_version(self, version: ModelVersion) -> None:
        """Overwrite a stored model version with `version` (same id)."""
        cur = self._execute(self._sql(f"UPDATE model_versions SET ({MODEL_COLS}) = ({qmarks(9)}) WHERE id = ?"),
                            (*self._model_row(version), version.id))
        if cur.rowcount == 0:
            raise NotFound(f"unknown model version {version.id!r}")

    # ------------------------------------------------------------------ leases
    def drop_lease(self, kind: str, key: str) -> None:
        """Give the lease up; nothing when none is held."""
        self._execute(self._sql("DELETE FROM leases WHERE kind = ? AND key = ?"), (kind, key))

    def list_leases(self, kind: str) -> list[Lease]:
        """The leases of `kind`, expired ones too, by key, `live` on the database's clock."""
        rows = self._query(self._sql(f"SELECT kind, key, holder, expires, expires > {self.NOW} AS live FROM leases "
                                     "WHERE kind = ? ORDER BY key"), (kind,))
        return [Lease(r["kind"], r["key"], r["holder"], r["expires"], bool(r["live"])) for r in rows]
