"""Experiment scenarios: ``pharmacy``, ``reference-game`` and ``objects`` (see each module).

`load_scenario(name, **options)` builds one by name, importing only its module.
"""

from __future__ import annotations

import importlib
from typing import Any

from ilearn.errors import InvalidInput

#: scenario name -> (module, builder); the builder takes keyword options (seed, view counts, ...)
SCENARIOS: dict[str, tuple[str, str]] = {
    "pharmacy": ("ilearn.evaluation.scenarios.pharmacy", "pharmacy_scenario"),
    "reference-game": ("ilearn.evaluation.scenarios.reference_game", "reference_game_scenario"),
    "objects": ("ilearn.evaluation.scenarios.objects", "ObjectsScenario.from_folder"),
}


def load_scenario(name: str, **options: Any) -> Any:
    """Build the scenario `name`; ``objects`` needs its folder as the first option: ``directory=DIR``."""
    if name not in SCENARIOS:
        raise InvalidInput(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    module_name, attr = SCENARIOS[name]
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target(**options)
