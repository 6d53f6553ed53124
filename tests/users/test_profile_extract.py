"""The rules that read what users say about themselves and their things."""

from __future__ import annotations

import pytest

from ilearn.users.extract import PersonalRequest, read_profile, read_request


@pytest.mark.parametrize(("text", "update", "only"), [
    ("I'm a nurse.", {"occupation": "nurse", "expertise": "expert"}, True),
    ("I am a retired pharmacist", {"occupation": "pharmacist", "expertise": "expert"}, True),
    ("please keep it short", {"answer_length": "short"}, True),
    ("Be brief please!", {"answer_length": "short"}, True),
    ("I'm 8", {"age_group": "child"}, True),
    ("I'm eight years old", {"age_group": "child"}, True),
    ("I am 15", {"age_group": "teen"}, True),
    ("I'm 72 years old and I'm new to technology",
     {"age_group": "senior", "expertise": "newcomer"}, True),
    ("My name is ana", {"name": "Ana"}, True),
    ("call me Maria Luisa please", {"name": "Maria Luisa"}, True),
    ("friends call me Morgie I actually have nicknames", {"name": "Morgie"}, False),
    ("Please answer in Spanish", {"language": "Spanish"}, True),
    ("my English is not very good", {"accessibility": ["plain language"]}, True),
    ("I can't see very well and I'm colour blind",
     {"accessibility": ["low vision", "colour blindness"]}, True),
    ("I'm hard of hearing", {"accessibility": ["hearing"]}, True),
    ("I'd like longer answers", {"answer_length": "detailed"}, True),
    ("I'm not a nurse", {"occupation": None, "expertise": None}, True),
    ("forget my name", {"name": None}, True),
    ("forget my job", {"occupation": None, "expertise": None}, True),
    ("I'm a nurse, what is this?", {"occupation": "nurse", "expertise": "expert"}, False),
    ("I'm 8. What colour is it?", {"age_group": "child"}, False),
])
def test_profile_facts_are_read(text: str, update: dict, only: bool) -> None:
    said = read_profile(text)
    assert said.update == update
    assert said.only_profile is only


@pytest.mark.parametrize("text", [
    "What is this?", "No, it's ibuprofen.", "Thanks!", "I'm not sure", "I'm a woman", "I am black",
    "I'm muslim", "I'm 5 minutes late", "call me back later", "my name is not important", "I'm tired",
    "I'm a little confused", "I speak to my doctor every week",
])
def test_other_words_set_nothing(text: str) -> None:
    """Reactions, questions and protected attributes (gender, ethnicity, religion) are never profile facts."""
    assert read_profile(text).update == {}


@pytest.mark.parametrize(("text", "has_image", "expected"), [
    ("This is my mug, it's called Bobby.", True, PersonalRequest("teach", kind="mug", name="Bobby")),
    ("this is my mug called bobby", True, PersonalRequest("teach", kind="mug", name="Bobby")),
    ("This is my coffee mug Bobby", True, PersonalRequest("teach", kind="coffee mug", name="Bobby")),
    ("This is Bobby, my mug", True, PersonalRequest("teach", kind="mug", name="Bobby")),
    ("Meet Rex, my dog!", True, PersonalRequest("teach", kind="dog", name="Rex")),
    ("These are my pills", True, PersonalRequest("teach", kind="pills")),
    ("My mug is called Bobby", True, PersonalRequest("teach", kind="mug", name="Bobby")),
    ("My mug is called Rex now", False, None),
    ("My mug is now called Rex", False, PersonalRequest("rename", kind="mug", name="Rex")),
    ("Actually it's Rex", False, PersonalRequest("rename", name="Rex", contextual=True)),
    ("No, actually, it's called Rex.", False, PersonalRequest("rename", name="Rex", contextual=True)),
    ("No, it's Rex", False, PersonalRequest("rename", name="Rex", contextual=True)),
    ("rename Bobby to Rex", False, PersonalRequest("rename", name="Rex", target="Bobby")),
    ("Please call my mug Rex from now on", False, PersonalRequest("rename", kind="mug", name="Rex")),
    ("Forget my mug", False, PersonalRequest("forget", kind="mug")),
    ("please delete Bobby", False, PersonalRequest("forget", target="Bobby")),
    ("What do you know about me?", False, PersonalRequest("show")),
    ("forget my name", False, None),
    ("This is my first time here", True, None),
    ("What is this?", True, None),
    ("call me Ana", False, None),
])
def test_personal_requests_are_read(text: str, has_image: bool, expected: PersonalRequest | None) -> None:
    assert read_request(text, has_image=has_image) == expected


def test_no_shipped_reaction_is_taken_for_a_statement_about_the_user() -> None:
    """The reactions the feedback module is measured on (ilearn/data/*.jsonl) stay feedback: none is a personal
    request or a statement about the user alone, which would be answered before the feedback stage."""
    import json
    from importlib.resources import files

    texts = []
    for name in ("reactions.jsonl", "reactions_heldout.jsonl", "reactions_real.jsonl", "user_wording.jsonl"):
        for line in files("ilearn.data").joinpath(name).read_text().splitlines():
            row = json.loads(line)
            texts += [row[k] for k in ("reaction", "text", "paraphrases") if isinstance(row.get(k), str)]
    assert len(texts) > 500
    swallowed = [t for t in texts if read_profile(t).only_profile
                 or ((r := read_request(t, has_image=True)) is not None and not r.contextual)]
    assert swallowed == []
