"""Sessions: open, resume and find idle ones; the locks that let many conversations run at once.

Concurrency rules (what `Assistant` relies on):
- one lock per session: turns of one session run one after the other, in the order they arrive at the lock;
  turns of different sessions run at the same time;
- one gate per user: every turn and close of a user holds it shared, forgetting the user holds it exclusive.
  So a forget waits for the user's running turns to finish (their rows are then deleted with the rest) and
  turns arriving meanwhile wait for it (then find their session gone: NotFound). A waiting forget goes first,
  so a busy user cannot starve it.
- locks are always taken in the order user gate -> session lock -> store / memory; idle closing only tries
  them (never waits), so it cannot deadlock with a turn.

Locks live only while someone holds or waits for them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from ilearn.config import SessionConfig
from ilearn.errors import NotFound, SessionClosed
from ilearn.memory.store import EventStore
from ilearn.types import ImageRef, Role, Session


class UserGate:
    """A readers-writer lock: many holders shared (turns), or one exclusive (a forget); writers go first."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._shared = 0
        self._exclusive = False
        self._writers_waiting = 0

    def acquire_shared(self, blocking: bool = True) -> bool:
        with self._cond:
            while self._exclusive or self._writers_waiting:
                if not blocking:
                    return False
                self._cond.wait()
            self._shared += 1
            return True

    def release_shared(self) -> None:
        with self._cond:
            self._shared -= 1
            if self._shared == 0:
                self._cond.notify_all()

    def acquire_exclusive(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._exclusive or self._shared:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._exclusive = True

    def release_exclusive(self) -> None:
        with self._cond:
            self._exclusive = False
            self._cond.notify_all()


class _LockTable:
    """Objects by key (a lock per session, a gate per user), created on first use and dropped when unused."""

    def __init__(self, factory: type) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._entries: dict[str, list] = {}  # key -> [object, users]

    @contextmanager
    def use(self, key: str) -> Iterator:
        with self._lock:
            entry = self._entries.setdefault(key, [self._factory(), 0])
            entry[1] += 1
        try:
            yield entry[0]
        finally:
            with self._lock:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class Sessions:
    """The sessions of one robot over an EventStore, with the per-session locks and per-user gates."""

    def __init__(self, store: EventStore, config: SessionConfig | None = None, robot_id: str = "default") -> None:
        self.store = store
        self.config = config or SessionConfig()
        self.robot_id = robot_id
        self._locks = _LockTable(threading.Lock)
        self._gates = _LockTable(UserGate)

    # ------------------------------------------------------------------ locks
    @contextmanager
    def user(self, user_id: str, *, exclusive: bool = False) -> Iterator[None]:
        """Hold the user's gate: shared for turns and closes, exclusive to forget the user."""
        with self._gates.use(user_id) as gate:
            if exclusive:
                gate.acquire_exclusive()
            else:
                gate.acquire_shared()
            try:
                yield
            finally:
                if exclusive:
                    gate.release_exclusive()
                else:
                    gate.release_shared()

    @contextmanager
    def lock(self, session_id: str) -> Iterator[None]:
        """Hold the session's lock (turns of one session run one at a time)."""
        with self._locks.use(session_id) as lock, lock:
            yield

    @contextmanager
    def try_hold(self, user_id: str, session_id: str) -> Iterator[bool]:
        """The user's gate (shared) and the session's lock if both are free now; yields whether they were."""
        with ExitStack() as stack:
            gate = stack.enter_context(self._gates.use(user_id))
            if not gate.acquire_shared(blocking=False):
                yield False
                return
            stack.callback(gate.release_shared)
            lock = stack.enter_context(self._locks.use(session_id))
            if not lock.acquire(blocking=False):
                yield False
                return
            stack.callback(lock.release)
            yield True

    def busy(self) -> int:
        """How many sessions have a turn running or waiting (for tests and monitoring)."""
        return len(self._locks)

    # ------------------------------------------------------------------ lifecycle
    @contextmanager
    def opened(self, user_id: str, robot_id: str | None = None) -> Iterator[Session]:
        """A new session of `user_id` (the user is created if new), its lock held for the block."""
        session = Session(user_id=user_id, robot_id=robot_id or self.robot_id)
        with self.lock(session.id):
            yield self.store.create_session(session)

    @contextmanager
    def resumed(self, user_id: str, session_id: str) -> Iterator[Session]:
        """The open session `session_id` of `user_id` with its turns, its lock held for the block (NotFound for an
        unknown or forgotten id, or another user's; SessionClosed for a closed one)."""
        with self.lock(session_id):
            session = self.store.get_session(session_id)
            if session.user_id != user_id:
                raise NotFound(f"unknown session {session_id!r} for user {user_id!r}")
            if session.closed:
                raise SessionClosed(f"session {session_id!r} is closed; start a new one")
            yield session

    def object_changed(self, session: Session, image: ImageRef | None) -> bool:
        """Whether a turn showing `image` starts a new dialogue (`close_on_new_image`, another image)."""
        current = session_image_ref(session)
        return (self.config.close_on_new_image and image is not None and current is not None
                and current.sha256 != image.sha256)

    def owner(self, session_id: str) -> str:
        """The user of a session (NotFound for unknown ids)."""
        return self.store.get_session(session_id, with_turns=False).user_id

    def pending(self, now: float | None = None) -> list[Session]:
        """Sessions to close and distil: open ones idle for longer than `idle_timeout_s`, then closed ones not
        yet distilled (left by a crash). Without their turns."""
        now = time.time() if now is None else now
        idle = self.store.list_sessions(open_only=True, idle_before=now - self.config.idle_timeout_s,
                                        with_turns=False)
        seen = {s.id for s in idle}
        left = [s for s in self.store.list_sessions(undistilled=True, with_turns=False)
                if s.closed and s.id not in seen]
        return idle + left

    def still_pending(self, session_id: str, now: float | None = None) -> bool:
        """Whether a session found by `pending` still needs closing (no turn came meanwhile; not forgotten)."""
        now = time.time() if now is None else now
        try:
            s = self.store.get_session(session_id, with_turns=False)
        except NotFound:
            return False
        if s.closed:
            return not s.distilled
        return s.updated < now - self.config.idle_timeout_s


def session_image_ref(session: Session) -> ImageRef | None:
    """The image of the latest user turn that carried one (what the dialogue is about)."""
    return next((t.image for t in reversed(session.turns) if t.image is not None and t.role == Role.USER), None)


__all__ = ["Sessions", "UserGate", "session_image_ref"]
