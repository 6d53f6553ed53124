"""User-aware tuning rows: the tag in the prompt exactly as the assistant sends it, the fitted answer as target."""

from __future__ import annotations

import pytest
from PIL import Image

from ilearn.errors import InvalidInput
from ilearn.learning.datasets import completion_messages, prompt_messages
from ilearn.models.base import Message
from ilearn.users.fit import fit_answer, tagged
from ilearn.users.fit import prompt_messages as fit_prompt
from ilearn.users.profiles import Profile
from ilearn.users.tuning import preference_rows, rules, user_aware_rows

IMAGE = Image.new("RGB", (8, 8), (200, 30, 30))
CHILD, EXPERT, NONE = Profile(age_group="child"), Profile(expertise="expert"), Profile()


def sft_row(question: str, answer: str, event_id: str = "evt_1") -> dict:
    return {"messages": prompt_messages(question, True) + completion_messages(answer), "images": [IMAGE],
            "event_id": event_id}


def texts(row: dict) -> tuple[str, str]:
    return row["messages"][0]["content"][1]["text"], row["messages"][1]["content"][0]["text"]


def test_the_tag_is_the_one_the_assistant_sends():
    sent = fit_prompt([Message("user", "What is the dose of this?", image=IMAGE)], CHILD, "tag")[-1].content
    assert tagged("What is the dose of this?", CHILD) == sent == "[user: child] What is the dose of this?"
    assert tagged("What is the dose of this?", NONE) == "What is the dose of this?"


def test_one_row_per_profile_with_its_tag_and_fitted_answer():
    rows = user_aware_rows([sft_row("What is this used for?", "aspirin is an analgesic. It helps.")],
                           [NONE, CHILD, EXPERT, Profile(age_group="child", occupation="teacher")])
    assert [texts(r) for r in rows] == [
        ("What is this used for?", "aspirin is an analgesic. It helps."),
        ("[user: child] What is this used for?", fit_answer("aspirin is an analgesic. It helps.", CHILD)),
        ("[user: expert] What is this used for?", "aspirin is an analgesic. It helps."),
    ]  # the teacher child has the child's tag: one row
    assert "(a pain medicine)" in texts(rows[1])[1]
    assert all(r["images"] == [IMAGE] and r["event_id"] == "evt_1" for r in rows)
    assert rows[0]["messages"][0]["content"][0] == {"type": "image"}


def test_the_source_row_is_not_changed():
    row = sft_row("What is this?", "aspirin")
    user_aware_rows([row], [CHILD], lambda q, a, p: "changed")
    assert texts(row) == ("What is this?", "aspirin")


def test_a_fitting_function_of_ones_own():
    rows = user_aware_rows([sft_row("Q?", "fact")], [CHILD], lambda q, a, p: f"{q}|{a}|{p.age_group}")
    assert texts(rows[0]) == ("[user: child] Q?", "Q?|fact|child")
    assert rules("Q?", "aspirin", CHILD) == fit_answer("aspirin", CHILD)


def test_rows_that_are_not_sft_rows_and_no_profiles_are_refused():
    with pytest.raises(InvalidInput):
        user_aware_rows([{"prompt": prompt_messages("Q?", True)}], [CHILD])
    with pytest.raises(InvalidInput):
        user_aware_rows([sft_row("Q?", "a")], [])
    with pytest.raises(InvalidInput):
        preference_rows([sft_row("Q?", "a")], [])


def fitted(question: str, answer: str, profile: Profile) -> str:
    return f"{profile.age_group or 'anyone'}: {answer}"


def test_preference_pairs_reject_another_profiles_wording_and_another_fact():
    rows = preference_rows([sft_row("What is the dose?", "400 mg", "e1"), sft_row("What is the dose?", "400 mg", "e2"),
                            sft_row("What is the dose?", "10 mg", "e3")], [CHILD, NONE], fitted)
    first = [(r["prompt"][0]["content"][1]["text"], r["chosen"][0]["content"][0]["text"],
              r["rejected"][0]["content"][0]["text"]) for r in rows if r["event_id"] == "e1"]
    assert first == [("[user: child] What is the dose?", "child: 400 mg", "anyone: 400 mg"),
                     ("[user: child] What is the dose?", "child: 400 mg", "child: 10 mg"),
                     ("What is the dose?", "anyone: 400 mg", "child: 400 mg"),
                     ("What is the dose?", "anyone: 400 mg", "anyone: 10 mg")]
    assert all(r["chosen"] != r["rejected"] and r["images"] == [IMAGE] for r in rows)
    assert {r["event_id"] for r in rows} == {"e1", "e2", "e3"}


def test_no_pair_when_nothing_differs():
    rows = preference_rows([sft_row("Q?", "same")], [CHILD], lambda q, a, p: a)
    assert rows == []


def test_the_dpo_stage_can_keep_an_sft_term():
    from ilearn.config import LearnConfig
    from ilearn.errors import InvalidInput as Invalid
    from ilearn.learning.recipes import dpo_losses

    assert dpo_losses(LearnConfig(recipe="dpo")) == {}
    assert dpo_losses(LearnConfig(recipe="dpo", dpo_sft_weight=0.5)) == {"loss_type": ["sigmoid", "sft"],
                                                                         "loss_weights": [1.0, 0.5]}
    with pytest.raises(Invalid, match="dpo_sft_weight"):
        LearnConfig(dpo_sft_weight=-0.1)
