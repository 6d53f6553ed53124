"""The experiment protocol on the tiny model: round names, held-out scoring, resume, determinism, objects, errors."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image, ImageDraw

from ilearn.config import Config
from ilearn.errors import InvalidInput
from ilearn.evaluation.protocol import run_experiment
from ilearn.evaluation.report import ROUND_KEYS, TOP_KEYS
from ilearn.evaluation.runner_fact import FactSizes
from ilearn.evaluation.runner_game import GameSizes
from ilearn.evaluation.scenarios.reference_game import CELL

# the lexical decoder: the tiny model's own judgement is random, and the loop must produce events to train on
LEXICAL = Config().override(feedback={"method": "lexical"})
FACT = FactSizes(teach_views=1, test_views=1, teach_tasks=8, teach_tasks_r2=4, test_tasks=4, general=2,
                 train_steps=2, batch_size=2)
GAME = GameSizes(teach_games=2, test_games=2, rounds=1, general=0, train_steps=1, batch_size=2)
FACT_NAMES = ["R1", "R2", "R3", "R3+retrieval", "R3 (vision trained)", "R3 (vision trained)+retrieval"]
UNSTABLE = {"latency_ms_p50", "stage_ms_mean", "version", "created", "elapsed_s", "seconds", "teach_seconds"}


def _run(tmp_path, name="rep", scenario="pharmacy", **kwargs):
    options = dict(model="tiny", report_dir=tmp_path / name, progress=False, config=LEXICAL, bertscore=False,
                   sizes=FACT if scenario != "reference-game" else GAME)
    options.update(kwargs)
    return run_experiment(scenario, **options)


def _stable(rounds):
    return [{k: v for k, v in r.items() if k not in UNSTABLE} for r in rounds]


def test_pharmacy_rounds_are_scored_on_held_out_interactions(tmp_path):
    report = _run(tmp_path)
    assert set(TOP_KEYS) <= set(report) and report["scenario"] == "pharmacy" and report["model"] == "tiny"
    assert [r["name"] for r in report["rounds"]] == FACT_NAMES
    for r in report["rounds"]:
        assert set(ROUND_KEYS) <= set(r)
        assert r["n_interactions"] == FACT.test_tasks
        assert 0.0 <= r["accuracy"] <= 1.0 and r["general_accuracy"] is not None
    r1, r2, r3, r3r, abl, ablr = report["rounds"]
    assert (r1["retrieval"], r2["retrieval"], r3["retrieval"], r3r["retrieval"]) == (False, True, False, True)
    assert (abl["retrieval"], ablr["retrieval"]) == (False, True) and ablr["version"] == abl["version"]
    assert r1["method"] == r2["method"] == "base" and r3["method"] == "sft"
    assert r1["teach_events"] > 0  # teaching fed memory
    assert r3["version"] == r3r["version"] != "base" and abl["version"] not in ("base", r3["version"])
    assert "vision" not in r3["trainable"] and "vision" in abl["trainable"]  # the ablation trains it
    # held-out personas only, and scoring users are gone: only teach users hold events
    assert not set(report["personas"]["teach"]) & set(report["personas"]["test"])
    from ilearn.memory.sqlite import open_store

    store = open_store(tmp_path / "rep" / "work" / "teach")
    try:
        users = store.list_users()
        assert users and all("-teach-" in u for u in users)
        assert {e.user_id for e in store.list_events()} <= set(users)
        # as `ilearn learn`: both versions trained without the same held-out events, on which each chose
        # whether the memory's guesses may overrule it (the choice is in the round and with the version)
        versions = [store.get_model_version(r["version"]) for r in (r3, abl)]
        held = [set(v.metrics["heldout_event_ids"]) for v in versions]
        assert held[0] and held[0] == held[1] and all(not h & set(v.event_ids) for h, v in zip(held, versions, strict=True))
        for r, v in zip((r3r, ablr), versions, strict=True):
            assert r["guesses"] == v.metrics["guesses"] and r["guesses"]["n_heldout"] == len(held[0])
    finally:
        store.close()
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == [
        "learning_curves.png", "metrics.png", "report.json", "report.md", "rounds", "work"]


class Stop(Exception):
    """An interruption (raised by `stop_after`)."""


def stop_after(name: str):
    """An `on_round` callback that interrupts the run once round `name` is saved."""
    def hook(round_):
        if round_["name"] == name:
            raise Stop
    return hook


def test_resume_after_interruption_skips_finished_rounds(tmp_path):
    with pytest.raises(Stop):
        _run(tmp_path, on_round=stop_after("R1"))
    saved = json.loads((tmp_path / "rep" / "rounds" / "R1.json").read_text())
    assert not (tmp_path / "rep" / "report.json").exists()
    computed = []
    report = _run(tmp_path, on_round=lambda r: computed.append(r["name"]))
    assert computed == FACT_NAMES[1:]  # R1 was loaded, not recomputed
    assert report["rounds"][0] == saved
    with pytest.raises(InvalidInput, match="other settings"):
        _run(tmp_path, seed=1)


def test_same_seed_same_numbers(tmp_path):
    a = _run(tmp_path, "a", rounds=2)
    b = _run(tmp_path, "b", rounds=2)
    assert [r["name"] for r in a["rounds"]] == ["R1", "R2"]
    assert _stable(a["rounds"]) == _stable(b["rounds"])


def test_users_scored_at_once_give_the_numbers_of_one_after_the_other(tmp_path):
    from dataclasses import replace

    sizes = replace(FACT, test_tasks=12)
    one = _run(tmp_path, "one", rounds=2, sizes=replace(sizes, score_users=1))
    many = _run(tmp_path, "many", rounds=2, sizes=replace(sizes, score_users=6))
    assert [r["n_interactions"] for r in many["rounds"]] == [12, 12]
    assert _stable(many["rounds"]) == _stable(one["rounds"])
    resumed = _run(tmp_path, "one", rounds=2, sizes=replace(sizes, score_users=3))  # not a different run
    assert resumed["rounds"] == one["rounds"]


def test_games_played_at_once_give_the_numbers_of_one_after_the_other(tmp_path):
    """Deployed games' sessions are closed in game order after playing, so training sees the same events."""
    from dataclasses import replace

    sizes = replace(GAME, teach_games=6, test_games=6)
    one = _run(tmp_path, "one", scenario="reference-game", methods=["sft"], sizes=replace(sizes, score_users=1))
    many = _run(tmp_path, "many", scenario="reference-game", methods=["sft"], sizes=replace(sizes, score_users=6))
    assert [r["n_interactions"] for r in many["rounds"]] == [6, 6]
    assert _stable(many["rounds"]) == _stable(one["rounds"])


def test_the_ablation_trained_beside_r3_gives_the_same_rounds(tmp_path):
    sequential = _run(tmp_path, "sequential")
    beside = _run(tmp_path, "beside", parallel=True)  # the vision-trained model in a child process
    assert _stable(beside["rounds"]) == _stable(sequential["rounds"])
    from ilearn.memory.sqlite import open_store

    store = open_store(tmp_path / "beside" / "work" / "teach")
    try:
        versions = {v.id: v for v in store.list_model_versions()}
    finally:
        store.close()
    ablation = versions[beside["rounds"][-1]["version"]]
    assert ablation.settings["trainable"] == ["vision", "projector", "language"] and ablation.event_ids
    assert ablation.metrics["experiment_key"] == "sft-full" and ablation.metrics["train"]["steps"] == FACT.train_steps
    # trained in the child without the held-out events, which it records as the sequential run does
    held = set(ablation.metrics["heldout_event_ids"])
    assert held and not held & set(ablation.event_ids)


def test_an_interrupted_run_stops_the_training_beside_it(tmp_path):
    with pytest.raises(Stop):
        _run(tmp_path, parallel=True, on_round=stop_after("R3"))
    models = tmp_path / "rep" / "work" / "teach" / "models"
    assert len([p for p in models.iterdir() if p.is_dir()]) == 1  # R3's; the ablation's folder is gone
    report = _run(tmp_path, parallel=True)  # resumes: R3+retrieval and the ablation still to do
    assert [r["name"] for r in report["rounds"]] == FACT_NAMES and report["rounds"][-1]["version"] != "base"


def test_reference_game_rounds_per_method(tmp_path):
    report = _run(tmp_path, scenario="reference-game", methods=["sft", "reinforce", "kto"])
    names = [(r["name"], r["method"]) for r in report["rounds"]]
    assert names == [(f"round{i}", m) for m in ("sft", "reinforce", "kto") for i in range(2)]
    base = [r for r in report["rounds"] if r["name"] == "round0"]
    assert len({json.dumps(_stable([{k: v for k, v in r.items() if k != "method"}])) for r in base}) == 1
    for r in report["rounds"]:
        assert set(ROUND_KEYS) <= set(r) and r["retrieval"] is False and r["rouge1_f1"] is None
        assert r["n_interactions"] == GAME.test_games and r["task_completion"] is not None
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| round | sft | reinforce | kto |" in md
    # every deployment event is a pick: a figure of the board (not the board) with the user's description
    from ilearn.dialogue.choice import PANEL_QUESTION
    from ilearn.memory.sqlite import open_store

    store = open_store(tmp_path / "rep" / "work" / "game-base")
    try:
        events = store.list_events()
        assert events and all(e.question == PANEL_QUESTION and (e.answer or e.rejected) for e in events)
        sizes = {(e.image.width, e.image.height) for e in events}
        assert sizes == {(CELL, CELL)}
    finally:
        store.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("scenario", ["pharmacy", "reference-game"])
def test_protocol_on_cuda_in_bf16(tmp_path, scenario):
    """Both protocols end to end with the model on the GPU in bf16: deploy, train every recipe, redeploy, score."""
    config = LEXICAL.override(model={"device": "cuda", "dtype": "bfloat16"})
    methods = ["sft", "reinforce", "kto"] if scenario == "reference-game" else None
    report = _run(tmp_path, scenario=scenario, config=config, methods=methods)
    trained = [r for r in report["rounds"] if r["method"] != "base" and r["name"] != "round0"]
    assert len(trained) == 3  # game: round1 per recipe; pharmacy: R3, R3+retrieval and the vision ablation
    score = "task_completion" if methods else "accuracy"
    for r in report["rounds"]:
        assert r["n_interactions"] > 0 and r[score] is not None and 0.0 <= r[score] <= 1.0
        assert r["latency_ms_p50"] > 0
    if scenario == "pharmacy":
        assert all(r["version"] != "base" for r in trained)


def _photos(root, n_objects=3, n_photos=3):
    colours = [(200, 30, 30), (30, 160, 60), (40, 60, 200)]
    for o in range(n_objects):
        folder = root / f"thing_{o}"
        folder.mkdir(parents=True)
        for p in range(n_photos):
            image = Image.new("RGBA", (80 + 10 * p, 60), (255, 255, 255, 0))
            ImageDraw.Draw(image).ellipse((10 + 3 * p, 10, 50, 50), fill=colours[o] + (255,))
            image.save(folder / f"img{p}.png")
    (root / "thing_0" / "facts.json").write_text(json.dumps({"use": "drinking tea"}))


def test_objects_folder(tmp_path):
    _photos(tmp_path / "photos")
    report = _run(tmp_path, scenario="objects", objects_dir=tmp_path / "photos", rounds=2)
    assert report["scenario"] == "objects" and [r["name"] for r in report["rounds"]] == ["R1", "R2"]
    assert report["skipped_photos"] == []
    assert report["rounds"][0]["n_interactions"] == FACT.test_tasks


@pytest.mark.parametrize("kwargs, message", [
    ({"scenario_name": "nope"}, "unknown scenario"),
    ({"scenario_name": "objects"}, "needs a folder"),
    ({"scenario_name": "pharmacy", "methods": ["magic"]}, "unknown method"),
    ({"scenario_name": "pharmacy", "rounds": 0}, "rounds"),
    ({"scenario_name": "pharmacy", "users": 40}, "users"),
    ({"scenario_name": "pharmacy", "learn": {"max_steps": 5}}, "max_steps"),  # the sizes' to set
    ({"scenario_name": "pharmacy", "learn": {"learning_rat": 1e-3}}, "learning_rat"),
])
def test_bad_settings_are_refused(tmp_path, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        run_experiment(model="tiny", report_dir=tmp_path, progress=False, **kwargs)
    assert not (tmp_path / "rounds").exists()
