"""Simulated users: personas, clarification replies by intent, reactions by feedback style, truth records."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from PIL import Image

from ilearn.dialogue.clarify import LexicalClarifier
from ilearn.dialogue.feedback import extract_correction
from ilearn.errors import InvalidInput
from ilearn.evaluation.personas import PERSONAS, Persona, split_personas
from ilearn.evaluation.scenarios.base import FactScenario, Item
from ilearn.evaluation.scenarios.reference_game import make_game
from ilearn.evaluation.users import ReferenceGameUser, SimulatedUser, UserSimulator
from ilearn.types import Label

CLARIFY = "Do you want to know its name, what it is used for, or the dose?"


@pytest.fixture(scope="module")
def scenario() -> FactScenario:
    view = Image.new("RGB", (8, 8))
    items = [Item("ibu", "Ibuprofen", {"name": "Ibuprofen", "use": "pain and fever", "dose": "400 mg every 6 hours"},
                  [view], [view]),
             Item("para", "Paracetamol", {"name": "Paracetamol", "use": "headache and fever",
                                          "dose": "1 g every 6 hours"}, [view], [view])]
    return FactScenario("toy", items, noun="medicine")


def _task(scenario: FactScenario, intent: str):
    return next(t for t in scenario.all_tasks("teach") if t.item.id == "ibu" and t.intent == intent)


def test_at_least_25_distinct_personas():
    assert len(PERSONAS) >= 25
    assert len({p.name for p in PERSONAS}) == len(PERSONAS)
    traits = {(p.style, p.ambiguity, p.patience, p.feedback, p.unreliable, p.polite) for p in PERSONAS}
    assert len(traits) == len(PERSONAS)
    assert {p.feedback for p in PERSONAS} == {"explicit", "implicit", "none"}
    assert any(p.unreliable > 0 for p in PERSONAS) and sum(p.unreliable > 0 for p in PERSONAS) <= 5
    assert {p.ambiguity for p in PERSONAS} >= {0.0, 1.0}
    teach, test = split_personas(seed=0, n_test=8)
    assert len(test) == 8 and not {p.name for p in teach} & {p.name for p in test}
    assert split_personas(seed=0, n_test=8) == (teach, test)
    with pytest.raises(InvalidInput):
        Persona("x", feedback="sometimes")


@pytest.mark.parametrize("intent,facet", [("name", "What is this called?"), ("use", "What is this used for?"),
                                          ("dose", "What is the dose of this?")])
def test_clarification_answered_per_intent(scenario, intent, facet):
    clarifier = LexicalClarifier()
    flagged = []
    for p in PERSONAS:  # every style's reply names the intended facet
        user = SimulatedUser(replace(p, ambiguity=1.0, patience=5), _task(scenario, intent), random.Random(0))
        request = user.first_utterance()
        assert not any(cue in request.lower() for cue in ("name", "use", "dose", "called", "how much"))
        flagged.append(clarifier.assess(request, image_given=True).ambiguous)
        reply = user.reply(CLARIFY, "clarification")
        assert clarifier.resolve(request, reply) == facet, (p.style, reply)
        assert user.utterances[-1].kind == "clarification_reply" and user.utterances[-1].label is None
    assert sum(flagged) >= 0.7 * len(flagged)  # most vague requests are plainly vague; a few are harder


def test_precise_requests_name_the_intent(scenario):
    clarifier = LexicalClarifier()
    for p in PERSONAS:
        for intent in ("name", "use", "dose"):
            user = SimulatedUser(replace(p, ambiguity=0.0), _task(scenario, intent), random.Random(1))
            request = user.first_utterance()
            assert not clarifier.assess(request, image_given=True).ambiguous, request


def test_explicit_user_corrects_and_truth_is_recorded(scenario):
    user = SimulatedUser(Persona("e", feedback="explicit", ambiguity=0.0), _task(scenario, "name"), random.Random(0))
    user.first_utterance()
    text = user.reply("It is Paracetamol.", "answer")
    assert user.done and user.reply("anything", "answer") is None
    assert extract_correction(text, "Paracetamol") == "Ibuprofen"
    truth = user.utterances[-1]
    assert (truth.label, truth.correction, truth.answer_correct, truth.reliable) == (
        Label.NEGATIVE, "Ibuprofen", False, True)
    out = user.outcome()
    assert out["first_answer_correct"] is False and out["completed"] is False and out["turns"] == 2


def test_correct_answer_gets_thanks(scenario):
    user = SimulatedUser(Persona("p", feedback="explicit", polite=True), _task(scenario, "dose"), random.Random(0))
    user.first_utterance()
    text = user.reply("Take 400mg every 6 hours.", "answer")  # normalised containment
    assert "thank" in text.lower() and user.done
    assert user.utterances[-1].label == Label.POSITIVE and user.outcome()["completed"]
    hedge = SimulatedUser(Persona("h"), _task(scenario, "name"), random.Random(0))
    hedge.first_utterance()
    hedge.reply("Ibuprofen or Paracetamol.", "answer")
    assert hedge.utterances[-1].answer_correct is False  # naming two medicines is not an answer


def test_implicit_user_rephrases_then_gives_up(scenario):
    persona = Persona("i", style="plain", feedback="implicit", ambiguity=0.0, patience=3)
    user = SimulatedUser(persona, _task(scenario, "use"), random.Random(0))
    first = user.first_utterance()
    second = user.reply("Ibuprofen.", "answer")
    assert not user.done and second != first
    assert extract_correction(second, "Ibuprofen") is None
    assert user.utterances[-1].label == Label.NEGATIVE and user.utterances[-1].correction is None
    assert LexicalClarifier().resolve("", second) == "What is this used for?"  # the rephrase names the intent
    third = user.reply("Ibuprofen.", "answer")
    assert not user.done and third
    last = user.reply("Still ibuprofen.", "answer")
    assert user.done and user.utterances[-1].label == Label.NEGATIVE and last
    assert user.turns == 4 and not user.outcome()["completed"]


def test_no_reaction_user(scenario):
    labels = set()
    for seed in range(10):
        user = SimulatedUser(Persona("n", feedback="none"), _task(scenario, "name"), random.Random(seed))
        user.first_utterance()
        text = user.reply("Paracetamol", "answer")
        assert user.done
        labels.add(user.utterances[-1].label)
        assert (text is None) == (user.utterances[-1].label is None)
    assert labels == {None, Label.NEUTRAL}


def test_unreliable_user_gives_wrong_corrections(scenario):
    wrong = 0
    for seed in range(40):
        user = SimulatedUser(Persona("u", feedback="explicit", unreliable=0.5), _task(scenario, "name"),
                             random.Random(seed))
        user.first_utterance()
        user.reply("It is Ibuprofen.", "answer")  # right answer
        truth = user.utterances[-1]
        if truth.label == Label.NEGATIVE:
            assert truth.correction == "Paracetamol" and truth.reliable is False and truth.answer_correct
            wrong += 1
    assert 8 <= wrong <= 32


def test_users_are_seeded(scenario):
    def play(seed: int) -> list:
        user = SimulatedUser(PERSONAS[1], _task(scenario, "dose"), random.Random(seed))
        out = [user.first_utterance()]
        out.append(user.reply(CLARIFY, "clarification"))
        out.append(user.reply("no idea", "answer"))
        return out

    assert play(3) == play(3)
    assert isinstance(SimulatedUser(PERSONAS[0], _task(scenario, "name"), random.Random(0)), UserSimulator)
    with pytest.raises(InvalidInput):
        SimulatedUser(PERSONAS[0], _task(scenario, "name"), random.Random(0)).reply("x", "joke")


def test_reference_game_user_plays_to_completion():
    game = make_game(11)
    user = ReferenceGameUser(Persona("r", ambiguity=1.0, patience=10), game, random.Random(0))
    assert isinstance(user, UserSimulator)
    text = user.first_utterance()
    wrong = next(f.slot for f in game.figures if f.slot not in game.targets)
    text = user.reply(f"Number {wrong}.", "answer")
    assert user.utterances[-1].label == Label.NEGATIVE and "not" in text.lower()
    for target in game.targets:
        text = user.reply(f"It is {target}", "answer")
    assert user.done and user.outcome()["completed"] and user.outcome()["picked"] == game.targets
    assert user.utterances[-1].label == Label.POSITIVE
    assert user.reply("1", "answer") is None
    # an impatient user stops before the end
    quitter = ReferenceGameUser(Persona("q", patience=1), game, random.Random(0))
    quitter.first_utterance()
    while not quitter.done:
        quitter.reply(f"{wrong}", "answer")
    assert not quitter.outcome()["completed"] and quitter.turns == quitter.max_turns + 1


def test_real_wording_pools_cite_their_source():
    """Every real-wording row names the real reply it paraphrases (chitchat-dataset, MIT) and each category the
    simulator draws from is filled; the built-in personas use it, a hand-made persona keeps the templates."""
    import json
    from importlib import resources

    from ilearn.evaluation.personas import REAL_CATEGORIES, REAL_WORDING, with_real_wording

    rows = [json.loads(line) for line in
            resources.files("ilearn.data").joinpath("user_wording.jsonl").read_text().splitlines() if line.strip()]
    assert all(r["licence"] == "MIT" and "conversation" in r["origin"] and r["paraphrases"] for r in rows)
    assert all(len(REAL_WORDING[c]) >= 3 for c in REAL_CATEGORIES)
    assert all(0.0 < p.real_wording <= 1.0 for p in PERSONAS) and Persona("x").real_wording == 0.0
    assert {p.real_wording for p in with_real_wording(PERSONAS, 0.0)} == {0.0}
    with pytest.raises(InvalidInput):
        Persona("x", real_wording=1.5)


def test_real_wording_users_and_their_truth(scenario):
    """With real wording, reactions come from the real pools; the truth keeps the label and the correction, and the
    decoder reads a real-worded correction's answer."""
    from ilearn.dialogue.feedback import LexicalFeedbackDecoder
    from ilearn.evaluation.personas import REAL_WORDING
    from ilearn.types import ImageRef, Role, Turn, TurnKind

    seen: dict[str, set[str]] = {"explicit": set(), "implicit": set(), "none": set()}
    decoder, agree, total = LexicalFeedbackDecoder(), 0, 0
    for seed in range(40):
        for style in seen:
            persona = Persona("r", feedback=style, ambiguity=0.0, patience=2, real_wording=1.0)
            user = SimulatedUser(persona, _task(scenario, "name"), random.Random(seed))
            question = user.first_utterance()
            text = user.reply("It is Paracetamol.", "answer")
            truth = user.utterances[-1]
            if text is None:
                continue
            seen[style].add(text)
            if style == "explicit":
                assert truth.label == Label.NEGATIVE and truth.correction == "Ibuprofen"
                assert extract_correction(text, "Paracetamol") == "Ibuprofen", text
            turns = [Turn(Role.USER, question, TurnKind.QUESTION, image=ImageRef("a" * 64)),
                     Turn(Role.ASSISTANT, "It is Paracetamol.", TurnKind.ANSWER, precise_question=question),
                     Turn(Role.USER, text, TurnKind.REACTION)]
            agree += decoder.decode(turns).label == truth.label
            total += 1
    templates = {t.format(x="Ibuprofen") for t in REAL_WORDING["negative_correction"]}
    assert seen["explicit"] <= templates and len(seen["explicit"]) >= 5
    assert all(any(t.split("{q}")[0] in text for t in REAL_WORDING["negative_implicit"]) for text in seen["implicit"])
    assert seen["none"] <= set(REAL_WORDING["neutral"])
    assert total >= 80 and agree >= 0.9 * total
