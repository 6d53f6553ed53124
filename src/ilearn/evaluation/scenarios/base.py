"""What every fact scenario (``pharmacy``, ``objects``) is made of: items, views, tasks and a general set.

An `Item` is one object the user may ask about: its id, its name, its facts (``{"name": ..., "use": ...,
"dose": ...}`` or any keys) and its rendered or photographed views, split into *teach* views (shown while users
teach the assistant) and held-out *test* views (new views, used only to score a round).

A `Task` is one interaction to play: an item, one of its views, the user's hidden intent (which fact the user
wants), the precise question for that intent and the reference answer. `FactScenario.tasks` draws tasks
deterministically from a seed: the same seed gives the same tasks, views and intents.

The `general` set holds questions outside the scenario (easy-vqa by default, see `easyvqa_general`): the
protocol measures forgetting on it.

`Scenario` is what every experiment scenario has (the fact scenarios here and the reference game); scenarios are
registered by name in `ilearn.plugins` (kind "scenario"). `stub_scenario` is a two-item scenario for tests.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image

from ilearn.data.seeds import derive_seed
from ilearn.dialogue.clarify import facet_settings, facets_for_keys
from ilearn.errors import InvalidInput

logger = logging.getLogger(__name__)

Split = Literal["teach", "test"]

#: The precise question per well-known fact; other keys get ``What is the <key> of this?``.
PRECISE_QUESTIONS: dict[str, str] = {
    "name": "What is this called?",
    "use": "What is this used for?",
    "dose": "What is the dose of this?",
}


def precise_question(intent: str) -> str:
    """The precise question that asks for the fact `intent` (matches the Chain of Question facets)."""
    return PRECISE_QUESTIONS.get(intent, f"What is the {intent.replace('_', ' ')} of this?")


@dataclass
class Item:
    """One object: id, name, facts and its views split into teach and held-out test views."""

    id: str
    name: str
    facts: dict[str, str]
    teach_views: list[Image.Image] = field(default_factory=list)
    test_views: list[Image.Image] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)  # how it looks (cap colour, shape, ...)

    def views(self, split: Split) -> list[Image.Image]:
        """The teach or the test views."""
        if split not in ("teach", "test"):
            raise InvalidInput(f"split must be 'teach' or 'test', not {split!r}")
        return self.teach_views if split == "teach" else self.test_views


@dataclass
class Task:
    """One interaction: the user shows `view` of `item` and wants the fact `intent` (hidden from the assistant)."""

    id: str
    item: Item
    view: Image.Image
    view_index: int
    split: Split
    intent: str  # the fact key the user wants, e.g. "dose"
    question: str  # the precise question for that intent
    reference: str  # the correct answer: item.facts[intent]
    distractors: list[str] = field(default_factory=list)  # other items' answers for the same fact
    noun: str = "object"  # how users call the thing ("medicine", "object")


@dataclass
class GeneralQuestion:
    """A question outside the scenario (forgetting check); the image is loaded on demand from `image_path`."""

    question: str
    answer: str
    image_path: str | None = None
    image: Image.Image | None = None

    def load(self) -> Image.Image:
        """The question's image (RGB)."""
        if self.image is None:
            if self.image_path is None:
                raise InvalidInput("general question has neither an image nor an image path")
            from ilearn.images import load_image

            self.image = load_image(self.image_path)[0]
        return self.image


def easyvqa_general(n: int, seed: int = 0) -> list[GeneralQuestion]:
    """`n` seeded easy-vqa test questions as the general set (empty when n == 0)."""
    if n <= 0:
        return []
    from ilearn.data.easyvqa import load_split, sample

    return [GeneralQuestion(q.question, q.answer, image_path=q.image_path)
            for q in sample(load_split("test"), n, seed)]


@runtime_checkable
class Scenario(Protocol):
    """An experiment's world: a name, the seed it was drawn with, and general questions that measure forgetting.

    Fact scenarios (`FactScenario`: pharmacy, objects) add items and tasks, the reference game adds games; the
    protocol plays each with its runner (`ilearn.evaluation.protocol`)."""

    name: str
    seed: int
    general: list[GeneralQuestion]


@dataclass
class FactScenario:
    """Items with facts and views, a general set, and seeded task drawing."""

    name: str
    items: list[Item]
    seed: int = 0
    general: list[GeneralQuestion] = field(default_factory=list)
    noun: str = "object"
    intents: tuple[str, ...] = ("name", "use", "dose")
    facets: tuple[dict[str, Any], ...] = ()
    """The Chain of Question facets of this scenario's deployments, as `clarify.facets` settings; empty: one per
    intent (`ilearn.dialogue.clarify.facets_for_keys`)."""

    def __post_init__(self) -> None:
        if not self.facets:
            self.facets = facet_settings(facets_for_keys(self.intents))
        if not self.items:
            raise InvalidInput(f"scenario {self.name!r} has no items")
        ids = [item.id for item in self.items]
        if len(set(ids)) != len(ids):
            raise InvalidInput(f"scenario {self.name!r} has duplicate item ids")

    def item(self, item_id: str) -> Item:
        """The item with this id."""
        for item in self.items:
            if item.id == item_id:
                return item
        raise InvalidInput(f"no item {item_id!r} in scenario {self.name!r}")

    def item_intents(self, item: Item) -> list[str]:
        """The intents this item can answer (scenario intents it has facts for, else all its fact keys)."""
        known = [i for i in self.intents if i in item.facts]
        return known or sorted(item.facts)

    def all_tasks(self, split: Split) -> list[Task]:
        """Every (item, view, intent) of a split, in a fixed order."""
        tasks = []
        for item in self.items:
            for v, view in enumerate(item.views(split)):
                for intent in self.item_intents(item):
                    tasks.append(self._task(item, view, v, split, intent))
        return tasks

    def tasks(self, split: Split, n: int | None = None, *, seed: int | None = None,
              intents: Sequence[str] | None = None) -> list[Task]:
        """`n` tasks of a split drawn round-robin over items (seeded; every item before any repeats).

        n=None gives every (item, view, intent) once, shuffled. `intents` restricts the hidden intents.
        """
        rng = random.Random(derive_seed(self.name, self.seed if seed is None else seed, split, "tasks"))
        pool = [t for t in self.all_tasks(split) if intents is None or t.intent in intents]
        if not pool:
            raise InvalidInput(f"scenario {self.name!r} has no {split} tasks"
                               + (f" for intents {list(intents)}" if intents else ""))
        rng.shuffle(pool)
        if n is None:
            return pool
        if n < 0:
            raise InvalidInput("n must be >= 0")
        by_item: dict[str, list[Task]] = {}
        for task in pool:
            by_item.setdefault(task.item.id, []).append(task)
        order = list(by_item)
        out: list[Task] = []
        cursor = {k: 0 for k in order}
        while len(out) < n:
            rng.shuffle(order)
            for key in order:
                bucket = by_item[key]
                task = bucket[cursor[key] % len(bucket)]
                cursor[key] += 1
                out.append(task)
                if len(out) == n:
                    break
        return [replace(t, id=f"{t.id}#{i}") for i, t in enumerate(out)]

    def _task(self, item: Item, view: Image.Image, v: int, split: Split, intent: str) -> Task:
        reference = item.facts[intent]
        distractors = sorted({other.facts[intent] for other in self.items
                              if other.id != item.id and intent in other.facts
                              and other.facts[intent].lower() != reference.lower()})
        return Task(id=f"{item.id}/{split}{v}/{intent}", item=item, view=view, view_index=v, split=split,
                    intent=intent, question=precise_question(intent), reference=reference,
                    distractors=distractors, noun=self.noun)


def stub_scenario(seed: int = 0, n_teach: int = 1, n_test: int = 1) -> FactScenario:
    """A model-free fact scenario for tests: two plain squares (red aspirin, blue ibuprofen), each view a shade
    apart, with name, use and dose facts."""
    def views(rgb: tuple[int, int, int], start: int, n: int) -> list[Image.Image]:
        return [Image.new("RGB", (32, 32), tuple(min(255, c + 8 * (start + i)) for c in rgb)) for i in range(n)]

    items = [Item("aspirin", "aspirin", {"name": "aspirin", "use": "pain", "dose": "one tablet"},
                  views((200, 30, 30), 0, n_teach), views((200, 30, 30), n_teach, n_test)),
             Item("ibuprofen", "ibuprofen", {"name": "ibuprofen", "use": "fever", "dose": "two tablets"},
                  views((30, 30, 200), 0, n_teach), views((30, 30, 200), n_teach, n_test))]
    return FactScenario("stub", items, seed=seed, noun="medicine")
