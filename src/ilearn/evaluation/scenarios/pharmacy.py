"""The ``pharmacy`` scenario (iLearnRobot's study): look-alike medicine bottles drawn with PIL.

Twelve over-the-counter medicines (`ilearn.data.bottles.BOTTLES`), each a bottle that differs from its
look-alikes by one or two details only (cap colour, label band colour, bottle shape, size) and carries no
readable text, so that a base model cannot tell them apart by name. Each has three facts: ``name``, ``use`` and
``dose``, the facets its clarifying questions offer (`ilearn.dialogue.clarify.PHARMACY_FACETS`). The bottles and their views are drawn by `ilearn.data.bottles` (every view from its own seed, every
one different; `VIEW_STYLES` holds three presets of how much views vary), which the instance embedder's training
also draws from.

Measured difficulty (seed 0, 4 held-out views per bottle, 1-nearest-neighbour on the frozen EfficientNet-Lite0
pooled features that retrieval uses): 40% / 44% / 48% right with 1 / 3 / 6 teach views per bottle on the
default views (easy 48-60%, hard 29-40%); confusions are mostly the look-alikes one attribute away. Adding a
hue histogram of saturated pixels to those features raised 3-view accuracy from 52% to 77% in the same test.

    scenario = pharmacy_scenario(seed=0, n_teach=6, n_test=4)
    scenario.tasks("teach", 30)   # seeded tasks over the teach views
"""

from __future__ import annotations

import logging
import random

from ilearn.data.bottles import BOTTLES, VIEW_STYLES, BottleSpec, ViewStyle, scenario_view
from ilearn.dialogue.clarify import PHARMACY_FACETS, facet_settings
from ilearn.errors import InvalidInput
from ilearn.evaluation.scenarios.base import FactScenario, Item, easyvqa_general

logger = logging.getLogger(__name__)


def pharmacy_scenario(seed: int = 0, n_teach: int = 6, n_test: int = 4, general: int = 0,
                      bottles: tuple[BottleSpec, ...] = BOTTLES, views: str | ViewStyle = "default") -> FactScenario:
    """The pharmacy scenario: `n_teach` teach and `n_test` held-out views per bottle, `general` easy-vqa questions.

    `views` is a `VIEW_STYLES` preset name (easy, default, hard) or a `ViewStyle`.
    """
    if n_teach < 1 or n_test < 1:
        raise InvalidInput("n_teach and n_test must be >= 1")
    if isinstance(views, str):
        if views not in VIEW_STYLES:
            raise InvalidInput(f"unknown view style {views!r}; choose one of {', '.join(VIEW_STYLES)}")
        views = VIEW_STYLES[views]
    items = []
    for spec in bottles:
        teach = [scenario_view(spec, seed, "teach", i, views) for i in range(n_teach)]
        test = [scenario_view(spec, seed, "test", i, views) for i in range(n_test)]
        items.append(Item(spec.id, spec.name, spec.facts, teach, test, attributes=spec.attributes))
    logger.debug("rendered %d bottles x %d views", len(items), n_teach + n_test)
    return FactScenario("pharmacy", items, seed=seed, general=easyvqa_general(general, seed), noun="medicine",
                        facets=facet_settings(PHARMACY_FACETS))


def shuffled_bottles(seed: int) -> list[BottleSpec]:
    """The bottles in a seeded order (handy to pick look-alike subsets)."""
    out = list(BOTTLES)
    random.Random(seed).shuffle(out)
    return out
