"""What both experiment runners share: deployments, held-out scoring hygiene, training glue, round metrics.

A `Deployment` is one assistant home (SQLite store, retrieval memory, feedback decoder, model registry) around a
VLM that the whole experiment shares (loaded once). Assistants are built per phase with the settings of that
phase (retrieval on or off, Chain of Question on or off) over the same store and memory, and *without* a
registry: the runner decides which weights the shared VLM serves (`serve`), so that no assistant swaps them
behind its back at each turn.

Scoring never leaks into memory: scoring users get ids ``score-<round>-<persona>``, their sessions are never
closed (so never distilled into events), and `forget_users` deletes them (sessions, turns, images) once the
round is scored, and again before a round is (re)scored after an interruption.

Training glue (no on-demand ``learn`` orchestration existed when this was written): `train_version` builds the
recipe's dataset from the deployment's events (images read from the store), trains from the base weights with
`ilearn.learning.recipes.train`, and registers the result as a candidate in the deployment's `ModelRegistry`;
the experiment promotes nothing and skips the gate, since every round measures the candidate directly.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from PIL import Image

from ilearn.assistant import Assistant
from ilearn.config import Config, LearnConfig
from ilearn.errors import NotFound
from ilearn.evaluation.metrics import BertScorer, TaskRecord, decoder_scores, rouge1, summarise
from ilearn.models.versions import ModelVersions
from ilearn.types import Event, ImageRef, Label, TurnKind

T = TypeVar("T")

if TYPE_CHECKING:
    from ilearn.dialogue.feedback import FeedbackDecoder
    from ilearn.learning.registry import ModelRegistry
    from ilearn.learning.update import Split
    from ilearn.memory.base import RetrievalMemory
    from ilearn.memory.store import EventStore
    from ilearn.models.base import VisionLanguageModel

logger = logging.getLogger(__name__)

#: dataset builder per recipe (ReSpect: sft is filtered fine-tuning on positive / corrected answers)
VERSIONS_FILE = "versions.json"


@dataclass
class Deployment:
    """One assistant home around the experiment's shared VLM (see the module docstring)."""

    home: Path
    config: Config
    vlm: VisionLanguageModel
    store: EventStore
    memory: RetrievalMemory
    decoder: FeedbackDecoder
    registry: ModelRegistry
    background: dict[str, BackgroundTraining] = field(default_factory=dict)
    shared_only: bool = True
    """Train only on the SHARED events, as `ilearn learn` does (`ilearn.learning.update.shared_events`): what one
    teacher taught for herself, or what the trust rules hold back, never reaches the shared model's weights.
    Every protocol trains so; False (every event) is for comparisons only."""

    @classmethod
    def open(cls, home: str | Path, config: Config, vlm: VisionLanguageModel,
             shared_only: bool = True) -> Deployment:
        """Open (or create) the deployment in `home` with the shared `vlm` (parts from `build_runtime`; each
        deployment keeps its store in its own home, whatever `config.store` says)."""
        from ilearn.runtime import build_runtime

        home = Path(home)
        config = config.override(home=str(home), store="")
        parts = build_runtime(config, vlm=vlm)
        return cls(home, config, vlm, parts.store, parts.memory, parts.decoder, parts.registry,
                   shared_only=shared_only)

    def assistant(self, *, retrieval: bool, clarify: bool = True) -> Assistant:
        """An assistant over this deployment's store and memory with retrieval / clarification on or off."""
        config = self.config.override(retrieval={"enabled": retrieval}, clarify={"enabled": clarify})
        # the registry's metrics say what each version chose (e.g. `ilearn.learning.guesses`); the versions are
        # the shared model as `serve` left it, never the registry's active one
        return Assistant(config, self.vlm, self.store, memory=self.memory, feedback_decoder=self.decoder,
                         registry=self.registry, versions=ModelVersions(self.vlm))

    def image(self, ref: ImageRef) -> Image.Image:
        """An image of the store as RGB PIL."""
        with Image.open(io.BytesIO(self.store.get_image_bytes(ref.sha256))) as img:
            return img.convert("RGB")

    def events(self) -> list[Event]:
        """What this deployment trains on: every event, or its shared ones (`shared_only`)."""
        from ilearn.learning.update import shared_events

        return shared_events(self.store, self.config.robot_id) if self.shared_only else self.store.list_events()

    def split(self, learn: LearnConfig) -> Split:
        """`events` split as `ilearn learn` splits them (`learn.heldout_fraction`, `learn.seed`): what training may
        use, and the held-out events a version's choices are made on (`choose_guesses`)."""
        from ilearn.learning.update import split_heldout

        return split_heldout(self.events(), learn.heldout_fraction, learn.seed)

    def rows(self, learn: LearnConfig, events: Sequence[Event] | None = None) -> list[dict]:
        """The training rows of `learn.recipe` from `events` (default: `events()`); images as PIL, rewards from
        `learn`'s remap."""
        from ilearn.learning.update import training_rows

        return training_rows(learn, self.events() if events is None else events, self.image)

    def choose_guesses(self, version_id: str | None, heldout: Sequence[Event]) -> dict[str, Any] | None:
        """Whether the memory's guesses may overrule `version_id`'s answers, chosen on the `heldout` events as
        `ilearn learn`'s gate chooses (`ilearn.learning.guesses`) and kept in the version's metrics (a version that
        chose before keeps its choice); None without a version or without guesses. Serves `version_id`."""
        from ilearn.learning.guesses import GUESSES, choose_guesses

        if version_id is None or self.config.retrieval.guess_threshold is None:
            return None
        known = self.registry.get(version_id).metrics.get(GUESSES)
        if known is not None:
            return known
        self.serve(version_id)
        choice = choose_guesses(self.vlm, heldout, self.memory, self.config.retrieval, self.image,
                                self.config.robot_id, self.config.model.max_new_tokens).to_dict()
        self.registry.update_metrics(version_id, {GUESSES: choice})
        return choice

    def forget_users(self, prefix: str) -> int:
        """Delete every user whose id starts with `prefix` (sessions, turns, events, vectors); returns how many."""
        users = [u for u in self.store.list_users() if u.startswith(prefix)]
        for user in users:
            self.memory.forget_user(user)
        return len(users)

    # -- model versions -----------------------------------------------------------------------------------
    def _versions(self) -> dict[str, str]:
        path = self.home / VERSIONS_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def version(self, key: str) -> str | None:
        """The version id trained earlier under `key` in this deployment, if its weights still exist."""
        version_id = self._versions().get(key)
        if version_id is None:
            return None
        try:
            version = self.registry.get(version_id)
        except NotFound:
            return None
        return version_id if version.path and Path(version.path).exists() else None

    def remember_version(self, key: str, version_id: str) -> None:
        """Record that `version_id` was trained under `key` (so a resumed run reuses it)."""
        versions = {**self._versions(), key: version_id}
        (self.home / VERSIONS_FILE).write_text(json.dumps(versions, indent=2))

    def train_version(self, key: str, learn: LearnConfig, rows: list[dict] | None = None,
                      metrics: dict[str, Any] | None = None, *, events: Sequence[Event] | None = None) -> str | None:
        """Train `learn.recipe` on this deployment's `events` (default: `events()`), or on `rows`, from the base
        weights and register it (with `metrics` beside the experiment's key; their `heldout_event_ids` are checked
        against the rows). The rows are built only when it trains.

        Returns the version id (reused when `key` was trained before), or None when there is nothing to train on.
        """
        from ilearn.learning.update import train_candidate, trainable_problem

        existing = self.version(key)
        if existing is not None:
            logger.info("reusing version %s trained earlier for %s", existing, key)
            return existing
        if key in self.background:
            return self.background.pop(key).finish()
        rows = self.rows(learn, events) if rows is None else rows
        problem = trainable_problem(learn.recipe, rows)
        if problem is not None:
            logger.warning("%s: %s; the base model stays", key, problem)
            return None
        self.vlm.reset()  # recipes train from the base weights
        version = train_candidate(self.vlm, self.registry, learn, rows, {"experiment_key": key, **(metrics or {})})
        self.remember_version(key, version.id)
        return version.id

    def start_training(self, key: str, learn: LearnConfig, metrics: dict[str, Any] | None = None, *,
                       events: Sequence[Event] | None = None) -> None:
        """Train `key` as `train_version` would (on `events`, with `metrics`), but in a child process
        (`BackgroundTraining`) while this one goes on; `train_version(key, ...)` then waits for it and registers
        it. Nothing when `key` was trained before or there is nothing to train on (`train_version` reports that)."""
        from ilearn.learning.update import guard_heldout, trainable_problem

        if key in self.background or self.version(key) is not None:
            return
        rows = self.rows(learn, events)
        guard_heldout(rows, (metrics or {}).get("heldout_event_ids", ()))  # as `train_candidate` checks
        if trainable_problem(learn.recipe, rows) is None:
            self.background[key] = BackgroundTraining(self, key, learn, rows, metrics)

    def serve(self, version_id: str | None) -> None:
        """Make the shared VLM serve `version_id` (None: the base weights)."""
        if version_id is None:
            if getattr(self.vlm, "version", "base") != "base":
                self.vlm.reset()
        else:
            self.registry.apply(self.vlm, version_id)

    def close(self) -> None:
        """Stop any background training, save the index and close the store."""
        try:
            for training in self.background.values():
                training.cancel()
            self.background.clear()
            self.memory.close()
        finally:
            self.store.close()


def can_train_beside(model: Any, threads: int) -> bool:
    """Whether a second training fits beside this process: a CPU model and cores for two runs of `threads`."""
    import os

    device = str(getattr(model, "device", None) or "cpu")
    return device == "cpu" and (os.cpu_count() or 1) >= 2 * max(threads, 1)


def _train_in_child(model: Any, learn: LearnConfig, rows: list[dict], path: str, start: str | None = None) -> Any:
    """The child process of `BackgroundTraining`: load the base model, train (on top of the version saved in
    `start`, if given), save the weights in `path`."""
    import torch

    from ilearn.learning.recipes import train
    from ilearn.learning.update import training_set
    from ilearn.models import load_model

    torch.set_num_threads(max(model.threads, 1))
    return train(load_model(model), training_set(rows, learn), learn, path, start=start)


class BackgroundTraining:
    """One candidate trained in a spawned child process (its own model, `model.threads` torch threads) while the
    experiment goes on; the pharmacy protocol trains its vision-encoder ablation this way beside R3 on a 2-core
    machine. The child only trains and saves; this process registers (`finish`), so one process writes the store."""

    def __init__(self, dep: Deployment, key: str, learn: LearnConfig, rows: list[dict],
                 metrics: dict[str, Any] | None = None) -> None:
        import multiprocessing

        from ilearn.learning.update import start_version

        self.dep, self.key, self.learn, self.rows, self.metrics = dep, key, learn, rows, metrics or {}
        start = start_version(dep.registry, learn)
        self.version_id, self.path = dep.registry.new_path()
        self.pool = multiprocessing.get_context("spawn").Pool(1)
        self.pending = self.pool.apply_async(_train_in_child, (dep.config.model, learn, rows, str(self.path),
                                                               start.path if start is not None else None))
        logger.info("training %s in a child process", key)

    def finish(self) -> str:
        """Wait for the child, register its weights as a candidate, remember it under its key; the version id."""
        from ilearn.learning.update import register_candidate

        logger.info("waiting for %s, trained in a child process", self.key)
        try:
            result = self.pending.get()
        finally:
            self.pool.terminate()
            self.pool.join()
        version = register_candidate(self.dep.registry, self.learn, self.rows, self.version_id, self.path, result,
                                     {"experiment_key": self.key, **self.metrics})
        self.dep.remember_version(self.key, version.id)
        return version.id

    def cancel(self) -> None:
        """Stop the child and drop its unfinished weights folder."""
        import shutil

        self.pool.terminate()
        self.pool.join()
        shutil.rmtree(self.path, ignore_errors=True)


_BERT: BertScorer | None = None


def bert_scorer(threads: int = 1) -> BertScorer:
    """One BERTScore model per process (loading MiniLM takes a few seconds)."""
    global _BERT
    if _BERT is None:
        _BERT = BertScorer(threads=threads)
    return _BERT


def round_metrics(records: list[TaskRecord], feedback: list[tuple[Label | None, Label]], *,
                  text_metrics: bool, bertscore: bool = True, threads: int = 1) -> dict[str, Any]:
    """Every per-round metric: task metrics, decoder precision against the simulator's truth, ROUGE-1, BERTScore."""
    out: dict[str, Any] = dict(summarise(records))
    scores = decoder_scores([p for p, _ in feedback], [t for _, t in feedback])
    out["decoder"] = scores
    precisions = [v for v in scores["precision"].values() if v is not None]
    out["decoder_precision"] = sum(precisions) / len(precisions) if precisions else None
    out["decoder_accuracy"] = scores["accuracy"]
    pairs = [(r.answers[0] if r.answers else "", r.reference) for r in records if r.reference]
    if text_metrics and pairs:
        preds, refs = [p for p, _ in pairs], [r for _, r in pairs]
        rouge = rouge1(preds, refs)
        out.update(rouge1_precision=rouge["precision"], rouge1_recall=rouge["recall"], rouge1_f1=rouge["f1"])
        if bertscore:
            bert = bert_scorer(threads).score(preds, refs)
            out.update(bertscore_precision=bert["precision"], bertscore_recall=bert["recall"],
                       bertscore_f1=bert["f1"])
    else:
        out.update(rouge1_precision=None, rouge1_recall=None, rouge1_f1=None)
    return out


def add_timings(stages: dict[str, list[float]] | None, timings_ms: dict[str, float]) -> None:
    """Append one reply's per-stage timings (feedback, clarify, retrieve, answer, store, total) to `stages`."""
    if stages is not None:
        for stage, ms in timings_ms.items():
            stages.setdefault(stage, []).append(float(ms))


def task_record(outcome: dict[str, Any], latencies: list[float], tokens: list[int]) -> TaskRecord:
    """A TaskRecord from a simulated user's `outcome()` and the assistant's per-turn cost."""
    return TaskRecord(task_id=outcome["task_id"], first_answer_correct=bool(outcome["first_answer_correct"]),
                      completed=bool(outcome["completed"]), turns=int(outcome["turns"]),
                      clarifications=int(outcome.get("clarifications", 0)),
                      ambiguous=bool(outcome.get("ambiguous", False)), answers=list(outcome.get("answers", [])),
                      reference=str(outcome.get("reference", "")), latencies_ms=latencies, prompt_tokens=tokens)


@dataclass
class Conversation:
    """One simulated user's dialogue with the assistant: sends the turns (the image with the first one) and keeps
    what the metrics need: latencies, prompt tokens, (decoded, true) feedback pairs, per-stage timings."""

    assistant: Any
    user_id: str
    image: Any
    stages: dict[str, list[float]] | None = None
    session_id: str | None = None
    latencies: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    pairs: list[tuple[Label | None, Label]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # per answer, where it came from (`Reply.source`)

    def send(self, text: str) -> Any:
        """One user turn; returns the assistant's Reply."""
        reply = self.assistant.respond(self.user_id, text, image=self.image if self.session_id is None else None,
                                       session_id=self.session_id)
        self.session_id = reply.session_id
        self.latencies.append(reply.timings_ms.get("total", 0.0))
        add_timings(self.stages, reply.timings_ms)
        if reply.kind == TurnKind.ANSWER and reply.prompt_tokens:
            self.tokens.append(reply.prompt_tokens)
        if reply.kind == TurnKind.ANSWER:
            self.sources.append(getattr(reply, "source", "model"))
        return reply

    def note_feedback(self, reply: Any, utterance: Any) -> None:
        """Pair the decoded feedback with the simulator's truth when the user's utterance was a reaction."""
        if utterance.label is not None and utterance.kind == "reaction":
            self.pairs.append((reply.feedback.label if reply.feedback is not None else None, utterance.label))

    def record(self, outcome: dict[str, Any]) -> TaskRecord:
        record = task_record(outcome, self.latencies, self.tokens)
        record.first_source = self.sources[0] if self.sources else ""
        return record


@dataclass
class RunContext:
    """One experiment run: settings, the shared VLM, the round cache and helpers both runners use."""

    scenario: str
    seed: int
    vlm: Any
    config: Config
    home: Path
    cache: Any  # RoundCache
    sizes: Any
    teach_personas: list
    test_personas: list
    methods: list[str]
    rounds: int | None = None
    progress: bool = True
    threads: int = 1
    parallel: bool = False  # train a second model in a child process beside the first (`can_train_beside`)
    bertscore: bool = True
    on_round: Any = None  # callable(round dict), called after each round that was computed (not loaded)
    learn: dict[str, Any] = field(default_factory=dict)  # LearnConfig fields that replace the protocol's own
    general_cache: dict | None = None

    def bar(self, items: Any, desc: str, total: int | None = None) -> Any:
        """A tqdm progress bar over `items` (silent when progress is off)."""
        from tqdm import tqdm

        return tqdm(items, desc=desc, total=total, disable=not self.progress, leave=False, dynamic_ncols=True)

    def at_once(self, n: int, play: Callable[[int], T], desc: str) -> list[T]:
        """`play(i)` for i in range(n), up to `sizes.score_users` at a time (threads: their model calls share
        batches), with a progress bar; the results in order of i. Only for interactions that do not depend on one
        another (no session closed, nothing learnt between them)."""
        with ThreadPoolExecutor(max(1, getattr(self.sizes, "score_users", 1))) as pool:
            return list(self.bar(pool.map(play, range(n)), desc, total=n))

    def fine_tuning(self, settings: LearnConfig) -> LearnConfig:
        """The protocol's fine-tuning `settings` with the caller's `learn` overrides applied."""
        return replace(settings, **self.learn) if self.learn else settings

    def general(self) -> float | None:
        """General-set (easy-vqa) accuracy of the weights the VLM serves now, cached per version."""
        n = getattr(self.sizes, "general", 0)
        if n <= 0:
            return None
        self.general_cache = self.general_cache if self.general_cache is not None else {}
        version = str(getattr(self.vlm, "version", "base"))
        if version not in self.general_cache:
            from ilearn.learning.general import evaluate_easyvqa

            result = evaluate_easyvqa(self.vlm, limit=n, seed=self.seed, batch_size=8)
            self.general_cache[version] = float(result["accuracy"])
        return self.general_cache[version]

    def finish(self, round_: dict[str, Any], key: str) -> dict[str, Any]:
        """Save a computed round (resume point) and call the `on_round` hook."""
        self.cache.save(round_, key=key)
        saved = self.cache.load(key)
        logger.info("round %s done: accuracy %s, completion %s", round_["name"], round_.get("accuracy"),
                    round_.get("task_completion"))
        if self.on_round is not None:
            self.on_round(saved)
        return saved
