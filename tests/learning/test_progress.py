"""How far a model update is (`ilearn.learning.progress`): the phases and the fraction done, from the training
loop's own steps, for one candidate setting and for several."""

from __future__ import annotations

import pytest
from learning_data import rows_for, teach_medicines

from ilearn.assistant import Assistant
from ilearn.config import Config, LearnConfig
from ilearn.learning.progress import Progress, at, for_candidate, reporter
from ilearn.learning.recipes import train

LEARN = {"recipe": "sft", "trainable": ("projector",), "lora": (), "max_steps": 3, "batch_size": 4,
         "heldout_fraction": 0.25, "general_limit": 4, "replay": 0}


def test_each_phase_owns_a_share_of_the_fraction():
    assert at("distilling") == Progress("distilling", 0.0)
    assert at("training", 0, 4).fraction == pytest.approx(0.05)
    assert at("training", 2, 4).fraction == pytest.approx(0.45) and at("training", 2, 4).step == 2
    assert at("training", 4, 4).fraction == pytest.approx(0.85)
    assert at("training", 9, 4).fraction == pytest.approx(0.85)  # never past the phase's share
    assert at("training", 3, 0).fraction == pytest.approx(0.05)  # steps not known yet: the phase's start
    assert at("gating").fraction == pytest.approx(0.85)
    with pytest.raises(KeyError):
        at("sleeping")


def test_progress_in_words():
    assert at("training", 3, 10).describe() == "training step 3 of 10"
    assert at("training").describe() == "training"
    assert Progress("gating", 0.9, candidate=2, candidates=3).describe() == "candidate 2 of 3: gating"
    assert Progress("done", 1.0, candidate=2, candidates=2).describe() == "done"


def test_a_reporter_without_a_callback_does_nothing_and_with_one_sends_each_point():
    reporter(None)("training", 1, 2)  # no error
    seen: list[Progress] = []
    tell = reporter(seen.append)
    tell("distilling")
    tell("training", 1, 2)
    assert seen == [at("distilling"), at("training", 1, 2)]


def test_candidates_trained_one_after_the_other_each_get_a_slice():
    seen: list[Progress] = []
    assert for_candidate(None, 0, 2) is None
    for i in range(2):
        for_candidate(seen.append, i, 2)(at("training", 1, 2))
    assert [p.fraction for p in seen] == pytest.approx([0.225, 0.725])
    assert [(p.candidate, p.candidates) for p in seen] == [(1, 2), (2, 2)]


def test_the_training_loop_tells_each_step(tiny_vlm, tmp_path):
    steps: list[tuple[int, int]] = []
    result = train(tiny_vlm, rows_for("sft"), LearnConfig(**LEARN), tmp_path / "v", on_step=lambda *s: steps.append(s))
    assert result.steps == 3 and steps == [(0, 3), (1, 3), (2, 3), (3, 3)]


def build(home, **learn) -> Assistant:
    config = Config(home=str(home)).override(
        model={"backend": "tiny"}, feedback={"method": "lexical"}, retrieval={"enabled": False},
        learn={**LEARN, **learn})
    return Assistant.from_config(config)


def check_grows(seen: list[Progress]) -> None:
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and all(0.0 <= f <= 1.0 for f in fractions)


def test_an_update_reports_distilling_each_training_step_then_gating(tmp_path):
    assistant = build(tmp_path / "home", candidates=())
    teach_medicines(assistant)
    seen: list[Progress] = []
    outcome = assistant.learn(general=False, progress=seen.append)
    assert outcome.version is not None
    assert [(p.phase, p.step, p.steps) for p in seen] == [
        ("distilling", 0, 0), ("training", 0, 3), ("training", 1, 3), ("training", 2, 3), ("training", 3, 3),
        ("gating", 0, 0)]
    check_grows(seen)
    assert {(p.candidate, p.candidates) for p in seen} == {(1, 1)}


def test_two_candidate_settings_report_one_after_the_other(tmp_path):
    assistant = build(tmp_path / "home", candidates=({"max_steps": 2},))
    teach_medicines(assistant)
    seen: list[Progress] = []
    assistant.learn(general=False, progress=seen.append)
    assert [(p.candidate, p.phase, p.step, p.steps) for p in seen] == [
        (1, "distilling", 0, 0), (1, "training", 0, 3), (1, "training", 1, 3), (1, "training", 2, 3),
        (1, "training", 3, 3), (1, "gating", 0, 0),
        (2, "distilling", 0, 0), (2, "training", 0, 2), (2, "training", 1, 2), (2, "training", 2, 2),
        (2, "gating", 0, 0)]
    check_grows(seen)
    assert seen[5].fraction < 0.5 <= seen[6].fraction and {p.candidates for p in seen} == {2}


def test_nothing_to_learn_reports_only_distilling(tmp_path):
    seen: list[Progress] = []
    outcome = build(tmp_path / "home").learn(progress=seen.append)
    assert outcome.version is None and [p.phase for p in seen] == ["distilling"]
