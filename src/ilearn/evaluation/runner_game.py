"""The ReSpect protocol on the ``reference-game`` scenario: deploy, decode feedback, train, redeploy.

``round0``: the base model plays held-out games (scored), then deploys on teach games; its sessions are closed
into events whose labels come only from the assistant's feedback decoder (users never label anything). Then,
for each method (``sft``: filtered fine-tuning on positively decoded picks; ``reinforce``: reward-weighted
likelihood with ReSpect's 1 / -0.1 / 0 remap; ``kto``), for r = 1..N: train from the base weights on the shared
events that method's deployments produced so far, round0's included (the players are trusted: `open_game`) ->
score ``round<r>`` on the held-out games -> deploy on the next teach games (not after the last round). Each
method has its own deployment home, so their data never mix. ``round0`` is reported once per method (same
numbers), so that every method's curve starts from the same baseline.

The assistant answers a request on the board by pointing (`ilearn.dialogue.choice`): the model scores the
user's description as its own description of every figure and names the best one not yet turned down; each
pick becomes an event about the picked figure, with the description accepted or rejected as the decoded
reaction says, so the recipes learn to describe figures as the users do. Retrieval and Chain of Question are
off (ReSpect learns only by training). The assistant answers statements
such as "Yes! Now the grey fan." with an acknowledgement (it reads them as reactions); the runner then asks for
the pick with "Which number is <the user's current description>? Answer with the number.", built from the
user's own description.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from typing import Any

from ilearn.config import LearnConfig
from ilearn.evaluation.metrics import TaskRecord
from ilearn.evaluation.runner_common import Conversation, Deployment, RunContext, round_metrics
from ilearn.evaluation.scenarios.base import derive_seed
from ilearn.evaluation.scenarios.reference_game import Game, ReferenceGameScenario, describe
from ilearn.evaluation.users import ReferenceGameUser
from ilearn.types import Label, TurnKind

logger = logging.getLogger(__name__)

METHODS = ("sft", "reinforce", "kto")


@dataclass(frozen=True)
class GameSizes:
    """How big a reference-game run is (see `QUICK` and `DEFAULT`)."""

    teach_games: int
    """games played per deployment round"""
    test_games: int
    """held-out games scored per round"""
    rounds: int
    """training rounds after round0"""
    general: int
    """general-set (easy-vqa) questions per distinct model"""
    train_steps: int
    """optimizer steps per training"""
    batch_size: int
    """examples per step"""
    score_users: int = 32
    """games played at once in a round (their answers share batches; the same results as one after the other)"""


QUICK = GameSizes(teach_games=4, test_games=3, rounds=1, general=8, train_steps=8, batch_size=4)
DEFAULT = GameSizes(teach_games=10, test_games=12, rounds=3, general=30, train_steps=120, batch_size=8)


KTO_LEARNING_RATE = 1e-4
"""kto's rate: at sft's 1e-3 its undesirable rows (about six turned-down picks for every accepted one) drive the
language model off its answers. Trained on the 145 events a seed-0 run logged (120 steps of 8, as its last
round): general set (30 questions) 93.3 -> 36.7 at 1e-3, with replies such as "You are a image" to "what shape
is in the image?", and 93.3 -> 93.3 at 1e-4 (`benchmarks/picks.py --run DIR --recipe kto [--set
learning_rate=1e-3]`). Measured before kto's rows were shuffled (TRL's KTO reads them in order: the replayed
general rows, last, may not have been read within those steps; docs/reactions.md)."""


def game_settings(learn: LearnConfig, *, recipe: str, steps: int, batch_size: int, seed: int) -> LearnConfig:
    """The training of every round: the picks' events repeated 4 times (against 64 replayed general examples,
    in every recipe), LoRA and the projector at 1e-3 (kto at `KTO_LEARNING_RATE`), the vision encoder frozen.
    Measured on ideal pick events of 30 games (`benchmarks/picks.py`: 78 panels, 120 steps of 8): first-try
    picks on held-out boards go from 16.1% to 54.8% (chance is about 12%)."""
    return replace(learn, recipe=recipe, max_steps=steps, batch_size=batch_size, seed=seed, event_repeats=4,
                   learning_rate=KTO_LEARNING_RATE if recipe == "kto" else 1e-3)


def play_game(assistant: Any, user_id: str, user: ReferenceGameUser, game: Game, stages: dict | None = None
              ) -> tuple[TaskRecord, list[tuple[Label | None, Label]], str | None]:
    """Play one game to its end; returns the record, (decoded, true) feedback pairs and the session id;
    `stages` (stage -> list of ms) collects the assistant's per-stage timings."""
    conversation = Conversation(assistant, user_id, game.board, stages)
    text: str | None = user.first_utterance()
    while text is not None:
        reply = conversation.send(text)
        conversation.note_feedback(reply, user.utterances[-1])
        if user.done:
            break
        if reply.kind == TurnKind.REACTION and user.current is not None:  # acknowledged only: ask for the pick
            target = game.figure(user.current).attributes
            reply = conversation.send(f"Which number is {describe(target, user.keys)}? Answer with the number.")
        kind = "clarification" if reply.kind == TurnKind.CLARIFICATION else "answer"
        text = user.reply(reply.text, kind)
    return conversation.record(user.outcome()), conversation.pairs, conversation.session_id


def _play(ctx: RunContext, dep: Deployment, games: list[Game], personas: list, prefix: str, key: str,
          *, close: bool, stages: dict | None = None) -> tuple[list[TaskRecord], list[tuple[Label | None, Label]]]:
    dep.forget_users(prefix)  # left by an interrupted attempt
    if close:  # the deployment's players: trusted, so what they teach and turn down is shared (`open_game`)
        for persona in personas:
            dep.store.ensure_user(prefix + persona.name, trusted=True)
    assistant = dep.assistant(retrieval=False, clarify=False)
    records: list[TaskRecord] = []
    pairs: list[tuple[Label | None, Label]] = []

    def play(i: int) -> tuple[TaskRecord, list[tuple[Label | None, Label]], str | None]:
        persona = personas[i % len(personas)]
        user = ReferenceGameUser(persona, games[i], random.Random(derive_seed(prefix, ctx.seed, key, i)))
        return play_game(assistant, prefix + persona.name, user, games[i], stages)

    # retrieval and clarification are off, so a game's dialogue does not depend on the others: they are played at
    # once (their answers share model batches), and deployed games' sessions closed afterwards in game order, as
    # one after the other would have closed them
    for record, fb, session_id in ctx.at_once(len(games), play, f"{key} {'deploy' if close else 'score'}"):
        records.append(record)
        pairs += fb
        if close and session_id is not None:
            assistant.close_session(session_id)
    if not close:
        dep.forget_users(prefix)  # scoring never feeds memory or training
    return records, pairs


def _score(ctx: RunContext, dep: Deployment, key: str, games: list[Game]) -> dict[str, Any]:
    stages: dict[str, list[float]] = {}
    records, pairs = _play(ctx, dep, games, ctx.test_personas, f"score-{key}-", key, close=False, stages=stages)
    out = round_metrics(records, pairs, text_metrics=False)
    out["stage_ms_mean"] = {k: sum(v) / len(v) for k, v in sorted(stages.items())}
    out["general_accuracy"] = ctx.general()
    return out


def _deploy(ctx: RunContext, dep: Deployment, key: str, games: list[Game]) -> dict[str, Any]:
    before = dep.store.count_events()
    records, pairs = _play(ctx, dep, games, ctx.teach_personas, f"{key}-deploy-", key, close=True)
    deployed = round_metrics(records, pairs, text_metrics=False)
    return {"deploy_games": len(games), "deploy_events": dep.store.count_events() - before,
            "deploy_completion": deployed["task_completion"], "deploy_decoder_precision": deployed["decoder_precision"]}


def open_game(ctx: RunContext, name: str) -> Deployment:
    """A game deployment as ReSpect's would be run: its players are recruited, trusted users
    (retrieval.sharing "trusted"), and each round trains only on the SHARED events, as `ilearn learn` does.
    Under the default corroboration nearly nothing a player teaches is shared (two players rarely word a
    figure alike), so the game would train on nothing. Descriptions never compete (`ilearn.memory.trust`): before
    they did, half of a round's accepted picks went to review as "contradicting" another player's description of
    a panel the memory found alike, and the first trained round completed 41.7% of the games against 83.3%."""
    config = ctx.config.override(retrieval={"sharing": "trusted"})
    return Deployment.open(ctx.home / name, config, ctx.vlm)


def run_game(ctx: RunContext, scenario: ReferenceGameScenario) -> list[dict[str, Any]]:
    """Run round0 and, per method, rounds 1..N (see the module docstring); returns every round."""
    sizes: GameSizes = ctx.sizes
    n_rounds = ctx.rounds if ctx.rounds is not None else sizes.rounds
    methods = list(ctx.methods or METHODS)
    teach = scenario.teach_games
    slices = [teach[r * sizes.teach_games:(r + 1) * sizes.teach_games] for r in range(max(n_rounds, 1))]
    test = scenario.test_games
    base = open_game(ctx, "game-base")
    rounds: list[dict[str, Any]] = []
    deps: list[Deployment] = [base]
    try:
        round0 = ctx.cache.load("base-round0")
        if round0 is None:
            base.serve(None)
            round0 = _score(ctx, base, "round0", test)
            round0.update(name="round0", method="base", retrieval=False, version="base")
            round0.update(_deploy(ctx, base, "round0", slices[0]))
            round0 = ctx.finish(round0, "base-round0")
        for method in methods:
            dep = open_game(ctx, f"game-{method}")
            deps.append(dep)
            if not ctx.cache.has(f"{method}-round0"):  # the shared baseline, on this method's curve
                ctx.cache.save({**round0, "method": method}, key=f"{method}-round0")
            rounds.append(ctx.cache.load(f"{method}-round0"))
            for r in range(1, n_rounds + 1):
                key = f"{method}-round{r}"
                done = ctx.cache.load(key)
                if done is not None:
                    rounds.append(done)
                    continue
                learn = ctx.fine_tuning(game_settings(ctx.config.learn, recipe=method, steps=sizes.train_steps,
                                                      batch_size=sizes.batch_size, seed=ctx.seed))
                rows = base.rows(learn) + dep.rows(learn)
                version = dep.train_version(key, learn, rows)
                dep.serve(version)
                round_ = _score(ctx, dep, f"round{r}", test)
                round_.update(name=f"round{r}", method=method, retrieval=False, version=version or "base",
                              train_rows=len(rows))
                if r < n_rounds:
                    round_.update(_deploy(ctx, dep, f"{method}-round{r}", slices[r]))
                rounds.append(ctx.finish(round_, key))
                dep.serve(None)
    finally:
        base.serve(None)
        for dep in deps:
            dep.close()
    return rounds
