"""Metrics on hand-made examples."""

from __future__ import annotations

import pytest

from ilearn.errors import InvalidInput
from ilearn.evaluation.metrics import (
    BertScorer,
    TaskRecord,
    decoder_scores,
    general_accuracy,
    percentile,
    rouge1,
    summarise,
)
from ilearn.types import Label


def test_task_metrics():
    records = [
        TaskRecord("a", True, True, 2, clarifications=0, latencies_ms=[10.0, 30.0], prompt_tokens=[100, 120]),
        TaskRecord("b", False, True, 4, clarifications=1, latencies_ms=[20.0], prompt_tokens=[80]),
        TaskRecord("c", False, False, 3, clarifications=2, latencies_ms=[40.0], prompt_tokens=[100]),
        TaskRecord("d", True, True, 3, clarifications=0, latencies_ms=[], prompt_tokens=[]),
    ]
    s = summarise(records)
    assert s == {"n_interactions": 4, "accuracy": 0.5, "task_completion": 0.75, "turns_per_task": 3.0,
                 "clarification_rate": 0.5, "latency_ms_p50": 25.0, "prompt_tokens_mean": 100.0}
    assert summarise([])["accuracy"] is None and summarise([])["n_interactions"] == 0
    assert percentile([1, 2, 3, 4, 5], 90) == pytest.approx(4.6)
    assert general_accuracy(["a red circle", "blue"], ["circle", "green"]) == 0.5


def test_decoder_scores_per_class():
    truth = [Label.POSITIVE, Label.POSITIVE, Label.NEGATIVE, Label.NEGATIVE, Label.NEUTRAL, Label.NEGATIVE]
    pred = [Label.POSITIVE, Label.NEGATIVE, Label.NEGATIVE, None, Label.POSITIVE, "negative"]
    s = decoder_scores(pred, truth)
    assert s["precision"] == {"positive": 0.5, "neutral": None, "negative": pytest.approx(2 / 3)}
    assert s["recall"] == {"positive": 0.5, "neutral": 0.0, "negative": pytest.approx(2 / 3)}
    assert s["accuracy"] == 0.5 and s["n"] == 6
    with pytest.raises(InvalidInput):
        decoder_scores([Label.POSITIVE], [])


def test_rouge1_exact_values():
    # reference 6 tokens, prediction 6 tokens, 5 in common (the x2, cat, on, mat)
    r = rouge1(["the cat is on the mat"], ["the cat sat on the mat"])
    assert r["precision"] == pytest.approx(5 / 6) and r["recall"] == pytest.approx(5 / 6)
    assert r["f1"] == pytest.approx(5 / 6)
    # prediction 6 tokens, reference 5, 4 in common: P 4/6, R 4/5, F1 16/22; mean with an exact match
    r = rouge1(["Take 400 mg every six hours", "Ibuprofen"], ["400 mg every 6 hours", "ibuprofen"])
    assert r["precision"] == pytest.approx((4 / 6 + 1) / 2)
    assert r["recall"] == pytest.approx((4 / 5 + 1) / 2)
    assert r["f1"] == pytest.approx((16 / 22 + 1) / 2)
    assert rouge1([], []) == {"precision": None, "recall": None, "f1": None}


def test_bertscore_minilm():
    scorer = BertScorer()
    same = scorer.score(["ibuprofen for pain and fever"], ["ibuprofen for pain and fever"])
    assert same["f1"] == pytest.approx(1.0, abs=1e-5)
    near = scorer.score(["it treats pain and fever"], ["pain and fever"])
    far = scorer.score(["the sky is blue today"], ["pain and fever"])
    assert 0 < far["f1"] < near["f1"] < 1.0
    assert near["recall"] > near["precision"]  # every reference token is in the candidate
    assert scorer.score([""], ["pain"])["f1"] == 0.0


def test_wilson_interval_known_values():
    from ilearn.evaluation.metrics import wilson_interval

    # textbook values (Newcombe 1998; any Wilson calculator): 18 of 20, 0 of 24, 12 of 24, 24 of 24
    assert wilson_interval(18 / 20, 20) == pytest.approx((0.6990, 0.9721), abs=1e-4)
    assert wilson_interval(0.0, 24) == pytest.approx((0.0, 0.1380), abs=1e-4)
    assert wilson_interval(0.5, 24) == pytest.approx((0.3143, 0.6857), abs=1e-4)
    assert wilson_interval(1.0, 24) == pytest.approx((0.8620, 1.0), abs=1e-4)
    # 96 per round tells 75% from 90%: neither lies in the other's interval; at 24 a 90% round's interval holds 75%
    assert wilson_interval(0.75, 96)[1] < 0.90 and wilson_interval(0.90, 96)[0] > 0.75
    assert wilson_interval(0.90, 24)[0] < 0.75
    assert wilson_interval(None, 24) is None and wilson_interval(0.5, 0) is None


def test_wilson_interval_rejects_a_rate_outside_0_1():
    from ilearn.evaluation.metrics import wilson_interval

    with pytest.raises(InvalidInput):
        wilson_interval(1.5, 10)
