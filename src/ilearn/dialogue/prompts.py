"""The texts the assistant shows the model and the user, in one place."""

from __future__ import annotations

from ilearn.models.base import Message

SYSTEM_WITH_REFERENCES = (
    "You are a helpful robot assistant. Answer questions about the image briefly. "
    "Users corrected you before on similar images; trust these references:\n{references}"
)


def answer_messages(question: str, image, references: str = "", history: list[Message] | None = None) -> list[Message]:
    """The chat the model answers: (references), earlier exchange, the image and the question.

    Without references no system message is sent, so the model's own default system prompt applies: the same
    prompt its training examples (learning/datasets.py), the gate and the easy-vqa evaluation use.
    """
    system = [Message("system", SYSTEM_WITH_REFERENCES.format(references=references))] if references else []
    return [*system, *(history or []), Message("user", question, image=image)]


def reused_answer(answer: str) -> str:
    """The reply when a confident reference decides the answer."""
    return answer[:1].upper() + answer[1:] if answer else answer


def tentative_answer(answer: str) -> str:
    """The reply when the memory's nearest answer is offered as a guess (`retrieval.guess_threshold`): worded so
    that the user knows it may be wrong (and says so, which teaches the memory)."""
    return f"I'm not sure, but going by what I was shown before: {answer}" if answer else answer


def acknowledge(label: str, correction: str | None) -> str:
    if correction:
        return f"Thank you, I'll remember: {correction}."
    if label == "positive":
        return "Glad I could help."
    return "Sorry about that. Could you tell me the right answer?"


NOT_SURE = "I'm not sure. Which one is it?"
"""The reply when every answer the model can give was already rejected in this dialogue."""
CLARIFY_AGAIN = "Sorry, I did not get that. What would you like to know about it?"
NO_IMAGE = "Please show me the object: send a photo with your question."
