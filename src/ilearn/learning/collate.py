"""Extra row columns through TRL's collators: TRL's collators drop columns they do not know, so a loss that
weighs or selects rows by one (reinforce's `reward`, sft distillation's `replay`) wraps the collator here."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)


def collate_with(collate: Callable[[list[dict]], dict], column: str, cast: type) -> Callable[[list[dict]], dict]:
    """`collate` that also yields every example's `column` (`cast` to float or bool) as a tensor under the same
    name, for a loss that weighs or selects rows by it (TRL's collators drop columns they do not know)."""

    def collate_rows(examples: list[dict]) -> dict:
        batch = collate(examples)
        batch[column] = torch.tensor([cast(e[column]) for e in examples])
        return batch

    return collate_rows
