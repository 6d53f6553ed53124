"""How far a model update is: its phase and the fraction done, for whoever waits on it (a learning job).

`update.learn(..., progress=f)` calls `f(Progress)` as it goes: "distilling" (the shared events turned into
training rows and the held-out split), "training" (step i of n, from the trainer's steps: `recipes.train`'s
`on_step`), "gating" (the candidate against the serving model). The caller (`ilearn.serve.jobs`) says "done"
when the update returned. Each phase owns a share of the fraction, so it only grows:

    distilling 0 - 0.05, training 0.05 - 0.85 (by steps), gating 0.85 - 1

`learn_best` trains several candidates one after the other: each gets an equal slice (`for_candidate`).
Training on several processes (`learn.processes`) reports no steps: its trainer runs in other processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

PHASES = {"distilling": (0.0, 0.05), "training": (0.05, 0.85), "gating": (0.85, 1.0)}
"""Phase -> the share (start, end) of the fraction done it covers, in order."""


@dataclass(frozen=True)
class Progress:
    """Where an update is."""

    phase: str
    """distilling, training, gating, or done."""
    fraction: float
    """Of the whole update, 0 to 1."""
    step: int = 0
    """Training steps done (training only)."""
    steps: int = 0
    """Training steps in all (training only; 0 before the trainer knows)."""
    candidate: int = 1
    """The candidate setting being trained (`learn.candidates`), from 1."""
    candidates: int = 1

    def describe(self) -> str:
        """In words: "candidate 1 of 2: training step 3 of 10"."""
        what = f"training step {self.step} of {self.steps}" if self.phase == "training" and self.steps else self.phase
        if self.candidates > 1 and self.phase != "done":
            return f"candidate {self.candidate} of {self.candidates}: {what}"
        return what


OnProgress = Callable[[Progress], None]


def at(phase: str, step: int = 0, steps: int = 0) -> Progress:
    """The progress at `step` of `steps` into `phase` (its start when `steps` is 0)."""
    start, end = PHASES[phase]
    share = min(max(step / steps, 0.0), 1.0) if steps > 0 else 0.0
    return Progress(phase, start + (end - start) * share, step, steps)


def reporter(progress: OnProgress | None) -> Callable[..., None]:
    """`tell(phase, step=0, steps=0)` that sends `at(...)` to `progress` (nothing when it is None)."""

    def tell(phase: str, step: int = 0, steps: int = 0) -> None:
        if progress is not None:
            progress(at(phase, step, steps))

    return tell


def for_candidate(progress: OnProgress | None, index: int, count: int) -> OnProgress | None:
    """The progress of candidate `index` (from 0) of `count`, trained one after the other, as a slice
    [index / count, (index + 1) / count] of the whole."""
    if progress is None:
        return None

    def scaled(p: Progress) -> None:
        progress(replace(p, fraction=(index + p.fraction) / count, candidate=index + 1, candidates=count))

    return scaled


__all__ = ["PHASES", "OnProgress", "Progress", "at", "for_candidate", "reporter"]
