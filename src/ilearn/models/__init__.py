"""Model backends, registered by name in `ilearn.plugins` and imported lazily (heavy dependencies load only when used)."""

from __future__ import annotations

from ilearn.config import ModelConfig
from ilearn.models.base import (
    Generation,
    ImageEmbedder,
    Message,
    TextEmbedder,
    TrainableModel,
    VisionLanguageModel,
)


def load_model(config: ModelConfig) -> VisionLanguageModel:
    """Build the vision-language model that `config.backend` names (`ilearn.plugins.names("model")`)."""
    from ilearn import plugins

    return plugins.create("model", config.backend, config)


__all__ = ["Generation", "ImageEmbedder", "Message", "TextEmbedder", "TrainableModel", "VisionLanguageModel",
           "load_model"]
