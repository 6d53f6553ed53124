"""Registry: versions kept with their lineage; promote, rollback; the serving model swaps weights in place."""

from __future__ import annotations

import pytest
from learning_data import QUESTION, rows_for, shape

from ilearn.config import LearnConfig
from ilearn.errors import InvalidInput, NotFound
from ilearn.learning.recipes import train
from ilearn.learning.registry import BASE, ModelRegistry
from ilearn.memory.sqlite import SQLiteStore
from ilearn.models.base import Message
from ilearn.types import ModelStatus


@pytest.fixture
def registry(tmp_path):
    store = SQLiteStore(tmp_path / "ilearn.db")
    yield ModelRegistry(store, tmp_path)
    store.close()


def fake_version(registry, **kwargs):
    version_id, path = registry.new_path()
    (path / "weights.safetensors").write_bytes(b"")
    return registry.register(path=path, recipe="sft", version_id=version_id, **kwargs)


def test_round_trip_keeps_lineage_snapshot_and_metrics(registry):
    v1 = fake_version(registry, settings={"lr": 0.1}, event_ids=["evt_a", "evt_b"], metrics={"loss": 1.5})
    got = registry.get(v1.id)
    assert (got.parent, got.recipe, got.settings, got.event_ids, got.metrics, got.status) == (
        None, "sft", {"lr": 0.1}, ["evt_a", "evt_b"], {"loss": 1.5}, ModelStatus.CANDIDATE)
    registry.promote(v1.id)
    v2 = fake_version(registry)
    assert v2.parent == v1.id  # trained while v1 was active
    registry.update_metrics(v2.id, {"gate": {"promote": False}})
    registry.reject(v2.id, "did not learn")
    assert registry.get(v2.id).status == ModelStatus.REJECTED
    assert registry.get(v2.id).metrics["gate"] == {"promote": False}
    assert [v.id for v in registry.list()] == [v1.id, v2.id]
    with pytest.raises(NotFound):
        registry.get("mdl_missing")
    with pytest.raises(NotFound):
        registry.register(path=registry.root / "nowhere", recipe="sft")


def test_promote_and_rollback_walk_back_through_history(registry):
    v1, v2, v3 = (fake_version(registry) for _ in range(3))
    assert registry.active_id() == BASE
    with pytest.raises(InvalidInput):
        registry.rollback()
    for v in (v1, v3, v2):
        registry.promote(v.id)
    assert registry.active_id() == v2.id
    assert {v.id: v.status for v in registry.list()} == {
        v1.id: ModelStatus.RETIRED, v2.id: ModelStatus.ACTIVE, v3.id: ModelStatus.RETIRED}
    assert registry.rollback().id == v3.id
    assert registry.rollback().id == v1.id
    assert registry.rollback().id == BASE and registry.active() is None
    assert all(v.status == ModelStatus.RETIRED for v in registry.list())  # every version kept


def test_a_change_whose_serving_fails_is_undone(registry):
    v1, v2 = fake_version(registry), fake_version(registry)
    served, refused = [], {v2.id}

    def serve(version):
        if version.id in refused:
            raise RuntimeError("the server refused it")
        served.append(version.id)

    assert registry.change_active(lambda: registry.promote(v1.id), serve=serve).id == v1.id
    before = {v.id: (v.status, v.metrics) for v in registry.list()}
    with pytest.raises(RuntimeError, match="refused"):
        registry.change_active(lambda: registry.promote(v2.id), serve=serve)
    assert {v.id: (v.status, v.metrics) for v in registry.list()} == before  # not even its promotion time kept

    registry.promote(v2.id)
    refused = {v1.id}
    with pytest.raises(RuntimeError, match="refused"):  # the rollback to v1
        registry.change_active(registry.rollback, serve=serve)
    assert registry.active_id() == v2.id and len(registry.get(v2.id).metrics["promotions"]) == 1
    refused = set()
    assert registry.change_active(registry.rollback, serve=serve).id == v1.id and served == [v1.id, v1.id]


def test_serving_a_change_holds_no_store_transaction(registry, tmp_path, caplog):
    """A model server may take minutes to load an adapter: meanwhile the store takes other writers' changes (here
    another connection's, with a 1 s lock timeout); the change is logged once, not for its plan."""
    import logging
    import threading

    from ilearn.types import Event

    v1 = fake_version(registry)
    other = SQLiteStore(tmp_path / "ilearn.db", timeout=1.0)
    written = []

    def serve(version):
        writer = threading.Thread(target=lambda: written.append(
            other.add_events([Event(image=None, question="q?", answer="a", user_id="kim")])))
        writer.start()
        writer.join(10)
        assert written, "another writer waited for the model server"

    with caplog.at_level(logging.INFO, logger="ilearn.learning.registry"):
        assert registry.change_active(lambda: registry.promote(v1.id), serve=serve).id == v1.id
    assert registry.active_id() == v1.id and len(other.list_events()) == 1
    assert [r.getMessage() for r in caplog.records] == [f"promoted {v1.id}"]
    other.close()


def test_a_change_that_the_store_moved_meanwhile_serves_what_it_commits(registry):
    """While v1 is served for a rollback planned from v2, another process promotes v3: the rollback that commits
    goes from v3 back to v2, and v2 is served before it commits."""
    v1, v2, v3 = fake_version(registry), fake_version(registry), fake_version(registry)
    registry.promote(v1.id)
    registry.promote(v2.id)
    served = []

    def serve(version):
        served.append(version.id)
        if len(served) == 1:
            registry.promote(v3.id)  # another process, while the model server loads v1

    assert registry.change_active(registry.rollback, serve=serve).id == v2.id
    assert served == [v1.id, v2.id] and registry.active_id() == v2.id


def scores(vlm) -> list[float]:
    return vlm.score([Message(role="user", content=QUESTION, image=shape("red"))], ["red", "blue", "green"])


@pytest.mark.parametrize("trainable,lora", [(("language",), ("language",)), (("projector",), ())])
def test_apply_active_swaps_weights_and_rollback_restores_answers(registry, tiny_vlm, trainable, lora):
    base_scores, base_reply = scores(tiny_vlm), tiny_vlm.generate([Message("user", QUESTION, shape("red"))]).text
    version_id, path = registry.new_path()
    settings = LearnConfig(trainable=trainable, lora=lora, max_steps=8, batch_size=4, learning_rate=5e-2)
    result = train(tiny_vlm, rows_for("sft", 8), settings, path)
    registry.register(path=path, recipe="sft", settings=result.to_dict(), version_id=version_id)
    assert registry.apply_active(tiny_vlm) is False  # nothing promoted yet: the base serves
    from ilearn.learning.parts import WEIGHTS_FILE
    from ilearn.learning.registry import served_file

    assert served_file(tiny_vlm, path) == (path if lora else path / WEIGHTS_FILE)  # served as it is

    registry.promote(version_id)
    assert registry.apply_active(tiny_vlm) is True and tiny_vlm.version == version_id
    assert registry.apply_active(tiny_vlm) is False  # unchanged: no swap
    taught = scores(tiny_vlm)
    assert taught != pytest.approx(base_scores, abs=1e-4)

    registry.rollback()
    assert registry.apply_active(tiny_vlm) is True and tiny_vlm.version == BASE
    assert scores(tiny_vlm) == pytest.approx(base_scores, abs=1e-5)
    assert tiny_vlm.generate([Message("user", QUESTION, shape("red"))]).text == base_reply


def test_a_version_with_adapter_and_full_parts_serves_both(registry, tiny_vlm):
    """Default settings (projector in full + language LoRA): the wrapper must serve the adapter AND the parts."""
    import copy

    from ilearn.learning.parts import apply_trained
    from ilearn.models.composed_chat import ComposedVLMChat

    version_id, path = registry.new_path()
    train(tiny_vlm, rows_for("sft", 8), LearnConfig(max_steps=6, batch_size=4, learning_rate=5e-2), path)
    registry.register(path=path, recipe="sft", version_id=version_id)
    reference = ComposedVLMChat(apply_trained(copy.deepcopy(tiny_vlm.model), path).merge_and_unload(),
                                tiny_vlm.processor, tiny_vlm.config, name="tiny")
    registry.apply(tiny_vlm, version_id)
    assert scores(tiny_vlm) == pytest.approx(scores(reference), abs=1e-5)
