"""The feedback decoder on failure classes seen in real replies (issue 19): each test names a class of reply, worded
here (not copied from the real set's dev or blind rows), that the rules misread before."""

from __future__ import annotations

import pytest

from ilearn.dialogue.feedback import Exchange, LexicalFeedbackDecoder
from ilearn.types import Label


def judge(answer: str, reaction: str, question: str = "") -> tuple[Label, str | None]:
    """The decoder as shipped: rules and learned check."""
    fb = LexicalFeedbackDecoder().judge(Exchange(question, answer, reaction))
    return fb.label, fb.correction


def rules(answer: str, reaction: str, question: str = "") -> tuple[Label, str | None]:
    """The rules alone (the learned check may still abstain on what they decide)."""
    fb = LexicalFeedbackDecoder(check=None).rules(Exchange(question, answer, reaction))
    return fb.label, fb.correction


@pytest.mark.parametrize("answer", ["Are you still in software development?", "I meant the student parking",
                                    "Did you want the pendant?"])
def test_a_word_ending_in_nt_is_no_negation(answer):
    # a "no" that agrees with a negative answer needs a real negation in it: "development" / "meant" are none
    assert rules(answer, "no, not anymore")[0] == Label.NEGATIVE
    assert rules("I don't think he'll come.", "no, not a chance")[0] == Label.POSITIVE
    assert rules("That isnt fair.", "nope, not fair at all")[0] == Label.POSITIVE
