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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image

from ilearn.config import RetrievalConfig
from ilearn.dialogue.prompts import answer_messages
from ilearn.memory import calibration
from ilearn.memory.retrieval import guess_overrules, references, reusable, tentative
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


def choose_guesses(vlm: Any, heldout: Sequence[Event], memory: Any, config: RetrievalConfig,
                   image_of: Callable[[ImageRef], Image.Image | None], robot_id: str = "default",
                   max_new_tokens: int = 48) -> GuessChoice:
    """Answer each held-out event (with an image and an answer) with `vlm`, then let the memory guess it from the
    other events, as a turn would (shared events only: what any user may be offered; a tuned version's gate); count
    where the guess would overrule the answer and who was right there, and how often the version was right at all.
    `vlm` serves the version being chosen for."""
    asked = []
    for event in heldout:
        image = image_of(event.image) if event.image is not None else None
        if image is not None and event.answer.strip():
            answer = vlm.generate(answer_messages(event.question, image), max_new_tokens=max_new_tokens).text.strip()
            asked.append((event, image, answer))
    weight, gate = memory.guess_rule(tuned=True) if hasattr(memory, "guess_rule") else (None, None)
    reuse_at = calibration.reuse_threshold(memory, config.reuse_threshold)
    cases = model_right = guess_right = 0
    for event, image, answer in asked:
        found = [m for m in memory.search(image, event.question, None, robot_id, k=config.candidates, floor=-1.0)
                 if m.event.id != event.id]
        matches = references(found, config)
        if reusable(matches, reuse_at, config.reuse_margin, config.reuse_min_text_sim) is not None:
            continue  # given outright, guesses or not
        guess = tentative(found, config.guess_threshold, config.reuse_min_text_sim, weight, gate) \
            if config.guess_threshold is not None else None
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


__all__ = ["GUESSES", "GuessChoice", "allowed", "choose_guesses"]
