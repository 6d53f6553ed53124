"""Issue 18, item 2: a deployment calibrates its own reuse threshold from its users' reactions."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from ilearn.config import RetrievalConfig
from ilearn.memory.calibration import (
    ReuseCalibrator,
    calibrated_threshold,
    outcome,
    wilson_lower,
    wilson_upper,
)
from ilearn.types import Feedback, Label


def config(**kw) -> RetrievalConfig:
    return RetrievalConfig(**{"calibrate": True, "reuse_threshold": 0.87, "calibration_floor": 0.84, "calibration_min_pairs": 30,
                              "max_false_reuse": 0.02, **kw})


def test_wilson_bounds():
    assert wilson_upper(0, 0) == 1.0 and wilson_lower(0, 0) == 0.0
    assert wilson_upper(0, 189) <= 0.02 < wilson_upper(0, 188)  # 0 rejections: about 190 pairs reach 2%
    assert wilson_lower(1, 8) > 0.02 >= wilson_lower(1, 9)
    assert wilson_lower(5, 10) < 0.5 < wilson_upper(5, 10)


def test_no_pairs_gives_the_default(tmp_path):
    cal = ReuseCalibrator(config(), tmp_path)
    assert cal.threshold() == 0.87
    for s in np.linspace(0.85, 0.99, 20):  # fewer than calibration_min_pairs, all right: still the default
        cal.record(s, True)
    assert cal.threshold() == 0.87


def test_enough_clean_pairs_lower_it_never_below_the_floor(tmp_path):
    cal = ReuseCalibrator(config(), tmp_path)
    for s in np.linspace(0.855, 0.99, 300):
        cal.record(s, True)
    t = cal.threshold()
    assert 0.855 <= t < 0.87
    # the pairs at or above it keep the 95% upper bound of false reuse within 2%
    assert wilson_upper(0, sum(s >= t for s, _ in cal.pairs())) <= 0.02
    floor = ReuseCalibrator(config(calibration_floor=0.86), None)
    for s in np.linspace(0.80, 0.99, 400):
        floor.record(s, True)
    assert floor.threshold() == pytest.approx(0.86, abs=1e-3) and floor.threshold() >= 0.86


def test_rejections_raise_it_at_once(tmp_path):
    cal = ReuseCalibrator(config(), tmp_path)
    cal.record(0.90, True)
    cal.record(0.91, False)  # one rejection alone (a liar, a slip) does not move it
    assert cal.threshold() == 0.87
    cal.record(0.92, False)  # two among three: shown too low
    assert cal.threshold() > 0.92
    cal.record(0.95, True)
    assert 0.92 < cal.threshold() <= 0.95
    # a false share above 2% among many pairs raises a lowered threshold too
    many = ReuseCalibrator(config(), None)
    for i, s in enumerate(np.linspace(0.855, 0.99, 300)):
        many.record(s, not (s < 0.9 and i % 4 == 0))  # a quarter of the pairs below 0.9 are wrong
    t = many.threshold()
    assert t > 0.87
    at = [ok for s, ok in many.pairs() if s >= t]
    assert 1 - np.mean(at) <= 0.02  # raised to where the observed false share is within 2%


def test_calibrate_off_keeps_the_default(tmp_path):
    assert RetrievalConfig().calibrate is False  # opt-in for now (see the setting)
    cal = ReuseCalibrator(config(calibrate=False), tmp_path)
    cal.record(0.9, False)
    cal.record(0.91, False)
    assert cal.threshold() == 0.87


def test_pairs_persist_across_reopen_and_hold_no_user_data(tmp_path):
    cal = ReuseCalibrator(config(), tmp_path)
    cal.record(0.91, False)
    cal.record(0.93, False)
    cal.close()
    again = ReuseCalibrator(config(), tmp_path)
    assert again.pairs() == [(0.91, False), (0.93, False)] and again.threshold() > 0.93
    columns = [r[1] for r in sqlite3.connect(tmp_path / "calibration.sqlite").execute(
        "PRAGMA table_info(reuse_outcomes)")]
    assert columns == ["score", "ok", "time"]


def test_pure_function_matches_the_calibrator():
    scores, oks = [0.9] * 10, [True] * 10
    assert calibrated_threshold(scores, oks, default=0.99, min_pairs=5, max_false=0.3, floor=0.84) == 0.9
    assert calibrated_threshold(scores, oks, default=0.99, min_pairs=11, max_false=0.3, floor=0.84) == 0.99


def test_outcome_reads_the_reaction():
    pos, neu, neg = Feedback(Label.POSITIVE), Feedback(Label.NEUTRAL), Feedback(Label.NEGATIVE)
    fix = Feedback(Label.NEGATIVE, correction="Ibuprofen")
    assert outcome(True, "ibuprofen", "ibuprofen", pos) is True
    assert outcome(True, "ibuprofen", "ibuprofen", neu) is True
    assert outcome(True, "ibuprofen", "ibuprofen", neg) is False
    assert outcome(True, "ibuprofen", "ibuprofen", Feedback(Label.NEUTRAL, correction="aspirin")) is False
    # not reused: whether the top match's answer would have been right
    assert outcome(False, "ibuprofen", "aspirin", fix) is True
    assert outcome(False, "ibuprofen", "aspirin", Feedback(Label.NEGATIVE, correction="paracetamol")) is False
    assert outcome(False, "ibuprofen", "It is ibuprofen.", pos) is True
    assert outcome(False, "ibuprofen", "aspirin", pos) is False
    assert outcome(False, "ibuprofen", "aspirin", neg) is None  # a bare "no" to another answer tells nothing
    assert outcome(False, "ibuprofen", "ibuprofen", neg) is False


def test_frozen_uses_the_threshold_but_learns_nothing(tmp_path):
    """An experiment's scored rounds: the threshold applies, the reactions do not move it."""
    from ilearn.memory import calibration
    from ilearn.memory.base import Match
    from ilearn.types import Event, ImageRef

    cal = ReuseCalibrator(config(), tmp_path)
    match = Match(event=Event(image=ImageRef("x"), question="What is this called?", answer="Aspirin", user_id="u"),
                  score=0.95, image_sim=0.95, text_sim=1.0)
    no = Feedback(label=Label.NEGATIVE, confidence=1.0)

    class Memory:
        calibrator = cal

    with calibration.frozen(Memory()):
        for i in range(3):
            cal.note_answer(f"t{i}", [match], reused=True)
            assert cal.record_outcome(f"t{i}", "Aspirin", no) is None  # nothing noted, nothing recorded
            cal.record(0.95, False)
        assert cal.threshold() == 0.87 and len(cal) == 0
    for i in range(3):  # outside the block the same reactions are learnt from: rejections raise it
        cal.note_answer(f"t{i}", [match], reused=True)
        assert cal.record_outcome(f"t{i}", "Aspirin", no) is False
    assert len(cal) == 3 and cal.threshold() > 0.95
    with calibration.frozen(object()):  # a memory without a calibrator: nothing to freeze
        pass
