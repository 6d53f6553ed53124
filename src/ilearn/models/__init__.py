"""Model backends, registered by name and imported lazily (heavy dependencies load only when used)."""

from __future__ import annotations

import importlib

from ilearn.config import ModelConfig
from ilearn.errors import InvalidInput
from ilearn.models.base import Generation, ImageEmbedder, Message, TextEmbedder, VisionLanguageModel

# backend name -> "module:factory"; each factory takes a ModelConfig and returns a VisionLanguageModel.
BACKENDS: dict[str, str] = {
    "small": "ilearn.models.small:load_small",
    "tiny": "ilearn.models.tiny:load_tiny",
    "hf": "ilearn.models.hf:load_hf",
    "openai": "ilearn.models.openai:load_openai",
    "stub": "ilearn.models.stub:load_stub",
}


def load_model(config: ModelConfig) -> VisionLanguageModel:
    """Build the vision-language model that `config.backend` names."""
    target = BACKENDS.get(config.backend)
    if target is None:
        raise InvalidInput(f"unknown model backend {config.backend!r}; choose one of {sorted(BACKENDS)}")
    module_name, factory = target.split(":")
    return getattr(importlib.import_module(module_name), factory)(config)


__all__ = ["BACKENDS", "Generation", "ImageEmbedder", "Message", "TextEmbedder", "VisionLanguageModel", "load_model"]
