"""Multi-round learning experiments with simulated users: `run_experiment` (behind ``ilearn experiment``).

    report = run_experiment("pharmacy", model="small", quick=True, report_dir="reports/pharmacy")

Scenarios and protocols:

- ``pharmacy`` and ``objects`` (``objects_dir=DIR``): iLearnRobot's rounds R1 (base + Chain of Question, no
  retrieval), R2 (retrieval over the taught events), R3 (fine-tuned on rounds 1-2, vision encoder frozen),
  R3+retrieval, and the ablation ``R3 (vision trained)`` alone and with retrieval (`ilearn.evaluation.runner_fact`);
- ``personal``: users with profiles and look-alike things of their own (issue 24): R1 (base), R2 (memory: their
  profiles and things, the taught facts in the prompt) with the profile as nothing, a tag or the long instruction
  prompt, R3 (user-aware tuning, the tag), R3+memory, R3 (DPO with the bias pairs); see
  `ilearn.evaluation.runner_personal`;
- ``reference-game``: ReSpect's round0..roundN per method (``sft``, ``reinforce``, ``kto``; see
  `ilearn.evaluation.runner_game`).

Every scored round uses held-out interactions (new views or games, held-out personas) that never reach memory
or training. The report folder gets report.json / report.md / PNG plots (`ilearn.evaluation.report`) and one
file per finished round under ``rounds/``: a rerun with the same settings loads finished rounds instead of
recomputing them (the deployment homes, with their events and trained versions, live under ``--home``,
``<report>/work`` by default, and are reused too). A rerun with other settings into the same folder is refused.

Sizes (`runner_fact.QUICK` / `DEFAULT`, `runner_game.QUICK` / `DEFAULT`) were chosen so that on a 2-core CPU
with the ``small`` model ``--quick`` takes about 3 minutes and the default run about 15 (see the README).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from ilearn import plugins
from ilearn.config import Config, LearnConfig
from ilearn.errors import InvalidInput
from ilearn.evaluation import runner_fact, runner_game, runner_personal
from ilearn.evaluation.personas import PERSONAS, split_personas
from ilearn.evaluation.report import RoundCache, write_report
from ilearn.evaluation.runner_common import RunContext, can_train_beside

logger = logging.getLogger(__name__)

N_TEST_PERSONAS = 8
"""Personas held out for scoring (never used for teaching)."""

EXPERIMENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"max_new_tokens": 24, "max_batch": 32},
}
"""Assistant settings the experiment uses when no `config` is given (a given config is used as it is).

The feedback decoder is the assistant's default (lexical rules with the MiniLM rephrase check, the best measured
on the labelled reaction set; see benchmarks/feedback.py). 24 new tokens: every reference answer fits, and
base-model rambling costs less. Batches of up to 32 answers: the scored rounds' 32 held-out users at once
(`runner_fact.FactSizes.score_users`) share them; `small` gives 4.99 turns/s with 32 users in batches of up to
32 against 3.01 with 8 in batches of 8 (benchmarks/concurrency.py)."""


_PROTOCOL_OWNED = frozenset({"recipe", "trainable", "max_steps", "batch_size", "seed"})
"""LearnConfig fields each round sets itself (from `methods`, the round, `sizes` and `seed`)."""


def _sizes(scenario: str, quick: bool) -> Any:
    if scenario == "personal":
        return runner_personal.QUICK if quick else runner_personal.DEFAULT
    if scenario == "reference-game":
        return runner_game.QUICK if quick else runner_game.DEFAULT
    return runner_fact.QUICK if quick else runner_fact.DEFAULT


def _check(scenario: str, rounds: int | None, users: int | None, methods: list[str] | None,
           objects_dir: str | Path | None, learn: dict[str, Any] | None) -> None:
    plugins.check("scenario", scenario)
    if rounds is not None and rounds < 1:
        raise InvalidInput("rounds must be >= 1")
    if users is not None and not 1 <= users <= len(PERSONAS) - N_TEST_PERSONAS:
        raise InvalidInput(f"users must be between 1 and {len(PERSONAS) - N_TEST_PERSONAS} (teaching personas)")
    for m in methods or []:
        if not plugins.is_known("recipe", m):
            raise InvalidInput(f"unknown method {m!r}; choose among {', '.join(plugins.names('recipe'))}")
    if scenario == "objects" and objects_dir is None:
        raise InvalidInput("the objects scenario needs a folder: --objects DIR (one subfolder per object)")
    given = set(learn or {})
    unknown = sorted((given - {f.name for f in fields(LearnConfig)}) | (given & _PROTOCOL_OWNED))
    if unknown:
        raise InvalidInput(f"learn settings the protocol cannot take: {', '.join(unknown)} (LearnConfig fields "
                           f"other than {', '.join(sorted(_PROTOCOL_OWNED))})")


def _scenario(name: str, seed: int, sizes: Any, objects_dir: str | Path | None, rounds: int | None) -> Any:
    from ilearn.evaluation.scenarios import load_scenario

    if name == "pharmacy":
        return load_scenario(name, seed=seed, n_teach=sizes.teach_views, n_test=sizes.test_views)
    if name == "objects":
        return load_scenario(name, directory=objects_dir, seed=seed)
    if name == "personal":
        return load_scenario(name, seed=seed, users_per_group=sizes.users_per_group, n_teach=sizes.teach_views,
                             n_test=sizes.test_views)
    n_rounds = rounds if rounds is not None else sizes.rounds
    return load_scenario(name, seed=seed, n_teach=sizes.teach_games * max(n_rounds, 1), n_test=sizes.test_games)


def _baseline(scenario: Any) -> dict[str, Any] | None:
    """The frozen-feature nearest neighbour on the run's teach/test views (a few seconds), None if it cannot run."""
    from ilearn.evaluation.baseline import frozen_nn_baseline

    try:
        return frozen_nn_baseline(scenario)
    except Exception as exc:  # noqa: BLE001 - the report is still written without its reference line
        logger.warning("no frozen-feature baseline: %s", exc)
        return None


def run_experiment(scenario_name: str, *, model: str = "small", rounds: int | None = None, users: int | None = None,
                   seed: int = 0, quick: bool = False, report_dir: str | Path, objects_dir: str | Path | None = None,
                   methods: list[str] | None = None, progress: bool = True, home: str | Path | None = None,
                   threads: int = 1, config: Config | None = None, bertscore: bool = True, sizes: Any = None,
                   on_round: Callable[[dict[str, Any]], None] | None = None,
                   parallel: bool | None = False, learn: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the scenario's protocol with simulated users and write the report folder; returns report.json's dict.

    `rounds`: pharmacy/objects: 1 (R1), 2 (R1-R2) or more (all); reference-game: training rounds after round0.
    `users`: teaching personas (default: all 22 not held out). `methods`: reference-game recipes (default
    sft, reinforce, kto); for pharmacy/objects the first one is R3's recipe (default sft). `home`: where the
    deployments live (default `<report_dir>/work`). `config`: base settings (model backend, threads and home
    are set from the other arguments). `sizes`: a `runner_fact.FactSizes` / `runner_game.GameSizes` instead of
    the quick or default one. `on_round(round)` is called after each round that was computed (not loaded).
    `parallel`: pharmacy/objects train the vision-encoder ablation in a child process beside R3 (the same
    results; None: when the model runs on the CPU and the machine has cores for two runs of `threads`, as
    `ilearn experiment` does). The child is spawned, so a script calling this with it on needs the usual
    `if __name__ == "__main__":` guard. `learn`: LearnConfig fields that replace the protocol's own fine-tuning
    settings (`runner_fact.r3_settings`, `runner_game.game_settings`, calibrated on `small`), e.g. a learning rate
    that suits a random-weight model; the round's recipe, trainable parts, steps, batch size and seed stay the
    protocol's.
    """
    _check(scenario_name, rounds, users, methods, objects_dir, learn)
    learn = {k: tuple(v) if isinstance(v, list) else v for k, v in (learn or {}).items()}
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    report_dir = Path(report_dir)
    home_path = Path(home) if home is not None else report_dir / "work"
    sizes = sizes or _sizes(scenario_name, quick)
    if methods is None:
        methods = list(runner_game.METHODS) if scenario_name == "reference-game" else ["sft"]
    settings = {"scenario": scenario_name, "model": model, "seed": seed, "quick": quick, "rounds": rounds,
                "users": users, "methods": methods,
                # how many scoring users talk at once changes no result: a folder resumes with another number
                "sizes": {k: v for k, v in asdict(sizes).items() if k != "score_users"},
                "objects_dir": str(Path(objects_dir).resolve()) if objects_dir is not None else None}
    if learn:  # only when given: report folders written before this option still resume
        settings["learn"] = learn
    cache = RoundCache(report_dir, settings)
    base = config if config is not None else Config().override(**EXPERIMENT_DEFAULTS)
    base = base.override(model={"backend": model, "threads": threads, "seed": seed}, home=str(home_path))
    scenario = _scenario(scenario_name, seed, sizes, objects_dir, rounds)
    teach_personas, test_personas = split_personas(seed, n_test=N_TEST_PERSONAS)
    if users is not None:
        teach_personas = teach_personas[:users]

    from ilearn.models import load_model

    vlm = load_model(base.model)
    ctx = RunContext(scenario=scenario_name, seed=seed, vlm=vlm, config=base, home=home_path, cache=cache,
                     sizes=sizes, teach_personas=teach_personas, test_personas=test_personas, methods=methods,
                     rounds=rounds, progress=progress, threads=threads, bertscore=bertscore, on_round=on_round,
                     learn=learn,
                     parallel=can_train_beside(base.model, threads) if parallel is None else parallel)
    extras: dict[str, Any] = {}
    if scenario_name == "reference-game":
        result_rounds = runner_game.run_game(ctx, scenario)
    elif scenario_name == "personal":
        result_rounds, extras = runner_personal.run_personal(ctx, scenario)
    else:
        result_rounds = runner_fact.run_fact(ctx, scenario)
    result = {"scenario": scenario_name, "model": model, "seed": seed, "rounds": result_rounds,
              "settings": settings, "elapsed_s": round(time.perf_counter() - start, 1),
              "personas": {"teach": [p.name for p in teach_personas], "test": [p.name for p in test_personas]}}
    if scenario_name == "objects":
        result["skipped_photos"] = list(getattr(scenario, "skipped", []))
    if scenario_name not in ("reference-game", "personal"):
        result["baseline"] = _baseline(scenario)
    result.update(extras)
    paths = write_report(result, report_dir)
    if scenario_name == "personal":
        runner_personal.write_tables(json.loads(paths["report.json"].read_text(encoding="utf-8")), report_dir)
    logger.info("experiment %s done in %.1f s; report in %s", scenario_name, result["elapsed_s"], report_dir)
    return json.loads(paths["report.json"].read_text(encoding="utf-8"))
