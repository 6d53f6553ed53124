"""The learning scheduler: model updates one at a time, in the background once enough new events came in.

`learn.auto_after_events` new events (events not in the latest version's snapshot, trained or held out) start
an update in a background thread. The update trains from the base weights (a copy of them), gates the
candidate against the model serving now, and promotes it; the promoted version is then loaded into a model
object of its own (`ModelVersions.change`), so answering never waits for any of it. With a vLLM server
(`model.publish` "vllm-lora") the promotion commits only once the server serves the adapter: a refused one
leaves the candidate a candidate and the version before active and serving. A failed update is
logged and never takes the assistant down.

Counting new events exactly reads every event; the scheduler counts the events that closes report and only
counts exactly when that running count reaches the threshold.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ilearn.config import Config
from ilearn.errors import InvalidInput
from ilearn.memory.store import EventStore
from ilearn.models.openai import RemoteModelError
from ilearn.models.versions import ModelVersions

if TYPE_CHECKING:
    from ilearn.learning.progress import OnProgress
    from ilearn.learning.registry import ModelRegistry
    from ilearn.learning.update import LearnOutcome

logger = logging.getLogger(__name__)


class LearningScheduler:
    """Runs `ilearn.learning.select.learn_best` now (`run`) or in the background (`note`), one update at a time."""

    def __init__(self, store: EventStore, registry: ModelRegistry | None, config: Config,
                 versions: ModelVersions, memory: Any = None) -> None:
        self.store = store
        self.memory = memory
        """The retrieval memory (None: none): each candidate's gate chooses against it whether the memory's
        guesses may overrule the candidate (`ilearn.learning.guesses`)."""
        self.registry = registry
        self.config = config
        self.versions = versions
        self.last: LearnOutcome | None = None
        """The outcome of the latest background update."""
        self._one_at_a_time = threading.Lock()
        self._counting = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending: int | None = None  # new events counted since the last exact count (None: count exactly)

    def run(self, *, promote: bool = True, general: bool = True, progress: OnProgress | None = None) -> LearnOutcome:
        """One model update now (waits for a background update in progress). Returns its LearnOutcome; `progress`
        is told how far it is (`ilearn.learning.progress`)."""
        from ilearn.learning.select import learn_best

        if self.registry is None:
            raise InvalidInput("this assistant has no model registry: build it with Assistant.from_config")
        with self._one_at_a_time:
            gate_vlm = self.versions.current(wait=True).vlm  # the model serving now
            outcome = learn_best(self.versions.base, self.store, self.registry, self.config, promote=False,
                                 gate_vlm=gate_vlm, general=general, progress=progress, memory=self.memory)
            if promote and outcome.accepted:
                outcome = self._promote(outcome)
            with self._counting:
                self._pending = None
            return outcome

    def _promote(self, outcome: LearnOutcome) -> LearnOutcome:
        """Promote the candidate the gate passed and serve it before the next turn asks for it
        (`ModelVersions.change`). A model server that refuses it (`model.publish` "vllm-lora") undoes the
        promotion: the candidate stays a candidate (promote it by hand later) and the outcome says why."""
        candidate = outcome.version.id
        try:
            version = self.versions.change(lambda: self.registry.promote(candidate))
        except RemoteModelError as exc:
            logger.error("learn: %s passed the gate but was not promoted: %s", candidate, exc)
            return replace(outcome, reasons=[*outcome.reasons, f"not promoted: the model server refused it ({exc}); "
                                                               f"the active version is unchanged"])
        return replace(outcome, version=version, promoted=True)

    def new_events_since_training(self) -> int:
        """Events not in the latest model version's snapshot (trained or held out)."""
        versions = self.registry.list() if self.registry is not None else []
        seen: set[str] = set()
        if versions:
            seen = set(versions[-1].event_ids) | set(versions[-1].metrics.get("heldout_event_ids", []))
        return sum(1 for e in self.store.iter_events(robot_id=self.config.robot_id) if e.id not in seen)

    def note(self, n_events: int) -> bool:
        """`n_events` new events were added; start a background update once there are enough. True if started."""
        every = self.config.learn.auto_after_events
        if every <= 0 or self.registry is None:
            return False
        with self._counting:
            if self.running():
                return False
            if self._pending is not None:
                self._pending += n_events
                if self._pending < every:
                    return False
            self._pending = self.new_events_since_training()
            if self._pending < every:
                return False
            self._pending = None
            self._thread = threading.Thread(target=self._background, name="ilearn-learn", daemon=True)
            self._thread.start()
            return True

    def running(self) -> bool:
        """Whether a background update is running."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Block until a background update (if any) has finished."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _background(self) -> None:
        try:
            self.last = self.run()
            logger.info("background update: %s", self.last.summary())
        except Exception:  # a failed update must never take the assistant down
            logger.exception("background model update failed")


__all__ = ["LearningScheduler"]
