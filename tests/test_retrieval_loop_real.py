"""A corrected mistake is fixed at once, through the default assistant with its REAL embedders.

The default settings (model `small`, the fused image embedder: the shipped instance CNN beside frozen
EfficientNet-Lite0 features, all-MiniLM-L6-v2 for questions, `retrieval.reuse_threshold` 0.87): a user teaches
one drawn bottle by a correction; a new view of the same bottle gets the taught name reused outright, while a
look-alike that was not taught, another question about the bottle and another user do not get it. tests/test_retrieval_loop.py runs
the same loop on the tiny model with model-free stub embedders.

Scores seen with the instance CNN alone, the default before fused (seed views below): the taught bottle's new
views 0.93-0.98 (reuse from 0.87); the look-alike paracetamol (same body and cap, another label band) no
reference at all (under 0.84). Naproxen, which differs from ibuprofen by the bottle's corners only, is the
embedder's known weak pair (config.py, `image_embedder`): 5 of 6 of its views got "Ibuprofen" reused, so it is
not the look-alike asserted here.
"""

from __future__ import annotations

import pytest

from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.data.bottles import BOTTLES, render_view
from ilearn.models.embedders import FusedImageEmbedder, MiniLMTextEmbedder
from ilearn.types import TurnKind

QUESTION = "What is this medicine called?"
BOTTLE = {b.id: b for b in BOTTLES}
TAUGHT_VIEW = 1
NEW_VIEWS = (100, 101, 102)  # render seeds never used for teaching


@pytest.fixture(scope="module")
def assistant(tmp_path_factory):
    """The default assistant, after "ana" taught it (privately) that bottle ibuprofen is Ibuprofen."""
    assistant = Assistant.from_config(Config(home=str(tmp_path_factory.mktemp("home"))))
    assert assistant.vlm.name == "small"
    assert isinstance(assistant.memory.image_embedder, FusedImageEmbedder)
    assert isinstance(assistant.memory.text_embedder, MiniLMTextEmbedder)
    first = assistant.respond("ana", QUESTION, image=render_view(BOTTLE["ibuprofen"], TAUGHT_VIEW))
    assert first.kind == TurnKind.ANSWER and "ibuprofen" not in first.text.lower()  # the base model cannot know
    fix = assistant.respond("ana", "No, that's Ibuprofen.", session_id=first.session_id)
    assert fix.feedback is not None and fix.feedback.correction == "Ibuprofen"
    events = assistant.close_session(first.session_id)
    assert [e.answer for e in events] == ["Ibuprofen"]
    return assistant


@pytest.mark.parametrize("view", NEW_VIEWS)
def test_a_new_view_of_the_taught_bottle_gets_the_correction(assistant, view):
    reply = assistant.respond("ana", QUESTION, image=render_view(BOTTLE["ibuprofen"], view))
    assert reply.kind == TurnKind.ANSWER and reply.text == "Ibuprofen"
    assert reply.prompt_tokens == 0  # reused outright: the model was not asked
    top = reply.references[0]
    assert top.answer == "Ibuprofen" and top.score >= assistant.config.retrieval.reuse_threshold


@pytest.mark.parametrize("view", NEW_VIEWS)
def test_a_look_alike_that_was_not_taught_does_not_get_it(assistant, view):
    reply = assistant.respond("ana", QUESTION, image=render_view(BOTTLE["paracetamol"], view))
    assert "ibuprofen" not in reply.text.lower() and reply.prompt_tokens > 0


def test_another_question_about_the_bottle_does_not_get_the_name(assistant):
    reply = assistant.respond("ana", "What is this used for?", image=render_view(BOTTLE["ibuprofen"], NEW_VIEWS[0]))
    assert reply.kind == TurnKind.ANSWER and reply.precise_question != "What is this called?"
    assert "ibuprofen" not in reply.text.lower() and reply.prompt_tokens > 0


def test_another_user_does_not_get_a_private_correction(assistant):
    reply = assistant.respond("bob", QUESTION, image=render_view(BOTTLE["ibuprofen"], NEW_VIEWS[0]))
    assert reply.references == [] and "ibuprofen" not in reply.text.lower()
