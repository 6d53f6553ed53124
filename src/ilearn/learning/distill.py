"""Learning without forgetting: sft, dpo and kto with a distillation term on the replayed general examples.

Replaying general examples with their right answers (`update.replay_rows`) keeps those few examples right but
not the skill behind them: in the pharmacy experiment a language LoRA trained on 43 fact events and 64 replayed
easy-vqa questions answered "yes" to almost every yes/no question of the general set afterwards (91 -> 63).
With `learn.distill` > 0, sft also pulls the model's whole next-token distribution on the replayed examples'
answer tokens towards the base model's (Li & Hoiem's LwF; the KL divergence KL(base || model)):

    loss = NLL(every row's answer) + distill * mean over replayed answer tokens of KL(p_base || p_model)

The answer tokens alone do not hold the image tokens in place: the projector (trained in full) and its instance
path (zero at first, `ilearn.models.composed.Projector`) learn offsets for the taught objects that also move the
tokens of every other image; in the pharmacy experiment the trained instance path alone took the general set from
90 to 45 (`benchmarks/r3.py`). With `learn.distill_image` > 0 a second term keeps the replayed images' tokens
(the output of the model's projector) at the base model's:

    + distill_image * mean over replayed rows' image tokens of |tokens - base tokens|^2 / |base tokens|^2

The base model is a frozen copy of the untrained weights (the projector trains in full, so disabling the
adapters is no reference), run without gradients on the same batch.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ilearn.learning.collate import collate_with

logger = logging.getLogger(__name__)

REPLAY_COLUMN = "replay"
"""Rows (replayed general examples) whose answers the distillation term keeps at the base model's."""


def distillation_loss(log_p: torch.Tensor, teacher_log_p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions in `mask` of KL(teacher || student); log-probabilities (batch, tokens, vocab),
    `mask` (batch, tokens). Zero when `mask` is empty."""
    kl = (teacher_log_p.exp() * (teacher_log_p - log_p)).sum(-1)
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def image_token_loss(tokens: torch.Tensor, teacher_tokens: torch.Tensor,
                     rows: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the image tokens of the `rows` (bool, batch; None: every row) of
    |tokens - teacher_tokens|^2 / |teacher_tokens|^2; tokens (batch, n, dim). Zero when no row is selected."""
    if rows is not None:
        if not bool(rows.any()):
            return tokens.sum() * 0.0
        tokens, teacher_tokens = tokens[rows], teacher_tokens[rows]
    student, teacher = tokens.float(), teacher_tokens.float()
    return ((student - teacher).pow(2).sum(-1) / teacher.pow(2).sum(-1).clamp(min=1e-6)).mean()


PROJECTOR_NAMES = ("projector", "multi_modal_projector", "connector")
"""Names of the module that turns image features into the language model's image tokens (ilearn's composed
models, LLaVA, Idefics3 / SmolVLM)."""


def projector_of(model: torch.nn.Module) -> torch.nn.Module | None:
    """The first module of `model` named as in `PROJECTOR_NAMES` (a PEFT wrapper included), or None."""
    return next((m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in PROJECTOR_NAMES), None)


class TokenTap:
    """Keeps the last output of `module` (a forward hook) until `take` reads it."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module, self.value = module, None
        self.handle = module.register_forward_hook(self._keep)

    def _keep(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self.value = output if isinstance(output, torch.Tensor) else None

    def take(self) -> torch.Tensor | None:
        value, self.value = self.value, None
        return value

    def close(self) -> None:
        """Remove the hook."""
        self.handle.remove()
        self.value = None


def answer_nll(log_p: torch.Tensor, labels: torch.Tensor, n_tokens: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean NLL of the labelled tokens, mask of the labelled positions); `log_p` (batch, tokens, vocab) is already
    shifted to predict `labels` (batch, tokens, -100 where ignored). `n_tokens` (TRL's `num_items_in_batch`)
    divides the sum when given, as the Trainer does over accumulated batches."""
    mask = labels != -100
    nll = -log_p.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * mask
    n = mask.sum() if n_tokens is None else n_tokens
    return nll.sum() / torch.as_tensor(n).clamp(min=1), mask


def label_positions(labels: torch.Tensor) -> torch.Tensor:
    """The sequence positions whose logits predict a labelled token in some row: t where labels[:, t + 1] is not
    -100 (for `logits_to_keep`: the answers are a few tokens of each row, and the language model's head over the
    whole vocabulary costs about a fifth of SmolLM2-135M's forward)."""
    return (labels[:, 1:] != -100).any(0).nonzero()[:, 0]


def at_positions(logits: torch.Tensor, positions: torch.Tensor, length: int) -> torch.Tensor:
    """`logits` at `positions`: the model's own output when it kept only those (`logits_to_keep`), else the
    positions cut from the whole sequence's logits (`length` tokens)."""
    if logits.shape[1] == len(positions):
        return logits
    if logits.shape[1] == length:
        return logits[:, positions.to(logits.device)]
    raise ValueError(f"logits for {logits.shape[1]} positions, expected {len(positions)} or {length}")


def rows_of(inputs: dict[str, Any], rows: torch.Tensor) -> dict[str, Any] | None:
    """The model inputs of the selected `rows` (bool, batch) alone, or None when some tensor input is not one
    entry per row (e.g. Qwen2-VL's patches of every image in one tensor): the caller then runs the whole batch."""
    tensors = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    if any(v.ndim == 0 or v.shape[0] != len(rows) for v in tensors.values()):
        return None
    return {**inputs, **{k: v[rows.to(v.device)] for k, v in tensors.items()}}


class ReplayDistillation:
    """What every distilling trainer shares (mixed in before TRL's trainer): the `replay` column through the
    collator, the terms' weights, and the taps on the model's and the base's projectors, removed when training
    ends."""

    def setup_distillation(self, base: torch.nn.Module | None, distill: float, distill_image: float) -> None:
        self.distill, self.distill_image = float(distill), float(distill_image)
        self.data_collator = collate_with(self.data_collator, REPLAY_COLUMN, bool)
        self.taps: tuple[TokenTap, TokenTap] | None = None
        if self.distill_image > 0:
            student, teacher = projector_of(self.model), projector_of(base)
            if student is None or teacher is None:
                logger.warning("no projector module (%s) found: learn.distill_image is ignored",
                               ", ".join(PROJECTOR_NAMES))
            else:
                self.taps = (TokenTap(student), TokenTap(teacher))

    def train(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().train(*args, **kwargs)
        finally:  # the served model keeps no hook
            for tap in self.taps or ():
                tap.close()
            self.taps = None


def distilling_trainer() -> type:
    """`DistillingSFTTrainer`: TRL's SFTTrainer with the loss above (built lazily: TRL is an optional
    dependency). Takes `teacher` (the frozen base model; None: no distillation), `distill` and `distill_image`
    (the terms' weights) besides SFTTrainer's arguments; its rows carry the boolean column `replay`. The language
    model's head runs only on the answer positions (`logits_to_keep`) and the teacher only on the replayed rows:
    1.4 times the tokens/s of whole-sequence logits and teacher on the `small` model (`benchmarks/training.py
    --recipes sft-distill`)."""
    from trl import SFTTrainer

    from ilearn.learning.loss import sum_over_processes

    class DistillingSFTTrainer(ReplayDistillation, SFTTrainer):
        """SFTTrainer whose collator also yields each row's `replay` flag and whose loss is the answers' NLL plus
        the distillation terms on the replayed rows' answer tokens and image tokens."""

        def __init__(self, *args: Any, teacher: torch.nn.Module | None = None, distill: float = 0.0,
                     distill_image: float = 0.0, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if teacher is None and (distill > 0 or distill_image > 0):
                raise ValueError("distillation needs the teacher (the frozen base model)")
            self.teacher = None if teacher is None else teacher.to(self.args.device)
            self.setup_distillation(self.teacher, distill, distill_image)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            replay = inputs.pop(REPLAY_COLUMN).bool()
            labels = inputs.pop("labels")
            positions = label_positions(labels)
            outputs = model(**inputs, use_cache=False, logits_to_keep=positions)
            log_p = at_positions(outputs.logits, positions, labels.shape[1]).float().log_softmax(-1)
            loss, mask = answer_nll(log_p, labels[:, positions + 1], num_items_in_batch)
            loss = sum_over_processes(loss, self, num_items_in_batch)  # several processes: ilearn.learning.distributed
            replay = replay.to(mask.device)
            tokens = self.taps[0].take() if self.taps else None
            if self.teacher is not None and (self.distill > 0 or tokens is not None) and bool(replay.any()):
                rows = rows_of(inputs, replay)  # the teacher sees only the replayed rows, where it can
                with torch.no_grad():
                    teacher = self.teacher(**(inputs if rows is None else rows), use_cache=False,
                                           logits_to_keep=positions)
                    teacher_log_p = at_positions(teacher.logits, positions, labels.shape[1]).float().log_softmax(-1)
                teacher_log_p = teacher_log_p[replay] if rows is None else teacher_log_p
                if self.distill > 0:
                    loss = loss + self.distill * distillation_loss(log_p[replay], teacher_log_p, mask[replay])
                teacher_tokens = self.taps[1].take() if self.taps else None
                if tokens is not None and teacher_tokens is not None and len(tokens) == len(replay):
                    tokens = tokens[replay.to(tokens.device)]
                    if rows is None:
                        teacher_tokens = teacher_tokens[replay.to(teacher_tokens.device)]
                    if len(teacher_tokens) == len(tokens):
                        loss = loss + self.distill_image * image_token_loss(tokens, teacher_tokens)
            if model.training and "attention_mask" in inputs:
                self._total_train_tokens += int(inputs["attention_mask"].sum())
            return (loss, outputs) if return_outputs else loss

    return DistillingSFTTrainer


class PreferenceReplay(ReplayDistillation):
    """What the preference trainers (dpo, kto) share: `distill` / `distill_image` besides TRL's arguments, the
    frozen base as `ref_model`, and their loss plus the terms on the replayed rows (`replay_inputs` says which rows
    of the batch and which tokens are their answers)."""

    recipe = ""

    def __init__(self, *args: Any, distill: float = 0.0, distill_image: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.ref_model is None and (distill > 0 or distill_image > 0):
            raise ValueError(f"distillation in {self.recipe} needs ref_model (the frozen base model)")
        self.setup_distillation(self.ref_model, distill, distill_image)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        replay = inputs.pop(REPLAY_COLUMN).bool()
        out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        for tap in self.taps or ():
            tap.take()  # the preference forward's tokens: not the ones the terms compare
        if not bool(replay.any()) or (self.distill <= 0 and self.taps is None):
            return out
        loss, outputs = out if return_outputs else (out, None)
        loss = loss + self.base_terms(model, *self.replay_inputs(inputs, replay))
        return (loss, outputs) if return_outputs else loss

    def base_terms(self, model: torch.nn.Module, batch: dict[str, Any], labels: torch.Tensor,
                   rows: torch.Tensor) -> torch.Tensor:
        """The distillation terms on the `rows` (bool, batch) of `batch` (the model's inputs), their answers being
        `labels` (-100 elsewhere): the answers run once more through the model and the frozen base (`ref_model`),
        the head on the answer positions alone, for the answer-distribution term; the image tokens come from that
        same pass (the projector taps). For the preference trainers, whose own forward keeps only the label
        tokens' log-probabilities (TRL's fused head)."""
        picked = rows_of(batch, rows)  # None: some input is not one entry per row, run the whole batch
        run = batch if picked is None else picked
        run_labels = labels if picked is None else labels[rows.to(labels.device)]
        positions = label_positions(run_labels)
        log_p = at_positions(model(**run, use_cache=False, logits_to_keep=positions).logits, positions,
                             run_labels.shape[1]).float().log_softmax(-1)
        tokens = self.taps[0].take() if self.taps else None
        with torch.no_grad():
            teacher = self.ref_model(**run, use_cache=False, logits_to_keep=positions)
            teacher_log_p = at_positions(teacher.logits, positions, run_labels.shape[1]).float().log_softmax(-1)
        teacher_tokens = self.taps[1].take() if self.taps else None
        mask = run_labels[:, positions + 1] != -100
        if picked is None:
            keep = rows.to(log_p.device)
            log_p, teacher_log_p, mask = log_p[keep], teacher_log_p[keep], mask[keep.to(mask.device)]
        term = log_p.sum() * 0.0
        if self.distill > 0:
            term = term + self.distill * distillation_loss(log_p, teacher_log_p, mask)
        if tokens is not None and teacher_tokens is not None and len(tokens) == len(teacher_tokens):
            if picked is None and len(tokens) == len(rows):
                tokens, teacher_tokens = tokens[rows.to(tokens.device)], teacher_tokens[rows.to(tokens.device)]
            term = term + self.distill_image * image_token_loss(tokens, teacher_tokens)
        return term

    def replay_inputs(self, inputs: dict[str, Any],
                      replay: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
        """(the model's inputs, the answers' labels, the replayed rows) of the batch."""
        raise NotImplementedError


def distilling_dpo_trainer() -> type:
    """`DistillingDPOTrainer`: TRL's DPOTrainer plus the terms above on the replayed rows (built lazily). Takes
    `distill` and `distill_image` besides DPOTrainer's arguments and needs `ref_model`, the frozen base model
    (`recipes.reference_model` gives it when a part trains in full). TRL's DPO forward keeps only the label
    tokens' log-probabilities (its fused head), so the replayed rows' chosen answers run once more through the
    model and the base, with the head on their answer positions, for the answer-distribution term; the image
    tokens come from that same pass (the projector taps)."""
    from trl import DPOTrainer

    class DistillingDPOTrainer(PreferenceReplay, DPOTrainer):
        """DPOTrainer whose collator also yields each row's `replay` flag and whose loss adds, on the replayed rows'
        chosen answers, KL(base || model) per answer token and the image-token term."""

        recipe = "dpo"

        def replay_inputs(self, inputs, replay):
            """The replayed rows' chosen answers (the batch is [chosen, rejected])."""
            batch = {k: v for k, v in inputs.items()
                     if k not in ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")}
            labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
            return batch, labels, torch.cat([replay, torch.zeros_like(replay)])

    return DistillingDPOTrainer


KTO_NOT_MODEL_INPUTS = ("completion_mask", "KL_input_ids", "KL_attention_mask", "KL_completion_mask",
                        "KL_token_type_ids", "KL_mm_token_type_ids", "label", "ref_logps", "ref_KL_logps")
"""What TRL's KTO collator yields besides the model's inputs."""


def distilling_kto_trainer() -> type:
    """`DistillingKTOTrainer`: TRL's KTOTrainer plus the terms above on the replayed rows (labelled desirable),
    built lazily. Takes `distill` and `distill_image` besides KTOTrainer's arguments and needs `ref_model`, the
    frozen base model. KTO's own loss on a replayed row only pushes its answer's likelihood above the reference's;
    the terms also hold the rest of its answer distribution. TRL's KTO reads its rows in order, so the terms act
    only when replayed rows are among those a run reads (`recipes.kto` shuffles them: docs/reactions.md)."""
    from trl import KTOTrainer

    class DistillingKTOTrainer(PreferenceReplay, KTOTrainer):
        """KTOTrainer whose collator also yields each row's `replay` flag and whose loss adds, on the replayed rows'
        completions, KL(base || model) per answer token and the image-token term."""

        recipe = "kto"

        def replay_inputs(self, inputs, replay):
            batch = {k: v for k, v in inputs.items() if k not in KTO_NOT_MODEL_INPUTS}
            return batch, inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100), replay

    return DistillingKTOTrainer
