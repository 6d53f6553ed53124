"""A model without weights for unit tests: replies come from a function you pass in."""

from __future__ import annotations

import re
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


class StreamingStubVLM(StubVLM):
    """A StubVLM that streams (`ilearn.models.streaming`): `generate_stream` hands out the reply's words one at a
    time, all but the last (held back, as a real streamer holds back the word it may still extend), and calls
    `between(i)` before the i-th piece, so a test can pause the "model" between two pieces."""

    def __init__(self, responder: Responder = _echo, scorer: Callable[[Sequence[Message], str], float] | None = None,
                 between: Callable[[int], None] | None = None):
        super().__init__(responder, scorer)
        self.between = between
        self.streamed: list[str] = []
        """The pieces the last `generate_stream` call handed out."""

    def generate_stream(self, messages: Sequence[Message], *, max_new_tokens: int | None = None,
                        on_text: Callable[[str], None]) -> Generation:
        generation = self.generate(messages, max_new_tokens=max_new_tokens or 48)
        self.streamed = []
        for i, piece in enumerate(re.findall(r"\s*\S+", generation.text.strip())[:-1]):
            if self.between is not None:
                self.between(i)
            self.streamed.append(piece)
            on_text(piece)
        return generation


def load_stub(config) -> StubVLM:
    return StubVLM()
