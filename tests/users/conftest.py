"""Assistants for the user-aware tests: a stub model on the real SQLite store (fast), photos made on the fly."""

from __future__ import annotations

import pytest

from helpers import make_png
from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.memory.sqlite import open_store
from ilearn.models.embedders import StubImageEmbedder
from ilearn.models.stub import StubVLM
from ilearn.users.personal import PersonalMemory


@pytest.fixture
def assistant(tmp_path):
    """An assistant whose model always answers "a cup"; no retrieval memory (concepts use the stub embedder)."""
    config = Config(home=str(tmp_path / "home"))
    store = open_store(tmp_path / "home")
    personal = PersonalMemory(store, StubImageEmbedder(), threshold=0.95)  # the stub's scale (ConceptBook)
    with Assistant(config, StubVLM(responder=lambda messages: "a cup"), store, feedback_decoder=None,
                   personal=personal) as built:
        yield built


@pytest.fixture
def photos() -> dict[str, bytes]:
    """ana's red mug (taught, then seen again), bob's look-alike red mug, a blue box, a green plant."""
    return {
        "mug": make_png((200, 30, 30)),
        "mug_again": make_png((210, 40, 35), size=(80, 80)),
        "mug_third": make_png((195, 35, 40), size=(70, 70)),
        "lookalike": make_png((205, 28, 32), size=(76, 76)),
        "box": make_png((30, 30, 200), shape="square"),
        "plant": make_png((30, 180, 30)),
    }
