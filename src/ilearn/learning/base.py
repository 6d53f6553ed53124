"""Contract of a training recipe (see DESIGN.md): a typed Protocol, registered by name in `ilearn.plugins`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ilearn.config import LearnConfig
    from ilearn.learning.recipes import TrainResult
    from ilearn.models.base import TrainableModel


class Recipe(Protocol):
    """Train a candidate from the model's base weights on `rows` and save it in `out_dir`.

    `rows` carry TRL's standard columns for the recipe (`messages`, `prompt/chosen/rejected`,
    `prompt/completion/label`, ...; see `ilearn.learning.update.training_rows`); the saved folder is what
    `TrainableModel.set_weights` serves (a PEFT adapter and/or the trained parts' tensors). Built-ins:
    sft, dpo, kto, reinforce (`ilearn.learning.recipes`; kind "recipe" in `ilearn.plugins`, where the recipe names
    are defined).
    """

    dataset: str
    """The dataset it trains on, a key of `ilearn.learning.datasets.BUILDERS` (sft, dpo, kto or rewards)."""

    def __call__(self, vlm: TrainableModel, rows: Sequence[dict], settings: LearnConfig,
                 out_dir: str | Path) -> TrainResult: ...
