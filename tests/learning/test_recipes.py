"""Recipes: a few steps on tiny models, then the trainable parts changed and the frozen ones did not."""

from __future__ import annotations

import copy

import pytest
import torch
from learning_data import QUESTION, rows_for

from ilearn.config import LearnConfig, ModelConfig
from ilearn.errors import InvalidInput
from ilearn.learning.parts import ATTENTION_PROJECTIONS, locate_parts, part_of
from ilearn.learning.recipes import (
    desirable_nll,
    kto_weights,
    reward_of,
    reward_weighted_loss,
    to_dataset,
    train,
)

STEPS = dict(max_steps=2, batch_size=2, learning_rate=1e-2)


def changed_keys(vlm, path) -> tuple[set[str], dict[str, str]]:
    """Keys of the base state dict that the saved version changes (LoRA merged), and the model's part paths."""
    from ilearn.learning.parts import apply_trained

    base = copy.deepcopy(vlm.model)
    located = locate_parts(base)
    before = {k: v.detach().clone() for k, v in base.state_dict().items()}
    model = apply_trained(base, path)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    after = model.state_dict()
    assert set(after) == set(before)
    return {k for k in before if not torch.equal(before[k], after[k])}, located


def check_parts(vlm, result, trainable: tuple[str, ...], lora: tuple[str, ...]) -> None:
    changed, located = changed_keys(vlm, result.path)
    parts_changed = {part_of(k, located) for k in changed}
    assert parts_changed == set(trainable), (parts_changed, trainable)
    if "language" in lora:  # LoRA on the language model touches only its attention projections
        lang = [k for k in changed if part_of(k, located) == "language"]
        assert lang and all(k.split(".")[-2] in ATTENTION_PROJECTIONS for k in lang)


@pytest.mark.parametrize("recipe", ["sft", "dpo", "kto", "reinforce"])
def test_every_recipe_trains_only_the_chosen_parts(tiny_vlm, tmp_path, recipe):
    serving = {k: v.clone() for k, v in tiny_vlm.model.state_dict().items()}
    settings = LearnConfig(recipe=recipe, **STEPS)  # default: projector in full + language LoRA
    result = train(tiny_vlm, rows_for(recipe), settings, tmp_path / recipe)
    assert result.steps == 2 and result.tokens > 0 and result.tokens_per_s > 0
    assert 0 < result.trainable_params < result.total_params
    check_parts(tiny_vlm, result, ("projector", "language"), ("language",))
    assert (tmp_path / recipe / "adapter_config.json").is_file()
    assert (tmp_path / recipe / "weights.safetensors").is_file()
    assert not (tmp_path / recipe / "ref").exists() and not (tmp_path / recipe / "trainer").exists()
    # the model that serves answers is never touched by training
    assert all(torch.equal(serving[k], v) for k, v in tiny_vlm.model.state_dict().items())


@pytest.mark.parametrize("recipe", ["sft", "dpo", "kto", "reinforce"])
def test_every_recipe_trains_on_its_events_with_replayed_general_rows(tiny_vlm, tmp_path, recipe):
    from ilearn.learning.update import training_set

    settings = LearnConfig(recipe=recipe, replay=4, **STEPS)
    rows = training_set(rows_for(recipe), settings)
    assert len(rows) == len(rows_for(recipe)) + 4
    result = train(tiny_vlm, rows, settings, tmp_path / recipe)
    assert result.examples == len(rows) and result.steps == 2
    check_parts(tiny_vlm, result, ("projector", "language"), ("language",))


@pytest.mark.parametrize("trainable,lora", [
    (("vision",), ()),
    (("projector",), ()),
    (("language",), ("language",)),
    (("vision",), ("vision",)),
    (("vision", "projector", "language"), ()),
])
def test_part_subsets(tiny_vlm, tmp_path, trainable, lora):
    result = train(tiny_vlm, rows_for("sft"), LearnConfig(trainable=trainable, lora=lora, **STEPS), tmp_path)
    assert result.parts == {"full": [p for p in trainable if p not in lora], "lora": list(lora)}
    check_parts(tiny_vlm, result, trainable, lora)
    assert (tmp_path / "adapter_config.json").is_file() == bool(lora)


@pytest.mark.parametrize("recipe", ["dpo", "kto"])
def test_full_fine_tuning_with_a_reference_copy(tiny_vlm, tmp_path, recipe):
    settings = LearnConfig(recipe=recipe, trainable=("language",), lora=(), **STEPS)
    result = train(tiny_vlm, rows_for(recipe), settings, tmp_path)
    check_parts(tiny_vlm, result, ("language",), ())


def test_reinforce_weights_the_loss_by_reward(tiny_vlm, tmp_path):
    rows = rows_for("reinforce")
    neutral = [{**r, "label": "neutral"} for r in rows]  # reward 0: no gradient, nothing may change
    settings = LearnConfig(recipe="reinforce", trainable=("projector",), lora=(), **STEPS)
    assert changed_keys(tiny_vlm, train(tiny_vlm, neutral, settings, tmp_path / "n").path)[0] == set()
    assert changed_keys(tiny_vlm, train(tiny_vlm, rows, settings, tmp_path / "p").path)[0]


def test_reward_remap_follows_respect():
    s = LearnConfig()
    assert [reward_of({"label": x}, s) for x in ("positive", "negative", "neutral", True)] == [1.0, -0.1, 0.0, 1.0]
    assert reward_of({"reward": 0.5, "label": "negative"}, s) == 0.5
    with pytest.raises(InvalidInput):
        reward_of({"label": "great"}, s)


def test_bad_datasets_get_clear_errors(tiny_vlm, tmp_path):
    with pytest.raises(InvalidInput, match="no training examples"):
        train(tiny_vlm, [], LearnConfig(**STEPS), tmp_path)
    with pytest.raises(InvalidInput, match="lack column"):
        train(tiny_vlm, rows_for("sft"), LearnConfig(recipe="dpo", **STEPS), tmp_path)
    only_good = [r for r in rows_for("kto") if r["label"]]
    with pytest.raises(InvalidInput, match="both desirable and undesirable"):
        train(tiny_vlm, only_good, LearnConfig(recipe="kto", **STEPS), tmp_path)


@pytest.mark.parametrize("kind,language", [("llava", "model.language_model"), ("qwen2_vl", "model.language_model"),
                                           ("idefics3", "model.text_model")])
def test_sft_on_hf_families(tiny_hf_dirs, tmp_path, kind, language):
    from ilearn.models import load_model

    vlm = load_model(ModelConfig(backend="hf", path=str(tiny_hf_dirs[kind])))
    assert locate_parts(vlm.model)["language"] == language
    result = train(vlm, rows_for("sft"), LearnConfig(**STEPS), tmp_path)
    check_parts(vlm, result, ("projector", "language"), ("language",))


@pytest.mark.parametrize("recipe", ["dpo", "kto"])
def test_preference_recipes_on_llava(tiny_hf_dirs, tmp_path, recipe):
    from ilearn.models import load_model

    vlm = load_model(ModelConfig(backend="hf", path=str(tiny_hf_dirs["llava"])))
    result = train(vlm, rows_for(recipe), LearnConfig(recipe=recipe, **STEPS), tmp_path)
    check_parts(vlm, result, ("projector", "language"), ("language",))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("recipe", ["sft", "dpo", "kto", "reinforce"])
def test_recipes_on_cuda_in_bf16(tmp_path, recipe):
    from ilearn.models import load_model

    vlm = load_model(ModelConfig(backend="tiny", device="cuda", dtype="bfloat16"))
    result = train(vlm, rows_for(recipe), LearnConfig(recipe=recipe, **STEPS), tmp_path)
    assert result.steps == 2 and result.tokens > 0
    assert next(vlm.model.parameters()).dtype == torch.bfloat16
    check_parts(vlm, result, ("projector", "language"), ("language",))


@pytest.mark.parametrize("kind", ["sft", "dpo", "kto", "rewards"])
def test_recipes_take_the_rows_of_the_learning_datasets(tiny_vlm, tmp_path, kind):
    from learning_data import shape

    from ilearn.learning import datasets
    from ilearn.types import Event, ImageRef, Label

    events = [Event(image=ImageRef(c), question=QUESTION, answer=c, user_id="u", rejected=[w], label=Label.NEGATIVE)
              for c, w in (("red", "blue"), ("blue", "green"), ("green", "red"))]
    rows = getattr(datasets, f"build_{kind}")(events, lambda ref: shape(ref.sha256), with_ids=True)
    assert rows
    recipe = {"rewards": "reinforce"}.get(kind, kind)
    result = train(tiny_vlm, rows, LearnConfig(recipe=recipe, **STEPS), tmp_path)
    assert result.examples == len(rows) and result.steps == 2


@pytest.mark.parametrize("labels, expected", [
    ([True] + [False] * 4, (1.0, 0.25)),  # many rejections: each counts a quarter
    ([True] * 3 + [False], (1 / 3, 1.0)),
    ([True, False], (1.0, 1.0)),
    ([True, True], (1.0, 1.0)),
])
def test_kto_weights_balance_the_two_sides_within_trls_advised_range(labels, expected):
    desirable, undesirable = kto_weights(labels)
    assert (desirable, undesirable) == pytest.approx(expected)
    n_d, n_u = sum(labels), len(labels) - sum(labels)
    if n_d and n_u:
        assert 1.0 <= desirable * n_d / (undesirable * n_u) <= 4 / 3


@pytest.mark.parametrize("labels, ratio, expected", [
    ([True] * 4 + [False] * 2, 0.25, (1.0, 0.5)),  # the two rejections weigh a quarter of the four acceptances
    ([True] + [False] * 4, 0.1, (1.0, 0.025)),
    ([True] * 4 + [False], 2.0, (0.125, 1.0)),  # one rejection weighing twice four acceptances: they shrink
    ([True, True], 0.1, (1.0, 1.0)),  # one kind only: nothing to weigh
])
def test_kto_undesirable_ratio_sets_the_rejected_rows_share(labels, ratio, expected):
    desirable, undesirable = kto_weights(labels, ratio)
    n_d, n_u = sum(labels), len(labels) - sum(labels)
    assert max(desirable, undesirable) == 1.0
    if n_d and n_u:
        assert undesirable * n_u / (desirable * n_d) == pytest.approx(ratio)
    assert (desirable, undesirable) == pytest.approx(expected)
    with pytest.raises(InvalidInput, match="kto_undesirable_ratio"):
        LearnConfig(kto_undesirable_ratio=0.0)


def test_kto_trains_at_the_undesirable_ratio_its_settings_name(tiny_vlm, tmp_path, monkeypatch):
    from ilearn.learning import recipes

    seen = []
    made = recipes.trainer_args
    monkeypatch.setattr(recipes, "trainer_args", lambda cls, *a, **kw: seen.append(kw) or made(cls, *a, **kw))
    rows = rows_for("kto")
    labels = [r["label"] for r in rows]
    assert set(labels) == {True, False}
    train(tiny_vlm, rows, LearnConfig(recipe="kto", kto_undesirable_ratio=0.25, **STEPS), tmp_path)
    (kw,) = seen
    assert (kw["desirable_weight"], kw["undesirable_weight"]) == pytest.approx(kto_weights(labels, 0.25))


def test_reinforce_loss_is_reward_weighted_nll_for_positives_and_bounded_for_negatives():
    log_p = torch.log(torch.tensor([[0.5, 0.25, 1.0]]))  # the last token is ignored (log p 0)
    mask = torch.tensor([[True, True, False]])
    positive = reward_weighted_loss(log_p, mask, torch.tensor([1.0]), 2)
    assert positive.item() == pytest.approx(-(torch.log(torch.tensor(0.5)) + torch.log(torch.tensor(0.25))) / 2)
    negative = reward_weighted_loss(log_p, mask, torch.tensor([-0.1]), 2)
    assert negative.item() == pytest.approx(-0.1 * (torch.log(torch.tensor(0.5)) + torch.log(torch.tensor(0.75))) / 2)
    # plain REINFORCE would reward making a rejected answer ever less likely without end; this stops at zero
    vanishing = torch.log(torch.tensor([[1e-9, 1e-9, 1.0]]))
    assert 0.0 <= reward_weighted_loss(vanishing, mask, torch.tensor([-0.1]), 2).item() < 1e-8
    assert reward_weighted_loss(log_p, mask, torch.tensor([0.0]), 2).item() == 0.0


def test_repeated_rows_are_encoded_once_and_kept_in_order():
    rows = [{"prompt": r["messages"][:1], "completion": r["messages"][1:], "images": r["images"]}
            for r in rows_for("sft", n=3)]
    repeated = rows * 4 + [dict(rows[0], completion=[{"role": "assistant",
                                                      "content": [{"type": "text", "text": "other"}]}])]
    dataset = to_dataset(repeated, ("prompt", "completion"))
    assert len(dataset) == 13
    assert len(dataset.data) == 4  # three rows and the one with another answer, stored once each
    answers = [r["completion"][0]["content"][0]["text"] for r in repeated]
    assert [r["completion"][0]["content"][0]["text"] for r in dataset] == answers
    assert dataset[3]["images"][0].size == rows[0]["images"][0].size


def test_kto_reads_the_later_rows_within_its_first_steps(tiny_vlm, tmp_path, monkeypatch):
    """TRL's KTO reads its dataset in order (its KL term pairs neighbours in a fixed-order batch), so kto shuffles
    the rows first: the replayed general rows that `update.training_set` puts after the repeated events are read
    within the first steps, not only after a whole epoch of events."""
    from learning_data import assistant

    from ilearn.learning import recipes

    handed = {}
    make = recipes.preference_trainer
    monkeypatch.setattr(recipes, "preference_trainer",
                        lambda *a, **kw: handed.update(kw) or make(*a, **kw))
    events = rows_for("kto") * 8  # 32 rows of events, repeated, then 8 rows that come last
    later = [{**r, "completion": assistant("later"), "label": True} for r in rows_for("kto", n=8)]
    train(tiny_vlm, events + later, LearnConfig(recipe="kto", replay=0, **STEPS), tmp_path)
    read = [row["completion"][0]["content"][0]["text"] for row in handed["train_dataset"]]
    assert sorted(read) == sorted(r["completion"][0]["content"][0]["text"] for r in events + later)
    assert "later" in read[:20]  # in order, the first 32 rows would all be events
    assert handed["args"].train_sampling_strategy == "sequential"  # why it must be shuffled before


def test_desirable_nll_is_the_desirable_rows_mean_answer_token_nll():
    # TRL's fused head: the labels' log-probabilities, shifted (position t predicts labels[:, t + 1]), 0 elsewhere
    labels = torch.tensor([[5, -100, 7, 8], [5, -100, 9, -100], [5, -100, 4, 4]])
    log_p = torch.tensor([[0.0, -1.0, -2.0], [0.0, -3.0, 0.0], [0.0, -5.0, -7.0]])
    both = desirable_nll(log_p, labels, torch.tensor([True, True, False]))
    assert both.item() == pytest.approx((1.0 + 2.0 + 3.0) / 3)  # three answer tokens of the two desirable rows
    assert desirable_nll(log_p, labels, torch.tensor([False, False, True])).item() == pytest.approx(6.0)
    none = desirable_nll(log_p.requires_grad_(), labels, torch.tensor([False, False, False]))
    assert none.item() == 0.0 and none.requires_grad


def desirable_log_likelihood(vlm, path) -> float:
    """Mean log-probability the version at `path` gives the kto rows' desirable answers."""
    from pathlib import Path

    from ilearn.learning.registry import served_file
    from ilearn.models.base import Message

    vlm.set_weights(served_file(vlm, Path(path)), version="trained")
    try:
        good = [r for r in rows_for("kto") if r["label"]]
        return sum(vlm.score([Message(role="user", content=QUESTION, image=r["images"][0])],
                             [r["completion"][0]["content"][0]["text"]])[0] for r in good) / len(good)
    finally:
        vlm.reset()


def test_kto_sft_weight_raises_the_desirable_answers_beyond_kto_alone(tiny_vlm, tmp_path):
    """KTO's sigmoid saturates once a desirable answer is a margin above the reference; the SFT term
    (`learn.kto_sft_weight`) keeps raising it, read from KTO's own forward (no second pass)."""
    likelihood = {}
    for weight in (0.0, 5.0):
        settings = LearnConfig(recipe="kto", max_steps=8, batch_size=4, learning_rate=1e-2, replay=0,
                               kto_sft_weight=weight)
        likelihood[weight] = desirable_log_likelihood(tiny_vlm, train(tiny_vlm, rows_for("kto"), settings,
                                                                      tmp_path / str(weight)).path)
    assert likelihood[5.0] > likelihood[0.0] + 0.5, likelihood


def test_kto_sft_term_is_the_desirable_rows_answer_nll_of_ktos_own_forward(tiny_vlm, tmp_path, monkeypatch):
    """The loss with `kto_sft_weight` w is KTO's plus w times the desirable rows' mean answer-token NLL, the NLL
    computed here from a plain forward of the same batch (the hook caught the right pass and the right rows)."""
    from ilearn.learning import recipes
    from ilearn.learning.distill import KTO_NOT_MODEL_INPUTS, answer_nll

    handed = []
    make = recipes.preference_trainer
    monkeypatch.setattr(recipes, "preference_trainer", lambda *a, **kw: handed.append(make(*a, **kw)) or handed[-1])
    settings = LearnConfig(recipe="kto", max_steps=1, batch_size=4, learning_rate=1e-2, replay=0, kto_sft_weight=3.0)
    train(tiny_vlm, rows_for("kto"), settings, tmp_path)
    (trainer,) = handed
    model = trainer.model.eval()
    batch = next(iter(trainer.get_train_dataloader()))
    desirable = torch.as_tensor(batch["label"], dtype=torch.bool)
    assert desirable.any() and not desirable.all()
    with_term = trainer.compute_loss(model, dict(batch))  # with gradients, as in training
    trainer.sft_weight = 0.0
    alone = trainer.compute_loss(model, dict(batch))
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k not in KTO_NOT_MODEL_INPUTS}
        labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        log_p = model(**inputs, use_cache=False).logits.float().log_softmax(-1)
        nll, _ = answer_nll(log_p[desirable][:, :-1], labels[desirable][:, 1:])
    assert with_term.item() == pytest.approx(alone.item() + 3.0 * nll.item(), rel=1e-4)
    assert nll.item() > 0.1


def test_kto_sft_weight_trains_with_the_distillation_terms(tiny_vlm, tmp_path, monkeypatch):
    """Both extras together: the SFT term on the desirable rows and the distillation terms on the replayed rows,
    through one trainer."""
    from ilearn.learning import recipes
    from ilearn.learning.distill import REPLAY_COLUMN

    handed = []
    make = recipes.preference_trainer
    monkeypatch.setattr(recipes, "preference_trainer", lambda *a, **kw: handed.append(make(*a, **kw)) or handed[-1])
    rows = rows_for("kto") + [{**r, "label": True, REPLAY_COLUMN: True} for r in rows_for("kto") if r["label"]]
    settings = LearnConfig(recipe="kto", max_steps=2, batch_size=4, learning_rate=1e-2, distill=1.0,
                           kto_sft_weight=2.0)
    result = train(tiny_vlm, rows, settings, tmp_path)
    assert result.steps == 2
    (trainer,) = handed
    assert type(trainer).__name__ == "KTOWithSFTTrainer" and trainer.sft_weight == 2.0
    assert "DistillingKTOTrainer" in [c.__name__ for c in type(trainer).__mro__]


def test_kto_sft_weight_must_not_be_negative():
    with pytest.raises(InvalidInput, match="kto_sft_weight"):
        LearnConfig(kto_sft_weight=-1.0)
