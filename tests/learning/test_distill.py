"""Learning without forgetting: the distillation term keeps replayed answers at the base model's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from learning_data import assistant, rows_for, shape, user

from ilearn.config import LearnConfig
from ilearn.errors import InvalidInput
from ilearn.learning.distill import (
    REPLAY_COLUMN,
    TokenTap,
    answer_nll,
    distillation_loss,
    image_token_loss,
    label_positions,
    projector_of,
)
from ilearn.learning.recipes import sft_trainer, train
from ilearn.learning.registry import served_file
from ilearn.models.base import Message


def test_distillation_loss_is_the_kl_divergence_over_the_masked_positions():
    torch.manual_seed(0)
    teacher = torch.randn(2, 3, 5).log_softmax(-1)
    student = torch.randn(2, 3, 5).log_softmax(-1)
    mask = torch.tensor([[True, False, False], [False, False, True]])
    expected = torch.stack([torch.nn.functional.kl_div(student[b, t], teacher[b, t], log_target=True,
                                                       reduction="sum") for b, t in ((0, 0), (1, 2))]).mean()
    assert torch.allclose(distillation_loss(student, teacher, mask), expected)
    assert distillation_loss(teacher, teacher, mask).abs() < 1e-6
    assert distillation_loss(student, teacher, torch.zeros(2, 3, dtype=torch.bool)) == 0


def test_answer_nll_is_cross_entropy_on_the_labelled_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[-100, 3, 1, -100], [-100, -100, 6, 2]])
    loss, mask = answer_nll(logits.log_softmax(-1), labels)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits.reshape(-1, 7), labels.reshape(-1)))
    assert mask.sum() == 4
    assert torch.allclose(answer_nll(logits.log_softmax(-1), labels, n_tokens=8)[0], loss / 2)


REPLAY_QUESTION = "is there a shape?"


def replayed(n: int = 4) -> list[dict]:
    colours = ["red", "blue", "green"]
    return [{"messages": user(REPLAY_QUESTION) + assistant("yes"), "images": [shape(colours[i % 3])],
             REPLAY_COLUMN: True, "augment": False} for i in range(n)]


def replay_drift(vlm, path: str) -> float:
    """Mean |change| of the log-probability of the base model's own reply to the replayed questions between the
    base model and the version at `path` (the KL term weighs what the base finds likely, so that is what moves
    least)."""
    conversations = [[Message(role="user", content=REPLAY_QUESTION, image=shape(c))] for c in ("red", "blue")]
    replies = [[vlm.generate(c, max_new_tokens=3).text] for c in conversations]
    base = [vlm.score(c, r)[0] for c, r in zip(conversations, replies, strict=True)]
    vlm.set_weights(served_file(vlm, Path(path)), version="trained")
    trained = [vlm.score(c, r)[0] for c, r in zip(conversations, replies, strict=True)]
    vlm.reset()
    return sum(abs(a - b) for a, b in zip(base, trained, strict=True)) / len(base)


def test_distillation_keeps_replayed_answers_near_the_base_model(tiny_vlm, tmp_path):
    rows = rows_for("sft", wrong=True) + replayed()
    drift = {}
    for weight in (0.0, 20.0):
        settings = LearnConfig(recipe="sft", max_steps=12, batch_size=4, learning_rate=1e-2, distill=weight)
        drift[weight] = replay_drift(tiny_vlm, train(tiny_vlm, rows, settings, tmp_path / str(weight)).path)
    assert drift[20.0] < 0.5 * drift[0.0], drift


def test_sft_with_distillation_trains_the_chosen_parts(tiny_vlm, tmp_path):
    settings = LearnConfig(recipe="sft", max_steps=2, batch_size=2, learning_rate=1e-2, distill=1.0)
    result = train(tiny_vlm, rows_for("sft") + replayed(2), settings, tmp_path / "v")
    assert result.steps == 2 and result.examples == 6 and result.tokens > 0
    assert (tmp_path / "v" / "weights.safetensors").is_file()


def test_distill_must_not_be_negative():
    with pytest.raises(InvalidInput):
        LearnConfig(distill=-1.0)
    with pytest.raises(InvalidInput):
        LearnConfig(distill_image=-0.5)


def test_image_token_loss_is_the_relative_squared_error_of_the_selected_rows():
    torch.manual_seed(0)
    teacher = torch.randn(3, 4, 8)
    student = teacher + 0.1 * torch.randn(3, 4, 8)
    rows = torch.tensor([True, False, True])
    expected = torch.cat([((student[b] - teacher[b]).pow(2).sum(-1) / teacher[b].pow(2).sum(-1)) for b in (0, 2)])
    assert torch.allclose(image_token_loss(student, teacher, rows), expected.mean())
    assert image_token_loss(teacher, teacher, rows) == 0
    assert image_token_loss(student, teacher, torch.zeros(3, dtype=torch.bool)) == 0
    assert torch.allclose(image_token_loss(student[rows], teacher[rows]), expected.mean())  # None: every row


def image_tokens(vlm) -> torch.Tensor:
    """The projector's output for the replayed questions' images, as the served model computes it."""
    tap = TokenTap(projector_of(vlm.model))
    tokens = []
    for colour in ("red", "blue", "green"):
        vlm.score([Message(role="user", content=REPLAY_QUESTION, image=shape(colour))], ["yes"])
        tokens.append(tap.take())
    tap.close()
    return torch.cat(tokens)


@pytest.fixture
def taps(monkeypatch) -> list[TokenTap]:
    """Every TokenTap the trainers make, recorded (to check that training removes their hooks)."""
    made: list[TokenTap] = []

    class RecordedTap(TokenTap):
        def __init__(self, module):
            super().__init__(module)
            made.append(self)

    monkeypatch.setattr("ilearn.learning.distill.TokenTap", RecordedTap)
    return made


def test_image_token_distillation_keeps_the_replayed_images_tokens_near_the_base(tiny_vlm, tmp_path, taps):
    assert projector_of(tiny_vlm.model) is tiny_vlm.model.projector
    base = image_tokens(tiny_vlm)
    rows = rows_for("sft", wrong=True) + replayed()
    change = {}
    for weight in (0.0, 20.0):
        settings = LearnConfig(recipe="sft", max_steps=12, batch_size=4, learning_rate=1e-2, distill_image=weight)
        result = train(tiny_vlm, rows, settings, tmp_path / str(weight))
        tiny_vlm.set_weights(served_file(tiny_vlm, Path(result.path)), version=str(weight))
        change[weight] = float(image_token_loss(image_tokens(tiny_vlm), base))
        tiny_vlm.reset()
    assert change[20.0] < 0.5 * change[0.0], change
    assert len(taps) == 2 and not any(tap.module._forward_hooks for tap in taps)  # the trainer removed its hooks


def drift_and_change(vlm, rows: list[dict], settings: LearnConfig, out: Path,
                     base_tokens: torch.Tensor) -> tuple[float, float]:
    """Train `rows`, then (the replayed answers' drift, the replayed images' token change) of the version."""
    path = train(vlm, rows, settings, out).path
    drift = replay_drift(vlm, path)
    vlm.set_weights(served_file(vlm, Path(path)), version=out.name)
    change = float(image_token_loss(image_tokens(vlm), base_tokens))
    vlm.reset()
    return drift, change


def replayed_pairs(n: int = 4) -> list[dict]:
    """Replayed general questions as dpo rows (`update.replay_rows` makes them so): the right answer chosen."""
    return [{"prompt": user(REPLAY_QUESTION), "chosen": assistant("yes"), "rejected": assistant("no"),
             "images": [shape(c)], REPLAY_COLUMN: True, "augment": False}
            for c in (["red", "blue", "green"] * n)[:n]]


def test_dpo_distillation_keeps_replayed_answers_and_image_tokens_near_the_base(tiny_vlm, tmp_path, taps):
    """dpo with distill / distill_image: the replayed rows' answers and image tokens move less than without."""
    base_tokens = image_tokens(tiny_vlm)
    rows = rows_for("dpo", wrong=True) + replayed_pairs()
    drift, change = {}, {}
    for weight in (0.0, 20.0):
        settings = LearnConfig(recipe="dpo", max_steps=12, batch_size=4, learning_rate=1e-2, dpo_sft_weight=1.0,
                               distill=weight, distill_image=weight)
        drift[weight], change[weight] = drift_and_change(tiny_vlm, rows, settings, tmp_path / str(weight),
                                                         base_tokens)
    assert drift[20.0] < 0.75 * drift[0.0], drift  # the replayed pairs' own preference term moves them too
    assert change[20.0] < 0.5 * change[0.0], change
    assert len(taps) == 2 and not any(tap.module._forward_hooks for tap in taps)  # the trainer removed its hooks


def replayed_kto(n: int = 4) -> list[dict]:
    """Replayed general questions as kto rows (`update.replay_rows` makes them so): the right answer desirable."""
    return [{"prompt": user(REPLAY_QUESTION), "completion": assistant("yes"), "label": True,
             "images": [shape(c)], REPLAY_COLUMN: True, "augment": False}
            for c in (["red", "blue", "green"] * n)[:n]]


def test_kto_distillation_keeps_replayed_answers_and_image_tokens_near_the_base(tiny_vlm, tmp_path, taps):
    """kto with distill: the replayed rows' answers move less than without; with distill_image: their image
    tokens. Each term on its own (together on the tiny model at this rate, the held image tokens leave the
    language adapter to move the answers more: 0.61 against 0.09 without either; the fact experiment measures
    the pair at its own settings)."""
    base_tokens = image_tokens(tiny_vlm)
    rows = rows_for("kto", wrong=True) + replayed_kto()
    drift, change = {}, {}
    for terms in ({}, {"distill": 20.0}, {"distill_image": 20.0}):
        settings = LearnConfig(recipe="kto", max_steps=12, batch_size=4, learning_rate=1e-2, **terms)
        name = next(iter(terms), "none")
        drift[name], change[name] = drift_and_change(tiny_vlm, rows, settings, tmp_path / name, base_tokens)
    assert drift["distill"] < 0.5 * drift["none"], drift
    assert change["distill_image"] < 0.5 * change["none"], change
    assert len(taps) == 2 and not any(tap.module._forward_hooks for tap in taps)  # the trainer removed its hooks


@pytest.mark.parametrize("recipe", ["dpo", "kto"])
def test_a_preference_recipe_with_lora_alone_trains_without_the_terms(tiny_vlm, tmp_path, caplog, recipe):
    """No part in full: no frozen base to distil from; the terms are left out and the log says so."""
    settings = LearnConfig(recipe=recipe, trainable=("language",), max_steps=2, batch_size=2, learning_rate=1e-2,
                           distill=5.0)
    replayed_rows = replayed_pairs(2) if recipe == "dpo" else replayed_kto(2)
    result = train(tiny_vlm, rows_for(recipe) + replayed_rows, settings, tmp_path / "v")
    assert result.steps == 2
    assert f"{recipe} with LoRA alone has no frozen base model to distil from" in caplog.text


def test_label_positions_are_those_predicting_a_labelled_token_in_any_row():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, -100, -100, 7, 8]])
    assert label_positions(labels).tolist() == [1, 2, 3]


@pytest.mark.parametrize("kind", ["tiny", "qwen2_vl"])
def test_the_distilling_loss_equals_the_whole_sequence_loss(tiny_vlm, tiny_hf_dirs, tmp_path, kind):
    """Logits of the answer positions only and a teacher run on the replayed rows only (where each tensor input
    is one entry per row; Qwen2-VL's patches are not, so its teacher runs the whole batch) give the loss of
    whole-sequence logits with the teacher on the whole batch."""
    from ilearn.config import ModelConfig
    from ilearn.models import load_model

    vlm = tiny_vlm if kind == "tiny" else load_model(ModelConfig(backend="hf", path=str(tiny_hf_dirs[kind])))
    rows = rows_for("sft") + replayed(3)
    settings = LearnConfig(recipe="sft", batch_size=len(rows), max_steps=1, distill=2.0, distill_image=3.0)
    trainer, prepared, _ = sft_trainer(vlm, rows, settings, tmp_path / "v")
    seen = []
    hook = trainer.teacher.register_forward_pre_hook(lambda m, a, kw: seen.append(len(kw["input_ids"])),
                                                     with_kwargs=True)
    try:
        model = prepared.model.eval()
        batch = dict(next(iter(trainer.get_train_dataloader())))
        replay = batch[REPLAY_COLUMN].bool()
        assert 0 < int(replay.sum()) < len(replay)
        loss = trainer.compute_loss(model, dict(batch))

        inputs = {k: v for k, v in batch.items() if k not in (REPLAY_COLUMN, "labels")}
        log_p = model(**inputs, use_cache=False).logits[:, :-1].float().log_softmax(-1)
        expected, mask = answer_nll(log_p, batch["labels"][:, 1:])
        expected = expected + 2.0 * distillation_loss(
            log_p, trainer.teacher(**inputs, use_cache=False).logits[:, :-1].float().log_softmax(-1),
            mask & replay[:, None])
        if trainer.taps:
            student_tokens, teacher_tokens = (tap.take() for tap in trainer.taps)
            expected = expected + 3.0 * image_token_loss(student_tokens, teacher_tokens, replay)
    finally:
        hook.remove()
        for tap in trainer.taps or ():
            tap.close()
    assert torch.allclose(loss, expected, atol=1e-5), (float(loss), float(expected))
    assert seen[0] == (int(replay.sum()) if kind == "tiny" else len(replay))
