"""Contracts of the pluggable model parts: a typed Protocol each (see DESIGN.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image
    from transformers import ProcessorMixin

    from ilearn.config import ModelConfig


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
class TrainableModel(VisionLanguageModel, Protocol):
    """A vision-language model whose weights iLearn fine-tunes and swaps (`small`, `tiny`, `hf`; not `openai`).

    What the recipes (`ilearn.learning.recipes`, `ilearn.learning.parts`) and the model registry use: the
    torch model to copy and train, the processor TRL tokenises with, the settings to load fresh base weights
    from, and the two calls that change which trained version it serves.
    """

    config: ModelConfig  # how it was loaded; `load_model(config)` gives a fresh copy of the base weights
    processor: ProcessorMixin  # passed to TRL's trainers as `processing_class`

    @property
    def model(self) -> torch.nn.Module:
        """The transformers model it serves (a `PreTrainedModel` whose parts `ilearn.learning.parts` locates)."""
        ...

    def reset(self) -> None:
        """Serve the base weights again (version "base")."""
        ...

    def set_weights(self, path: str | Path, version: str | None = None) -> None:
        """Serve a trained version: a PEFT adapter folder or a .safetensors file of (partial) weights."""
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
