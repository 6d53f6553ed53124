"""What a reaction is judged on: the exchange (question, answer, reaction) read off a session's turns, and the
`FeedbackDecoder` protocol every decoder (`ilearn.dialogue.feedback`) implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ilearn.errors import InvalidInput
from ilearn.types import Feedback, FeedbackSource, Label, Role, Turn, TurnKind

LABELS: tuple[Label, ...] = (Label.POSITIVE, Label.NEUTRAL, Label.NEGATIVE)


@runtime_checkable
class FeedbackDecoder(Protocol):
    """Decode the user's newest turn as a reaction to the assistant's previous answer."""

    def decode(self, turns: Sequence[Turn]) -> Feedback | None:
        """`turns`: the session so far, the last one the user's new turn.

        Returns None when there is no previous assistant answer to react to (first turn, or the
        assistant's last turn was a clarifying question, whose reply is not feedback).
        """
        ...


@dataclass(frozen=True)
class Exchange:
    """What a reaction is about: the user's question, the assistant's answer, the user's reply."""

    question: str
    answer: str
    reaction: str
    new_image: bool = False  # the reaction brings a different image than the one answered about
    earlier: tuple[Feedback, ...] = ()  # feedback the user already gave on this answer (follow-up turns)
    follow_up: bool = False  # the assistant acknowledged a reaction in between ("Could you tell me the right answer?")


def exchange_from_turns(turns: Sequence[Turn]) -> Exchange | None:
    """The (question, answer, reaction) a decoder judges, or None when there is no answer to react to.

    The answer is the assistant's last ANSWER turn; assistant REACTION turns (acknowledgements) after it
    are skipped, which makes the exchange a follow-up; a CLARIFICATION in between means the user is
    replying to a clarifying question, which is not feedback.
    """
    if not turns:
        raise InvalidInput("no turns to decode feedback from")
    last = turns[-1]
    if last.role != Role.USER:
        raise InvalidInput("the last turn must be the user's reaction")
    answer_idx, follow_up, earlier = None, False, []
    for i in range(len(turns) - 2, -1, -1):
        t = turns[i]
        if t.role == Role.ASSISTANT:
            if t.kind == TurnKind.ANSWER:
                answer_idx = i
                break
            if t.kind != TurnKind.REACTION:
                return None
            follow_up = True
        elif t.feedback is not None:
            earlier.append(t.feedback)
    if answer_idx is None:
        return None
    answer = turns[answer_idx]
    question_turn = next((t for t in reversed(turns[:answer_idx]) if t.role == Role.USER
                          and t.kind == TurnKind.QUESTION), None)
    question = answer.precise_question or (question_turn.text if question_turn else "")
    shown = next((t.image for t in reversed(turns[: answer_idx + 1]) if t.image is not None), None)
    new_image = last.image is not None and shown is not None and last.image.sha256 != shown.sha256
    return Exchange(question=question, answer=answer.text, reaction=last.text, new_image=new_image,
                    earlier=tuple(reversed(earlier)), follow_up=follow_up)



def make_feedback(label: Label, confidence: float, correction: str | None, why: str) -> Feedback:
    """A decoder's feedback: EXPLICIT when it carries a correction, else IMPLICIT."""
    source = FeedbackSource.EXPLICIT if correction else FeedbackSource.IMPLICIT
    return Feedback(label=label, confidence=confidence, correction=correction, source=source, rationale=why)

