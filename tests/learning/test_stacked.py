"""Training on top of a version (`learn.start_from`): the start version's weights are the starting point and the
preference reference, and the saved version holds both, so it loads alone as what trained."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from learning_data import rows_for

from ilearn.config import LearnConfig
from ilearn.errors import InvalidInput, NotFound
from ilearn.learning.parts import PARTS_FILE, apply_trained
from ilearn.learning.recipes import base_model, train

STEPS = dict(max_steps=2, batch_size=2, learning_rate=1e-2)


def merged(vlm, path) -> dict[str, torch.Tensor]:
    """The state dict of the base weights with the version in `path` applied (LoRA merged)."""
    model = apply_trained(copy.deepcopy(vlm.model), path)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def trained_in_memory(monkeypatch) -> dict:
    """Catch the model each training run holds when it saves (`save_trained`'s argument), LoRA merged."""
    from ilearn.learning import recipes

    seen: dict = {}
    save = recipes.save_trained

    def keep(prepared, out_dir):
        model = copy.deepcopy(prepared.model)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        seen[str(out_dir)] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return save(prepared, out_dir)

    monkeypatch.setattr(recipes, "save_trained", keep)
    return seen


@pytest.mark.parametrize("first,second", [
    ({}, {}),  # projector in full + language LoRA, twice: two adapters side by side
    ({}, {"trainable": ("language",), "lora": ("language",)}),  # the start's projector kept from its file
    ({"trainable": ("language",), "lora": ("language",)}, {"trainable": ("projector",), "lora": ()}),  # start LoRA only
    ({}, {"trainable": ("language",), "lora": ()}),  # language in full: the start's LoRA is merged into its tensors
    ({"trainable": ("vision", "language"), "lora": ("vision", "language")}, {"lora_r": 4}),  # other parts, ranks
    # the vision encoder in full now: the start's vision LoRA is merged into its tensors, its language LoRA stays
    ({"trainable": ("vision", "language"), "lora": ("vision", "language")}, {"trainable": ("vision",), "lora": ()}),
])
def test_a_stacked_version_loads_as_the_model_that_trained(tiny_vlm, tmp_path, monkeypatch, first, second):
    seen = trained_in_memory(monkeypatch)
    one = train(tiny_vlm, rows_for("sft"), LearnConfig(**STEPS, **first), tmp_path / "one")
    two = train(tiny_vlm, rows_for("sft"), LearnConfig(**STEPS, **{"seed": 1, **second}), tmp_path / "two",
                start=one.path)
    after_one, after_two = merged(tiny_vlm, one.path), merged(tiny_vlm, two.path)
    for key, value in seen[str(tmp_path / "two")].items():
        assert torch.allclose(after_two[key], value, atol=1e-5), key
    assert any(not torch.equal(after_one[k], after_two[k]) for k in after_one)  # the second run changed something
    parts = json.loads((tmp_path / "two" / PARTS_FILE).read_text())
    full = set(first.get("trainable", ("projector", "language"))) - set(first.get("lora", ("language",)))
    full |= set(second.get("trainable", ("projector", "language"))) - set(second.get("lora", ("language",)))
    assert set(parts["full"]) == full


def test_training_starts_from_the_version_and_prefers_relative_to_it(tiny_vlm, tmp_path, monkeypatch):
    from ilearn.learning import recipes

    one = train(tiny_vlm, rows_for("sft"), LearnConfig(**STEPS), tmp_path / "one")
    token = recipes._START.set(tmp_path / "one")
    try:
        start = {k: v.detach() for k, v in base_model(tiny_vlm).state_dict().items()}
    finally:
        recipes._START.reset(token)
    assert all(torch.equal(start[k], v) for k, v in merged(tiny_vlm, one.path).items())
    # DPO's first step compares the policy with its reference: both the start version, so the loss is log 2
    result = train(tiny_vlm, rows_for("dpo"), LearnConfig(recipe="dpo", max_steps=1, batch_size=2,
                                                          learning_rate=1e-2), tmp_path / "dpo", start=one.path)
    assert result.train_loss == pytest.approx(0.6931, abs=1e-3)
    with pytest.raises(InvalidInput, match="one process"):
        train(tiny_vlm, rows_for("sft"), LearnConfig(**STEPS, processes=2), tmp_path / "x", start=one.path)


def test_a_candidate_on_top_of_a_version_counts_its_events(tiny_vlm, tmp_path):
    from ilearn.learning.registry import ModelRegistry
    from ilearn.learning.update import HeldOutLeak, train_candidate
    from ilearn.memory.sqlite import SQLiteStore
    from ilearn.types import ModelVersion

    store = SQLiteStore(tmp_path / "ilearn.db")
    registry = ModelRegistry(store, tmp_path)
    rows = rows_for("sft")
    first = train_candidate(tiny_vlm, registry, LearnConfig(**STEPS), [{**r, "event_id": "evt_a"} for r in rows])
    second = train_candidate(tiny_vlm, registry, LearnConfig(**STEPS, start_from=first.id),
                             [{**r, "event_id": "evt_b"} for r in rows])
    assert second.event_ids == ["evt_a", "evt_b"] and second.settings["start_from"] == first.id
    with pytest.raises(HeldOutLeak, match=f"start version {first.id} was trained on 1 of the held-out"):
        train_candidate(tiny_vlm, registry, LearnConfig(**STEPS, start_from=first.id),
                        [{**r, "event_id": "evt_b"} for r in rows], {"heldout_event_ids": ["evt_a"]})
    registry.forget_events(["evt_a"])  # what the start version learnt is in the stacked one too
    assert registry.forgotten(second.id)
    with pytest.raises(InvalidInput, match="forgotten events"):
        train_candidate(tiny_vlm, registry, LearnConfig(**STEPS, start_from=first.id), rows)
    with pytest.raises(NotFound):
        train_candidate(tiny_vlm, registry, LearnConfig(**STEPS, start_from="v404"), rows)
    store.add_model_version(ModelVersion(id="v_base"))  # a version without weights of its own (the base model's)
    with pytest.raises(InvalidInput, match="model version v_base has no weights to train on top of"):
        train_candidate(tiny_vlm, registry, LearnConfig(**STEPS, start_from="v_base"), rows)
    store.close()
