"""Fine-tuning that chooses what to train: each candidate setting is trained and gated, the best one is kept.

    outcome = learn_best(vlm, store, registry, config)    # what the learning scheduler runs

Which parts to train (the vision encoder or not, how many steps) is not fixed per scenario: the pharmacy's drawn
bottles were learnt better with the vision encoder frozen, real pictures twice as well with it trained
(issue 18). `learn.candidates` lists the alternatives as changes to the `learn` settings; `learn_best` trains
the main settings and each alternative on the same snapshot (the same held-out events: the split depends on
`learn.seed` and the events only), gates every candidate against the serving model, and promotes the one the
gate accepts that answers the most held-out events right (ties: the one that keeps more of the general set, then
the earlier one). The others are marked rejected with the reason. Without alternatives it is `update.learn`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from ilearn.config import Config
from ilearn.learning.progress import OnProgress, for_candidate
from ilearn.learning.update import LearnOutcome, learn

logger = logging.getLogger(__name__)


def candidate_settings(config: Config) -> list[Config]:
    """The settings of every candidate: the main ones first, then each of `learn.candidates` applied to them
    (one that ends up the same as an earlier one is left out)."""
    main = replace(config.learn, candidates=())
    learns = [main]
    for changes in config.learn.candidates:
        other = replace(main, **changes)
        if other not in learns:  # a candidate that changes nothing is trained once
            learns.append(other)
    return [config.override(learn=learn_cfg) for learn_cfg in learns]


def _rank(outcome: LearnOutcome) -> tuple[float, float]:
    gate = outcome.gate or {}
    learning = (gate.get("learning") or {}).get("candidate", 0.0)
    general = (gate.get("general") or {}).get("candidate", 0.0)
    return learning, general


def learn_best(vlm: Any, store: Any, registry: Any, config: Config, *, promote: bool = True,
               gate_vlm: Any | None = None, general: bool = True, progress: OnProgress | None = None,
               memory: Any = None) -> LearnOutcome:
    """`update.learn` for each candidate setting (module docstring); the kept candidate's outcome, its reasons
    followed by one line per candidate. `progress`: each candidate's progress, in its slice of the whole;
    `memory`: what each gate chooses guesses against (`update.learn`)."""
    settings = candidate_settings(config)
    if len(settings) == 1:
        return learn(vlm, store, registry, settings[0], promote=promote, gate_vlm=gate_vlm, general=general,
                     progress=progress, memory=memory)
    start = time.perf_counter()
    outcomes: list[tuple[Config, LearnOutcome]] = []
    for i, candidate in enumerate(settings):
        logger.info("learn: candidate %d of %d: %s", i + 1, len(settings), describe(candidate, config))
        outcome = learn(vlm, store, registry, candidate, promote=False, gate_vlm=gate_vlm, general=general,
                        progress=for_candidate(progress, i, len(settings)), memory=memory)
        if outcome.version is None:  # nothing to train on: the same for every candidate
            return outcome
        outcomes.append((candidate, outcome))
    accepted = [o for _, o in outcomes if o.accepted]
    best = max(accepted, key=_rank, default=None)
    lines = []
    for candidate, outcome in outcomes:
        learning, general_score = _rank(outcome)
        verdict = ("kept" if outcome is best else "not the best" if outcome.accepted else "refused by the gate")
        lines.append(f"candidate {outcome.version.id} ({describe(candidate, config)}): held-out "
                     f"{learning:.2f}, general {general_score:.2f}: {verdict}")
        if verdict == "not the best":
            registry.reject(outcome.version.id, f"{best.version.id} answered more held-out events right")
    chosen = best if best is not None else max((o for _, o in outcomes), key=_rank)
    version = chosen.version
    if best is not None and promote:
        version = registry.promote(version.id)
    return replace(chosen, version=version, promoted=best is not None and promote, reasons=[*chosen.reasons, *lines],
                   seconds=time.perf_counter() - start)


def describe(candidate: Config, base: Config) -> str:
    """What a candidate changes in the main `learn` settings ("main settings" when nothing)."""
    main = replace(base.learn, candidates=())
    changed = [f"{k}={v}" for k, v in vars(candidate.learn).items()
               if k != "candidates" and getattr(main, k) != v and k != "seed"]
    return ", ".join(changed) or "main settings"


__all__ = ["candidate_settings", "describe", "learn_best"]
