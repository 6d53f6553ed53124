"""Ports: every pluggable part has a typed Protocol, and its stub (and default backend) satisfies it."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from helpers import make_png
from ilearn.config import ModelConfig
from ilearn.dialogue.clarify import Clarifier, LexicalClarifier, NeverClarifier
from ilearn.dialogue.feedback import FeedbackDecoder, LexicalFeedbackDecoder
from ilearn.evaluation.scenarios.base import Scenario, stub_scenario
from ilearn.images import decode_image
from ilearn.memory.base import RetrievalMemory, VectorIndex
from ilearn.memory.index import FaissIndex
from ilearn.memory.retrieval import DualModalityMemory
from ilearn.memory.sqlite import open_store
from ilearn.memory.stub import ExactIndex, StubMemory
from ilearn.models import load_model
from ilearn.models.base import ImageEmbedder, TextEmbedder, TrainableModel, VisionLanguageModel
from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder
from ilearn.models.stub import StubVLM
from ilearn.types import Event, ImageRef, Scope


@pytest.mark.parametrize("part, port", [
    (StubVLM(), VisionLanguageModel),
    (StubImageEmbedder(), ImageEmbedder),
    (HashingTextEmbedder(), TextEmbedder),
    (ExactIndex(4), VectorIndex),
    (FaissIndex(4), VectorIndex),
    (LexicalFeedbackDecoder(), FeedbackDecoder),
    (LexicalClarifier(), Clarifier),
    (NeverClarifier(), Clarifier),
    (stub_scenario(), Scenario),
])
def test_stubs_and_defaults_satisfy_their_port(part, port):
    assert isinstance(part, port)


def test_the_tiny_model_is_trainable_and_the_stub_is_not():
    assert isinstance(load_model(ModelConfig(backend="tiny")), TrainableModel)
    assert not isinstance(StubVLM(), TrainableModel)


@pytest.mark.parametrize("memory_type", [DualModalityMemory, StubMemory])
def test_both_memories_find_what_a_user_taught(memory_type, tmp_path):
    store = open_store(tmp_path)
    try:
        memory = memory_type(store, StubImageEmbedder(), HashingTextEmbedder(), None, tmp_path, index_type=ExactIndex)
        assert isinstance(memory, RetrievalMemory)
        data = make_png()
        image, _ = decode_image(data, max_pixels=10_000)
        ref = store.put_image(data, ImageRef(hashlib.sha256(data).hexdigest(), image.width, image.height))
        event = memory.add(Event(ref, "What is this called?", "aspirin", "ana", scope=Scope.PRIVATE), image)
        found = memory.search(image, "What is this called?", "ana")
        assert [m.event.id for m in found] == [event.id]
        assert memory.search(image, "What is this called?", "bob") == []  # private to ana
        memory.close()
    finally:
        store.close()


def test_the_exact_index_searches_filters_and_reloads(tmp_path):
    ix = ExactIndex(3, meta={"embedder": "x"})
    ix.add(["a", "b", "c"], np.eye(3, dtype=np.float32))
    assert [k for k, _ in ix.search(np.array([1, 0.5, 0], np.float32), 2)[0]] == ["a", "b"]
    assert [k for k, _ in ix.search(np.array([1, 0.5, 0], np.float32), 2, ix.make_filter(["c"]))[0]] == ["c"]
    assert ix.remove(["a", "zzz"]) == 1 and "a" not in ix and len(ix) == 2
    ix.save(tmp_path / "ix")
    again = ExactIndex.load(tmp_path / "ix")
    assert sorted(again.keys()) == ["b", "c"] and again.meta == {"embedder": "x"}
    np.testing.assert_array_equal(again.get_vectors(["b"]), ix.get_vectors(["b"]))
    with pytest.raises(FileNotFoundError):
        ExactIndex.load(tmp_path / "nothing")
