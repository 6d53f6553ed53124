"""Simulated non-expert users: the `UserSimulator` protocol and its two scenario-specific backends.

- `SimulatedUser` plays one fact `Task` (pharmacy, objects): it asks about the view (vaguely or precisely,
  per its persona), answers clarifying questions according to its hidden intent ("The dose, please."),
  judges each answer against the reference (`contains_answer`; an answer that also names another item's
  fact is a hedge and counts as wrong) and reacts in its feedback style.
- `ReferenceGameUser` plays one reference `Game`: it describes the targets one after another, starting vague
  or precise, adds a distinguishing attribute after a wrong pick, and reacts implicitly only.

Both are seeded by the `random.Random` they are given, and record the ground truth of every utterance
(`Utterance`: what label its words express, the correction it gives, whether it was reliable), so that the
feedback decoder can be scored against it.

The runner's loop: ``text = user.first_utterance()``; while text is not None: send it, get the assistant's
reply and its kind (``"clarification"`` or ``"answer"``), ``text = user.reply(reply, kind)``. The user's
last reaction (thanks, a correction, giving up) is returned with ``user.done`` already True, so that the
assistant still sees it; later calls return None.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from ilearn.errors import InvalidInput
from ilearn.evaluation import personas as P
from ilearn.evaluation.personas import PERSONAS, Persona, persona, split_personas
from ilearn.evaluation.scenarios.base import Task
from ilearn.evaluation.scenarios.reference_game import (
    DESCRIBE_ORDER,
    Game,
    describe,
    distinguishing,
    parse_slot,
    precise_keys,
)
from ilearn.text import contains_answer
from ilearn.types import Label

logger = logging.getLogger(__name__)

KINDS = ("clarification", "answer")


@dataclass
class Utterance:
    """The ground truth of one user utterance (None text: the user left without a word)."""

    text: str | None
    kind: str  # "question" | "clarification_reply" | "reaction"
    label: Label | None = None  # what a reaction expresses; None for questions and clarification replies
    correction: str | None = None  # the answer given as a correction
    answer_correct: bool | None = None  # whether the answer reacted to was right
    reliable: bool = True  # False when the feedback misleads on purpose


@runtime_checkable
class UserSimulator(Protocol):
    """The next user utterance for a scenario's hidden truth and the assistant's last reply."""

    done: bool
    utterances: list[Utterance]

    def first_utterance(self) -> str:
        """The user's opening request."""
        ...

    def reply(self, assistant_text: str, kind: str = "answer") -> str | None:
        """The user's next utterance after the assistant's reply of `kind`, or None when done."""
        ...

    def outcome(self) -> dict[str, Any]:
        """What happened, for the metrics (see `TaskRecord`)."""
        ...


def _kind(kind: object) -> str:
    value = str(getattr(kind, "value", kind))
    if value not in KINDS:
        raise InvalidInput(f"assistant reply kind must be one of {KINDS}, not {value!r}")
    return value


class _Base:
    """What both simulators share: the utterance log, the turn count and the order of the conversation."""

    def __init__(self, persona: Persona, rng: random.Random):
        self.persona = persona
        self.rng = rng
        self.done = False
        self.utterances: list[Utterance] = []
        self.clarifications = 0
        self.answers: list[str] = []
        self.first_correct: bool | None = None

    def first_utterance(self) -> str:
        """The user's opening request (once)."""
        if self.utterances:
            raise InvalidInput("first_utterance was already given")
        return self._say(self._opening(), "question")  # type: ignore[return-value]

    def reply(self, assistant_text: str, kind: str = "answer") -> str | None:
        """React to the assistant's clarifying question or answer (`kind`); None once done."""
        kind = _kind(kind)
        if self.done:
            return None
        if not self.utterances:
            raise InvalidInput("call first_utterance before reply")
        if kind == "clarification":
            self.clarifications += 1
            return self._on_clarification()
        self.answers.append(assistant_text)
        return self._on_answer(assistant_text)

    def _opening(self) -> str:
        raise NotImplementedError

    def _on_clarification(self) -> str | None:
        raise NotImplementedError

    def _on_answer(self, assistant_text: str) -> str | None:
        raise NotImplementedError

    def _pick(self, table: dict[str, tuple[str, ...]], real: str | None = None, **fmt: str) -> str:
        """A wording from the style's templates, or, with probability persona.real_wording, from the real-wording
        pool `real` (see `personas.REAL_WORDING`)."""
        if real and self.persona.real_wording > 0 and self.rng.random() < self.persona.real_wording:
            return self.rng.choice(P.REAL_WORDING[real]).format(**fmt)
        return self.rng.choice(table[self.persona.style]).format(**fmt)

    def _say(self, text: str | None, kind: str, *, final: bool = False, **truth: Any) -> str | None:
        self.utterances.append(Utterance(text, kind, **truth))
        if final:
            self.done = True
        return text

    @property
    def turns(self) -> int:
        return sum(u.text is not None for u in self.utterances)


class SimulatedUser(_Base):
    """A persona playing one fact task (see the module docstring)."""

    def __init__(self, persona: Persona, task: Task, rng: random.Random):
        super().__init__(persona, rng)
        self.task = task
        self.ambiguous = False
        self.completed = False

    def _precise(self, avoid: str | None = None) -> str:
        """A precise request for the hidden intent in the persona's style (another style when rephrasing)."""
        intent = self.task.intent if self.task.intent in P.PRECISE else "other"
        fmt = {"noun": self.task.noun, "key": self.task.intent.replace("_", " ")}
        candidates = [t.format(**fmt) for t in P.PRECISE[intent][self.persona.style] if t.format(**fmt) != avoid]
        if not candidates:
            candidates = [t.format(**fmt) for style in P.STYLES for t in P.PRECISE[intent][style]
                          if t.format(**fmt) != avoid]
        return self.rng.choice(candidates)

    def _opening(self) -> str:
        """A vague request with probability persona.ambiguity, else the precise one for the hidden intent."""
        self.ambiguous = self.rng.random() < self.persona.ambiguity
        return self._pick(P.VAGUE, "vague") if self.ambiguous else self._precise()

    def _correct(self, text: str) -> bool:
        if not contains_answer(text, self.task.reference):
            return False
        hedges = [d for d in self.task.distractors
                  if contains_answer(text, d) and not contains_answer(self.task.reference, d)]
        return not hedges

    def _on_clarification(self) -> str | None:
        """Say what the hidden intent is ("The dose, please."), or give up once patience is spent."""
        if self.turns >= self.persona.patience:
            return self._give_up()
        intent = self.task.intent if self.task.intent in P.CLARIFY_REPLY else "other"
        text = self._pick(P.CLARIFY_REPLY[intent], key=self.task.intent.replace("_", " "))
        return self._say(text, "clarification_reply")

    def _on_answer(self, assistant_text: str) -> str | None:
        """Judge the answer against the reference and react in the persona's feedback style."""
        correct = self._correct(assistant_text)
        if self.first_correct is None:
            self.first_correct = correct
        if correct:
            self.completed = True
        misleading = self.rng.random() < self.persona.unreliable
        style = self.persona.feedback
        if style == "none":
            if self.rng.random() < 0.5:
                return self._say(None, "reaction", final=True, answer_correct=correct)
            return self._say(self._pick(P.NEUTRAL, "neutral"), "reaction", final=True, label=Label.NEUTRAL,
                             answer_correct=correct)
        if style == "explicit" and (not correct or misleading):
            wrong = [d for d in self.task.distractors if not contains_answer(assistant_text, d)]
            given = self.rng.choice(wrong) if misleading and wrong else self.task.reference
            reliable = given == self.task.reference
            return self._say(self._pick(P.CORRECTION, "negative_correction", x=given), "reaction", final=True,
                             label=Label.NEGATIVE, correction=given, answer_correct=correct, reliable=reliable)
        if correct or (style == "implicit" and misleading):
            table = P.THANKS if self.persona.polite else P.CONFIRM
            return self._say(self._pick(table, "positive"), "reaction", final=True, label=Label.POSITIVE,
                             answer_correct=correct, reliable=correct)
        # implicit and wrong: rephrase the question and keep going, while patience lasts
        if self.turns >= self.persona.patience:
            return self._give_up(answer_correct=False)
        previous = next((u.text for u in reversed(self.utterances) if u.kind == "question"), None)
        question = self._precise(avoid=previous)
        text = self._pick(P.IMPLICIT_NEGATIVE, "negative_implicit", q=question)
        return self._say(text, "reaction", label=Label.NEGATIVE, answer_correct=False)

    def _give_up(self, **truth: Any) -> str | None:
        return self._say(self._pick(P.GIVE_UP, "give_up"), "reaction", final=True, label=Label.NEGATIVE, **truth)

    def outcome(self) -> dict[str, Any]:
        """task_id, persona, intent, ambiguous, first_answer_correct, completed, turns, clarifications,
        answers, reference and the utterances' truth."""
        return {"task_id": self.task.id, "persona": self.persona.name, "intent": self.task.intent,
                "ambiguous": self.ambiguous, "first_answer_correct": bool(self.first_correct),
                "completed": self.completed, "turns": self.turns, "clarifications": self.clarifications,
                "answers": list(self.answers), "reference": self.task.reference,
                "utterances": [asdict(u) for u in self.utterances]}


_PICK_REQUEST: dict[str, tuple[str, ...]] = {
    "plain": ("Please pick {d}.", "Select {d}."), "casual": ("grab {d}", "{d} please"),
    "formal": ("Could you select {d}, please?",), "terse": ("{d}",), "chatty": ("Right, I'm thinking of {d}.",),
}
_PICK_NEXT: dict[str, tuple[str, ...]] = {
    "plain": ("Yes! Now {d}.",), "casual": ("yep, nice. now {d}",), "formal": ("Correct. Next, {d}, please.",),
    "terse": ("ok. {d}",), "chatty": ("Yes, that's the one! And now {d}.",),
}
_PICK_WRONG: dict[str, tuple[str, ...]] = {
    "plain": ("No, not that one. I mean {d}.",), "casual": ("nah, not that one... {d}",),
    "formal": ("That is not the one I meant. I mean {d}.",), "terse": ("no. {d}",),
    "chatty": ("Oh no, not that one! I meant {d}.",),
}
_PICK_AGAIN = "You already picked that one. I mean {d}."
_PICK_NUMBER = "Just tell me the number of the figure. I mean {d}."
_PICK_DONE: dict[bool, str] = {True: "Great, that's all of them, thanks!", False: "OK, that's all of them."}
_PICK_GIVE_UP = "Let's stop here, this isn't working."


class ReferenceGameUser(_Base):
    """A persona describing a game's targets in words; feedback is implicit only (see module docstring).

    Patience: the user speaks at most ``persona.patience + 2 * len(targets)`` times per game.
    """

    def __init__(self, persona: Persona, game: Game, rng: random.Random):
        super().__init__(persona, rng)
        self.game = game
        self.picked: list[int] = []
        self.keys: list[str] = []
        self.max_turns = persona.patience + 2 * len(game.targets)

    @property
    def current(self) -> int | None:
        """The target slot the user is describing now (None when all are picked)."""
        left = [t for t in self.game.targets if t not in self.picked]
        return left[0] if left else None

    def _start_keys(self) -> list[str]:
        if self.rng.random() < self.persona.ambiguity:  # vague: one or two attributes, maybe not enough
            return list(DESCRIBE_ORDER[: self.rng.choice((1, 2))])
        return precise_keys(self.game, self.current)  # type: ignore[arg-type]

    def _describe(self) -> str:
        return describe(self.game.figure(self.current).attributes, self.keys)  # type: ignore[arg-type]

    def _opening(self) -> str:
        """The description of the first target."""
        self.keys = self._start_keys()
        return self._pick(_PICK_REQUEST, d=self._describe())

    def _refine(self, wrong_slot: int | None) -> None:
        target = self.game.figure(self.current).attributes  # type: ignore[arg-type]
        if wrong_slot is not None and wrong_slot != self.current:
            new = [k for k in distinguishing(target, self.game.figure(wrong_slot).attributes) if k not in self.keys]
        else:
            new = [k for k in DESCRIBE_ORDER if k not in self.keys]
        if new:
            self.keys.append(new[0])

    def _on_clarification(self) -> str | None:
        """Add an attribute to the description, or give up once out of turns."""
        if self.turns >= self.max_turns:
            return self._say(_PICK_GIVE_UP, "reaction", final=True, label=Label.NEGATIVE)
        self._refine(None)
        return self._say(f"I mean {self._describe()}.", "clarification_reply")

    def _on_answer(self, assistant_text: str) -> str | None:
        """React to the assistant's pick (a slot number in its text)."""
        slot = parse_slot(assistant_text, len(self.game.figures))
        correct = slot is not None and slot == self.current
        if self.first_correct is None:
            self.first_correct = correct
        if not correct:
            if self.turns >= self.max_turns:
                return self._say(_PICK_GIVE_UP, "reaction", final=True, label=Label.NEGATIVE, answer_correct=False)
            template = (_PICK_NUMBER if slot is None else _PICK_AGAIN if slot in self.picked
                        else self._pick(_PICK_WRONG, "pick_wrong", d="{d}"))
            self._refine(slot if slot not in self.picked else None)
            return self._say(template.format(d=self._describe()), "reaction", label=Label.NEGATIVE,
                             answer_correct=False)
        self.picked.append(slot)  # type: ignore[arg-type]
        if self.current is None:
            return self._say(_PICK_DONE[self.persona.polite], "reaction", final=True, label=Label.POSITIVE,
                             answer_correct=True)
        if self.turns >= self.max_turns:
            return self._say(_PICK_GIVE_UP, "reaction", final=True, label=Label.NEGATIVE, answer_correct=True)
        self.keys = self._start_keys()
        return self._say(self._pick(_PICK_NEXT, "pick_next", d=self._describe()), "reaction", label=Label.POSITIVE,
                         answer_correct=True)

    def outcome(self) -> dict[str, Any]:
        """game_id, persona, targets, picked, first_answer_correct, completed (all targets picked), turns,
        clarifications, answers and the utterances' truth."""
        return {"task_id": self.game.id, "persona": self.persona.name, "targets": list(self.game.targets),
                "picked": list(self.picked), "first_answer_correct": bool(self.first_correct),
                "completed": self.current is None, "turns": self.turns, "clarifications": self.clarifications,
                "answers": list(self.answers), "utterances": [asdict(u) for u in self.utterances]}


__all__ = ["PERSONAS", "Persona", "ReferenceGameUser", "SimulatedUser", "UserSimulator", "Utterance", "persona",
           "split_personas"]
