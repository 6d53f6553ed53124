"""Training-time augmentation, per-part learning rates, frozen BatchNorm statistics and event repeats."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from learning_data import rows_for, shape

from ilearn.config import LearnConfig
from ilearn.errors import InvalidInput
from ilearn.learning.augment import AugmentingCollator, augment_view
from ilearn.learning.recipes import keep_norm_statistics, mark_augment, param_groups, setup, train

STEPS = dict(max_steps=2, batch_size=2, learning_rate=1e-2)


def test_augment_view_keeps_size_and_hues_but_changes_pixels():
    image = shape("red", 64)
    rng = random.Random(0)
    views = [augment_view(image, rng) for _ in range(5)]
    assert all(v.size == image.size and v.mode == "RGB" for v in views)
    assert all(not np.array_equal(np.asarray(v), np.asarray(image)) for v in views)
    assert len({np.asarray(v).tobytes() for v in views}) == 5  # every call a new view
    for view in views:  # the red disc stays red: its centre pixel is still mostly red
        r, g, b = np.asarray(view, dtype=int)[32, 32]
        assert r > 120 and r > 2 * g and r > 2 * b, (r, g, b)
    again = [augment_view(image, random.Random(0)) for _ in range(1)]
    assert np.array_equal(np.asarray(again[0]), np.asarray(views[0]))  # seeded


def test_collator_augments_only_marked_rows_and_drops_the_column():
    seen: list[list[dict]] = []
    collate = AugmentingCollator(lambda examples: seen.append(examples) or len(examples), seed=0)
    image = shape("blue", 32)
    assert collate([{"images": [image], "augment": True}, {"images": [image], "augment": False},
                    {"images": [image]}]) == 3
    out = seen[0]
    assert all("augment" not in e for e in out)
    assert not np.array_equal(np.asarray(out[0]["images"][0]), np.asarray(image))
    assert out[1]["images"][0] is image and out[2]["images"][0] is image


def test_mark_augment_respects_replay_rows_and_the_switch():
    rows = [*rows_for("sft", 2), {**rows_for("sft", 1)[0], "augment": False}, {"messages": [], "images": []}]
    marked = mark_augment(rows, LearnConfig(augment=True))
    assert [r["augment"] for r in marked] == [True, True, False, False]
    assert all("augment" not in r for r in mark_augment(rows, LearnConfig(augment=False)))


@pytest.mark.parametrize("recipe", ["sft", "dpo", "kto", "reinforce"])
def test_every_recipe_trains_with_augmentation_and_part_learning_rates(tiny_vlm, tmp_path, recipe):
    settings = LearnConfig(recipe=recipe, augment=True, trainable=("vision", "projector", "language"),
                           learning_rate_vision=1e-3, learning_rate_projector=5e-3, **STEPS)
    result = train(tiny_vlm, rows_for(recipe), settings, tmp_path)
    assert result.steps == 2 and result.tokens > 0


def test_param_groups_follow_the_parts(tiny_vlm):
    settings = LearnConfig(trainable=("vision", "projector", "language"), learning_rate=1e-3,
                           learning_rate_vision=1e-5, learning_rate_projector=1e-4)
    prepared = setup(tiny_vlm, settings)
    groups = {g["lr"]: sum(p.numel() for p in g["params"]) for g in param_groups(prepared, settings)}
    vision = sum(p.numel() for p in prepared.model.get_base_model().vision.parameters())
    projector = sum(p.numel() for p in prepared.model.get_base_model().projector.parameters())
    assert groups[1e-5] == vision and groups[1e-4] == projector and groups[1e-3] > 0  # LoRA adapters
    assert sum(groups.values()) == prepared.count()[0]


def instance_vlm():
    """A composed chat model whose vision encoder has the instance branch (EfficientNet trunk at 96 px)."""
    from ilearn.config import ModelConfig
    from ilearn.models.composed import ComposedConfig, ComposedProcessor, ComposedVLM, make_image_processor
    from ilearn.models.composed_chat import ComposedVLMChat
    from ilearn.models.tiny import build_tiny

    tiny_model, tiny_proc = build_tiny()
    cfg = ComposedConfig(vision_type="efficientnet-lite0", vision_dim=1280, image_size=96, image_pool=2,
                         image_token_id=tiny_model.config.image_token_id, text_config=tiny_model.config.text_config,
                         instance_dim=128)
    torch.manual_seed(0)
    model = ComposedVLM(cfg).eval()
    processor = ComposedProcessor(make_image_processor(cfg), tiny_proc.tokenizer, num_image_tokens=cfg.num_image_tokens)
    return ComposedVLMChat(model, processor, ModelConfig(backend="tiny"), name="instance-test")


def test_the_instance_path_has_its_own_rate_and_learns(tmp_path):
    vlm = instance_vlm()
    settings = LearnConfig(recipe="sft", trainable=("projector", "language"), learning_rate=1e-3,
                           learning_rate_projector=1e-4, learning_rate_instance=5e-2, max_steps=3, batch_size=2,
                           replay=0)
    prepared = setup(vlm, settings)
    groups = {g["lr"]: sum(p.numel() for p in g["params"]) for g in param_groups(prepared, settings)}
    projector = prepared.model.get_base_model().projector
    path = sum(p.numel() for p in projector.instance.parameters())
    assert groups[5e-2] == path and groups[1e-4] == sum(p.numel() for p in projector.parameters()) - path
    assert groups[1e-3] > 0  # LoRA adapters
    assert not projector.instance[-1].weight.any()  # the path starts silent
    result = train(vlm, rows_for("sft", n=4), settings, tmp_path / "v")
    from safetensors.torch import load_file

    trained = {k: v for f in Path(result.path).rglob("*.safetensors") for k, v in load_file(str(f)).items()}
    weight = [v for k, v in trained.items() if k.endswith("projector.instance.3.weight")]
    assert weight and weight[0].abs().max() > 0  # and it trained


def test_batchnorm_keeps_its_statistics_while_training():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    assert keep_norm_statistics(model) == 1
    before = model[1].running_mean.clone()
    model.train()
    assert not model[1].training and model[0].training
    model(torch.randn(2, 3, 8, 8) * 5 + 3).sum().backward()
    assert torch.equal(model[1].running_mean, before) and model[1].weight.grad is not None


def test_new_settings_are_validated():
    with pytest.raises(InvalidInput):
        LearnConfig(event_repeats=0)
    with pytest.raises(InvalidInput):
        LearnConfig(learning_rate_vision=-1.0)
    with pytest.raises(InvalidInput):
        LearnConfig(learning_rate_instance=-1.0)
