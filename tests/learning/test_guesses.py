"""A version's held-out events choose whether the memory's guesses may overrule its answers."""

from __future__ import annotations

import pytest
from PIL import Image

from ilearn.config import RetrievalConfig
from ilearn.learning.guesses import GUESSES, allowed, choose_guesses
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
    assert memory.tuned and all(memory.tuned)  # a candidate is a tuned version: the tuned gate judges the guesses
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
