"""Experiment scenarios: ``pharmacy``, ``reference-game`` and ``objects`` (see each module).

`load_scenario(name, **options)` builds one by name through `ilearn.plugins` (kind "scenario"), importing only
its module.
"""

from __future__ import annotations

from typing import Any

from ilearn.evaluation.scenarios.base import Scenario


def load_scenario(name: str, **options: Any) -> Scenario:
    """Build the scenario `name`; ``objects`` needs its folder as the first option: ``directory=DIR``."""
    from ilearn import plugins

    return plugins.create("scenario", name, **options)
