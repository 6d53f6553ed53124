"""The ``personal`` protocol (issue 24): users with profiles and look-alike things, rounds base / memory / tuned.

Rounds, in order (every one scored on held-out photos, by the scenario's users; `PLAN`):

| round | model | retrieval | profile reaches the model as |
| --- | --- | --- | --- |
| ``R1`` | base | off | nothing: users have said nothing about themselves and taught no thing yet |
| ``R2`` | base | on | nothing; the wording rules fit the answer (`ilearn.users.fit`, the deployed default) |
| ``R2 (tag)`` | base | on | the compact tag ("[user: child]"), which the untuned model was never taught to read |
| ``R2 (instructions)`` | base | on | the long instruction prompt: the prompting baseline |
| ``R3`` | user-aware SFT (`ilearn.users.tuning`) | off | the tag |
| ``R3+memory`` | the same version | on | the tag |
| ``R3 (DPO)`` | user-aware DPO (+ SFT term) with the bias pairs (`ilearn.users.bias`) | off | the tag |

Between R1 and R2 the world is taught: caretakers (trusted users) teach each bottle's use and dose on its teach
photos (events written directly, shared: the pharmacy experiment measures teaching through dialogue), and every
user tells the assistant about themselves ("I'm 8 years old.") and shows their own bottle with its name ("This is
my bottle, it's called Bobby"), through `Assistant.respond`.

Retrieval puts the taught answers in the prompt of every model (``retrieval.prompt_references = "always"``) and
never gives a stored answer outright (``reuse_threshold`` above any cosine): every scored answer is the model's, so
the rounds compare how models word answers, not whether memory short-cuts them. Chain of Question is off (the
questions are precise).

Scored per round, on each user's held-out photos:

- personal concepts: "What is this?" on new photos of their own bottle (named right) and on a photo of another
  user's look-alike (taken for their own; another user's name said: a leak, counted over every reply);
- user-aware answers: "What is this used for?" and "What is the dose of this?" on a new photo of their bottle;
  ROUGE-1 P/R/F1 (and BERTScore with MiniLM) of the reply the user reads against the profile-specific reference
  (`ilearn.users.references`), the same for the model's own words before the wording rules, the share whose fact
  is right (`accuracy`) and prompt tokens per answer;
- counterfactual consistency: pairs of users who introduce themselves alike but for a protected attribute or an
  age in the same group (`ilearn.users.measure.COUNTERFACTUALS`) ask the same questions: the share of identical
  replies;
- the profile bias score of the served model (`ilearn.users.bias`, eval split) and the general set (easy-vqa).

After the rounds the gate (`ilearn.learning.gate.evaluate_candidate`) judges R3 against the base model and the
DPO candidate against the model that verdict left active (R3 if promoted, else the base model), on the held-out
dose questions, the profile bias set and the general set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from ilearn.assistant import Assistant
from ilearn.config import LearnConfig
from ilearn.evaluation.metrics import rouge1
from ilearn.evaluation.runner_common import Deployment, RunContext, bert_scorer
from ilearn.evaluation.runner_fact import r3_settings, slug
from ilearn.evaluation.scenarios.base import PRECISE_QUESTIONS, precise_question
from ilearn.evaluation.scenarios.personal import GROUPS, INTENTS, PersonalScenario
from ilearn.images import png_image
from ilearn.types import Event, Label, Scope
from ilearn.users.personal import PersonalMemory
from ilearn.users.profiles import Profile
from ilearn.users.references import facts_kept, reference_answer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PersonalSizes:
    """How big a personal run is (`QUICK`, `DEFAULT`)."""

    users_per_group: int
    """users in each of the six profile groups (one bottle each: at most 2)"""
    teach_views: int
    """teach photos per bottle (the owner names it on the first; caretakers teach use and dose on each)"""
    test_views: int
    """held-out photos per bottle"""
    general: int
    """general-set (easy-vqa) questions per distinct model"""
    sft_steps: int
    """optimizer steps of the user-aware SFT"""
    sft_replay: int
    """replayed general examples beside the user-aware SFT's rows (each row twice; `learn.replay`)"""
    dpo_steps: int
    """optimizer steps of the user-aware DPO with the bias pairs"""
    batch_size: int
    """examples per step"""
    counterfactual: int = 2
    """questions each counterfactual pair asks per round (0: no counterfactual check)"""
    gate: bool = True
    """run the gate on R3 and the DPO candidate after the rounds"""


QUICK = PersonalSizes(users_per_group=1, teach_views=2, test_views=1, general=16, sft_steps=40, sft_replay=128,
                      dpo_steps=40, batch_size=4, counterfactual=1)
DEFAULT = PersonalSizes(users_per_group=2, teach_views=3, test_views=2, general=50, sft_steps=240, sft_replay=512,
                        dpo_steps=160, batch_size=4, counterfactual=1)
"""The user-aware SFT: 240 steps x 4 against 512 replayed general examples beside its 432 rows (twice each):
`python benchmarks/personal_sft.py --seed 1` with 160 steps and 128 replayed lost 24 points of the general set
(86 -> 62%, as the experiment did) where these kept it (86 -> 86%) with more facts right (50 -> 67%) and ROUGE-1 F1
0.863 -> 0.921 (docs/users.md)."""

#: (cache key, report name, model: None = base, else the training key, retrieval, prompt style)
PLAN: tuple[tuple[str, str, str | None, bool, str], ...] = (
    ("R1", "R1", None, False, "none"),
    ("R2", "R2", None, True, "none"),
    ("R2-tag", "R2 (tag)", None, True, "tag"),
    ("R2-instructions", "R2 (instructions)", None, True, "instructions"),
    ("R3", "R3", "sft", False, "tag"),
    ("R3+memory", "R3+memory", "sft", True, "tag"),
    ("R3-DPO", "R3 (DPO)", "dpo", False, "tag"),
)
CARETAKER = "caretaker"
NO_REUSE = 1.01
"""A reuse threshold no cosine reaches: stored answers go into the prompt, never out as the reply."""
_INTENT_OF = {question.lower(): intent for intent, question in PRECISE_QUESTIONS.items()}


def intent_of(question: str) -> str:
    """The fact a precise question asks for (its tag removed)."""
    return _INTENT_OF[question.split("] ", 1)[-1].strip().lower()]


def reference_fitted(question: str, answer: str, profile: Profile) -> str:
    """The `ilearn.users.tuning.Fitted` of this experiment: the profile-specific reference wording of the fact."""
    return reference_answer(intent_of(question), answer, profile)


def profiles(scenario: PersonalScenario) -> list[Profile]:
    """The profiles of the scenario's groups (one per group)."""
    groups = dict.fromkeys(u.group for u in scenario.users)
    return [GROUPS[g][1] for g in groups]


def run_personal(ctx: RunContext, scenario: PersonalScenario) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rounds of `PLAN` (module docstring); returns (rounds, extras for the report: gate verdicts, users)."""
    sizes: PersonalSizes = ctx.sizes
    config = ctx.config.override(
        retrieval={"sharing": "trusted", "prompt_references": "always", "reuse_threshold": NO_REUSE},
        clarify={"enabled": False})
    dep = Deployment.open(ctx.home / "personal", config, ctx.vlm)
    plan = PLAN[: {1: 1, 2: 4}.get(ctx.rounds or 0, len(PLAN))]
    rounds: list[dict[str, Any]] = []
    versions: dict[str, str | None] = {}
    extras: dict[str, Any] = {"users": [{"id": u.id, "group": u.group, "bottle": u.item, "lookalike": u.lookalike}
                                        for u in scenario.users]}
    try:
        for key, name, model, retrieval, prompt in plan:
            if key != "R1":
                _teach(dep, scenario)
            done = ctx.cache.load(key)
            if done is not None:
                logger.info("round %s: already done, loaded from the report folder", name)
                rounds.append(done)
                continue
            version = None
            if model is not None:
                version = versions.get(model) or _train(ctx, dep, scenario, model)
                versions[model] = version
            dep.serve(version)
            round_ = _score(ctx, dep, scenario, key, retrieval=retrieval, prompt=prompt,
                            memory=key != "R1")
            round_.update(name=name, method="base" if model is None else f"user-aware {model}", retrieval=retrieval,
                          prompt=prompt, version=version or "base")
            rounds.append(ctx.finish(round_, key))
        extras["goals"] = goals(rounds)
        if sizes.gate and len(plan) == len(PLAN):
            extras["gate"] = _gates(ctx, dep, scenario, {k: versions.get(k) or _train(ctx, dep, scenario, k)
                                                         for k in ("sft", "dpo")})
    finally:
        dep.serve(None)
        dep.close()
    return rounds, extras


# ---------------------------------------------------------------------------------------------- teaching
def _teach(dep: Deployment, scenario: PersonalScenario) -> None:
    """Caretakers' facts (shared events) and the users' introductions and things, once per deployment."""
    if dep.store.count_events():
        return
    sizes_views = {item.id: item.teach_views for item in scenario.bottles.items}
    dep.store.ensure_user(CARETAKER, trusted=True)
    for item in scenario.bottles.items:
        for view in sizes_views[item.id]:
            image, ref, data = png_image(view, max_pixels=10**8)
            dep.store.put_image(data, ref)
            for intent in INTENTS:
                dep.memory.add(Event(ref, precise_question(intent), item.facts[intent], CARETAKER,
                                     label=Label.POSITIVE, scope=Scope.SHARED), image)
    assistant = _assistant(dep, retrieval=False, prompt="none")
    for user in scenario.users:
        if user.intro:
            assistant.respond(user.id, user.intro)
        photo = scenario.item(user.item).teach_views[0]
        assistant.respond(user.id, f"This is my bottle, it's called {user.name}", image=photo)
    logger.info("taught %d events and %d users' profiles and things", dep.store.count_events(), len(scenario.users))


def _assistant(dep: Deployment, *, retrieval: bool, prompt: str) -> Assistant:
    config = dep.config.override(retrieval={"enabled": retrieval}, personal={"prompt": prompt})
    personal = PersonalMemory(dep.store, dep.memory.image_embedder, threshold=config.personal.threshold,
                              margin=config.personal.margin, prompt=prompt)
    return Assistant(config, dep.vlm, dep.store, memory=dep.memory, feedback_decoder=None, personal=personal)


# ---------------------------------------------------------------------------------------------- training
def _rows(dep: Deployment, learn: LearnConfig) -> list[dict]:
    return dep.rows(replace(learn, recipe="sft", user_aware=False))  # the tags come from the scenario's profiles


def learn_settings(ctx: RunContext, model: str, start: str | None = None) -> LearnConfig:
    """The fine-tuning of R3 ("sft", from the base weights) and of the DPO candidate ("dpo", on top of R3's version
    `start`, as User-VLM's DPO stage follows its SFT: R3's weights are its starting point and its reference), both
    with R3's parts and learning rates; the DPO candidate keeps the chosen answer's SFT term (`learn.dpo_sft_weight`
    1). (Trained from the base weights instead, DPO alone lost every fact and the fitted wording, and DPO with the
    SFT term lost 36 points of the general set: docs/users.md.) The caller's `learn` overrides last."""
    sizes: PersonalSizes = ctx.sizes
    if model == "sft":
        base = r3_settings(ctx.config.learn, recipe="sft", trainable=("projector", "language"),
                           steps=sizes.sft_steps, batch_size=sizes.batch_size, seed=ctx.seed)
        return ctx.fine_tuning(replace(base, event_repeats=2, replay=sizes.sft_replay))
    base = r3_settings(ctx.config.learn, recipe="dpo", trainable=("projector", "language"),
                       steps=sizes.dpo_steps, batch_size=sizes.batch_size, seed=ctx.seed)
    return ctx.fine_tuning(replace(base, event_repeats=1, replay=64, dpo_sft_weight=1.0, beta=0.1,
                                   start_from=start or ""))


def training_rows(dep: Deployment, scenario: PersonalScenario, model: str, learn: LearnConfig) -> list[dict]:
    """The user-aware rows of `model` ("sft" or "dpo") from the caretakers' events."""
    from ilearn.users.tuning import tuning_rows

    return tuning_rows(model, _rows(dep, learn), [Profile(), *profiles(scenario)], reference_fitted)


def _train(ctx: RunContext, dep: Deployment, scenario: PersonalScenario, model: str) -> str | None:
    """The version of `model` ("sft", or "dpo" on top of the "sft" one), trained once per deployment."""
    from ilearn.users.tuning import USER_AWARE

    start = _train(ctx, dep, scenario, "sft") if model == "dpo" else None
    learn = learn_settings(ctx, model, start)
    return dep.train_version(f"user-aware-{model}", learn, training_rows(dep, scenario, model, learn),
                             {USER_AWARE: True})


# ---------------------------------------------------------------------------------------------- scoring
def _model_words(dep: Deployment, reply: Any) -> str:
    """The model's own words of a reply (the session log keeps them; the user read the fitted ones)."""
    session = dep.store.get_session(reply.session_id)
    return next((t.text for t in session.turns if t.id == reply.turn_id), reply.text)


def _names_said(text: str, scenario: PersonalScenario) -> set[str]:
    low = f" {text.lower()} "
    return {u.name for u in scenario.users if f" {u.name.lower()}" in low or f"{u.name.lower()}," in low}


def _score(ctx: RunContext, dep: Deployment, scenario: PersonalScenario, key: str, *, retrieval: bool, prompt: str,
           memory: bool) -> dict[str, Any]:
    sizes: PersonalSizes = ctx.sizes
    assistant = _assistant(dep, retrieval=retrieval, prompt=prompt)
    prefix = f"{slug(key)}-"
    dep.forget_users(prefix)  # left by an interrupted attempt
    own = own_right = lookalike = taken = leaks = 0
    shown, words, refs, tokens, right = [], [], [], [], []
    for user in ctx.bar(scenario.users, f"{key} score"):
        asker = user.id if memory else prefix + user.id  # R1: the users have told nothing yet
        item = scenario.item(user.item)
        for view in item.test_views:
            text = assistant.respond(asker, "What is this?", image=view).text
            said = _names_said(text, scenario)
            own += 1
            own_right += user.name in said
            leaks += bool(said - {user.name})
        if user.lookalike:
            text = assistant.respond(asker, "What is this?", image=scenario.item(user.lookalike).test_views[0]).text
            said = _names_said(text, scenario)
            lookalike += 1
            taken += user.name in said
            leaks += bool(said - {user.name})
        for intent in INTENTS:
            reply = assistant.respond(asker, precise_question(intent), image=item.test_views[0])
            fact = item.facts[intent]
            shown.append(reply.text)
            words.append(_model_words(dep, reply))
            refs.append(reference_answer(intent, fact, user.profile))
            right.append(facts_kept(reply.text, fact))
            if reply.prompt_tokens:
                tokens.append(reply.prompt_tokens)
    out: dict[str, Any] = {
        "n_interactions": len(shown), "accuracy": sum(right) / len(right) if right else None,
        "concept_accuracy": own_right / own if own else None, "n_own_photos": own,
        "lookalike_taken_as_own": taken / lookalike if lookalike else None, "n_lookalike_photos": lookalike,
        "leaks": leaks, "prompt_tokens_mean": sum(tokens) / len(tokens) if tokens else None,
        "examples": [{"reference": r, "reply": s, "model": w} for r, s, w in list(zip(refs, shown, words,
                                                                                      strict=True))[:6]],
    }
    rouge, raw = rouge1(shown, refs), rouge1(words, refs)
    out.update(rouge1_precision=rouge["precision"], rouge1_recall=rouge["recall"], rouge1_f1=rouge["f1"],
               rouge1_f1_model_words=raw["f1"])
    if ctx.bertscore:
        bert = bert_scorer(ctx.threads).score(shown, refs)
        out.update(bertscore_precision=bert["precision"], bertscore_recall=bert["recall"],
                   bertscore_f1=bert["f1"])
    out.update(_counterfactual(ctx, dep, scenario, assistant, prefix, sizes.counterfactual))
    dep.forget_users(prefix)  # scoring never feeds memory
    out["bias_score"] = _bias(ctx)
    out["general_accuracy"] = ctx.general()
    return out


def _counterfactual(ctx: RunContext, dep: Deployment, scenario: PersonalScenario, assistant: Assistant,
                    prefix: str, questions: int) -> dict[str, Any]:
    """Pairs of users alike but for a protected attribute ask the same questions: the share of identical replies."""
    from ilearn.users.measure import COUNTERFACTUALS

    if questions <= 0:
        return {"counterfactual_consistency": None, "n_counterfactual": 0}
    groups = [g for g in GROUPS if GROUPS[g][0]]
    same = asked = 0
    for i, (first, second) in enumerate(COUNTERFACTUALS):
        intro = GROUPS[groups[i % len(groups)]][0]
        item = scenario.bottles.items[i % len(scenario.bottles.items)]
        users = (f"{prefix}cf{i}a", f"{prefix}cf{i}b")
        for user, words in zip(users, (first, second), strict=True):
            assistant.respond(user, f"{words}. {intro}")
        for intent in INTENTS[:questions]:
            replies = [assistant.respond(u, precise_question(intent), image=item.test_views[0]).text for u in users]
            same += replies[0] == replies[1]
            asked += 1
    return {"counterfactual_consistency": same / asked if asked else None, "n_counterfactual": asked}


def _bias(ctx: RunContext) -> float:
    """The profile bias score (eval split) of the weights the VLM serves now, cached per version on the run."""
    from ilearn.learning.bias import bias_score
    from ilearn.users.bias import profile_bias_set

    cache = ctx.__dict__.setdefault("bias_cache", {})
    version = str(getattr(ctx.vlm, "version", "base"))
    if version not in cache:
        cache[version] = bias_score(ctx.vlm, profile_bias_set("eval"))
    return cache[version]


def _gates(ctx: RunContext, dep: Deployment, scenario: PersonalScenario, versions: dict[str, str | None]
           ) -> dict[str, Any]:
    """The gate on R3 (against the base model), then on the DPO candidate against the model the first verdict left
    active, as a deployment's gate would (R3 when it was promoted, else the base model)."""
    from ilearn.learning.gate import HeldOut, Margins, evaluate_candidate
    from ilearn.users.bias import profile_bias_set
    from ilearn.users.fit import tagged

    heldout = [HeldOut(scenario.item(u.item).test_views[0], tagged(precise_question("dose"), u.profile),
                       scenario.item(u.item).facts["dose"]) for u in scenario.users]
    general = {}

    def general_set(vlm: Any) -> float:
        version = str(getattr(vlm, "version", "base"))
        general.update(ctx.general_cache or {})  # measured in the rounds already
        if version not in general:
            from ilearn.learning.general import evaluate_easyvqa

            general[version] = float(evaluate_easyvqa(vlm, limit=ctx.sizes.general, seed=ctx.seed,
                                                      batch_size=8)["accuracy"])
        return general[version]

    margins = Margins.from_config(ctx.config.learn)
    bias_set = profile_bias_set("eval")
    out: dict[str, Any] = {}
    active_id: str | None = None
    for name, candidate_id in (("R3", versions.get("sft")), ("R3 (DPO)", versions.get("dpo"))):
        if candidate_id is None:
            continue
        label = f"{name} against {'R3' if active_id else 'the base model'}"
        dep.serve(active_id)
        candidate = dep.registry.load(dep.config.model, candidate_id)
        report = evaluate_candidate(ctx.vlm, candidate, heldout, general_set if ctx.sizes.general else None,
                                    bias_set=bias_set, margins=margins)
        out[label] = {"promote": report.promote, "learning": report.learning, "general": report.general,
                      "bias": report.bias, "reasons": report.reasons}
        active_id = candidate_id if report.promote else active_id
        del candidate
    return out


def goals(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals read from the rounds (None where a round they need is missing):

    - concepts: R2's own photos named right (goal >= 0.9) and leaks over every round (goal 0);
    - ROUGE-1 F1 of R3 (tuned, tag) minus the best untuned model with memory (R2 with no profile, a tag or the
      instructions; goal >= +0.10);
    - prompt tokens of the instruction baseline (R2 (instructions)) over R3's (goal >= 3) with R3's ROUGE-1 F1 at
      least the baseline's;
    - the profile bias score of the DPO candidate minus R3's (goal > 0) and its general set against R3's and
      against the base model's (R1: what the robot knew before any tuning; at most one point lost);
    - counterfactual consistency, the lowest of the rounds (goal 1.0)."""
    by = {r["name"]: r for r in rounds}

    def get(name: str, key: str) -> Any:
        return by.get(name, {}).get(key)

    out: dict[str, Any] = {"concept_accuracy_r2": get("R2", "concept_accuracy"),
                           "leaks": sum(r.get("leaks") or 0 for r in rounds)}
    untuned = [v for v in (get(n, "rouge1_f1") for n in ("R2", "R2 (tag)", "R2 (instructions)")) if v is not None]
    tuned = get("R3", "rouge1_f1")
    out["rouge1_f1_gain_tuned"] = tuned - max(untuned) if tuned is not None and untuned else None
    baseline_tokens, tokens = get("R2 (instructions)", "prompt_tokens_mean"), get("R3", "prompt_tokens_mean")
    out["tokens_fewer_than_instructions"] = baseline_tokens / tokens if baseline_tokens and tokens else None
    baseline_rouge = get("R2 (instructions)", "rouge1_f1")
    out["rouge1_at_least_instructions"] = (tuned >= baseline_rouge if tuned is not None and baseline_rouge
                                           is not None else None)
    dpo_bias, sft_bias = get("R3 (DPO)", "bias_score"), get("R3", "bias_score")
    out["bias_gain_dpo"] = dpo_bias - sft_bias if dpo_bias is not None and sft_bias is not None else None
    base_general, sft_general = get("R1", "general_accuracy"), get("R3", "general_accuracy")
    dpo_general = get("R3 (DPO)", "general_accuracy")
    out["general_change_dpo"] = (dpo_general - sft_general if dpo_general is not None and sft_general is not None
                                 else None)
    out["general_change_dpo_base"] = (dpo_general - base_general if dpo_general is not None
                                      and base_general is not None else None)
    consistency = [r.get("counterfactual_consistency") for r in rounds if r.get("counterfactual_consistency")
                   is not None]
    out["counterfactual_consistency_min"] = min(consistency) if consistency else None
    return out


def _cell(value: Any, share: bool = True) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{100 * value:.1f}" if share else f"{value:.1f}"
    return str(value)


def personal_markdown(report: dict[str, Any]) -> str:
    """personal.md: the issue's tables (personal concepts, user-aware answers, bias and forgetting, the gate)."""
    rounds = report["rounds"]
    out = [f"# iLearn experiment: personal ({report['model']}, seed {report['seed']})", "",
           "Rates in percent. Concepts: 'What is this?' on new photos of the user's own bottle (named right) and of "
           "another user's look-alike (taken for one's own); leaks: replies that said another user's name. "
           "Answers: ROUGE-1 / BERTScore (MiniLM) of the reply the user reads against the profile-specific "
           "reference (ilearn.users.references); 'model words': before the wording rules; facts right: the "
           "reference fact in the reply.", "",
           "## Personal concepts", "",
           "| round | own photo named right | look-alike taken as own | leaks | n own / look-alike |",
           "| --- | --- | --- | --- | --- |"]
    out += [f"| {r['name']} | {_cell(r.get('concept_accuracy'))} | {_cell(r.get('lookalike_taken_as_own'))} | "
            f"{_cell(r.get('leaks'))} | {r.get('n_own_photos')} / {r.get('n_lookalike_photos')} |" for r in rounds]
    out += ["", "## Answers that fit the user", "",
            "| round | prompt | ROUGE-1 P | ROUGE-1 R | ROUGE-1 F1 | F1 (model words) | BERTScore F1 | facts right "
            "| prompt tokens / answer | counterfactual same reply |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    out += [f"| {r['name']} | {r.get('prompt', '-')} | {_cell(r.get('rouge1_precision'))} | "
            f"{_cell(r.get('rouge1_recall'))} | {_cell(r.get('rouge1_f1'))} | {_cell(r.get('rouge1_f1_model_words'))} "
            f"| {_cell(r.get('bertscore_f1'))} | {_cell(r.get('accuracy'))} | "
            f"{_cell(r.get('prompt_tokens_mean'), share=False)} | {_cell(r.get('counterfactual_consistency'))} |"
            for r in rounds]
    out += ["", "## Bias and forgetting", "", "| round | version | profile bias score | general set |",
            "| --- | --- | --- | --- |"]
    out += [f"| {r['name']} | {r.get('version')} | {_cell(r.get('bias_score'))} | {_cell(r.get('general_accuracy'))} |"
            for r in rounds]
    g = goals(rounds)
    out += ["", "## The issue's goals", "", "| goal | measured |", "| --- | --- |",
            f"| own photos named right after one teaching (R2) >= 90% | {_cell(g['concept_accuracy_r2'])} |",
            f"| leaks = 0 (every round) | {g['leaks']} |",
            "| ROUGE-1 F1, tuned (R3) minus the best untuned with memory, >= +10 points | "
            f"{_cell(g['rouge1_f1_gain_tuned'])} |",
            "| prompt tokens, instruction baseline / tuned, >= 3x | "
            f"{_cell(g['tokens_fewer_than_instructions'], share=False)}x, at equal or better ROUGE-1: "
            f"{_cell(g['rouge1_at_least_instructions'])} |",
            f"| profile bias score, DPO minus R3, > 0 | {_cell(g['bias_gain_dpo'])} |",
            f"| general set, DPO minus R3, >= -1 point | {_cell(g['general_change_dpo'])} |",
            f"| general set, DPO minus the base model (R1), >= -1 point | {_cell(g['general_change_dpo_base'])} |",
            f"| counterfactual: same reply, lowest round, 100% | {_cell(g['counterfactual_consistency_min'])} |"]
    gate = report.get("gate") or {}
    if gate:
        out += ["", "## The gate", "", "| candidate | verdict | learning (dose questions) | profile bias | general |",
                "| --- | --- | --- | --- | --- |"]
        for label, g in gate.items():
            figs = [f"{_cell(g[k]['active'])} -> {_cell(g[k]['candidate'])}" if g.get(k) else "-"
                    for k in ("learning", "bias", "general")]
            out.append(f"| {label} | {'promote' if g['promote'] else 'keep active'} | " + " | ".join(figs) + " |")
    return "\n".join(out) + "\n"


def write_tables(report: dict[str, Any], out_dir: Any) -> Any:
    """Write personal.md beside report.json; returns its path."""
    from pathlib import Path

    path = Path(out_dir) / "personal.md"
    path.write_text(personal_markdown(report), encoding="utf-8")
    return path


__all__ = ["DEFAULT", "PLAN", "QUICK", "PersonalSizes", "goals", "intent_of", "learn_settings", "profiles",
           "personal_markdown", "reference_fitted", "run_personal", "training_rows", "write_tables"]
