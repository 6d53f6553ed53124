"""A model without weights for unit tests: replies come from a function you pass in."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ilearn.models.base import Generation, Message

Responder = Callable[[Sequence[Message]], str]


def _echo(messages: Sequence[Message]) -> str:
    return f"You said: {messages[-1].content}"


class StubVLM:
    """`responder(messages) -> reply`; `scorer(messages, candidate) -> log-prob` (default: prefers the reply)."""

    name = "stub"

    def __init__(self, responder: Responder = _echo, scorer: Callable[[Sequence[Message], str], float] | None = None):
        self.responder = responder
        self.scorer = scorer
        self.version = "base"
        self.calls: list[list[Message]] = []
        self.avoided: list[str] = []  # `avoid` of the last generate call

    def generate(self, messages: Sequence[Message], *, max_new_tokens: int = 48,
                 avoid: Sequence[str] = ()) -> Generation:
        self.calls.append(list(messages))
        self.avoided = list(avoid)
        text = self.responder(messages)
        return Generation(text=text, prompt_tokens=sum(len(m.content.split()) for m in messages),
                          completion_tokens=len(text.split()))

    def score(self, messages: Sequence[Message], candidates: Sequence[str]) -> list[float]:
        if self.scorer is not None:
            return [self.scorer(messages, c) for c in candidates]
        reply = self.responder(messages).strip().lower()
        return [0.0 if c.strip().lower() == reply else -10.0 for c in candidates]


def load_stub(config) -> StubVLM:
    return StubVLM()
