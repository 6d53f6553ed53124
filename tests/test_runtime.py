"""The one factory: every part of a deployment built from a Config, and everything that runs iLearn uses it."""

from __future__ import annotations

import pytest

from ilearn import plugins, runtime
from ilearn.config import Config
from ilearn.dialogue.clarify import Clarifier, NeverClarifier
from ilearn.dialogue.feedback import FeedbackDecoder, HybridFeedbackDecoder
from ilearn.errors import NotFound
from ilearn.learning.registry import ModelRegistry
from ilearn.memory.base import RetrievalMemory
from ilearn.memory.retrieval import DualModalityMemory
from ilearn.memory.store import EventStore
from ilearn.memory.stub import ExactIndex, StubMemory
from ilearn.models.base import VisionLanguageModel
from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder
from ilearn.models.stub import StubVLM


def stub_config(home, **sections) -> Config:
    return Config(home=str(home)).override(model={"backend": "stub"}, **sections)


def test_build_runtime_builds_every_part_from_the_config(tmp_path):
    with runtime.build_runtime(stub_config(tmp_path / "home")) as parts:
        assert isinstance(parts.vlm, VisionLanguageModel) and isinstance(parts.store, EventStore)
        assert isinstance(parts.memory, RetrievalMemory) and isinstance(parts.memory, DualModalityMemory)
        assert isinstance(parts.decoder, FeedbackDecoder) and isinstance(parts.clarifier, Clarifier)
        assert isinstance(parts.registry, ModelRegistry)
        assert isinstance(parts.memory.image_embedder, StubImageEmbedder)  # "auto" for the stub model
        assert isinstance(parts.memory.text_embedder, HashingTextEmbedder)
    assert (tmp_path / "home" / "ilearn.db").is_file()


def test_each_part_is_the_backend_its_setting_names(tmp_path):
    config = stub_config(tmp_path / "home", store=f"sqlite:///{tmp_path}/elsewhere/events.db",
                         retrieval={"memory": "stub", "index": "exact"}, clarify={"method": "never"},
                         feedback={"method": "hybrid"})
    vlm = StubVLM()
    with runtime.build_runtime(config, vlm=vlm) as parts:
        assert parts.vlm is vlm
        assert isinstance(parts.memory, StubMemory) and isinstance(parts.clarifier, NeverClarifier)
        assert isinstance(parts.decoder.inner, HybridFeedbackDecoder)
    assert (tmp_path / "elsewhere" / "events.db").is_file() and not (tmp_path / "home" / "ilearn.db").exists()
    with runtime.build_runtime(stub_config(tmp_path / "h2", retrieval={"index": "exact"})) as parts:
        assert parts.memory.index_type is ExactIndex and isinstance(parts.memory.index, ExactIndex)


def test_a_registered_backend_is_built_like_a_built_in(tmp_path):
    plugins.register("model", "parrot", "ilearn.models.stub:load_stub")
    try:
        with runtime.build_runtime(Config(home=str(tmp_path)).override(model={"backend": "parrot"})) as parts:
            assert isinstance(parts.vlm, StubVLM)
    finally:
        plugins.unregister("model", "parrot")


def test_open_store_refuses_to_create_when_asked_not_to(tmp_path):
    with pytest.raises(NotFound, match="no iLearn deployment"):
        runtime.open_store(Config(home=str(tmp_path / "nothing")), create=False)
    assert not (tmp_path / "nothing").exists()


@pytest.fixture
def built(monkeypatch):
    """Records every config `build_runtime` is called with."""
    calls: list[Config] = []
    real = runtime.build_runtime

    def spy(config, **kwargs):
        calls.append(config)
        return real(config, **kwargs)

    monkeypatch.setattr(runtime, "build_runtime", spy)
    return calls


def test_assistant_from_config_builds_its_parts_with_build_runtime(built, tmp_path):
    from ilearn.assistant import Assistant

    with Assistant.from_config(stub_config(tmp_path)) as assistant:
        assert isinstance(assistant.memory, DualModalityMemory)
    assert [c.home for c in built] == [str(tmp_path)]


def test_experiment_deployments_build_their_parts_with_build_runtime(built, tmp_path):
    from ilearn.evaluation.runner_common import Deployment

    vlm = StubVLM()
    shared = stub_config(tmp_path / "ignored", store=f"sqlite:///{tmp_path}/one.db")
    dep = Deployment.open(tmp_path / "teach", shared, vlm)
    try:
        assert dep.vlm is vlm and isinstance(dep.memory, DualModalityMemory)
        assert (tmp_path / "teach" / "ilearn.db").is_file()  # each deployment keeps its own store
    finally:
        dep.close()
    assert [c.home for c in built] == [str(tmp_path / "teach")]


class _Recording:
    """A model that says which version it is whenever a part asks it to score."""

    def __init__(self, inner, version: str, calls: list[str]):
        self.inner, self.version, self.calls, self.name = inner, version, calls, "rec"

    def score(self, messages, candidates):
        self.calls.append(self.version)
        return self.inner.score(messages, candidates)

    def generate(self, messages, **options):
        self.calls.append(self.version)
        return self.inner.generate(messages, **options)


def test_model_decoder_and_clarifier_judge_with_the_version_that_serves(tmp_path, monkeypatch):
    """After a promotion, a model clarifier and a model feedback decoder use the promoted weights, not the base."""
    from ilearn.dialogue.feedback import Exchange
    from ilearn.models.versions import ModelHandle

    config = stub_config(tmp_path / "home", clarify={"method": "model"}, feedback={"method": "model"})
    with runtime.build_runtime(config) as parts:
        calls: list[str] = []
        served = ModelHandle("v7", _Recording(parts.vlm, "v7", calls))
        monkeypatch.setattr(parts.versions, "current", lambda wait=False: served)
        parts.clarifier.assess("what about it?", True)
        parts.decoder.inner.judge(Exchange(question="what is this?", answer="aspirin", reaction="no, it's ibuprofen"))
        assert calls and set(calls) == {"v7"}
        with parts.versions.hold() as handle:  # inside a turn: the turn's own version
            assert handle is served and parts.clarifier.vlm.version == "v7"


def test_the_fused_image_embedder_takes_its_weight_from_the_settings(monkeypatch):
    """`retrieval.fused_weight` reaches the fused embedder (and its name, which the saved index records, so a
    changed weight rebuilds the index); other embedders get no such argument; a weight outside [0, 1] is refused."""
    from ilearn.errors import InvalidInput

    made = []
    create = plugins.create

    def recording(kind, name, *args, **kwargs):
        if kind == "image_embedder":
            made.append((name, kwargs))
            return StubImageEmbedder()
        return create(kind, name, *args, **kwargs)

    monkeypatch.setattr(runtime.plugins, "create", recording)
    cfg = Config.from_dict({"model": {"backend": "stub"}, "retrieval": {"image_embedder": "fused", "fused_weight": 0.6}})
    runtime.build_embedders(cfg)
    runtime.build_embedders(cfg.override(retrieval={"image_embedder": "stub"}))
    threads = cfg.model.threads
    assert made == [("fused", {"device": "cpu", "threads": threads, "weight": 0.6}),
                    ("stub", {"device": "cpu", "threads": threads})]
    with pytest.raises(InvalidInput, match="fused_weight"):
        Config.from_dict({"retrieval": {"fused_weight": 1.5}})


@pytest.mark.parametrize("split", [True, False])
def test_the_batching_settings_reach_the_assistants_batcher(tmp_path, split):
    from ilearn.assistant import Assistant

    config = Config(home=str(tmp_path / "home")).override(model={"backend": "stub", "max_batch": 5,
                                                                 "batch_split": split})
    with Assistant.from_config(config) as assistant:
        assert (assistant.batcher.max_batch, assistant.batcher.split) == (5, split)
    assert Config().model.batch_split  # two batches at once on the two cores by default (docs/batching.md)


def test_experiment_deployments_train_only_on_shared_events_as_learn_does(tmp_path, png):
    """Every protocol's tuned rounds are what `ilearn learn` would train: a private answer (one teacher's, or one the
    trust rules hold back) never becomes a training row of the shared model (`Deployment.shared_only`, on unless
    a comparison turns it off)."""
    from ilearn.evaluation.runner_common import Deployment
    from ilearn.images import decode_image
    from ilearn.types import Event, Scope

    config = stub_config(tmp_path / "ignored")
    learn = config.learn
    for shared_only, expected in ((None, {"shared"}), (False, {"shared", "private"})):
        given = {} if shared_only is None else {"shared_only": shared_only}
        dep = Deployment.open(tmp_path / f"teach-{shared_only}", config, StubVLM(), **given)
        try:
            ref = dep.store.put_image(png, decode_image(png, max_pixels=10**6)[1])
            dep.store.add_events([Event(ref, "What is the name of this?", "aspirin", "ana", id="shared",
                                        scope=Scope.SHARED),
                                  Event(ref, "What is it used for?", "zorblax", "bob", id="private",
                                        scope=Scope.PRIVATE)])
            assert {r["event_id"] for r in dep.rows(learn)} == expected
        finally:
            dep.close()
