"""A version's held-out events choose whether the memory's guesses may overrule its answers."""

from __future__ import annotations

import pytest
from PIL import Image

from ilearn.config import RetrievalConfig
from ilearn.learning.guesses import GUESSES, Knowledge, allowed, choose_guess, choose_guesses
from ilearn.memory.base import Match
from ilearn.models.stub import StubVLM
from ilearn.types import Event, ImageRef, Scope

PICTURES = {name: Image.new("RGB", (8, 8), colour) for name, colour in
            [("a", "red"), ("b", "green"), ("c", "blue"), ("d", "white")]}


def _event(picture: str, answer: str) -> Event:
    return Event(ImageRef(picture), "What is this called?", answer, "bo", scope=Scope.SHARED)


class Nearest:
    """A memory whose search answers each picture with `near[picture]` (answer, fused score) events, the asked
    event itself first (a held-out event is in the memory too)."""

    def __init__(self, heldout: list[Event], near: dict[str, list[tuple[str, float]]]):
        self.own = {e.image.sha256: e for e in heldout}
        self.near = near
        self.asked: list[tuple[str | None, str]] = []
        self.tuned: list[bool] = []

    def search(self, image, question, user_id, robot_id="default", k=None, floor=None):
        picture = next(name for name, p in PICTURES.items() if p is image)
        self.asked.append((user_id, robot_id))
        own = self.own[picture]
        return [Match(own, 1.0, 1.0, 1.0)] + [Match(_event("d", answer), score, (score - 0.2) / 0.8, 1.0)
                                               for answer, score in self.near[picture]]

    def guess_rule(self, tuned=False):
        self.tuned.append(tuned)
        return None, None


def _choose(says: dict[str, str], near: dict[str, list[tuple[str, float]]], truth: dict[str, str]):
    heldout = [_event(p, answer) for p, answer in truth.items()]
    vlm = StubVLM(responder=lambda messages: says[next(n for n, p in PICTURES.items() if p is messages[-1].image)])
    memory = Nearest(heldout, near)
    choice = choose_guesses(vlm, heldout, memory, RetrievalConfig(), lambda ref: PICTURES[ref.sha256])
    assert memory.asked and all(user is None for user, _ in memory.asked)  # what every user may be offered
    # a candidate is a tuned version: the tuned gate judges each guess first, the base one only where it refused
    assert memory.tuned and memory.tuned[0] and all(memory.tuned[i - 1] for i, t in enumerate(memory.tuned) if not t)
    assert choice.right == sum(says[p] == truth[p] for p in truth)  # the version's own answers, every one
    return choice


TRUTH = {"a": "ibuprofen", "b": "aspirin", "c": "naproxen"}
NEAR = {"a": [("ibuprofen", 0.80)], "b": [("aspirin", 0.80)], "c": [("aspirin", 0.80)]}  # a guess for each


def test_guesses_stay_on_for_a_version_they_beat():
    choice = _choose({"a": "paracetamol", "b": "paracetamol", "c": "paracetamol"}, NEAR, TRUTH)
    assert (choice.allow, choice.cases, choice.model_right, choice.guess_right) == (True, 3, 0, 2)
    assert allowed({GUESSES: choice.to_dict()})


@pytest.mark.parametrize("says, right, allow", [
    ({"a": "paracetamol", "b": "aspirin", "c": "naproxen"}, (2, 1), False),  # the version proved itself
    ({"a": "paracetamol", "b": "aspirin", "c": "paracetamol"}, (1, 1), True),  # a tie proves nothing
    ({"a": "paracetamol", "b": "paracetamol", "c": "paracetamol"}, (0, 1), True),
])
def test_guesses_go_off_only_for_a_version_right_more_often_where_they_disagree(says, right, allow):
    near = {"a": [("ibuprofen", 0.80)], "b": [("naproxen", 0.80)], "c": [("aspirin", 0.80)]}  # one right guess
    choice = _choose(says, near, TRUTH)
    assert choice.cases == 3 and (choice.model_right, choice.guess_right) == right
    assert choice.allow is allow and allowed({GUESSES: choice.to_dict()}) is allow


def test_only_guesses_that_would_overrule_the_version_count():
    # a: the model says the guess's answer; b: the guess is given outright (>= reuse), guesses or not;
    # c: nothing close enough to guess
    near = {"a": [("ibuprofen", 0.80)], "b": [("aspirin", 0.95)], "c": [("aspirin", 0.40)]}
    choice = _choose({"a": "ibuprofen", "b": "paracetamol", "c": "paracetamol"}, near, TRUTH)
    assert (choice.n_heldout, choice.cases, choice.allow) == (3, 0, True)  # nothing measured: as before
    assert choice.summary().startswith("guesses: the candidate answered 1 of 3 held-out events right; on none")


def test_a_held_out_event_is_never_its_own_guess():
    near = {"a": [], "b": [], "c": []}  # only the event itself is near: it must not guess itself right
    choice = _choose({"a": "paracetamol", "b": "paracetamol", "c": "paracetamol"}, near, TRUTH)
    assert choice.cases == 0


def test_a_version_that_never_chose_takes_guesses():
    assert allowed({}) and allowed({"gate": {}})


class Gates:
    """A memory whose guess rule gives the base weights `base` and a tuned version `tuned` (weight 0.5)."""

    def __init__(self, base: float | None, tuned: float | None):
        self.gates = {False: base, True: tuned}
        self.asked: list[bool] = []

    def guess_rule(self, tuned=False):
        self.asked.append(tuned)
        return 0.5, self.gates[tuned]


def _near(answer: str, image_sim: float) -> Match:
    return Match(_event("d", answer), 0.2 + 0.8 * image_sim, image_sim, 1.0)


@pytest.mark.parametrize("tuned, known, on, offered", [
    (True, False, True, True),  # the version does not know the guess's event: the base weights' gate judges it
    (True, True, True, False),  # it knows that object: its own stricter gate stands
    (True, False, False, False),  # the rule off: the tuned gate judges every guess
    (False, False, True, True),  # the base weights: their gate, nothing asked
])
def test_a_tuned_gate_judges_only_guesses_from_events_the_version_knows(tuned, known, on, offered):
    near = [_near("ibuprofen", 0.46), _near("aspirin", 0.30)]  # the base gate (0.4) passes it, the tuned (0.6) not
    memory, asked = Gates(base=0.4, tuned=0.6), []

    def knows(event: Event) -> bool:
        asked.append(event.answer)
        return known

    guess, weight = choose_guess(near, RetrievalConfig(tuned_gate_known_only=on), memory, tuned, knows)
    assert (guess is not None) is offered and weight == 0.5
    if offered:
        assert guess.event.answer == "ibuprofen"
    assert asked == (["ibuprofen"] if tuned and on else [])  # asked only where it decides, about the guess's event


def test_a_guess_the_tuned_gate_passes_needs_no_question_and_none_is_offered_under_both_gates():
    memory, asked = Gates(base=0.4, tuned=0.6), []
    guess, _ = choose_guess([_near("ibuprofen", 0.7)], RetrievalConfig(), memory, True, asked.append)
    assert guess is not None and asked == []
    guess, _ = choose_guess([_near("ibuprofen", 0.3)], RetrievalConfig(), memory, True, asked.append)
    assert guess is None and asked == []  # under the base gate too: nothing to ask
    assert choose_guess([_near("ibuprofen", 0.7)], RetrievalConfig(guess_threshold=None), memory, True) == (None, None)


def test_knowledge_asks_once_per_version_and_event_and_forgets():
    knowledge, asked = Knowledge(size=3), []

    def answer_of(says):
        def ask(event):
            asked.append(event.id)
            return says
        return ask

    pills, other = _event("a", "ibuprofen"), _event("b", "aspirin")
    assert knowledge.knows("v1", pills, answer_of("It is ibuprofen.")) is True
    assert knowledge.knows("v1", pills, answer_of("no idea")) is True  # kept: not asked again
    assert knowledge.knows("v2", pills, answer_of("no idea")) is False  # another version is asked itself
    assert knowledge.knows("v1", other, answer_of(None)) is True  # nothing to ask (no picture): no evidence against
    assert asked == [pills.id, pills.id, other.id] and len(knowledge) == 3
    knowledge.forget([pills.id])
    assert len(knowledge) == 1
    knowledge.knows("v1", pills, answer_of("aspirin"))
    assert asked[-1] == pills.id  # asked again after its user was forgotten
    for version in ("v3", "v4", "v5"):
        knowledge.knows(version, other, answer_of("aspirin"))
    assert len(knowledge) == 3  # the least recently used dropped first


class Rules(Nearest):
    """`Nearest`, with a stricter gate for a tuned version than for the base weights."""

    def guess_rule(self, tuned=False):
        self.tuned.append(tuned)
        return 0.5, 0.9 if tuned else 0.5


def test_the_gate_s_choice_counts_a_guess_from_an_event_the_candidate_does_not_know():
    # every held-out picture's nearest other event ("d") is guessed at image similarity 0.75: under the tuned gate
    # (0.9), over the base one (0.5); the candidate calls picture d "paracetamol", so it does not know d's events
    heldout = [_event(p, answer) for p, answer in TRUTH.items()]
    says = {"a": "paracetamol", "b": "paracetamol", "c": "paracetamol", "d": "paracetamol"}
    vlm = StubVLM(responder=lambda messages: says[next(n for n, p in PICTURES.items() if p is messages[-1].image)])
    taught = {p: [*near, ("paracetamol", 0.1)] for p, near in NEAR.items()}  # its answer, taught far away
    choice = choose_guesses(vlm, heldout, Rules(heldout, taught), RetrievalConfig(), lambda ref: PICTURES[ref.sha256])
    assert (choice.cases, choice.guess_right, choice.model_right, choice.allow) == (3, 2, 0, True)
    says["d"] = "ibuprofen aspirin"  # now it names d's events (ibuprofen, aspirin) on their own picture
    choice = choose_guesses(vlm, heldout, Rules(heldout, taught), RetrievalConfig(), lambda ref: PICTURES[ref.sha256])
    assert choice.cases == 0  # its own gate (0.9) judges: no guess
    # but an answer no event taught is nothing its gate protects: the base weights' gate judges again
    choice = choose_guesses(vlm, heldout, Rules(heldout, NEAR), RetrievalConfig(), lambda ref: PICTURES[ref.sha256])
    assert (choice.cases, choice.guess_right, choice.model_right) == (3, 2, 0)
