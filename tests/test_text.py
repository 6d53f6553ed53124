"""The answer judge and its text normalisation: one definition, used by the gate, the metrics and the users."""

from __future__ import annotations

import importlib

import pytest

from ilearn.text import contains_answer, normalise_text


def test_normalise_text_keeps_numbers_and_words_whole():
    assert normalise_text("It's IBUPROFEN!") == "it s ibuprofen"
    assert normalise_text("Use 2.5 ml. Then rest.") == "use 2.5 ml then rest"
    assert normalise_text("anti-inflammatory - twice") == "anti-inflammatory twice"
    assert normalise_text("Take 400mg \u2019now\u2019") == "take 400 mg now"


def test_contains_answer_normalises():
    assert contains_answer("Take 400mg every 6 hours.", "400 mg every 6 hours")
    assert contains_answer("It's IBUPROFEN!", "ibuprofen")
    assert contains_answer("Use 2.5 ml.", "2.5 ml")
    assert contains_answer("It is RED!", "red") and contains_answer("the answer: Red cup.", "red cup")
    assert not contains_answer("40 mg every 6 hours", "400 mg every 6 hours")
    assert not contains_answer("ibuprofenate", "ibuprofen") and not contains_answer("reddish", "red")
    assert not contains_answer("anything", "") and not contains_answer("anything", " ?! ")


@pytest.mark.parametrize("module", ["ilearn.learning.gate", "ilearn.learning.construct", "ilearn.evaluation.metrics",
                                    "ilearn.evaluation.users"])
def test_every_floor_judges_with_the_same_function(module):
    assert importlib.import_module(module).contains_answer is contains_answer
