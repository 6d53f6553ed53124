"""`ilearn learn` with `learn.user_aware`: the version is tuned to fit its answers to the user (User-VLM's
user-aware tuning) on the shared events, for the archetype profiles only, and is marked so that the assistant
sends it the user's tag and shows its answers as they are (`tests/users/test_fit.py`)."""

from __future__ import annotations

import pytest
from learning_data import TEACHING_VIEWS, learn_spied, teach_medicines
from test_update import build, teach_many

from ilearn.config import LearnConfig
from ilearn.errors import InvalidInput
from ilearn.users.fit import fit_answer, profile_tag
from ilearn.users.tuning import ARCHETYPES, USER_AWARE

TAGS = {profile_tag(p) for p in ARCHETYPES}


def split(question: str) -> tuple[str, str]:
    """(tag, question) of a tagged question ("" when it has none)."""
    if question.startswith("[user: "):
        tag, _, rest = question.partition("] ")
        return f"{tag}]", rest
    return "", question


def texts(row: dict, key: str) -> str:
    return next(c["text"] for c in row[key][-1]["content"] if c.get("type") == "text")


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    assistant = build(tmp_path_factory.mktemp("aware") / "home", user_aware=True, max_steps=2)
    told = assistant.respond("user0", "I have low vision.")  # a profile of its own: never trained on
    assistant.close_session(told.session_id)
    teach_many(assistant, 8)
    outcome, rows = learn_spied(assistant)
    yield assistant, outcome, rows
    assistant.close()


def test_every_event_is_trained_once_per_archetype_with_the_answer_worded_for_it(sft):
    assistant, outcome, rows = sft
    trained = [r for r in rows if "event_id" in r]
    assert outcome.n_train_events == 6 and len(trained) == 6 * len(TAGS)
    answers = {e.id: e.answer for e in assistant.store.list_events()}
    seen: dict[str, set[str]] = {}
    for row in trained:
        tag, _ = split(next(c["text"] for c in row["messages"][-2]["content"] if c.get("type") == "text"))
        profile = next(p for p in ARCHETYPES if profile_tag(p) == tag)
        assert texts(row, "messages") == fit_answer(answers[row["event_id"]], profile)
        assert row["images"], "the event's own photo"
        seen.setdefault(row["event_id"], set()).add(tag)
    assert all(tags == TAGS for tags in seen.values())
    assert any(texts(r, "messages") != answers[r["event_id"]] for r in trained), "some answers are reworded"


def test_no_users_own_profile_reaches_training_and_held_out_events_stay_out(sft):
    assistant, outcome, rows = sft
    assert assistant.personal.profiles.get("user0").accessibility == ("low vision",)
    assert not any("low vision" in str(r.get("messages")) for r in rows)
    heldout = set(outcome.version.metrics["heldout_event_ids"])
    assert len(heldout) == outcome.n_heldout_events == 2 and not heldout & {r.get("event_id") for r in rows}


def test_the_version_is_registered_user_aware(sft, capsys):
    from ilearn.cli import main

    assistant, outcome, _ = sft
    assert outcome.version.metrics[USER_AWARE] is True and outcome.version.settings["user_aware"] is True
    assert main(["models", "list", "--home", assistant.config.home]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(outcome.version.id))
    assert "user-aware" in line


def test_dpo_trains_preference_pairs_and_the_bias_pairs(tmp_path):
    from ilearn.users.bias import bias_rows

    assistant = build(tmp_path / "home", recipe="dpo", user_aware=True, max_steps=1)
    teach_medicines(assistant, TEACHING_VIEWS[:2])  # three bottles' names and uses: other facts to reject
    _, rows = learn_spied(assistant)
    pairs = [r for r in rows if "event_id" in r]
    assert pairs and all(set(r) >= {"prompt", "chosen", "rejected", "images"} for r in pairs)
    assert {split(texts(r, "prompt"))[0] for r in pairs} == TAGS
    assert all(texts(r, "chosen") != texts(r, "rejected") for r in pairs)
    answers = {e.id: e.answer for e in assistant.store.list_events()}
    assert any(answers[r["event_id"]] not in texts(r, "rejected") for r in pairs), "another fact is rejected"
    assert len(rows) - len(pairs) >= len(bias_rows("train"))
    assistant.close()


def test_user_aware_tuning_needs_sft_or_dpo():
    with pytest.raises(InvalidInput, match="user_aware"):
        LearnConfig(recipe="kto", user_aware=True)
