"""Training recipes over TRL's trainers: `sft`, `dpo`, `kto` and `reinforce`.

Each recipe reads top to bottom: setup (a fresh copy of the base model, frozen except the chosen parts, LoRA
where asked), data (TRL's standard columns, images included), train (the TRL trainer, `processing_class`
passed explicitly), save (a PEFT adapter or the trained parts' tensors, never a full model copy).

A candidate is trained from the base weights on its whole dataset snapshot, so a version is "base + its own
adapter", unless `train` is given a version to start from (`learn.start_from`, as User-VLM trains DPO after SFT):
then that version's weights are the starting point (its LoRA merged) and DPO / KTO's reference, and the saved
version holds both (`ilearn.learning.parts.stack_onto`): still one adapter and the full parts' tensors. Runs on
CPU in float32 and on CUDA (bf16 mixed precision where the GPU supports it); the device comes from the wrapper's
ModelConfig.

    train(vlm, rows, LearnConfig(recipe="sft"), "versions/v3") -> TrainResult
    train(vlm, rows, LearnConfig(recipe="dpo"), "versions/v4", start="versions/v3")
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ilearn.config import LearnConfig
from ilearn.errors import InvalidInput
from ilearn.learning.augment import AUGMENT_COLUMN, AugmentingCollator
from ilearn.learning.base import Recipe, TrainResult
from ilearn.learning.collate import collate_with
from ilearn.learning.parts import (
    PreparedModel,
    apply_trained,
    canonical_name,
    make_trl_compatible,
    part_of,
    prepare,
    save_trained,
    stack_onto,
)
from ilearn.types import Label

if TYPE_CHECKING:
    from ilearn.models.base import TrainableModel

logger = logging.getLogger(__name__)


def trains_on(dataset: str) -> Callable[[Callable[..., TrainResult]], Recipe]:
    """Mark a recipe function with the dataset it trains on (`Recipe.dataset`, a key of
    `ilearn.learning.datasets.BUILDERS`): the one place that says which data each recipe reads."""

    def mark(fn: Callable[..., TrainResult]) -> Recipe:
        fn.dataset = dataset  # type: ignore[attr-defined]
        return fn  # type: ignore[return-value]

    return mark


# -- setup ------------------------------------------------------------------------------------------------
def base_model(vlm: TrainableModel) -> torch.nn.Module:
    """A trainable copy of the weights training starts from: the wrapper's base weights (a fresh load when the
    wrapper serves a trained version), with the version `train` was told to start from applied (its LoRA merged)."""
    if vlm.version == "base":
        model = copy.deepcopy(vlm.model)
    else:
        from ilearn.models import load_model

        logger.info("the model serves version %s; loading fresh base weights to train from", vlm.version)
        model = load_model(vlm.config).model
    start = _START.get()
    if start is not None:
        model = apply_trained(model, start)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
    return make_trl_compatible(model)


def setup(vlm: TrainableModel, settings: LearnConfig) -> PreparedModel:
    """The base model, frozen except `settings.trainable` (LoRA for the parts in `settings.lora`)."""
    torch.manual_seed(settings.seed)
    model = base_model(vlm)
    prepared = prepare(model, tuple(settings.trainable), tuple(settings.lora), lora_r=settings.lora_r,
                       lora_alpha=settings.lora_alpha)
    if mixed_precision(model_device(vlm)):  # bf16 autocast: keep float32 master copies of what trains
        for param in prepared.model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()
    keep_norm_statistics(prepared.model)
    return prepared


def keep_norm_statistics(model: torch.nn.Module) -> int:
    """Keep every BatchNorm layer in eval mode while training (its weights still train): batches of a few
    near-identical views would overwrite the running statistics the general images rely on. Returns how many."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.train = _always_eval.__get__(norm)
        norm.eval()
    return len(norms)


def _always_eval(self: torch.nn.Module, mode: bool = True) -> torch.nn.Module:
    return torch.nn.Module.train(self, False)


def param_groups(prepared: PreparedModel, settings: LearnConfig) -> list[dict[str, Any]]:
    """The trainable parameters grouped by learning rate: `learning_rate_vision` / `learning_rate_projector` for
    those parts (LoRA adapters included) where set, `learning_rate_instance` for the projector's instance path,
    `learning_rate` for the rest."""
    rates = {"vision": settings.learning_rate_vision or settings.learning_rate,
             "projector": settings.learning_rate_projector or settings.learning_rate}
    instance_rate = settings.learning_rate_instance or rates["projector"]
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for name, param in prepared.model.named_parameters():
        if param.requires_grad:
            canonical = canonical_name(name)
            part = part_of(canonical, prepared.located)
            if part == "projector" and canonical.startswith(prepared.located["projector"] + ".instance."):
                rate = instance_rate
            else:
                rate = rates.get(part or "", settings.learning_rate)
            groups.setdefault(rate, []).append(param)
    return [{"params": params, "lr": lr} for lr, params in groups.items()]


def optimizer(prepared: PreparedModel, settings: LearnConfig) -> torch.optim.Optimizer | None:
    """AdamW over `param_groups` when a part has its own learning rate, else None (the trainer builds its own)."""
    if not (settings.learning_rate_vision or settings.learning_rate_projector or settings.learning_rate_instance):
        return None
    return torch.optim.AdamW(param_groups(prepared, settings), lr=settings.learning_rate, weight_decay=0.0)


def mixed_precision(device: torch.device) -> bool:
    """bf16 autocast: on a CUDA GPU that supports it (never on CPU, where it is slow or missing)."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def trainer_args(config_cls: type, settings: LearnConfig, out_dir: Path, device: torch.device, **extra: Any):
    """TRL config for this run: no hub, no reports, no checkpoints; bf16 only on a CUDA GPU that supports it."""
    cuda = device.type == "cuda"
    return config_cls(
        output_dir=str(out_dir / "trainer"),  # TRL's scratch folder, removed after training
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        seed=settings.seed,
        bf16=mixed_precision(device),
        fp16=False,
        use_cpu=not cuda,
        report_to="none",
        push_to_hub=False,
        save_strategy="no",
        logging_steps=max(1, settings.max_steps // 10) if settings.max_steps else 10,
        dataloader_num_workers=0,
        disable_tqdm=True,  # progress goes to the logger (LogCallback), never to stdout
        # several processes (ilearn.learning.distributed): a process whose share of a batch has no image leaves
        # the vision encoder unused; DDP must not wait for its gradients (the default here, said explicitly)
        ddp_find_unused_parameters=True,
        **no_checkpointing(config_cls),
        **({"remove_unused_columns": False} if settings.augment else {}) | extra,  # the collator reads `augment`
    )


def no_checkpointing(config_cls: type) -> dict[str, bool]:
    """Activation checkpointing off (TRL turns it on by default; it costs a second forward and our models are
    small), under the argument's name in this transformers (`gradient_checkpointing` is deprecated since 5.x)."""
    names = {f.name for f in fields(config_cls)}
    return {"activation_checkpointing": False} if "activation_checkpointing" in names else \
        {"gradient_checkpointing": False}


def model_device(vlm: TrainableModel) -> torch.device:
    """The device the wrapper serves on (its ModelConfig)."""
    return torch.device(vlm.config.device)


# -- data -------------------------------------------------------------------------------------------------
def to_dataset(rows: Sequence[dict], required: tuple[str, ...]):
    """A datasets.Dataset of TRL's standard columns and `augment` (others, e.g. event ids, dropped; image paths
    opened). A row repeated (`learn.event_repeats`: the same images and text) is stored once and selected again,
    so its images are encoded once: 1,072 rows of the pharmacy experiment's round 3 took 7 s to encode."""
    from datasets import Dataset
    from PIL import Image

    if not rows:
        raise InvalidInput("no training examples: collect more events first")
    missing = [c for c in required if c not in rows[0]]
    if missing:
        raise InvalidInput(f"training rows lack column(s) {missing}; they have {sorted(rows[0])}")
    keep = (*required, "images", AUGMENT_COLUMN)
    unique: dict[str, int] = {}
    clean, order = [], []
    for row in rows:
        row = {k: v for k, v in row.items() if k in keep}
        images = [str(i) if isinstance(i, (str, Path)) else id(i) for i in row.get("images", [])]
        key = repr(({k: v for k, v in row.items() if k != "images"}, images))
        if key not in unique:
            unique[key] = len(clean)
            if "images" in row:
                row["images"] = [Image.open(i).convert("RGB") if isinstance(i, (str, Path)) else i
                                 for i in row["images"]]
            clean.append(row)
        order.append(unique[key])
    dataset = Dataset.from_list(clean)
    return dataset if len(clean) == len(order) else dataset.select(order)


def messages_to_prompt_completion(row: dict) -> dict:
    """`messages` -> `prompt` (all but the last turn) + `completion` (the last, assistant turn): loss on the answer only."""
    if "prompt" in row:
        return row
    messages = list(row.get("messages") or [])
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        raise InvalidInput("an sft row needs `messages` ending with the assistant's answer")
    out = {k: v for k, v in row.items() if k != "messages"}
    out["prompt"], out["completion"] = messages[:-1], [messages[-1]]
    return out


def mark_augment(rows: Sequence[dict], settings: LearnConfig) -> list[dict]:
    """With `settings.augment`, each row gets the `augment` column: true for rows with images unless the row says
    False (replayed general examples do); without it, rows lose the column (the data stays as it is)."""
    if not settings.augment:
        return [{k: v for k, v in r.items() if k != AUGMENT_COLUMN} for r in rows]
    return [{**r, AUGMENT_COLUMN: bool(r.get(AUGMENT_COLUMN, True) and r.get("images"))} for r in rows]


def reward_of(row: dict, settings: LearnConfig) -> float:
    """A row's reward: its `reward`, else its feedback `label` (a Label, its name, or kto's True / False for
    positive / negative) remapped by the settings (`LearnConfig.rewards`)."""
    if row.get("reward") is not None:
        return float(row["reward"])
    label = row.get("label")
    if isinstance(label, bool):
        label = Label.POSITIVE if label else Label.NEGATIVE
    try:
        return settings.rewards()[Label(str(getattr(label, "value", label)).lower())]
    except ValueError:
        raise InvalidInput(f"a reinforce row needs a `reward` or a feedback `label`, not {label!r}") from None


class LogCallback:
    """Sends the trainer's periodic logs (loss, learning rate...) to this module's logger, and shows the steps as a
    progress bar when the output is a terminal."""

    def __getattr__(self, name: str):  # every other TrainerCallback event: do nothing
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def __init__(self, label: str = "training"):
        self.label = label
        self.bar: Any = None

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        from tqdm.auto import tqdm

        # a progress bar in a terminal (tqdm's disable=None), nothing in logs, pipes and tests
        self.bar = tqdm(total=state.max_steps, desc=self.label, unit="step", leave=False, disable=None)

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args, state, control, **kwargs) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        logger.info("step %d: %s", state.global_step, logs)


class StepCallback:
    """Tells `on_step(step, steps)` where training is: at its start (0 of n), then after each optimiser step."""

    def __getattr__(self, name: str):  # every other TrainerCallback event: do nothing
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def __init__(self, on_step: Callable[[int, int], None]) -> None:
        self.tell = on_step  # (not named on_*: the trainer calls its callbacks' on_* attributes as events)

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.tell(0, int(state.max_steps or 0))

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.tell(int(state.global_step), int(state.max_steps or 0))


_ON_STEP: ContextVar[Callable[[int, int], None] | None] = ContextVar("ilearn_on_step", default=None)
_START: ContextVar[Path | None] = ContextVar("ilearn_start", default=None)  # `train`'s start version folder
"""`train`'s `on_step`, for `run` (recipes keep the Recipe signature: a registered recipe need not pass it on)."""


# -- train and save ---------------------------------------------------------------------------------------
def run(trainer: Any, prepared: PreparedModel, settings: LearnConfig, n_examples: int, out_dir: Path) -> TrainResult:
    """Train (with augmented views and per-part learning rates where the settings ask), save what was trained,
    and report the figures."""
    from transformers.trainer_callback import PrinterCallback

    recipe = settings.recipe
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(LogCallback(f"training {recipe}"))
    if (on_step := _ON_STEP.get()) is not None:
        trainer.add_callback(StepCallback(on_step))
    if settings.augment:
        trainer.data_collator = AugmentingCollator(trainer.data_collator, seed=settings.seed)
    custom = optimizer(prepared, settings)
    if custom is not None:
        trainer.optimizer = custom
    start = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - start
    if trainer.is_world_process_zero():  # one process saves (several train under ilearn.learning.distributed)
        save_trained(prepared, out_dir)
        if (start := _START.get()) is not None:
            stack_onto(out_dir, start)
        shutil.rmtree(out_dir / "trainer", ignore_errors=True)
    n_train, n_total = prepared.count()
    result = TrainResult(
        recipe=recipe, path=str(out_dir), examples=n_examples, steps=int(output.global_step),
        tokens=int(getattr(trainer, "_total_train_tokens", 0)), seconds=seconds,
        train_loss=float(output.training_loss), trainable_params=n_train, total_params=n_total,
        parts={"full": list(prepared.full), "lora": list(prepared.lora)},
    )
    logger.info("%s: %d steps on %d examples in %.1f s (%.0f tokens/s), loss %.4f", recipe, result.steps,
                n_examples, seconds, result.tokens_per_s, result.train_loss)
    return result


@trains_on("sft")
def sft(vlm: TrainableModel, rows: Sequence[dict], settings: LearnConfig, out_dir: str | Path) -> TrainResult:
    """Filtered fine-tuning (ReSpect's most reliable recipe): SFT on positive and corrected answers; with
    `settings.distill`, replayed rows also keep the base model's answer distribution (`ilearn.learning.distill`)."""
    trainer, prepared, n_examples = sft_trainer(vlm, rows, settings, out_dir)
    return run(trainer, prepared, settings, n_examples, Path(out_dir))


def sft_trainer(vlm: TrainableModel, rows: Sequence[dict], settings: LearnConfig,
                out_dir: str | Path) -> tuple[Any, PreparedModel, int]:
    """(TRL trainer, prepared model, number of examples) of `sft`, built but not run."""
    from trl import SFTConfig

    from ilearn.learning.distill import REPLAY_COLUMN, distilling_trainer

    prepared = setup(vlm, settings)
    data = [{**messages_to_prompt_completion(r), REPLAY_COLUMN: bool(r.get(REPLAY_COLUMN))} for r in rows]
    distilling = (settings.distill > 0 or settings.distill_image > 0) and any(r[REPLAY_COLUMN] for r in data)
    dataset = to_dataset(mark_augment(data, settings), ("prompt", "completion", REPLAY_COLUMN))
    args = trainer_args(SFTConfig, settings, Path(out_dir), model_device(vlm), max_length=None,
                        remove_unused_columns=False)  # the collator reads `replay`
    teacher = base_model(vlm).requires_grad_(False).eval() if distilling else None
    trainer = distilling_trainer()(model=prepared.model, args=args, train_dataset=dataset,
                                   processing_class=vlm.processor, teacher=teacher,
                                   distill=settings.distill if distilling else 0.0,
                                   distill_image=settings.distill_image if distilling else 0.0)
    return trainer, prepared, len(dataset)


def reference_model(prepared: PreparedModel, vlm: TrainableModel) -> torch.nn.Module | None:
    """DPO / KTO reference: None when only LoRA adapters train (TRL then uses the adapter-free model: the start
    version's weights, merged), else a frozen copy of them (fully trained parts change in place, so disabling
    adapters is no reference)."""
    if prepared.is_peft and not prepared.full:
        return None
    ref = base_model(vlm)
    ref.requires_grad_(False)
    return ref.eval()


def replay_distilling(vlm: TrainableModel, rows: Sequence[dict], settings: LearnConfig,
                      recipe: str) -> tuple[PreparedModel, torch.nn.Module | None, list[dict], bool]:
    """What a preference recipe (dpo, kto) trains with: the prepared model, its reference, the rows with their
    `replay` flag, and whether the distillation terms apply (`settings.distill` / `distill_image` and replayed
    rows, and a frozen base to distil from: LoRA alone has none, so the terms are left out, logged)."""
    from ilearn.learning.distill import REPLAY_COLUMN

    prepared = setup(vlm, settings)
    reference = reference_model(prepared, vlm)
    data = [{**r, REPLAY_COLUMN: bool(r.get(REPLAY_COLUMN))} for r in rows]
    distilling = (settings.distill > 0 or settings.distill_image > 0) and any(r[REPLAY_COLUMN] for r in data)
    if distilling and reference is None:
        logger.warning("%s with LoRA alone has no frozen base model to distil from: learn.distill and "
                       "learn.distill_image are left out", recipe)
        distilling = False
    return prepared, reference, data, distilling


def preference_trainer(distilling: Callable[[], type] | None, plain: type, settings: LearnConfig,
                       **kwargs: Any) -> Any:
    """TRL's `plain` preference trainer, or the distilling one `distilling()` builds (`replay_distilling`) with
    `settings.distill` / `distill_image`."""
    if distilling is None:
        return plain(**kwargs)
    return distilling()(**kwargs, distill=settings.distill, distill_image=settings.distill_image)


@trains_on("dpo")
def dpo(vlm: TrainableModel, rows: Sequence[dict], settings: LearnConfig, out_dir: str | Path) -> TrainResult:
    """DPO on corrected events: the correction is `chosen`, the rejected answer `rejected` (User-VLM's stage 3).
    With `settings.distill` / `distill_image` and replayed rows, the replayed rows' chosen answers also keep the
    base model's answer distribution and image tokens (`ilearn.learning.distill`), as in sft; that needs the
    frozen base as reference, so only when a part trains in full (LoRA alone: the terms are left out, logged)."""
    from trl import DPOConfig, DPOTrainer

    from ilearn.learning.distill import REPLAY_COLUMN, distilling_dpo_trainer

    out_dir = Path(out_dir)
    prepared, reference, data, distilling = replay_distilling(vlm, rows, settings, "dpo")
    required = ("prompt", "chosen", "rejected", REPLAY_COLUMN) if distilling else ("prompt", "chosen", "rejected")
    dataset = to_dataset(mark_augment(data, settings), required)
    losses = dpo_losses(settings)
    extra = {"remove_unused_columns": False} if distilling else {}  # the collator reads `replay`
    args = trainer_args(DPOConfig, settings, out_dir, model_device(vlm), beta=settings.beta, max_length=None,
                        **losses, **extra)
    trainer = preference_trainer(distilling_dpo_trainer if distilling else None, DPOTrainer, settings,
                                 model=prepared.model, ref_model=reference, args=args, train_dataset=dataset,
                                 processing_class=vlm.processor)
    return run(trainer, prepared, settings, len(dataset), out_dir)


def dpo_losses(settings: LearnConfig) -> dict[str, Any]:
    """DPOConfig's loss settings: the preference loss alone, or with the SFT term of `settings.dpo_sft_weight`."""
    if settings.dpo_sft_weight <= 0:
        return {}
    return {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, settings.dpo_sft_weight]}


@trains_on("kto")
def kto(vlm: TrainableModel, rows: Sequence[dict], settings: LearnConfig, out_dir: str | Path) -> TrainResult:
    """KTO on every decoded answer: `label` True for well-received answers, False for rejected ones (ReSpect).
    With `settings.distill` / `distill_image` and replayed rows (labelled desirable), those rows also keep the
    base model's answer distribution and image tokens (`ilearn.learning.distill`), as in sft and dpo; only when a
    part trains in full (LoRA alone has no frozen base to distil from: the terms are left out, logged)."""
    from trl import KTOConfig, KTOTrainer

    from ilearn.learning.distill import REPLAY_COLUMN, distilling_kto_trainer

    out_dir = Path(out_dir)
    prepared, reference, data, distilling = replay_distilling(vlm, rows, settings, "kto")
    required = ("prompt", "completion", "label", REPLAY_COLUMN) if distilling else ("prompt", "completion", "label")
    # TRL's KTO reads its rows in order (its KL term pairs each row with its neighbours in a fixed-order batch):
    # shuffled here, seeded, or a run shorter than an epoch trains on the first rows alone (the events repeated,
    # never the replayed general rows after them)
    dataset = to_dataset(mark_augment(data, settings), required).shuffle(seed=settings.seed)
    labels = set(dataset["label"])
    if labels != {True, False}:
        raise InvalidInput(f"kto needs both desirable and undesirable examples; the labels are only {labels}")
    desirable, undesirable = kto_weights(dataset["label"], settings.kto_undesirable_ratio)
    extra = {"remove_unused_columns": False} if distilling else {}  # the collator reads `replay`
    args = trainer_args(KTOConfig, settings, out_dir, model_device(vlm), beta=settings.beta, max_length=None,
                        desirable_weight=desirable, undesirable_weight=undesirable, **extra)
    weight = settings.kto_sft_weight
    trainer = preference_trainer((lambda: kto_sft_trainer(distilling_kto_trainer(), weight)) if distilling else None,
                                 kto_sft_trainer(KTOTrainer, weight), settings, model=prepared.model,
                                 ref_model=reference, args=args, train_dataset=dataset, processing_class=vlm.processor)
    return run(trainer, prepared, settings, len(dataset), out_dir)


def desirable_nll(log_probs: torch.Tensor, labels: torch.Tensor, desirable: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the `desirable` rows' (bool, batch) answer tokens; `log_probs` (batch,
    tokens - 1) are the labels' log-probabilities as TRL's fused head returns them (0 where `labels`, (batch,
    tokens), are -100), shifted to predict `labels[:, 1:]`. 0 (still a graph) when no row is desirable."""
    mask = (labels[:, 1:] != -100) & desirable.to(labels.device)[:, None]
    log_probs = log_probs[:, -mask.shape[1]:]
    mask = mask.to(log_probs.device)
    return -(log_probs * mask).sum() / mask.sum().clamp(min=1)


def kto_sft_trainer(base: type, weight: float) -> type:
    """`base` (TRL's KTOTrainer, or the distilling one) with an SFT term on the desirable rows: loss = KTO +
    `weight` * the desirable answers' mean token NLL (`learn.kto_sft_weight`, as `dpo_sft_weight` for dpo).
    KTO pushes a desirable answer only above the reference's likelihood, by a margin its sigmoid saturates; the
    term keeps raising it. Read from KTO's own forward (the one pass with gradients and TRL's fused head, caught
    by a forward hook), so it costs no extra pass; without gradients (evaluation) the loss is KTO's alone. At
    `weight` 0, `base` itself."""
    if weight <= 0:
        return base

    class KTOWithSFTTrainer(base):
        sft_weight = float(weight)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not torch.is_grad_enabled():  # evaluation: KTO's loss alone
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            passes: list[tuple[torch.Tensor, torch.Tensor]] = []

            def keep(module, args, kwargs, output):
                if torch.is_grad_enabled() and kwargs.get("fused_lm_head") and kwargs.get("labels") is not None:
                    passes.append((kwargs["labels"], output.log_probs))

            desirable = torch.as_tensor(inputs["label"], dtype=torch.bool)
            hook = model.register_forward_hook(keep, with_kwargs=True)
            try:
                out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                hook.remove()
            if len(passes) != 1:
                raise RuntimeError(f"kto_sft_weight: expected KTO's one forward with gradients, saw {len(passes)}")
            loss, outputs = out if return_outputs else (out, None)
            loss = loss + self.sft_weight * desirable_nll(passes[0][1], passes[0][0], desirable)
            return (loss, outputs) if return_outputs else loss

    return KTOWithSFTTrainer


def kto_weights(labels: Sequence[bool], ratio: float = 1.0) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight) that make the undesirable rows' summed weight `ratio` times the
    desirable rows' (`learn.kto_undesirable_ratio`), the larger of the two weights 1. At `ratio` 1 the two kinds
    are balanced as the KTO paper and TRL advise (desirable_weight * n_desirable / (undesirable_weight *
    n_undesirable) within [1, 4/3]): the larger side is down-weighted to the smaller one's count. Feedback data is
    rarely balanced: in the reference game every target accepted once is turned down about three times first."""
    n_desirable = sum(1 for x in labels if x)
    n_undesirable = len(labels) - n_desirable
    if not n_desirable or not n_undesirable:
        return 1.0, 1.0
    undesirable = ratio * n_desirable / n_undesirable  # per row, the desirable rows weighing 1 each
    if undesirable > 1.0:
        return 1.0 / undesirable, 1.0
    return 1.0, undesirable


@trains_on("rewards")
def reinforce(vlm: TrainableModel, rows: Sequence[dict], settings: LearnConfig, out_dir: str | Path) -> TrainResult:
    """ReSpect's REINFORCE, offline: logged (prompt, completion) pairs weighted by the decoded-feedback reward.

    TRL has no offline REINFORCE trainer (its RLOO / GRPO sample online), so this is a reward-weighted NLL,
    loss = -sum_i r_i * log p(completion_i | prompt_i) / n_completion_tokens, with an unlikelihood term in place
    of -r * log p for negative rewards (`reward_weighted_loss`: bounded), through a small SFTTrainer subclass
    (`RewardWeightedSFTTrainer`) that overrides only `compute_loss`; rewards are remapped from the feedback
    labels (positive 1, negative -0.1, neutral 0 by default).
    """
    from trl import SFTConfig

    out_dir = Path(out_dir)
    prepared = setup(vlm, settings)
    data = [{**messages_to_prompt_completion(r), "reward": reward_of(r, settings)} for r in rows]
    data = [{k: v for k, v in r.items() if k != "label"} for r in data]
    dataset = to_dataset(mark_augment(data, settings), ("prompt", "completion", "reward"))
    args = trainer_args(SFTConfig, settings, out_dir, model_device(vlm), max_length=None,
                        remove_unused_columns=False)
    trainer = reward_weighted_trainer()(model=prepared.model, args=args, train_dataset=dataset,
                                       processing_class=vlm.processor)
    return run(trainer, prepared, settings, len(dataset), out_dir)


def reward_weighted_loss(log_probs: torch.Tensor, mask: torch.Tensor, rewards: torch.Tensor,
                         n_tokens: Any) -> torch.Tensor:
    """The reinforce loss over a batch: per token, -r * log p for a positive reward and |r| * -log(1 - p) for a
    negative one, summed and divided by `n_tokens`.

    Plain REINFORCE (-r * log p for every row) is unbounded below for a negative reward: the optimiser drives
    log p of the rejected answers to minus infinity. The unlikelihood form for negatives (Welleck et al., 2020)
    pushes the same way, but stops once a rejected token is unlikely. Measured on the reference game (12 held-out
    games, one round from the base's 41.7%): completion 25% with the plain form, 50% with this one.
    `log_probs` and `mask` are (batch, tokens): the labels' log-probabilities (0 where ignored) and where they
    count."""
    r = rewards.to(log_probs.device, log_probs.dtype)[:, None]
    p = torch.exp(log_probs).clamp(max=1.0 - 1e-6)
    unlikely = torch.log1p(-p) * mask.to(log_probs.dtype)
    per_token = torch.where(r >= 0, r * log_probs, -r * unlikely)
    return -per_token.sum() / torch.as_tensor(n_tokens).clamp(min=1)


def reward_weighted_trainer() -> type:
    """`RewardWeightedSFTTrainer`: TRL's SFTTrainer with the loss -r * log p(completion | prompt) (built lazily: TRL
    is an optional dependency)."""
    from trl import SFTTrainer

    from ilearn.learning.loss import sum_over_processes

    class RewardWeightedSFTTrainer(SFTTrainer):
        """SFTTrainer whose collator also yields each row's `reward` and whose loss weights each row by it."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.data_collator = collate_with(self.data_collator, "reward", float)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            rewards = inputs.pop("reward")
            outputs = model(**inputs, fused_lm_head=True)  # per-token log p of the labels, zero where ignored
            n_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = reward_weighted_loss(outputs.log_probs, outputs.label_mask, rewards, n_tokens)
            loss = sum_over_processes(loss, self, num_items_in_batch)
            if model.training and "attention_mask" in inputs:
                self._total_train_tokens += int(inputs["attention_mask"].sum())
            return (loss, outputs) if return_outputs else loss

    return RewardWeightedSFTTrainer


def train(vlm: TrainableModel, rows: Sequence[dict], settings: LearnConfig, out_dir: str | Path, *,
          on_step: Callable[[int, int], None] | None = None, start: str | Path | None = None) -> TrainResult:
    """Run the recipe `settings.recipe` (a `Recipe` registered in `ilearn.plugins`) on `rows` (TRL's columns for
    that recipe) and save the result in `out_dir`; on `settings.processes` processes when more than one
    (`ilearn.learning.distributed`). `on_step(step, steps)`: told as training goes, by recipes that train
    through `run` (every built-in one; not on several processes). `start`: the folder of a saved version to
    train on top of (module docstring); one process only."""
    from ilearn import plugins

    if start is not None and settings.processes > 1:
        raise InvalidInput("training on top of a version (learn.start_from) runs in one process (learn.processes 1)")
    if settings.processes > 1:
        from ilearn.learning.distributed import train_distributed

        return train_distributed(vlm, rows, replace(settings, processes=1), out_dir, processes=settings.processes,
                                 accelerate_config=settings.accelerate_config or None)
    recipe: Recipe = plugins.resolve("recipe", settings.recipe)
    token, started = _ON_STEP.set(on_step), _START.set(Path(start) if start is not None else None)
    try:
        return recipe(vlm, rows, settings, out_dir)
    finally:
        _ON_STEP.reset(token)
        _START.reset(started)
