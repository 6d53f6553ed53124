"""What the training benchmarks share: where they write, `--set KEY=VALUE` changes to a LearnConfig, and the
general set they measure forgetting on."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "training"


def value(text: str) -> Any:
    """A JSON value (numbers, lists, true/false), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def with_sets(settings: Any, sets: list[str]) -> Any:
    """`settings` (a frozen dataclass) with each "KEY=VALUE" of `sets` applied."""
    return replace(settings, **{k: value(v) for k, v in (s.split("=", 1) for s in sets)})


def general_set(vlm: Any, limit: int) -> dict[str, Any]:
    """easy-vqa's test questions (the first `limit` of seed 0's order) answered by `vlm`: accuracy, by_kind,
    examples."""
    from ilearn.learning.general import evaluate_easyvqa

    return evaluate_easyvqa(vlm, limit=limit, seed=0, batch_size=8)
