"""Contract of a training recipe (see DESIGN.md): a typed Protocol, registered by name in `ilearn.plugins`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ilearn.config import LearnConfig
    from ilearn.models.base import TrainableModel


@dataclass
class TrainResult:
    """What a recipe run produced and how fast it went."""

    recipe: str
    path: str
    examples: int
    steps: int
    tokens: int
    seconds: float
    train_loss: float
    trainable_params: int
    total_params: int
    parts: dict[str, list[str]] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_s": self.tokens_per_s}


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
