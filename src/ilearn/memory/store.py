"""The EventStore contract: sessions, turns, images, users, events and model versions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ilearn.types import Event, EventStatus, Feedback, ImageRef, ModelVersion, Scope, Session, Turn, now


@dataclass
class UserRecord:
    """Something a user told about themselves, private to them: a profile, a personal concept, a view of one
    (`ilearn.users`). Keyed by (user, kind, key); deleted with the user (`EventStore.delete_user`)."""

    user_id: str
    kind: str
    key: str
    data: dict[str, Any] = field(default_factory=dict)
    """JSON-serialisable content."""
    image: ImageRef | None = None
    """An image the record shows (stored with `put_image` first); deleted with the record if nothing else shows it."""
    created: float = field(default_factory=now)
    updated: float = field(default_factory=now)


@dataclass(frozen=True)
class Lease:
    """Something a live process holds (a vLLM adapter it serves: `ilearn.models.vllm_publish`) until `expires`
    unless it renews the lease; one that expired was left by a process that died.

    Times are the STORE's clock (the database server's for PostgreSQL), never a worker's: a worker gives how long
    the lease lasts (`hold_lease`'s `ttl_s`), the store stamps it, and says when listing whether each is `live`,
    so that workers whose clocks disagree never see one another's leases as expired, or live, too early."""

    kind: str
    key: str
    holder: str
    """Who holds it (host and process id)."""
    expires: float
    """When it expires, in seconds since the epoch on the store's clock."""
    live: bool = True
    """Whether it had not expired when it was read (on the store's clock)."""


@runtime_checkable
class EventStore(Protocol):
    """Durable state of one iLearn deployment. Every write is committed before the call returns.

    Unknown ids raise `ilearn.errors.NotFound`.
    """

    def transaction(self) -> AbstractContextManager[None]:
        """Group several writes atomically (nested use joins the outer transaction)."""
        ...

    # users
    def ensure_user(self, user_id: str, *, trusted: bool | None = None) -> None: ...
    def has_user(self, user_id: str) -> bool: ...
    def is_trusted(self, user_id: str) -> bool: ...
    def user_since(self, user_id: str) -> float:
        """When the user was first seen (epoch seconds; the trust rules' account age). Unknown user: NotFound."""
        ...
    def list_users(self) -> list[str]: ...
    def delete_user(self, user_id: str) -> list[str]:
        """Forget a user: their sessions, turns, events and images no one else uses. Returns deleted event ids."""
        ...

    # records of a user about themselves (profiles, personal concepts), private to them
    def put_user_record(self, record: UserRecord) -> UserRecord:
        """Insert or replace the record (user, kind, key); its user is created if new; returns it as stored."""
        ...
    def list_user_records(self, user_id: str, kind: str) -> list[UserRecord]:
        """The user's records of `kind`, oldest first (none for an unknown user)."""
        ...
    def delete_user_record(self, user_id: str, kind: str, key: str) -> bool:
        """Delete one record, and its image if no turn, event or record shows it any more; False if absent."""
        ...

    # images (content-addressed)
    def put_image(self, data: bytes, ref: ImageRef) -> ImageRef: ...
    def get_image_bytes(self, sha256: str) -> bytes: ...

    # sessions and turns
    def create_session(self, session: Session) -> Session: ...
    def get_session(self, session_id: str, *, with_turns: bool = True) -> Session: ...
    def list_sessions(
        self,
        *,
        user_id: str | None = None,
        open_only: bool = False,
        idle_before: float | None = None,
        undistilled: bool = False,
        with_turns: bool = True,
    ) -> list[Session]: ...
    def add_turn(self, turn: Turn) -> Turn:
        """Append a turn to its session (assigns `seq`, bumps the session's `updated`)."""
        ...
    def update_turn_feedback(self, turn_id: str, feedback: Feedback | None) -> None: ...
    def close_session(self, session_id: str) -> Session: ...
    def mark_distilled(self, session_id: str) -> bool:
        """Close the session and record that its events are constructed: True when this call marked it, False
        when it was marked already (a concurrent close: the caller's transaction then adds nothing)."""
        ...

    # events
    def add_events(self, events: Sequence[Event]) -> None: ...
    def get_event(self, event_id: str) -> Event: ...
    def get_events(self, event_ids: Sequence[str]) -> list[Event]: ...
    def list_events(
        self,
        *,
        user_id: str | None = None,
        robot_id: str | None = None,
        status: EventStatus | Sequence[EventStatus] | None = None,
        scope: Scope | None = None,
        session_id: str | None = None,
        limit: int | None = None,
    ) -> list[Event]: ...
    def iter_events(self, **filters) -> Iterator[Event]: ...
    def update_event(self, event: Event) -> None: ...
    def count_events(self, **filters) -> int: ...

    # embedding cache (e.g. image vectors keyed by sha256)
    def get_embedding(self, kind: str, key: str) -> np.ndarray | None: ...
    def put_embedding(self, kind: str, key: str, vector: np.ndarray) -> None: ...

    # model versions
    def add_model_version(self, version: ModelVersion) -> None: ...
    def get_model_version(self, version_id: str) -> ModelVersion: ...
    def list_model_versions(self) -> list[ModelVersion]: ...
    def update_model_version(self, version: ModelVersion) -> None: ...

    # leases of live processes (no user data)
    def hold_lease(self, kind: str, key: str, holder: str, ttl_s: float) -> Lease:
        """Take or renew the lease on (`kind`, `key`) for `holder`, whoever held it before, until `ttl_s` seconds
        from now on the store's clock; returns it as stored."""
        ...
    def drop_lease(self, kind: str, key: str) -> None:
        """Give the lease up; nothing when none is held."""
        ...
    def list_leases(self, kind: str) -> list[Lease]:
        """The leases of `kind`, expired ones too, by key, each `live` or not on the store's clock now."""
        ...

    # schema / lifecycle
    @property
    def schema_version(self) -> int: ...
    def close(self) -> None: ...


def upsert_event(store: EventStore, event: Event) -> None:
    """Write `event` to `store`: added when new, updated when its id is already there."""
    from ilearn.errors import NotFound

    try:
        store.get_event(event.id)
    except NotFound:
        store.add_events([event])
    else:
        store.update_event(event)
