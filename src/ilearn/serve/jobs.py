"""Learning jobs: `POST /v1/learn` starts one, `GET /v1/learn/{id}` says where it is and how it ended.

Jobs run one at a time in one background thread (the learning scheduler trains one candidate at a time anyway);
turns go on meanwhile, and a promoted version serves from the next turn on. A job's status goes
queued -> running -> done (outcome: promoted, refused with the gate's reasons, or nothing to learn) or failed
(the error). While it runs, `progress` says its phase (distilling, training step i of n, gating) and the fraction
done (`ilearn.learning.progress`); "done" and 1 once it ended. Jobs live in memory: a restart forgets them, the
model registry keeps every version they made.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ilearn.errors import NotFound
from ilearn.learning.progress import Progress
from ilearn.types import new_id

if TYPE_CHECKING:
    from ilearn.learning.update import LearnOutcome

logger = logging.getLogger(__name__)

KEEP = 100
"""Finished jobs remembered (oldest dropped)."""


@dataclass
class Job:
    id: str
    promote: bool
    general: bool
    status: str = "queued"
    """queued, running, done or failed."""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    outcome: dict[str, Any] | None = None
    error: str | None = None
    progress: Progress | None = None
    """Where it is (None while queued); what it last reported when it failed."""


def outcome_dict(outcome: LearnOutcome) -> dict[str, Any]:
    """What a learning run decided, in words and figures."""
    if outcome.version is None:
        decision = "nothing to learn"
    else:
        decision = "promoted" if outcome.promoted else "refused"
    return {"decision": decision, "promoted": outcome.promoted,
            "version": outcome.version.id if outcome.version is not None else None,
            "reasons": list(outcome.reasons), "train_events": outcome.n_train_events,
            "heldout_events": outcome.n_heldout_events, "seconds": round(outcome.seconds, 3)}


class LearningJobs:
    """Runs `learn(promote=, general=, progress=)` jobs one at a time; `on_done(job)` is called when one ends."""

    def __init__(self, learn: Callable[..., LearnOutcome], on_done: Callable[[Job], None] | None = None) -> None:
        self._learn = learn
        self._on_done = on_done
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ilearn-job")

    def start(self, *, promote: bool = True, general: bool = True) -> Job:
        job = Job(new_id("job"), promote, general)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j.id for j in self._jobs.values() if j.finished is not None]
            for old in finished[: max(0, len(finished) - KEEP)]:
                del self._jobs[old]
        self._pool.submit(self._run, job)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"unknown learning job {job_id!r}")
        return job

    def list(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def active(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.finished is None)

    def shutdown(self, timeout: float | None = None) -> None:
        """Cancel queued jobs and wait up to `timeout` seconds for the running one."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        done = threading.Event()
        threading.Thread(target=lambda: (self._pool.shutdown(wait=True), done.set()), daemon=True).start()
        if not done.wait(timeout):
            logger.warning("a learning job is still running after %.0f s; it is abandoned", timeout or 0)

    def _run(self, job: Job) -> None:
        job.status, job.started = "running", time.time()

        def report(progress: Progress) -> None:
            job.progress = progress

        try:
            job.outcome = outcome_dict(self._learn(promote=job.promote, general=job.general, progress=report))
            last = job.progress or Progress("done", 1.0)
            job.progress = replace(last, phase="done", fraction=1.0)
            job.status = "done"
        except Exception as exc:  # a failed job is reported, never takes the service down
            logger.exception("learning job %s failed", job.id)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        job.finished = time.time()
        if self._on_done is not None:
            self._on_done(job)


__all__ = ["Job", "LearningJobs", "outcome_dict"]
