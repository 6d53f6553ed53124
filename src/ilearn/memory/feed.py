"""A retrieval memory whose index follows a store shared by several processes (a fleet, docs/fleet.md).

Each process (a service worker, a robot, the learner) keeps its own vector index in its own home folder; the
store (PostgreSQL, `ilearn.memory.postgres`) is the truth and announces every event change. `FleetMemory`
is the `DualModalityMemory` of such a process, with three additions:

- it follows the store's change feed: a thread wakes on each NOTIFY (and at least every `poll_s` seconds) and
  applies the changes to the index; every search first reads what it has not applied yet (one small query),
  so a correction admitted by one worker is retrieved by every other worker's next search;
- a forget anywhere removes the user's vectors here too, compacts the index and saves it (no file keeps them),
  and empties the process's caches of pictures (`on_forget`);
- the trust rules (quarantine, corroboration, supersede) run under the store's event-write lock
  (`PostgresStore.exclusive`), after reading every change committed before: one process decides at a time, on
  the same events, and its outcome is committed in the same transaction.

The base class applies the rules; this module only orders them and keeps the index in line. Only events the
rules admitted (`ADMITTED_KEY`) are indexed from the feed; an event distilled by a worker that died before
admitting it is admitted by the next `ensure_fresh` (any worker's start).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ilearn.config import RetrievalConfig
from ilearn.memory.base import Match, VectorIndex
from ilearn.memory.retrieval import DualModalityMemory
from ilearn.memory.trust import ADMITTED_KEY
from ilearn.types import Event, EventStatus, Scope, is_rejection

if TYPE_CHECKING:
    from PIL import Image

    from ilearn.memory.postgres import Change
    from ilearn.memory.store import EventStore
    from ilearn.models.base import ImageEmbedder, TextEmbedder

logger = logging.getLogger(__name__)


class Listener(Protocol):
    def wait(self, timeout: float) -> bool: ...
    def close(self) -> None: ...


@runtime_checkable
class ChangeFeed(Protocol):
    """What a store shared by several processes offers beyond `EventStore` (`PostgresStore` does)."""

    def exclusive(self) -> AbstractContextManager[None]:
        """A transaction holding the store's event-write lock, seeing every event change committed before it."""
        ...

    def held(self) -> AbstractContextManager[None]:
        """The thread's store connection taken until the block ends (no transaction of its own)."""
        ...

    def last_change(self) -> int: ...
    def changes_since(self, after: int, limit: int = 10_000) -> list[Change] | None:
        """Changes after `after`, oldest first; None when some were pruned (reload everything)."""
        ...

    def find_events(self, event_ids: Sequence[str]) -> dict[str, Event]: ...
    def prune_changes(self, older_than_s: float = 3600.0) -> int: ...
    def vacuum(self) -> None: ...
    def listen(self) -> Listener: ...


class FleetMemory(DualModalityMemory):
    """`DualModalityMemory` over a `ChangeFeed` store (module docstring); registered as memory "fleet".

    `poll_s`: the longest a change waits for the follower thread when a NOTIFY is lost; `keep_changes_s`: how
    long the store keeps changes for a process that was away (older ones make it reload every active event).
    """

    def __init__(self, store: EventStore, image_embedder: ImageEmbedder, text_embedder: TextEmbedder,
                 config: RetrievalConfig | None = None, home: str | Path | None = None, *, load: bool = True,
                 index_type: type[VectorIndex] | None = None, poll_s: float = 1.0,
                 keep_changes_s: float = 3600.0, **kwargs) -> None:
        if not isinstance(store, ChangeFeed):
            raise TypeError(f"memory 'fleet' needs a store with a change feed (PostgreSQL), not {type(store).__name__}")
        self._feed: ChangeFeed = store
        self._cursor = store.last_change()  # read before the index is loaded: nothing falls between the two
        self._follow_lock = threading.Lock()
        self._stop = threading.Event()
        self.poll_s, self.keep_changes_s = poll_s, keep_changes_s
        super().__init__(store, image_embedder, text_embedder, config, home, load=load, index_type=index_type,
                         **kwargs)
        self._listener = store.listen()
        self._thread = threading.Thread(target=self._follow, name="ilearn-feed", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ following the store
    def catch_up(self) -> int:
        """Apply the changes committed since the last call to the index; returns how many events it touched.

        Its store reads run on a connection taken before the follow lock (`held`, no transaction of its own:
        inside `_decision` they join its transaction): a thread that waits for a pool connection must hold no
        lock, or a writer holding the store's event-write lock (`_decision`) could wait on that thread's lock
        while the pool's connections wait on the writer (under load every turn failed with "lock timeout" after
        30 s)."""
        with self._feed.held(), self._follow_lock:
            changes = self._feed.changes_since(self._cursor)
            if changes:
                ids = list(dict.fromkeys(c.event_id for c in changes))
                self._apply(ids, forgotten=any(c.op == "D" for c in changes))
                self._cursor = changes[-1].id
                return len(ids)
        if changes is None:  # pruned past our cursor: start over from the store (outside the follow lock)
            logger.warning("the change feed was pruned past change %d; reloading the index", self._cursor)
            self.ensure_fresh()
            return len(self.index)
        return 0

    def _apply(self, ids: Sequence[str], *, forgotten: bool = False) -> None:
        """Bring the index in line with the store for `ids` (admitted ACTIVE ones in, every other one out)."""
        found = self._feed.find_events(ids)
        keep = [e for e in found.values() if e.status == EventStatus.ACTIVE and ADMITTED_KEY in e.provenance]
        with self._lock:
            kept = {e.id for e in keep}
            self._drop([i for i in ids if i not in kept])
            fresh = [e for e in keep if e.id not in self.index]
            if fresh:
                self._index_add(fresh, self._event_vectors(fresh))
                self._changed(len(fresh))
            for e in keep:
                meta = self._meta.get(e.id)
                if meta is None or (meta.user_id, meta.robot_id, meta.scope) != (e.user_id, e.robot_id,
                                                                                  Scope(e.scope)):
                    self._remember(e)
            if forgotten:  # a forget: no file may keep the vectors
                if self.index.dead:
                    self.index.compact()
                    self._filters.clear()
                self.save()
        if forgotten:  # nor this process's caches of pictures
            self._forgotten()
        logger.debug("feed: %d event(s) followed, %d indexed", len(ids), len(keep))

    def _follow(self) -> None:
        pruned = time.monotonic()
        while not self._stop.is_set():
            try:
                self._listener.wait(self.poll_s)
                if self._stop.is_set():
                    return
                self.catch_up()
                if time.monotonic() - pruned >= 60:
                    pruned = time.monotonic()
                    self._feed.prune_changes(self.keep_changes_s)
            except Exception:  # noqa: BLE001 - the thread must outlive a lost connection; searches catch up anyway
                logger.exception("following the store's changes failed; retrying in %.1f s", self.poll_s)
                self._stop.wait(self.poll_s)

    def review_queue(self, robot_id: str | None = None) -> list[tuple[Event, list[Event]]]:
        """As `DualModalityMemory.review_queue`, with its store connection taken before the memory's lock (see
        `catch_up`)."""
        with self.store.transaction():
            return super().review_queue(robot_id)

    # ------------------------------------------------------------------ reads see every committed change
    def search(self, image: Image.Image | None, question: str, user_id: str | None,
               robot_id: str = "default", k: int | None = None, floor: float | None = None) -> list[Match]:
        """As `DualModalityMemory.search`, after applying the changes other processes committed."""
        self.catch_up()
        return super().search(image, question, user_id, robot_id, k, floor)

    # ------------------------------------------------------------------ writes decided under the store's lock
    @contextmanager
    def _decision(self, ids: Sequence[str | None]) -> Iterator[None]:
        """The store's event-write lock with every earlier change applied; on failure the index is put back
        in line with the store for `ids` (the rolled-back transaction may have changed it)."""
        try:
            with self._feed.exclusive():
                self.catch_up()
                yield
        except BaseException:
            self._apply([i for i in ids if i])
            raise

    def add(self, event: Event, image: Image.Image | None = None) -> Event:
        """As `DualModalityMemory.add`, decided under the store's event-write lock (module docstring)."""
        if isinstance(event, Event) and event.question.strip() and (event.answer.strip() or is_rejection(event)):
            self._event_vectors([event], [image])  # embeddings cached in the store before the lock is taken
        with self._decision([getattr(event, "id", None), getattr(event, "supersedes", None)]):
            return super().add(event, image)

    def resolve(self, event_id: str, keep: bool) -> Event:
        """As `DualModalityMemory.resolve`, under the store's event-write lock."""
        with self._decision([event_id]):
            return super().resolve(event_id, keep)

    def forget_user(self, user_id: str) -> list[str]:
        """As `DualModalityMemory.forget_user`, under the store's event-write lock."""
        with self._decision([]):
            deleted = super().forget_user(user_id)
        self._feed.vacuum()  # the deleted rows' space, outside the transaction (it cannot run inside one)
        return deleted

    def ensure_fresh(self, store: EventStore | None = None) -> str:
        """As `DualModalityMemory.ensure_fresh`, under the store's event-write lock (it may admit events)."""
        with self._feed.exclusive():
            cursor = self._feed.last_change()
            action = super().ensure_fresh(store)
            self._cursor = max(self._cursor, cursor)
            return action

    def close(self) -> None:
        """Stop following the store, then save what changed."""
        self._stop.set()
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout=self.poll_s + 5)
            self._listener.close()
        super().close()
