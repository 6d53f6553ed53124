"""Whether the memory's guesses may overrule a tuned version's answers, chosen on the version's held-out events.

A guess (`retrieval.guess_threshold`) is the nearest past event's answer, offered when no reference is decisive
and the model's answer is not one the memory holds (`ilearn.memory.retrieval.guess_overrules`). Against the base
weights, which name no taught object, that is what the memory is for. Against a tuned version it depends on the
version: on icons-dev (`ilearn experiment objects`, seed 0) the memory's guesses that replaced the LoRA-tuned
model's answers were right 8 times where the model was right 0 times, and 4 times against 6 for the version whose
vision encoder was trained too; the model's own log-probabilities of its answer and of the guess told neither
apart (docs/real-images.md). So each version answers its gate's held-out events (never trained on) and the
memory guesses them from the other events; where a guess would overrule the version, the one right more often
decides. The choice is kept in the version's metrics (`GUESSES`) and the assistant follows it
(`Assistant._guesses_allowed`).

The version must prove itself against the guesses: they go off only when it was right more often than they were
where they disagreed. A tie (often 0 against 0 on the few held-out events of a young deployment: both wrong) or no
disagreement at all keeps them on, as before the choice existed. The other way round was tried first and lost:
on the details set (`ilearn experiment objects`, seed 0) the frozen-vision version's 5 held-out events gave one
disagreement, both wrong, which turned guesses off, and R3+retrieval fell below R2 (docs/real-images.md).

Which guess a turn offers (`choose_guess`): a tuned version's stricter gate (`retrieval.tuned_guess_precision`)
judges the guesses from events the version knows (asked the event's own question about its own picture, it gives
the event's answer); one from an event it does not know is judged as the base weights' would be
(`retrieval.tuned_gate_known_only`). `Knowledge` keeps what each version knows, asked once per event.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image

from ilearn.config import RetrievalConfig
from ilearn.dialogue.prompts import answer_messages
from ilearn.errors import NotFound
from ilearn.memory import calibration
from ilearn.memory.base import Match
from ilearn.memory.retrieval import carrying, guess_overrules, references, reusable, tentative
from ilearn.text import contains_answer
from ilearn.types import Event, ImageRef

logger = logging.getLogger(__name__)

GUESSES = "guesses"
"""The version metrics' key of its choice (`GuessChoice.to_dict`)."""


@dataclass(frozen=True)
class GuessChoice:
    """What a version's held-out events showed: it answered `right` of `n_heldout` right; on `cases` of them a
    guess would overrule its answer; the version was right on `model_right` of those, the guess on
    `guess_right`."""

    allow: bool
    n_heldout: int
    cases: int
    model_right: int
    guess_right: int
    right: int | None = None  # None: a choice made before the version's own accuracy was kept

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        own = f"guesses: the candidate answered {self.right} of {self.n_heldout} held-out events right; "
        if not self.cases:
            return own + "on none would a guess overrule it: guesses stay on"
        return (own + f"on {self.cases} a guess would overrule it; the guess was right {self.guess_right} times, "
                f"the candidate {self.model_right}: guesses {'stay on' if self.allow else 'are off'} for this version")


def allowed(metrics: dict[str, Any]) -> bool:
    """Whether a version with these registry metrics takes the memory's guesses (yes unless its choice says no)."""
    return bool((metrics.get(GUESSES) or {}).get("allow", True))


class Knowledge:
    """Whether model versions know events (`choose_guess`): a version knows an event when its answer to the event's
    own question about the event's own picture contains the event's answer. Each (version, event) is asked once and
    kept; at most `size` pairs, the least recently used dropped first. Only the verdict is kept, never an answer."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._known: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._lock = threading.Lock()

    def knows(self, version: str, event: Event, answer_of: Callable[[Event], str | None]) -> bool:
        """Whether `version` knows `event`; `answer_of(event)` asks it (None: nothing to ask, e.g. the picture is
        gone, which counts as known: no evidence against the version)."""
        key = (version, event.id)
        with self._lock:
            if key in self._known:
                self._known.move_to_end(key)
                return self._known[key]
        said = answer_of(event)  # outside the lock: a generation
        known = said is None or contains_answer(said, event.answer)
        with self._lock:
            self._known[key] = known
            while len(self._known) > self.size:
                self._known.popitem(last=False)
        return known

    def forget(self, event_ids: Iterable[str]) -> None:
        """Drop what is kept about these events (their user was forgotten)."""
        gone = set(event_ids)
        with self._lock:
            for key in [k for k in self._known if k[1] in gone]:
                del self._known[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._known)


def choose_guess(candidates: Sequence[Match], config: RetrievalConfig, memory: Any, tuned: bool,
                 knows: Callable[[Event], bool] | None = None, said: str | None = None
                 ) -> tuple[Match | None, float | None]:
    """(the guess a turn may offer from `candidates`, or None; the weight it was chosen at, for `guess_overrules`).

    `candidates`: the memory's nearest events, best first (`RetrievalMemory.search` with a floor). The memory's own
    events choose the weight and the gate (`guess_rule`): the base weights' gate, or with `tuned` the tuned
    version's. With `retrieval.tuned_gate_known_only` the tuned gate protects only what the version learnt: a guess
    it refuses is still offered where the base weights' gate passes it (the same event either way: the gates share
    the weight, so they differ only in where they cut) and either the version's answer `said`, when known, is
    carried by no candidate about the same question (an answer no event taught, such as "nope" or a base-model
    sentence, is no evidence for its gate to protect), or `knows(event)` says the version does not know the
    guess's event."""
    if config.guess_threshold is None:
        return None, None
    rule = getattr(memory, "guess_rule", None)
    weight, gate = rule(tuned=tuned) if rule is not None else (None, None)
    guess = tentative(candidates, config.guess_threshold, config.reuse_min_text_sim, weight, gate)
    if guess is None and tuned and config.tuned_gate_known_only and rule is not None:
        fallback, base_weight = base_guess(candidates, config, memory)
        if fallback is not None and offer_fallback(fallback, candidates, config, knows, said):
            return fallback, base_weight
    return guess, weight


def offer_fallback(fallback: Match, candidates: Sequence[Match], config: RetrievalConfig,
                   knows: Callable[[Event], bool] | None, said: str | None) -> bool:
    """Whether a guess that only the tuned gate refused (`base_guess`) is offered after all (`choose_guess`): the
    version's answer `said` is carried by no candidate about the same question, or it does not know the guess's
    event (`knows` is asked only where the answer leaves it open)."""
    return (said is not None and not carrying(said, candidates, config.reuse_min_text_sim)
            or knows is not None and not knows(fallback.event))


def base_guess(candidates: Sequence[Match], config: RetrievalConfig, memory: Any) -> tuple[Match | None, float | None]:
    """The guess the base weights' gate passes (`choose_guess` falls back to it), and its weight; (None, None)
    without guesses or without a memory that chooses its gate (then both gates are the fixed threshold)."""
    rule = getattr(memory, "guess_rule", None)
    if config.guess_threshold is None or rule is None:
        return None, None
    weight, gate = rule(tuned=False)
    return tentative(candidates, config.guess_threshold, config.reuse_min_text_sim, weight, gate), weight


def choose_guesses(vlm: Any, heldout: Sequence[Event], memory: Any, config: RetrievalConfig,
                   image_of: Callable[[ImageRef], Image.Image | None], robot_id: str = "default",
                   max_new_tokens: int = 48) -> GuessChoice:
    """Answer each held-out event (with an image and an answer) with `vlm`, then let the memory guess it from the
    other events, as a turn would (shared events only: what any user may be offered; a tuned version's guesses,
    `choose_guess`, with `vlm` asked about the guess's own event where that decides); count
    where the guess would overrule the answer and who was right there, and how often the version was right at all.
    `vlm` serves the version being chosen for."""
    asked = []
    for event in heldout:
        image = image_of(event.image) if event.image is not None else None
        if image is not None and event.answer.strip():
            answer = vlm.generate(answer_messages(event.question, image), max_new_tokens=max_new_tokens).text.strip()
            asked.append((event, image, answer))
    knowledge = Knowledge()
    answered = {event.id: answer for event, _, answer in asked}  # the same question, asked above

    def answer_of(event: Event) -> str | None:
        if event.id in answered:
            return answered[event.id]
        try:
            image = image_of(event.image) if event.image is not None else None
        except NotFound:
            image = None  # the picture is gone: nothing to ask
        if image is None:
            return None
        return vlm.generate(answer_messages(event.question, image), max_new_tokens=max_new_tokens).text.strip()

    def knows(event: Event) -> bool:
        return knowledge.knows("candidate", event, answer_of)

    reuse_at = calibration.reuse_threshold(memory, config.reuse_threshold)
    cases = model_right = guess_right = 0
    for event, image, answer in asked:
        found = [m for m in memory.search(image, event.question, None, robot_id, k=config.candidates, floor=-1.0)
                 if m.event.id != event.id]
        matches = references(found, config)
        if reusable(matches, reuse_at, config.reuse_margin, config.reuse_min_text_sim) is not None:
            continue  # given outright, guesses or not
        guess, weight = choose_guess(found, config, memory, True, knows, said=answer)
        if guess is None or not guess_overrules(answer, guess, matches, found, min_text_sim=config.reuse_min_text_sim,
                                                margin=config.guess_margin, weight=weight,
                                                references_stand=config.guess_references_stand):
            continue
        cases += 1
        model_right += contains_answer(answer, event.answer)
        guess_right += contains_answer(guess.event.answer, event.answer)
    choice = GuessChoice(allow=model_right <= guess_right, n_heldout=len(asked), cases=cases,
                         model_right=model_right, guess_right=guess_right,
                         right=sum(contains_answer(answer, event.answer) for event, _, answer in asked))
    logger.info("%s", choice.summary())
    return choice


__all__ = ["GUESSES", "GuessChoice", "Knowledge", "allowed", "base_guess", "choose_guess", "choose_guesses", "offer_fallback"]
