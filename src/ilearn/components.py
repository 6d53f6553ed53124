"""Build the assistant's parts from settings: one place that knows which class serves which setting."""

from __future__ import annotations

import logging
from typing import Any

from ilearn.config import Config

logger = logging.getLogger(__name__)


def build_components(config: Config) -> dict[str, Any]:
    """The model, store, retrieval memory, feedback decoder and model registry for `config`."""
    import faiss

    from ilearn.dialogue.feedback import make_decoder
    from ilearn.learning.registry import ModelRegistry
    from ilearn.memory.sqlite import open_store
    from ilearn.models import load_model

    faiss.omp_set_num_threads(config.model.threads)
    home = config.home_path
    home.mkdir(parents=True, exist_ok=True)
    store = open_store(home)
    vlm = load_model(config.model)
    memory = build_memory(config, store)
    decoder = make_decoder(config.feedback, vlm, text_embedder=memory.text_embedder)
    registry = ModelRegistry(store, home)
    return {"vlm": vlm, "store": store, "memory": memory, "feedback_decoder": decoder, "registry": registry}


def build_memory(config: Config, store) -> Any:
    """Dual-modality retrieval memory over the store; embedders follow the model backend (stubs for tiny/stub)."""
    from ilearn.memory.retrieval import build_memory as build

    return build(config, store)
