"""A deployment's own reuse threshold, calibrated from its own feedback (issue 18, item 2).

Every answer the memory could have given outright is a labelled pair (score, ok) once the user reacts:

- an answer REUSED from memory (the top match scored >= the reuse threshold): ok when the user accepts it
  (positive, or neutral without a correction), not ok when they reject it (negative, or any correction);
- an answer NOT reused although a match was found (the model answered with references): the reaction still
  tells whether the top match's answer would have been right - ok when the answer the user accepts or
  corrects to is the top match's answer, not ok when it is another one (a bare "no" to an answer that is not
  the top match's tells nothing and is skipped). These pairs are what lets the threshold come DOWN: reused
  answers alone only ever score at or above the current threshold.

Only (score, ok, time) is kept: no user, question, answer or id. The pairs live in a small SQLite file beside
the store (`calibration.sqlite` under the memory's home; in memory only without a home).

The threshold (`ReuseCalibrator.threshold`), with the settings of `RetrievalConfig`:
- `calibrate` off, or fewer than `calibration_min_pairs` pairs: `reuse_threshold` (the safe default);
- otherwise the lowest observed score t (>= `calibration_floor`) such that the pairs scoring >= t number at
  least `calibration_min_pairs` and the 95% Wilson upper bound of their false-reuse share is <=
  `max_false_reuse`; the default when no score qualifies (with 0 rejections the bound needs about 190 pairs
  at or above t to reach 2%);
- raised at once, whatever the count, when the pairs at or above it SHOW a false-reuse rate above
  `max_false_reuse`: at least `calibration_min_rejections` (2) rejections among them and the 95% Wilson lower
  bound above it (2 rejections among at most 27 pairs, 3 among 51): to the lowest higher score (just above a
  rejection) where the observed false share is within it. One rejection alone never raises it: one user who
  rejects a right answer (a liar, or a slip) would otherwise stop every user's answers from memory.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ilearn.types import Label, answer_key

if TYPE_CHECKING:
    from ilearn.config import RetrievalConfig
    from ilearn.memory.base import Match
    from ilearn.types import Feedback

logger = logging.getLogger(__name__)

FILE_NAME = "calibration.sqlite"
PENDING = 4096
"""Answers awaiting a reaction that are remembered (oldest dropped)."""
STEP = 1e-6
"""How far above a rejected score a raised threshold sits."""


def wilson_upper(bad: int, n: int, z: float = 1.959964) -> float:
    """The upper end of the 95% Wilson score interval of the share bad / n (1.0 when n == 0)."""
    if n <= 0:
        return 1.0
    p = bad / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / denom)


def wilson_lower(bad: int, n: int, z: float = 1.959964) -> float:
    """The lower end of the 95% Wilson score interval of the share bad / n (0.0 when n == 0)."""
    if n <= 0:
        return 0.0
    return 1.0 - wilson_upper(n - bad, n, z)


def calibrated_threshold(scores: Sequence[float], oks: Sequence[bool], *, default: float, min_pairs: int,
                         max_false: float, floor: float, min_rejections: int = 2) -> float:
    """The reuse threshold the pairs support (module docstring): pure, for tests and benchmarks."""
    s = np.asarray(scores, dtype=np.float64)
    bad = ~np.asarray(oks, dtype=bool)
    order = np.argsort(-s, kind="stable")  # best first: the pairs at or above a score are a prefix
    s, bad = s[order], bad[order]
    threshold = default
    if len(s) >= min_pairs:
        n_at = np.arange(1, len(s) + 1)
        bad_at = np.cumsum(bad)
        for i in range(len(s) - 1, -1, -1):  # lowest score first
            if s[i] < floor or (i + 1 < len(s) and s[i + 1] == s[i]):
                continue  # below the floor, or not the last of equal scores (the prefix must hold them all)
            if n_at[i] >= min_pairs and wilson_upper(int(bad_at[i]), int(n_at[i])) <= max_false:
                threshold = min(default, float(s[i]))  # no pairs say the range above the default is unsafe
                break
    return max(floor, _raised(s, bad, threshold, max_false, min_rejections))


def _raised(s: np.ndarray, bad: np.ndarray, threshold: float, max_false: float, min_rejections: int) -> float:
    """`threshold`, or, when the pairs at or above it show its false-reuse rate is above max_false (the 95% Wilson
    lower bound exceeds it, with at least `min_rejections` rejections among them), the lowest higher score at which
    the observed false share is <= max_false (s sorted best first)."""
    def shown_too_low(t: float) -> bool:
        keep = s >= t
        wrong = int(bad[keep].sum())
        return wrong >= min_rejections and wilson_lower(wrong, int(keep.sum())) > max_false

    if not shown_too_low(threshold):
        return threshold
    above = s >= threshold
    for t in sorted({float(x) for x in s[above]} | {float(x) + STEP for x in s[above & bad]}):
        keep = s >= t
        if t > threshold and (not keep.any() or bad[keep].mean() <= max_false):
            return t
    return float(s.max()) + STEP


def outcome(reused: bool, top_answer: str, reply_text: str, feedback: Feedback) -> bool | None:
    """Whether the top match's answer was right, read from the user's reaction (module docstring); None when
    the reaction does not tell."""
    correction = (feedback.correction or "").strip()
    if reused:
        return feedback.label == Label.POSITIVE or (feedback.label == Label.NEUTRAL and not correction)
    top = answer_key(top_answer)
    if correction:
        return answer_key(correction) == top
    said_top = top and top in answer_key(reply_text)
    if feedback.label == Label.POSITIVE:
        return bool(said_top)
    if feedback.label == Label.NEGATIVE and said_top:
        return False
    return None


class ReuseCalibrator:
    """The pairs of one deployment and the threshold they support; thread-safe."""

    def __init__(self, config: RetrievalConfig, home: str | Path | None = None):
        self.config = config
        self.path = Path(home) / FILE_NAME if home is not None else None
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, tuple[float, str, bool]] = OrderedDict()
        self._scores: list[float] = []
        self._oks: list[bool] = []
        self._cached: float | None = None
        self._frozen = 0  # > 0: reactions are not learnt from (`frozen`)
        self._conn: sqlite3.Connection | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False)
            with self._conn:
                self._conn.execute("CREATE TABLE IF NOT EXISTS reuse_outcomes "
                                   "(score REAL NOT NULL, ok INTEGER NOT NULL, time REAL NOT NULL)")
            for score, ok in self._conn.execute("SELECT score, ok FROM reuse_outcomes ORDER BY rowid"):
                self._scores.append(float(score))
                self._oks.append(bool(ok))

    def __len__(self) -> int:
        return len(self._scores)

    def pairs(self) -> list[tuple[float, bool]]:
        with self._lock:
            return list(zip(self._scores, self._oks, strict=True))

    def threshold(self) -> float:
        """The reuse threshold to use now (the default until calibration is on and the pairs support another)."""
        c = self.config
        if not getattr(c, "calibrate", False):
            return c.reuse_threshold
        with self._lock:
            if self._cached is None:
                self._cached = calibrated_threshold(
                    self._scores, self._oks, default=c.reuse_threshold, min_pairs=c.calibration_min_pairs,
                    max_false=c.max_false_reuse,
                    floor=min(max(c.calibration_floor, c.threshold), c.reuse_threshold),
                    min_rejections=c.calibration_min_rejections)
            return self._cached

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Within the block the threshold is used but nothing is learnt: answers are not noted and no pair is
        recorded (e.g. an experiment's scored rounds, whose simulated users must not change the deployment)."""
        with self._lock:
            self._frozen += 1
        try:
            yield
        finally:
            with self._lock:
                self._frozen -= 1

    def record(self, score: float, ok: bool, now: float | None = None) -> None:
        """Add one labelled pair (persisted at once when there is a home); ignored while `frozen`."""
        score, ok = float(score), bool(ok)
        with self._lock:
            if self._frozen:
                return
            self._scores.append(score)
            self._oks.append(ok)
            self._cached = None
            if self._conn is not None:
                with self._conn:
                    self._conn.execute("INSERT INTO reuse_outcomes (score, ok, time) VALUES (?, ?, ?)",
                                       (score, int(ok), time.time() if now is None else now))
        logger.debug("reuse pair (%.4f, %s): threshold now %.4f", score, ok, self.threshold())

    def note_answer(self, turn_id: str, matches: Sequence[Match], reused: bool) -> None:
        """Remember what an answer turn could be judged on: the top match's score and answer, and whether it was
        given outright (nothing when there was no match)."""
        if not matches:
            return
        with self._lock:
            if self._frozen:
                return
            self._pending[turn_id] = (float(matches[0].score), matches[0].event.answer, bool(reused))
            while len(self._pending) > PENDING:
                self._pending.popitem(last=False)

    def record_outcome(self, turn_id: str, reply_text: str, feedback: Feedback | None) -> bool | None:
        """Turn the user's reaction to answer turn `turn_id` into a pair; returns its label (None: nothing
        recorded: no match behind that turn, no feedback, or a reaction that does not tell)."""
        if feedback is None:
            return None
        with self._lock:
            pending = self._pending.pop(turn_id, None)
        if pending is None:
            return None
        score, top_answer, reused = pending
        ok = outcome(reused, top_answer, reply_text, feedback)
        if ok is not None:
            self.record(score, ok)
        return ok

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def reuse_threshold(memory: Any, default: float) -> float:
    """The memory's calibrated reuse threshold, or `default` for a memory without a calibrator."""
    calibrator = getattr(memory, "calibrator", None)
    return calibrator.threshold() if calibrator is not None else default


def frozen(memory: Any):
    """`ReuseCalibrator.frozen` on the memory's calibrator (a no-op context without one)."""
    calibrator = getattr(memory, "calibrator", None)
    return calibrator.frozen() if calibrator is not None else nullcontext()


def note_answer(memory: Any, turn_id: str, matches: Sequence[Match], reused: bool) -> None:
    """`ReuseCalibrator.note_answer` on the memory's calibrator (no-op without one)."""
    calibrator = getattr(memory, "calibrator", None)
    if calibrator is not None:
        calibrator.note_answer(turn_id, matches, reused)


def record_reuse_outcome(memory: Any, turn_id: str, reply_text: str, feedback: Feedback | None) -> bool | None:
    """`ReuseCalibrator.record_outcome` on the memory's calibrator (no-op without one): call it where the
    feedback on an answer turn is decoded."""
    calibrator = getattr(memory, "calibrator", None)
    return calibrator.record_outcome(turn_id, reply_text, feedback) if calibrator is not None else None
