"""The profile-specific reference answers: one wording per style, the fact always kept word for word."""

from __future__ import annotations

import pytest

from ilearn.data.bottles import BOTTLES
from ilearn.errors import InvalidInput
from ilearn.evaluation.scenarios.personal import GROUPS
from ilearn.users.profiles import Profile
from ilearn.users.references import STYLES, TEMPLATES, facts_kept, gloss, reference_answer, style

PROFILE_OF_STYLE = {"child": Profile(age_group="child"), "newcomer": Profile(expertise="newcomer"),
                    "plain": Profile(accessibility=("plain language",)), "short": Profile(answer_length="short"),
                    "expert": Profile(expertise="expert"), "general": Profile()}


def test_every_reference_keeps_its_fact():
    for bottle in BOTTLES:
        for intent in TEMPLATES:
            for kind, profile in PROFILE_OF_STYLE.items():
                text = reference_answer(intent, bottle.facts[intent], profile)
                assert facts_kept(text, bottle.facts[intent]), (intent, kind, text)
                assert not text[0].islower() and text.endswith(".")


def test_a_changed_fact_is_not_kept():
    assert not facts_kept("Dose: 200 mg every 6 hours.", "400 mg every 6 hours")
    assert not facts_kept("It is used for hay fever.", "pain and fever")
    assert facts_kept("Take 400 mg (milligrams) every 6 hours.", "400 mg every 6 hours")


@pytest.mark.parametrize(("profile", "expected"), [
    (Profile(age_group="child", expertise="expert"), "child"),
    (Profile(age_group="senior"), "newcomer"),
    (Profile(expertise="newcomer", answer_length="short"), "newcomer"),
    (Profile(accessibility=("plain language",), answer_length="short"), "plain"),
    (Profile(answer_length="short", expertise="expert"), "short"),
    (Profile(occupation="nurse", expertise="expert"), "expert"),
    (Profile(age_group="adult", answer_length="detailed"), "general"),
    (Profile(), "general"),
])
def test_style_of_a_profile(profile, expected):
    assert style(profile) == expected


def test_the_styles_word_the_same_fact_differently():
    fact = "400 mg every 6 hours"
    texts = {kind: reference_answer("dose", fact, profile) for kind, profile in PROFILE_OF_STYLE.items()}
    assert set(texts) == set(STYLES) and len(set(texts.values())) == len(STYLES)
    assert texts["child"] == "A grown-up gives you the dose: 400 mg (milligrams) every 6 hours."
    assert texts["expert"] == "Dose: 400 mg every 6 hours."
    assert texts["short"] == "400 mg every 6 hours."
    assert texts["general"] == "The dose is 400 mg every 6 hours."


def test_only_child_newcomer_and_plain_get_glosses():
    for kind, profile in PROFILE_OF_STYLE.items():
        glossed = "(milligrams)" in reference_answer("dose", "10 mg once a day", profile)
        assert glossed == (kind in ("child", "newcomer", "plain")), kind
    assert gloss("20 mg before breakfast") == "20 mg (milligrams) before breakfast"
    assert gloss("hay fever") == "hay fever"


def test_every_group_of_the_scenario_has_a_style_of_its_own():
    assert len({style(profile) for _, profile in GROUPS.values()}) == len(GROUPS)


def test_unknown_intents_and_empty_facts_are_refused():
    with pytest.raises(InvalidInput, match="intent"):
        reference_answer("colour", "red", Profile())
    with pytest.raises(InvalidInput, match="fact"):
        reference_answer("use", " ", Profile())
