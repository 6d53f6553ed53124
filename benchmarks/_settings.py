"""What the training benchmarks share: where they write, and `--set KEY=VALUE` changes to a LearnConfig."""

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
