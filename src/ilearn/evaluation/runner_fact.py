"""The iLearnRobot protocol on a fact scenario (``pharmacy``, ``objects``): R1, R2, R3, R3+retrieval, ablation.

Rounds, in order (each one first *scored*, then, for R1 and R2, *taught*):

| round | model | retrieval | teaching after scoring |
| --- | --- | --- | --- |
| ``R1`` | base, Chain of Question | off | teach users about teach views; sessions closed into events |
| ``R2`` | base | over the events taught so far (R1's when scored) | more teaching, retrieval on |
| ``R3`` | fine-tuned on the shared events of R1-R2 (projector and language model; vision encoder frozen) | off | - |
| ``R3+retrieval`` | the same version | on | - |
| ``R3 (vision trained)`` | fine-tuned with the vision encoder trained too (ablation) | off | - |
| ``R3 (vision trained)+retrieval`` | the same version | on | - |

`ilearn learn` trains both versions by default (`learn.candidates`) and its gate picks one, so either R3 may be
what a robot serves with its memory: the report checks each with retrieval against each part alone
(`ilearn.evaluation.report.together`).

Which of the two trainings is R3 and which the ablation was decided by measurement: on this model the frozen
vision encoder learnt the taught facts better in six of seven comparisons (three full runs and four runs of
benchmarks/r3.py; README), and forgot less of the general set (88 vs 84 in the seeded run).

Each scored round records its `outcomes`: (item, intent, first answer right) per held-out interaction, in the
same order in every round (the same tasks), so that `taught_accuracy` can compare rounds on one set of facts.

Scoring uses held-out interactions only: the scenario's test views, asked by held-out personas, through an
assistant over the same store and memory whose sessions are never closed and whose users are deleted after
the round (see `runner_common`). Teach users are marked trusted (``retrieval.sharing="trusted"``), i.e. the
robot's caretakers, so that what they teach reaches the held-out users in R2 without corroboration. The tuned
versions train on the shared events only, as `ilearn learn` does: an answer the trust rules hold back (two
caretakers who disagree about look-alike objects share neither answer until a reviewer decides) helps its teacher
through retrieval and never reaches the weights that answer everyone. Like `ilearn learn` they train without the
held-out events of `learn.heldout_fraction` (the same split for both), which stay in the memory, and each
version chooses on them whether the memory's guesses may overrule its answers (`ilearn.learning.guesses`; the
round's `guesses` records what it saw).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ilearn.config import LearnConfig
from ilearn.evaluation.metrics import TaskRecord, answer_sources, contains_answer
from ilearn.evaluation.runner_common import Conversation, Deployment, RunContext, round_metrics
from ilearn.evaluation.scenarios.base import FactScenario, Task, derive_seed
from ilearn.evaluation.users import SimulatedUser
from ilearn.memory import calibration
from ilearn.types import Label, TurnKind

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FactSizes:
    """How big a fact-scenario run is (see `QUICK` and `DEFAULT`)."""

    teach_views: int
    """teach views rendered per pharmacy bottle"""
    test_views: int
    """held-out views rendered per pharmacy bottle"""
    teach_tasks: int
    """teaching interactions after R1"""
    teach_tasks_r2: int
    """teaching interactions after R2 (retrieval on)"""
    test_tasks: int
    """scored held-out interactions per round (96 by default: a 90% round's 95% interval, 82-95%, excludes 75%)"""
    general: int
    """general-set (easy-vqa) questions per distinct model"""
    train_steps: int
    """optimizer steps of each fine-tuning"""
    batch_size: int
    """examples per step"""
    score_users: int = 32
    """held-out users talking to the assistant at once while a round is scored (their answers share batches of
    up to `model.max_batch`, 32 in the experiment's defaults); the outcomes equal those of one user after the
    other (pharmacy seed 0, the three tuned rounds: the same 96 outcomes alone and 32 at once, in half the time)"""


QUICK = FactSizes(teach_views=2, test_views=1, teach_tasks=16, teach_tasks_r2=8, test_tasks=8, general=16,
                  train_steps=10, batch_size=4)
DEFAULT = FactSizes(teach_views=4, test_views=4, teach_tasks=36, teach_tasks_r2=24, test_tasks=96, general=100,
                    train_steps=224, batch_size=4)

#: (cache key, report name, retrieval, model: None = base, else the training key)
PLAN: tuple[tuple[str, str, bool, str | None], ...] = (
    ("R1", "R1", False, None),
    ("R2", "R2", True, None),
    ("R3", "R3", False, "novision"),
    ("R3+retrieval", "R3+retrieval", True, "novision"),
    ("R3-vision", "R3 (vision trained)", False, "full"),
    ("R3-vision+retrieval", "R3 (vision trained)+retrieval", True, "full"),
)
TRAINABLE = {"full": ("vision", "projector", "language"), "novision": ("projector", "language")}


def slug(key: str) -> str:
    """A user-id-safe form of a round key."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def play_fact(assistant: Any, user_id: str, user: SimulatedUser, task: Task, stages: dict | None = None
              ) -> tuple[TaskRecord, list[tuple[Label | None, Label]], str | None]:
    """Play one task: the simulated user talks until done. Returns the record, (decoded, true) feedback pairs
    and the session id; `stages` (stage -> list of ms) collects the assistant's per-stage timings."""
    conversation = Conversation(assistant, user_id, task.view, stages)
    text: str | None = user.first_utterance()
    while text is not None:
        reply = conversation.send(text)
        conversation.note_feedback(reply, user.utterances[-1])
        if user.done:
            break
        kind = "clarification" if reply.kind == TurnKind.CLARIFICATION else "answer"
        text = user.reply(reply.text, kind)
    return conversation.record(user.outcome()), conversation.pairs, conversation.session_id


def taught_keys(user: SimulatedUser) -> set[tuple[str, str]]:
    """(item, intent) the user taught correctly: confirmed a right answer or gave the right correction."""
    task = user.task
    good = user.completed or any(u.correction and contains_answer(u.correction, task.reference)
                                 for u in user.utterances)
    return {(task.item.id, task.intent)} if good else set()


def taught_accuracy(round_: dict[str, Any], facts: Iterable[Sequence[str]]) -> float | None:
    """First-answer accuracy of a scored round over its held-out interactions about `facts` ((item, intent)
    pairs), from the round's `outcomes`; None when none is about them.

    A round's `accuracy_taught` is this over the facts taught before it; the same measure over the facts taught
    later compares rounds on one set, e.g. R1 (nothing taught yet) against R3 on the facts R1-R2 taught.
    """
    wanted = {tuple(f) for f in facts}
    hits = [bool(correct) for item, intent, correct in round_["outcomes"] if (item, intent) in wanted]
    return sum(hits) / len(hits) if hits else None


def r3_settings(learn: LearnConfig, *, recipe: str, trainable: tuple[str, ...], steps: int, batch_size: int,
                seed: int) -> LearnConfig:
    """The fine-tuning of round 3: few events, so each is shown as new augmented views, repeated 24 times against
    256 replayed general examples (each seen about once: fresh ones keep the general skills better than 64
    seen four times) that also keep the base model's answer distribution (`distill`: learning without
    forgetting) and its image tokens (`distill_image` 10: the instance path's offset, learnt for the taught
    objects, would otherwise move every image's tokens); LoRA at 1e-3, the aligned projector at 1e-4 (the
    general skills live there), its instance path (zero at first) at 3e-3, the vision encoder (ablation) at 5e-5.
    `benchmarks/r3.py` on the teaching events of seed 0 / seed 1, five training seeds each, 224 steps x 4 (the
    default `steps`): taught-fact probes 41.8 / 45.4 of 48 on average and general 89.0 / 88.4 (base 90); at 160
    steps (too few to fit the training rows: 28-33 of 34 right) 34.0 / 40.0 and 90.2 / 87.8; without
    `distill_image` 35.2 / 40.2 and 88.6 / 86.2, with a spread of 79-89 on seed 1 (87-89 with it)."""
    return replace(learn, recipe=recipe, trainable=trainable, max_steps=steps, batch_size=batch_size, seed=seed,
                   augment=True, event_repeats=24, replay=256, distill=5.0, distill_image=10.0, learning_rate=1e-3,
                   learning_rate_projector=1e-4, learning_rate_instance=3e-3, learning_rate_vision=5e-5)


def run_fact(ctx: RunContext, scenario: FactScenario) -> list[dict[str, Any]]:
    """Run the iLearnRobot rounds on `scenario` (see the module docstring); returns the rounds."""
    sizes: FactSizes = ctx.sizes
    recipe = ctx.methods[0] if ctx.methods else "sft"
    # the scenario's facets (pharmacy: name, use, dose; objects: its facts.json keys) unless the settings name some
    config = ctx.config.override(retrieval={"sharing": "trusted"},
                                 clarify={"facets": ctx.config.clarify.facets or scenario.facets})
    dep = Deployment.open(ctx.home / "teach", config, ctx.vlm)  # trains on shared events, as `ilearn learn` does
    plan = PLAN[: {1: 1, 2: 2}.get(ctx.rounds or 0, len(PLAN))]
    teach_sets = {"R1": scenario.tasks("teach", sizes.teach_tasks, seed=ctx.seed),
                  "R2": scenario.tasks("teach", sizes.teach_tasks_r2, seed=ctx.seed + 1)}
    test_tasks = scenario.tasks("test", sizes.test_tasks, seed=ctx.seed)
    rounds: list[dict[str, Any]] = []
    taught: set[tuple[str, str]] = set()
    try:
        for key, name, retrieval, model in plan:
            done = ctx.cache.load(key)
            if done is not None:
                logger.info("round %s: already done, loaded from the report folder", name)
                rounds.append(done)
                taught |= {tuple(t) for t in done.get("taught", [])}
                continue
            version = choice = None
            start = time.perf_counter()
            if model is not None:
                # as `ilearn learn`: trained without its held-out events, on which the version then chooses
                # whether the memory's guesses may overrule it (`ilearn.learning.guesses`)
                learn = _learn(ctx, recipe, model)
                split = dep.split(learn)
                held = {"heldout_event_ids": sorted(e.id for e in split.heldout)}
                if ctx.parallel:  # the other model (the ablation) trains in a child process meanwhile
                    for later_key, _, _, other in plan:
                        if other not in (None, model) and not ctx.cache.has(later_key):
                            dep.start_training(f"{recipe}-{other}", _learn(ctx, recipe, other), held,
                                               events=split.train)
                version = dep.train_version(f"{recipe}-{model}", learn, metrics=held, events=split.train)
                choice = dep.choose_guesses(version, split.heldout)
            dep.serve(version)
            train_s = time.perf_counter() - start
            round_ = _score(ctx, dep, key, test_tasks, retrieval, taught)
            if model is not None:
                round_["seconds"]["train"] = round(train_s, 1)
            round_.update(name=name, method="base" if model is None else recipe, retrieval=retrieval,
                          version=version or "base", trainable=list(TRAINABLE[model]) if model else None)
            if choice is not None:
                round_["guesses"] = choice
            if key in teach_sets:
                new = _teach(ctx, dep, key, teach_sets[key], retrieval)
                round_.update(new)
                taught |= {tuple(t) for t in new["taught"]}
            rounds.append(ctx.finish(round_, key))
    finally:
        dep.serve(None)
        dep.close()
    return rounds


def _learn(ctx: RunContext, recipe: str, model: str) -> LearnConfig:
    sizes: FactSizes = ctx.sizes
    return ctx.fine_tuning(r3_settings(ctx.config.learn, recipe=recipe, trainable=TRAINABLE[model],
                                       steps=sizes.train_steps, batch_size=sizes.batch_size, seed=ctx.seed))


def _score(ctx: RunContext, dep: Deployment, key: str, tasks: list[Task], retrieval: bool,
           taught: set[tuple[str, str]]) -> dict[str, Any]:
    prefix = f"score-{slug(key)}-"
    dep.forget_users(prefix)  # left by an interrupted attempt
    assistant = dep.assistant(retrieval=retrieval)
    records: list[TaskRecord] = []
    pairs: list[tuple[Label | None, Label]] = []
    outcomes: list[tuple[str, str, bool]] = []
    stages: dict[str, list[float]] = {}
    start = time.perf_counter()

    def play(i: int) -> tuple[TaskRecord, list[tuple[Label | None, Label]]]:
        task = tasks[i]
        persona = ctx.test_personas[i % len(ctx.test_personas)]
        user = SimulatedUser(persona, task, random.Random(derive_seed("score", ctx.seed, key, i)))
        record, fb, _ = play_fact(assistant, prefix + persona.name, user, task, stages)
        return record, fb

    # the interactions are independent (sessions never closed, nothing learnt), so several held-out users talk at
    # once and their answers share model batches; results are collected in task order
    with calibration.frozen(dep.memory):
        for task, (record, fb) in zip(tasks, ctx.at_once(len(tasks), play, f"{key} score"), strict=True):
            records.append(record)
            pairs += fb
            outcomes.append((task.item.id, task.intent, record.first_answer_correct))
    score_s = time.perf_counter() - start
    dep.forget_users(prefix)  # scoring never feeds memory
    out = round_metrics(records, pairs, text_metrics=True, bertscore=ctx.bertscore, threads=ctx.threads)
    out["stage_ms_mean"] = {k: sum(v) / len(v) for k, v in sorted(stages.items())}
    out["first_answer_sources"] = answer_sources(records)
    out["outcomes"] = outcomes
    out["accuracy_taught"] = taught_accuracy(out, taught)
    out["n_taught_interactions"] = sum((item, intent) in taught for item, intent, _ in outcomes)
    # distinct (object, view, fact) asked: fewer than the interactions when the set has fewer test views than that
    # (the same view asked again by another persona, in other words: not an independent trial)
    out["n_distinct_tasks"] = len({(t.item.id, t.view_index, t.intent) for t in tasks})
    start = time.perf_counter()
    out["general_accuracy"] = ctx.general()
    out["seconds"] = {"score": round(score_s, 1), "general": round(time.perf_counter() - start, 1)}
    return out


def _teach(ctx: RunContext, dep: Deployment, key: str, tasks: list[Task], retrieval: bool) -> dict[str, Any]:
    prefix = f"{slug(key)}-teach-"
    dep.forget_users(prefix)  # partial teaching of an interrupted attempt
    assistant = dep.assistant(retrieval=retrieval)
    before = dep.store.count_events()
    start = time.perf_counter()
    taught: set[tuple[str, str]] = set()
    first_right = 0
    records: list[TaskRecord] = []
    for i, task in enumerate(ctx.bar(tasks, f"{key} teach")):
        persona = ctx.teach_personas[i % len(ctx.teach_personas)]
        user_id = prefix + persona.name
        dep.store.ensure_user(user_id, trusted=True)
        user = SimulatedUser(persona, task, random.Random(derive_seed("teach", ctx.seed, key, i)))
        record, _, session_id = play_fact(assistant, user_id, user, task)
        first_right += record.first_answer_correct
        records.append(record)
        if session_id is not None:
            assistant.close_session(session_id)
        taught |= taught_keys(user)
    return {"n_teach_interactions": len(tasks), "teach_events": dep.store.count_events() - before,
            "teach_accuracy": first_right / len(tasks) if tasks else None, "taught": sorted(taught),
            "teach_answer_sources": answer_sources(records),
            "teach_seconds": round(time.perf_counter() - start, 1)}
