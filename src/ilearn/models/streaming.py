"""Token streaming: a reply's text handed out in pieces while the model writes it.

A model that can stream has `generate_stream` (`StreamingGenerator`): the same greedy reply as `generate`, and
`on_text(piece)` called with each new piece of its text as decoding goes. The HF backends (`hf`, and `small` and
`tiny` through `ComposedVLMChat`) pass transformers a streamer (`ilearn.models.hf.PieceStreamer`); `ComposedVLMChat.generate_batch`
takes `on_piece(index, piece)` for the rows of a batch. Models without it answer whole (the caller sends the
whole reply at the end).

The pieces are always a prefix of the reply's final text (`Generation.text`, which is stripped): `ReplyPieces`
decodes the reply so far, leaves out its leading whitespace, and holds back its last word (it may still grow,
a multi-byte character may be half decoded, a tokenizer's clean-up may still change the space before it) until
a space follows it. What was held back arrives with the whole reply: the caller sends the final text's rest.
If a decode ever disagrees with what was handed out (a tokenizer whose decoding of a longer reply rewrites an
earlier word), no further piece is handed out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Protocol, runtime_checkable

from ilearn.models.base import Generation, Message

logger = logging.getLogger(__name__)

OnText = Callable[[str], None]
"""Receives the next piece of a reply's text."""

_LAST_WORD = re.compile(r"\s+\S*$")


@runtime_checkable
class StreamingGenerator(Protocol):
    """A model that hands out a reply's text while it generates it."""

    def generate_stream(self, messages: Sequence[Message], *, max_new_tokens: int | None = None,
                        on_text: OnText) -> Generation:
        """The greedy reply `generate(messages)` gives, with `on_text(piece)` called as its text is decoded; the
        pieces joined are a prefix of the returned text (module docstring)."""
        ...


class ReplyPieces:
    """The stable pieces of a reply being decoded (module docstring), for `on_text`.

    `decode(ids)` is the model's decoding of reply token ids (special tokens skipped); decoding stops at the first
    of `cut_ids` (the end of the reply, as the model's own decoding cuts it)."""

    def __init__(self, decode: Callable[[list[int]], str], on_text: OnText, cut_ids: Collection[int] = ()) -> None:
        self._decode = decode
        self._on_text = on_text
        self._cut_ids = cut_ids
        self.ids: list[int] = []
        self.sent = ""
        """The text handed out so far."""
        self.stopped = False

    def add(self, ids: Iterable[int]) -> None:
        """Append newly generated token ids; hand out the text that became stable."""
        if self.stopped:
            return
        for token in ids:
            if token in self._cut_ids:
                self.stopped = True
                break
            self.ids.append(int(token))
        text = self._decode(self.ids).lstrip()
        last = _LAST_WORD.search(text)
        stable = text[: last.start()] if last else ""
        if not stable.startswith(self.sent):
            logger.debug("a longer decode rewrote streamed text (%r, then %r): streaming stops", self.sent, stable)
            self.stopped = True
            return
        if len(stable) > len(self.sent):
            piece, self.sent = stable[len(self.sent):], stable
            self._on_text(piece)


__all__ = ["OnText", "ReplyPieces", "StreamingGenerator"]
