"""Contracts of the pluggable model parts: a typed Protocol each (see DESIGN.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


@dataclass
class Message:
    """One chat message; a user message may carry one image."""

    role: str  # "system" | "user" | "assistant"
    content: str
    image: Image.Image | None = None


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


@runtime_checkable
class VisionLanguageModel(Protocol):
    """Generate replies for chat messages with images, and score candidate replies."""

    name: str  # backend name, e.g. "small"
    version: str  # the model version it currently serves (registry id, or "base")

    def generate(self, messages: Sequence[Message], *, max_new_tokens: int = 48,
                 avoid: Sequence[str] = ()) -> Generation:
        """Greedy reply to the conversation (the last message is the user's).

        `avoid`: replies the user already rejected in this dialogue; the model returns its best reply that is
        none of them (same `ilearn.types.answer_key`) when it finds one, else its greedy reply."""
        ...

    def score(self, messages: Sequence[Message], candidates: Sequence[str]) -> list[float]:
        """Sum of the log-probabilities of each candidate as the assistant's reply."""
        ...


@runtime_checkable
class ImageEmbedder(Protocol):
    dim: int

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised."""
        ...


@runtime_checkable
class TextEmbedder(Protocol):
    dim: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised."""
        ...
