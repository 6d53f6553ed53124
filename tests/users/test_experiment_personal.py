"""`ilearn experiment personal` on the tiny model: its rounds, what each measures, privacy of the scoring, the report
folder and its tables; the scenario's users and look-alikes. One quick deterministic run shared by the tests."""

from __future__ import annotations

import json

import pytest

from ilearn.config import Config
from ilearn.evaluation.protocol import run_experiment
from ilearn.evaluation.runner_personal import (
    PLAN,
    PersonalSizes,
    intent_of,
    learn_settings,
    personal_markdown,
    reference_fitted,
)
from ilearn.evaluation.scenarios.personal import GROUPS, personal_scenario
from ilearn.users.profiles import Profile
from ilearn.users.references import reference_answer

SIZES = PersonalSizes(users_per_group=1, teach_views=1, test_views=1, general=2, sft_steps=2, sft_replay=3,
                      dpo_steps=2, batch_size=2, counterfactual=1)
CONFIG = Config().override(personal={"threshold": 0.95})  # the stub image embedder's scale (ConceptBook)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("personal") / "rep"
    return out, run_experiment("personal", model="tiny", report_dir=out, progress=False, config=CONFIG,
                               bertscore=False, sizes=SIZES, learn={"replay": 2})


def test_the_rounds_and_what_they_serve(report):
    _, rep = report
    rounds = rep["rounds"]
    assert [r["name"] for r in rounds] == [name for _, name, _, _, _ in PLAN]
    assert [(r["retrieval"], r["prompt"]) for r in rounds] == [(ret, p) for _, _, _, ret, p in PLAN]
    r1, r2, r2_tag, r2_instr, r3, r3_mem, dpo = rounds
    assert {r["version"] for r in (r1, r2, r2_tag, r2_instr)} == {"base"}
    assert r3["version"] == r3_mem["version"] != "base" and dpo["version"] not in ("base", r3["version"])
    assert (r3["method"], dpo["method"]) == ("user-aware sft", "user-aware dpo")
    for r in rounds:
        assert r["n_interactions"] == 2 * len(GROUPS)  # use and dose, one user per group
        assert r["n_own_photos"] == len(GROUPS) and r["n_lookalike_photos"] == len(GROUPS)
        assert r["leaks"] == 0  # another user's name never comes out
        assert 0 <= r["rouge1_f1"] <= 1 and r["bias_score"] is not None and r["general_accuracy"] is not None
        assert r["n_counterfactual"] == 5 and r["counterfactual_consistency"] is not None
    # R1: nobody has told anything yet; from R2 on, their things are known
    assert r1["concept_accuracy"] == 0.0
    # the prompting baseline's prompt is the longest; the tag costs a few tokens over nothing
    assert r2_instr["prompt_tokens_mean"] > r2_tag["prompt_tokens_mean"] > r2["prompt_tokens_mean"]
    assert r3["prompt_tokens_mean"] < r3_mem["prompt_tokens_mean"]  # no references in the prompt without memory


def test_scoring_users_leave_nothing_behind(report):
    out, _ = report
    from ilearn.memory.sqlite import open_store

    store = open_store(out / "work" / "personal")
    try:
        users = set(store.list_users())
        scenario = personal_scenario(users_per_group=1, n_teach=1, n_test=1)
        assert users == {u.id for u in scenario.users} | {"caretaker"}
        assert {e.user_id for e in store.list_events()} == {"caretaker"}
        r3, dpo = (next(r for r in report[1]["rounds"] if r["name"] == name) for name in ("R3", "R3 (DPO)"))
        from ilearn.learning.registry import ModelRegistry

        stacked = ModelRegistry(store, out / "work" / "personal").get(dpo["version"])
        assert stacked.settings["start_from"] == r3["version"]  # the DPO stage trained on top of R3
    finally:
        store.close()


def test_the_report_folder_and_its_tables(report):
    out, rep = report
    assert {"report.json", "report.md", "personal.md", "rounds", "work"} <= {p.name for p in out.iterdir()}
    saved = json.loads((out / "report.json").read_text())
    assert saved["scenario"] == "personal" and len(saved["users"]) == len(GROUPS)
    first, second = saved["gate"]  # the DPO candidate faces what the first verdict left active
    assert first == "R3 against the base model"
    assert second == ("R3 (DPO) against R3" if saved["gate"][first]["promote"] else "R3 (DPO) against the base model")
    for verdict in saved["gate"].values():
        assert set(verdict["bias"]) == {"active", "candidate"} and isinstance(verdict["promote"], bool)
    text = (out / "personal.md").read_text()
    assert text == personal_markdown(saved)
    for heading in ("## Personal concepts", "## Answers that fit the user", "## Bias and forgetting", "## The gate"):
        assert heading in text
    assert text.count("| R3 (DPO) |") == 3 and "## The issue's goals" in text
    assert saved["goals"]["leaks"] == 0


def test_a_rerun_loads_the_finished_rounds(report, monkeypatch):
    out, rep = report
    import ilearn.evaluation.runner_personal as runner

    def refuse(*args, **kwargs):
        raise AssertionError("a finished round was scored again")

    monkeypatch.setattr(runner, "_score", refuse)
    again = run_experiment("personal", model="tiny", report_dir=out, progress=False, config=CONFIG,
                           bertscore=False, sizes=SIZES, learn={"replay": 2})
    assert [r["rouge1_f1"] for r in again["rounds"]] == [r["rouge1_f1"] for r in rep["rounds"]]


def test_the_scenario_deals_look_alikes_to_different_users():
    scenario = personal_scenario(users_per_group=2, n_teach=1, n_test=1)
    assert len(scenario.users) == 12 and len({u.item for u in scenario.users}) == 12
    assert len({u.name for u in scenario.users}) == 12
    for user in scenario.users:
        assert user.lookalike and user.lookalike != user.item
        assert scenario.owner(user.lookalike).id != user.id
        assert GROUPS[user.group][1] == user.profile
    with pytest.raises(Exception, match="users_per_group"):
        personal_scenario(users_per_group=3)
    with pytest.raises(Exception, match="group"):
        personal_scenario(groups=("toddler",))


def test_training_targets_are_the_references():
    assert intent_of("[user: child] What is the dose of this?") == "dose"
    assert intent_of("What is this used for?") == "use"
    child = Profile(age_group="child")
    assert reference_fitted("[user: child] What is the dose of this?", "10 mg once a day", child) == \
        reference_answer("dose", "10 mg once a day", child)


def test_the_fine_tunings():
    from ilearn.evaluation.runner_common import RunContext

    ctx = RunContext(scenario="personal", seed=3, vlm=None, config=Config(), home=None, cache=None, sizes=SIZES,
                     teach_personas=[], test_personas=[], methods=[], learn={"learning_rate": 0.01})
    sft, dpo = learn_settings(ctx, "sft"), learn_settings(ctx, "dpo", "v7")
    assert (sft.recipe, sft.max_steps, sft.seed, sft.trainable) == ("sft", 2, 3, ("projector", "language"))
    assert (dpo.recipe, dpo.max_steps, dpo.trainable, dpo.dpo_sft_weight) == ("dpo", 2, ("projector", "language"), 1.0)
    assert (sft.start_from, dpo.start_from) == ("", "v7")  # the DPO stage trains on top of R3's version
    assert (sft.dpo_sft_weight, dpo.learning_rate_projector) == (0.0, sft.learning_rate_projector)
    assert sft.learning_rate == dpo.learning_rate == 0.01  # the caller's settings last
    assert sft.replay == SIZES.sft_replay  # the SFT's replayed general examples come with the run's size


def test_the_command_line_knows_the_scenario():
    from ilearn.cli import build_parser

    args = build_parser().parse_args(["experiment", "personal", "--report", "x", "--quick"])
    assert args.scenario == "personal"


def test_the_goals_are_read_from_the_rounds():
    from ilearn.evaluation.runner_personal import goals

    rounds = [
        {"name": "R1", "leaks": 0, "rouge1_f1": 0.1, "counterfactual_consistency": 1.0, "general_accuracy": 0.94},
        {"name": "R2", "leaks": 1, "concept_accuracy": 0.95, "rouge1_f1": 0.30, "counterfactual_consistency": 0.9},
        {"name": "R2 (tag)", "leaks": 0, "rouge1_f1": 0.35},
        {"name": "R2 (instructions)", "leaks": 0, "rouge1_f1": 0.40, "prompt_tokens_mean": 300.0},
        {"name": "R3", "leaks": 2, "rouge1_f1": 0.55, "prompt_tokens_mean": 60.0, "bias_score": 0.5,
         "general_accuracy": 0.90},
        {"name": "R3 (DPO)", "rouge1_f1": 0.5, "bias_score": 0.75, "general_accuracy": 0.88},
    ]
    assert goals(rounds) == pytest.approx({
        "concept_accuracy_r2": 0.95, "leaks": 3, "rouge1_f1_gain_tuned": 0.15, "tokens_fewer_than_instructions": 5.0,
        "rouge1_at_least_instructions": True, "bias_gain_dpo": 0.25, "general_change_dpo": -0.02,
        "general_change_dpo_base": -0.06, "counterfactual_consistency_min": 0.9})
    assert goals([{"name": "R1"}]) == {
        "concept_accuracy_r2": None, "leaks": 0, "rouge1_f1_gain_tuned": None, "tokens_fewer_than_instructions": None,
        "rouge1_at_least_instructions": None, "bias_gain_dpo": None, "general_change_dpo": None,
        "general_change_dpo_base": None, "counterfactual_consistency_min": None}
    rounds[4]["rouge1_f1"] = 0.39
    assert goals(rounds)["rouge1_at_least_instructions"] is False


@pytest.mark.parametrize("r3_promoted", [False, True])
def test_the_dpo_candidate_faces_the_model_the_gate_left_active(monkeypatch, r3_promoted):
    from types import SimpleNamespace

    import ilearn.learning.gate as gate
    from ilearn.evaluation import runner_personal

    served, faced, verdicts = [], [], iter([r3_promoted, True])

    class Dep:
        config = SimpleNamespace(model=None)
        registry = SimpleNamespace(load=lambda model, version: version)

        def serve(self, version):
            served.append(version)

    def evaluate(vlm, candidate, heldout, general, **kwargs):
        faced.append((served[-1], candidate))
        return SimpleNamespace(promote=next(verdicts), learning=None, general=None, bias={}, reasons=[])

    monkeypatch.setattr(gate, "evaluate_candidate", evaluate)
    ctx = SimpleNamespace(sizes=SimpleNamespace(general=0), config=Config(), vlm=None, general_cache=None)
    out = runner_personal._gates(ctx, Dep(), personal_scenario(users_per_group=1, n_teach=1, n_test=1),
                                 {"sft": "r3", "dpo": "dpo"})
    if r3_promoted:
        assert list(out) == ["R3 against the base model", "R3 (DPO) against R3"]
        assert faced == [(None, "r3"), ("r3", "dpo")]
    else:  # a deployment keeps the base model serving: the DPO candidate must beat that, not the refused R3
        assert list(out) == ["R3 against the base model", "R3 (DPO) against the base model"]
        assert faced == [(None, "r3"), (None, "dpo")]
