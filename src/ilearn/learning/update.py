"""The model update, end to end: dataset snapshot -> train -> candidate -> gate -> promote or reject.

    outcome = learn(vlm, store, registry, config)          # what `ilearn learn` and Assistant.learn run

Held-out events (at most a seeded `learn.heldout_fraction` of the corrected/confirmed events, chosen by content so
a rerun holds out the same ones, and only new views of facts that stay taught: `split_heldout`) are kept out of
training and measure learning; the general set (easy-vqa for the
default model) measures forgetting, the bias set stereotyping (`ilearn.users.bias.gate_bias_set`: the picture
items and the profile bias set; see `gate.py`). The candidate is trained from the base weights on the whole
snapshot, so versions do not stack, unless `learn.start_from` names a version to train on top of
(`ilearn.learning.recipes`; the candidate then counts that version's events as its own). Each run trains with its
own seed (`learn.seed` + the number of versions trained before), so a candidate the gate turned down is not trained
again identically: on the same events, training seeds alone moved the general set between 79 and 89 of 100
(`benchmarks/r3.py --set seed=N`).

Scope: the shared model learns only from SHARED events (`shared_events`): answers the trust rules shared
(corroborated by the voices of distinct users, taught by a trusted user, kept by a reviewer) or that their
creator shared. A private event (what one user taught only for herself) is never a training row, a held-out
question, a gate negative or a gate example: it helps its user through retrieval alone (docs/privacy.md).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image

from ilearn.config import Config, LearnConfig
from ilearn.errors import InvalidInput
from ilearn.images import decode_image
from ilearn.learning.progress import OnProgress, reporter
from ilearn.types import Event, EventStatus, ImageRef, ModelVersion, Scope, answer_key

logger = logging.getLogger(__name__)

@dataclass
class LearnOutcome:
    """What one model update did."""

    version: ModelVersion | None  # None: nothing to train on
    promoted: bool = False
    reasons: list[str] = field(default_factory=list)
    gate: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    n_train_events: int = 0
    n_heldout_events: int = 0
    seconds: float = 0.0

    @property
    def accepted(self) -> bool:
        """Whether the gate passed the candidate (promoted or not)."""
        return bool(self.gate and self.gate.get("promote"))

    def summary(self) -> str:
        if self.version is None:
            return "nothing to learn: " + "; ".join(self.reasons)
        verdict = "promoted" if self.promoted else "kept as a candidate (not promoted)"
        return "\n".join([f"{self.version.id} ({self.version.recipe}, {self.n_train_events} events): {verdict}",
                          *(f"  - {r}" for r in self.reasons)])


def image_loader(store: Any, max_pixels: int = 40_000_000) -> Callable[[ImageRef], Image.Image]:
    """ImageRef -> PIL image from the store (decoded once per sha256)."""
    cache: dict[str, Image.Image] = {}

    def load(ref: ImageRef) -> Image.Image:
        if ref.sha256 not in cache:
            cache[ref.sha256] = decode_image(store.get_image_bytes(ref.sha256), max_pixels=max_pixels)[0]
        return cache[ref.sha256]

    return load


def dataset_kind(recipe: str) -> str:
    """The dataset `recipe` trains on: the `dataset` of the recipe registered under that name in `ilearn.plugins`
    (a key of ilearn.learning.datasets.BUILDERS); InvalidInput for an unknown recipe or one that names none."""
    from ilearn import plugins
    from ilearn.learning.datasets import BUILDERS

    kind = getattr(plugins.resolve("recipe", recipe), "dataset", None)
    if kind not in BUILDERS:
        raise InvalidInput(f"recipe {recipe!r} must name the dataset it trains on (`dataset`: one of "
                           f"{', '.join(BUILDERS)}), not {kind!r}")
    return kind


def training_rows(learn: LearnConfig, events: Sequence[Event], image_fn: Callable[[ImageRef], Any]) -> list[dict]:
    """The rows of `learn.recipe`'s dataset (TRL standard columns, `event_id` kept) built from `events`, rewarded
    by `learn`'s remap where the recipe trains on rewards; with `learn.user_aware`, the user-aware rows made of the
    events' sft rows (`ilearn.users.tuning.tuning_rows`)."""
    from ilearn.learning.datasets import build

    if learn.user_aware:
        from ilearn.users.tuning import tuning_rows

        return tuning_rows(learn.recipe, build("sft", events, image_fn, with_ids=True, learn=learn))
    return build(dataset_kind(learn.recipe), events, image_fn, with_ids=True, learn=learn)


def trainable_problem(recipe: str, rows: Sequence[dict]) -> str | None:
    """Why `rows` cannot train `recipe`, or None."""
    if not rows:
        return f"no {recipe} training examples yet"
    if recipe == "kto" and len({bool(r["label"]) for r in rows}) < 2:
        return "kto needs both desirable and undesirable examples"
    return None


def replay_rows(n: int, seed: int, recipe: str = "sft") -> list[dict]:
    """`n` general image questions (a seeded sample of the easy-vqa train split) as rows of `recipe`'s dataset,
    for replay: sft rows with the right answer; kto rows labelled desirable; reinforce rows with the positive
    label (its reward comes from the settings' remap); dpo rows with a wrong answer of the same kind (another
    colour, shape, or the other of yes / no) as `rejected`. Replayed rows are never augmented and carry `replay`
    True (sft's distillation term reads it: `ilearn.learning.distill`)."""
    if n <= 0:
        return []
    kind = dataset_kind(recipe)
    import random

    from ilearn.data.easyvqa import answer_vocabulary, kind_of, load_split, sample
    from ilearn.learning.datasets import completion_messages, prompt_messages
    from ilearn.learning.distill import REPLAY_COLUMN

    rng = random.Random(seed)
    vocabulary = sorted(answer_vocabulary())
    rows = []
    for q in sample(load_split("train"), n, seed):
        prompt, answer = prompt_messages(q.question, True), completion_messages(q.answer)
        row: dict[str, Any] = {"images": [Image.open(q.image_path).convert("RGB")], "augment": False,
                               REPLAY_COLUMN: True}
        if kind == "sft":
            row["messages"] = prompt + answer
        elif kind == "dpo":
            wrong = [a for a in vocabulary if a != q.answer and kind_of(a) == kind_of(q.answer)]
            row.update(prompt=prompt, chosen=answer, rejected=completion_messages(rng.choice(wrong)))
        else:  # kto and reinforce's rewards
            row.update(prompt=prompt, completion=answer, label=True)
        rows.append(row)
    return rows


def training_set(rows: Sequence[dict], learn: LearnConfig) -> list[dict]:
    """What a recipe trains on: each event row `learn.event_repeats` times, plus `learn.replay` general examples
    in the recipe's own format."""
    return [*list(rows) * learn.event_repeats, *replay_rows(learn.replay, learn.seed, learn.recipe)]


class HeldOutLeak(RuntimeError):
    """Training rows carry a held-out event: the gate would score data the candidate trained on."""


def guard_heldout(rows: Sequence[dict], heldout_ids: Sequence[str]) -> None:
    """Raise HeldOutLeak when any of `rows` was built from a held-out event."""
    leaked = sorted({r["event_id"] for r in rows if r.get("event_id") in set(heldout_ids)})
    if leaked:
        raise HeldOutLeak(f"{len(leaked)} held-out event(s) reached the training rows: {', '.join(leaked[:5])}")


def train_candidate(vlm: Any, registry: Any, learn: LearnConfig, rows: Sequence[dict],
                    metrics: dict[str, Any] | None = None,
                    on_step: Callable[[int, int], None] | None = None) -> ModelVersion:
    """Train `learn.recipe` on `rows` (each `learn.event_repeats` times, plus `learn.replay` general examples)
    from the base weights (or on top of the version `learn.start_from` names) and register the result as a
    candidate; the version's event ids are those of `rows` (and of the start version).
    `metrics["heldout_event_ids"]`, when given, are checked against `rows` and against the events of the version
    `learn.start_from` names first (HeldOutLeak: the gate would score what the weights learnt). `on_step(step,
    steps)` is told as training goes (`recipes.train`)."""
    from ilearn.learning.recipes import train

    heldout = (metrics or {}).get("heldout_event_ids", ())
    guard_heldout(rows, heldout)
    start = start_version(registry, learn)
    learnt = set(start.event_ids) & set(heldout) if start is not None else set()
    if learnt:  # the start's weights learnt them: no fresh test for the gate
        raise HeldOutLeak(f"the start version {start.id} was trained on {len(learnt)} of the held-out event(s); "
                          f"start from a version trained on fewer events, or the base")
    version_id, path = registry.new_path()
    result = train(vlm, training_set(rows, learn), learn, path, on_step=on_step,
                   start=start.path if start is not None else None)
    return register_candidate(registry, learn, rows, version_id, path, result, metrics)


def start_version(registry: Any, learn: LearnConfig) -> ModelVersion | None:
    """The version `learn.start_from` names (None when empty): NotFound for an unknown id, InvalidInput for one
    without weights or trained on forgotten events."""
    if not learn.start_from:
        return None
    start = registry.get(learn.start_from)
    if not start.path:
        raise InvalidInput(f"model version {start.id} has no weights to train on top of")
    if start.metrics.get("forgotten"):
        raise InvalidInput(f"model version {start.id} was trained on forgotten events: train from the base weights")
    return start


def register_candidate(registry: Any, learn: LearnConfig, rows: Sequence[dict], version_id: str, path: Path,
                       result: Any, metrics: dict[str, Any] | None = None) -> ModelVersion:
    """Register the weights `result` (a TrainResult) saved in `path` (from `registry.new_path()`) as a candidate
    trained with `learn` on `rows`; the version's event ids are those of `rows`, and it is marked `USER_AWARE` when
    `learn.user_aware`."""
    from ilearn.users.tuning import USER_AWARE

    event_ids = {r["event_id"] for r in rows if "event_id" in r}
    start = start_version(registry, learn)
    if start is not None:  # what it was trained on is in these weights too
        event_ids |= set(start.event_ids)
    aware = {USER_AWARE: True} if learn.user_aware else {}
    return registry.register(path=path, recipe=learn.recipe, settings=asdict(learn), event_ids=sorted(event_ids),
                             metrics={"train": result.to_dict(), **aware, **(metrics or {})}, version_id=version_id)


class Split(NamedTuple):
    """A snapshot's events: those training may use, and those kept out of it for the gate."""

    train: list[Event]
    heldout: list[Event]


def split_heldout(events: Sequence[Event], fraction: float, seed: int) -> Split:
    """(train, held-out): held-out are at most `fraction` of the events with a correct answer (rounded, and at least
    one when there are two or more), taken in the order of a seeded hash of their content (user, image, question,
    answer), so the same events stay held out as more arrive and the same chats give the same split in every run
    (event ids are random), and only where another event that stays in training teaches the same answer
    (`answer_key`): a new view of a taught fact, which is what the gate should measure and what the weights lose
    nothing by. A fact taught once is held out only when there is no such view at all (one event, so that learning
    can still be measured).

    Before (2026-12-06 to 2026-12-07), any `fraction` of the events was held out: a fact whose only event was held
    out was missing from the weights and could not count for the candidate either (the pharmacy's R3 fell from
    92.1 to 74.6% of taught facts). (Drawing each event with probability `fraction` left small snapshots without
    any held-out event: 8 events at 0.25 had none one time in ten, and learning could not be measured.)"""
    def bucket(event: Event) -> bytes:  # what the event says, not its random id: the same chats, the same split
        image = event.image.sha256 if event.image is not None else ""
        return hashlib.sha256(f"{seed}:{event.user_id}:{image}:{event.question}:{event.answer}".encode()).digest()

    eligible = sorted((e for e in events if e.answer.strip() and e.status == EventStatus.ACTIVE), key=bucket)
    n = round(fraction * len(eligible))
    n = max(n, 1) if len(eligible) >= 2 else n
    taught = Counter(answer_key(e.answer) for e in eligible)  # the events that teach each answer, still in training
    heldout = []
    for event in eligible:
        if len(heldout) == n:
            break
        key = answer_key(event.answer)
        if taught[key] > 1:
            heldout.append(event)
            taught[key] -= 1
    heldout = heldout or eligible[:min(n, 1)]  # no second view anywhere: one fact held out, to measure anything
    held = {e.id for e in heldout}
    return Split([e for e in events if e.id not in held], heldout)


def shared_events(store: Any, robot_id: str) -> list[Event]:
    """The events the shared model may learn from: the robot's SHARED events (module docstring)."""
    return store.list_events(robot_id=robot_id, scope=Scope.SHARED)


def learn(vlm: Any, store: Any, registry: Any, config: Config, *, promote: bool = True,
          gate_vlm: Any | None = None, general: bool = True, progress: OnProgress | None = None,
          memory: Any = None) -> LearnOutcome:
    """One model update on the robot's shared events (`shared_events`). `promote=False` only trains and gates.

    `gate_vlm` is the active model the candidate is compared with (default: `vlm`, which must then serve the
    active version); the candidate is loaded as a second model. `progress` is told the phase and the fraction
    done as the update goes (`ilearn.learning.progress`). With the retrieval `memory` (and guesses on:
    `retrieval.guess_threshold`), the held-out events of a candidate the gate passes also choose whether the
    memory's guesses may overrule its answers (`ilearn.learning.guesses`; kept in its metrics, followed when it
    serves).
    """
    from ilearn.learning.gate import Margins, evaluate_candidate, heldout_from_events, negatives_from_events
    from ilearn.learning.general import general_easyvqa
    from ilearn.users.bias import gate_bias_set

    start = time.perf_counter()
    tell = reporter(progress)
    tell("distilling")
    learn_cfg = config.learn
    events = shared_events(store, config.robot_id)  # never a private event: not trained, held out or probed
    train_events, heldout = split_heldout(events, learn_cfg.heldout_fraction, learn_cfg.seed)
    image_fn = image_loader(store, config.limits.max_image_pixels)
    rows = training_rows(learn_cfg, train_events, image_fn)  # the held-out events never get here
    problem = trainable_problem(learn_cfg.recipe, rows)
    if problem is not None:
        logger.info("learn: %s", problem)
        reasons = [problem]
        private = store.count_events(robot_id=config.robot_id, scope=Scope.PRIVATE, status=EventStatus.ACTIVE)
        if private:
            reasons.append(f"{private} private event(s) are not learned from: the shared model learns only what "
                           f"is shared (corroborated, taught by a trusted user or kept by a reviewer)")
        return LearnOutcome(None, reasons=reasons, seconds=time.perf_counter() - start)
    logger.info("learn: %s on %d rows (%d events), %d held out", learn_cfg.recipe, len(rows), len(train_events),
                len(heldout))
    train_cfg = replace(learn_cfg, seed=learn_cfg.seed + len(registry.list()))  # held-out split: learn.seed
    version = train_candidate(vlm, registry, train_cfg, rows, {"heldout_event_ids": sorted(e.id for e in heldout)},
                              on_step=lambda step, steps: tell("training", step, steps))
    tell("gating")
    candidate = registry.load(config.model, version.id)
    active = gate_vlm if gate_vlm is not None else vlm
    general_set = general_easyvqa(learn_cfg.general_limit, learn_cfg.seed) if general else None
    usable = [e for e in events if e.status == EventStatus.ACTIVE]
    report = evaluate_candidate(active, candidate, heldout_from_events(heldout, image_fn), general_set,
                                bias_set=gate_bias_set(), margins=Margins.from_config(learn_cfg),
                                negatives=negatives_from_events(heldout, usable, image_fn))
    metrics: dict[str, Any] = {"gate": report.to_dict()}
    reasons = list(report.reasons)
    if report.promote and memory is not None and config.retrieval.guess_threshold is not None:  # may serve
        from ilearn.learning.guesses import GUESSES, choose_guesses

        choice = choose_guesses(candidate, heldout, memory, config.retrieval, image_fn, config.robot_id,
                                config.model.max_new_tokens)
        metrics[GUESSES] = choice.to_dict()
        reasons.append(choice.summary())
    version = registry.update_metrics(version.id, metrics)
    if promote and report.promote:
        version = registry.promote(version.id)
    elif not report.promote:
        version = registry.reject(version.id, "; ".join(report.reasons))
    return LearnOutcome(version, promoted=promote and report.promote, reasons=reasons,
                        gate=report.to_dict(), train=version.metrics.get("train"), n_train_events=len(train_events),
                        n_heldout_events=len(heldout), seconds=time.perf_counter() - start)
