"""The robot learns what users taught, and only that: learning tests that a degenerate model fails.

Users teach three bottles' names and uses through chats (tiny model, retrieval off so that only the model can
answer); `learn` trains, gates and promotes. The promoted model must answer each bottle's name and use on a new
photo, never give one bottle's answer to another bottle or one facet's answer to the other, and the gate must
refuse a candidate that answers one name to everything. What the trainer receives is checked too: the events'
own images, never a held-out event.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from learning_data import (
    MEDICINES,
    NAME_QUESTION,
    NEW_VIEW,
    USE_QUESTION,
    learn_spied,
    medicine,
    teach_medicines,
)
from PIL import Image

from ilearn.assistant import Assistant
from ilearn.config import Config, LearnConfig, ModelConfig
from ilearn.learning.gate import Margins, evaluate_candidate, heldout_from_events, negatives_from_events
from ilearn.learning.update import HeldOutLeak, image_loader, split_heldout, train_candidate
from ilearn.models import load_model
from ilearn.models.stub import StubVLM
from ilearn.types import EventStatus, ModelStatus

LEARN = {"recipe": "sft", "trainable": ("vision", "projector", "language"), "lora": (), "max_steps": 150,
         "learning_rate": 3e-3, "batch_size": 8, "heldout_fraction": 0.25, "general_limit": 8, "replay": 0}
TAUGHT = [answer for _, name, use in MEDICINES.values() for answer in (name, f"for {use}")]


def build(home, **learn) -> Assistant:
    config = Config(home=str(home)).override(model={"backend": "tiny"}, feedback={"method": "lexical"},
                                             retrieval={"enabled": False}, learn={**LEARN, **learn})
    return Assistant.from_config(config)


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """(assistant, outcome, rows the trainer received): three bottles taught by chats, then one `learn`."""
    assistant = build(tmp_path_factory.mktemp("learns") / "home")
    teach_medicines(assistant)
    outcome, rows = learn_spied(assistant)
    return assistant, outcome, rows


def answer(assistant: Assistant, question: str, colour: str) -> str:
    return assistant.respond("zoe", question, image=medicine(colour, *NEW_VIEW)).text.lower()


def test_every_chat_became_an_active_event_with_its_own_answer(taught):
    assistant, _, _ = taught
    events = assistant.store.list_events()
    assert len(events) == 30 and all(e.status == EventStatus.ACTIVE for e in events)
    assert sorted({e.answer for e in events}) == sorted(TAUGHT)


def test_the_gate_promotes_the_model_that_learned(taught):
    _, outcome, _ = taught
    assert outcome.promoted and outcome.version.status == ModelStatus.ACTIVE, outcome.summary()
    assert outcome.gate["learning"] == {"active": 0.0, "candidate": 1.0}
    assert outcome.gate["n_negatives"] > 0
    assert outcome.gate["specificity"]["candidate"] <= Margins().specificity


@pytest.mark.parametrize("colour", list(MEDICINES))
def test_the_promoted_model_answers_each_taught_bottle_on_a_new_photo(taught, colour):
    assistant, _, _ = taught
    _, name, use = MEDICINES[colour]
    name_reply, use_reply = answer(assistant, NAME_QUESTION, colour), answer(assistant, USE_QUESTION, colour)
    assert name in name_reply and use in use_reply
    # specific: no other bottle's answers, and each facet's answer only to its own question
    assert [t for t in TAUGHT if t in name_reply] == [name]
    assert [t for t in TAUGHT if t in use_reply] == [f"for {use}"]


def test_a_candidate_that_answers_one_name_to_everything_is_refused_by_the_gate(taught):
    """It is right on every held-out event that carries that name, so only the held-out negatives refuse it."""
    assistant, outcome, _ = taught
    events = assistant.store.list_events()
    heldout = [e for e in events if e.id in set(outcome.version.metrics["heldout_event_ids"])]
    one_name = [e for e in heldout if e.answer == "ibuprofen"] or heldout[:1]
    always = StubVLM(responder=lambda messages: one_name[0].answer)
    image_fn = image_loader(assistant.store)
    items = heldout_from_events(one_name, image_fn)
    negatives = negatives_from_events(one_name, events, image_fn)
    assert {n.kind for n in negatives} == {"other object", "other facet", "no object"}
    base = load_model(ModelConfig(backend="tiny"))  # the active model before learning
    report = evaluate_candidate(base, always, items, bias_set=[], negatives=negatives)
    assert report.learning["candidate"] == 1.0 > report.learning["active"]
    assert report.specificity["candidate"] == 1.0 and not report.promote
    assert any(r.startswith("specificity:") and "beyond the margin" in r for r in report.reasons)


def test_the_trainer_receives_the_events_own_images_and_answers(taught):
    assistant, _, rows = taught
    events = {e.id: e for e in assistant.store.list_events()}
    event_rows = [r for r in rows if "event_id" in r]
    assert event_rows
    for row in event_rows:
        event = events[row["event_id"]]
        stored = Image.open(io.BytesIO(assistant.store.get_image_bytes(event.image.sha256))).convert("RGB")
        assert np.array_equal(np.asarray(row["images"][0].convert("RGB")), np.asarray(stored))
        assert row["messages"][-1]["content"][0]["text"] == event.answer
    # all three bottles, each in several photos, reached training
    assert len({events[r["event_id"]].image.sha256 for r in event_rows}) >= 9


def test_heldout_events_never_reach_the_trainer(taught):
    assistant, outcome, rows = taught
    heldout = set(outcome.version.metrics["heldout_event_ids"])
    trained = {r["event_id"] for r in rows if "event_id" in r}
    assert heldout and trained and heldout.isdisjoint(trained)
    assert trained == set(outcome.version.event_ids)
    assert len(trained) + len(heldout) == len(assistant.store.list_events())
    # nor is a held-out question about a held-out photo trained under another event's id
    events = {e.id: e for e in assistant.store.list_events()}
    pairs = {i: (events[i].image.sha256, events[i].question) for i in events}
    assert {pairs[i] for i in heldout}.isdisjoint({pairs[i] for i in trained})


def test_train_candidate_refuses_rows_of_heldout_events(tmp_path):
    assistant = build(tmp_path / "home")
    teach_medicines(assistant, views=((0, 0), (2, 6)))
    events = assistant.store.list_events()
    split = split_heldout(events, 0.25, seed=0)
    from ilearn.learning.update import training_rows

    rows = training_rows(LearnConfig(**LEARN), events, image_loader(assistant.store))  # held-out events too
    with pytest.raises(HeldOutLeak, match="held-out event"):
        train_candidate(assistant.vlm, assistant.registry, LearnConfig(**LEARN), rows,
                        {"heldout_event_ids": [e.id for e in split.heldout]})
    assert assistant.registry.list() == []  # nothing trained, nothing registered
