import pytest

from ilearn.dialogue.clarify import LexicalClarifier, ModelClarifier, find_facet, make_clarifier
from ilearn.models.stub import StubVLM


@pytest.mark.parametrize("request_text", ["What is this?", "hey, what's that thing??", "Tell me about it.",
                                          "Robot, is this ok please?", "And this one?",
                                          "Hmm, what is this one then?", "Oh, and what about this one here?"])
def test_vague_requests_are_ambiguous(request_text):
    decision = LexicalClarifier().assess(request_text, image_given=True)
    assert decision.ambiguous
    assert "name" in decision.question and "dose" in decision.question


@pytest.mark.parametrize("request_text", ["What is this medicine called?", "What colour is the cap?",
                                          "How much should I take?", "Is there a circle?", "What does this do?",
                                          "What is it used for then?"])
def test_specific_requests_are_clear(request_text):
    assert not LexicalClarifier().assess(request_text, image_given=True).ambiguous


@pytest.mark.parametrize("reply, expected", [("the dose please", "What is the dose of this?"),
                                             ("what it's for", "What is this used for?"),
                                             ("its name", "What is this called?")])
def test_reply_resolves_to_precise_question(reply, expected):
    assert LexicalClarifier().resolve("what is this?", reply) == expected


def test_reply_without_facet_is_unresolved_and_has_a_fallback():
    clarifier = LexicalClarifier()
    assert clarifier.resolve("what is this?", "the blue one") is None
    assert clarifier.fallback("what is this?", "the blue one") == "what is this? (the blue one)"


def test_earliest_facet_cue_wins():
    assert find_facet("how much is the dose, and what is it called").name == "dose"


def test_model_clarifier_asks_when_model_prefers_unclear():
    unclear = StubVLM(scorer=lambda messages, c: 0.0 if c.startswith("Yes") else -5.0)
    clear = StubVLM(scorer=lambda messages, c: -5.0 if c.startswith("Yes") else 0.0)
    assert ModelClarifier(unclear).assess("what about the thing", True).ambiguous
    assert not ModelClarifier(clear).assess("what about the thing", True).ambiguous
    # a request naming a facet never reaches the model
    assert not ModelClarifier(unclear).assess("what is the dose", True).ambiguous


def test_make_clarifier_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown clarify method"):
        make_clarifier("telepathy")
    assert not make_clarifier("never").assess("what is this?", True).ambiguous
