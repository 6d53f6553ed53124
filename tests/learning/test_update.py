"""The model update end to end on the tiny model: events from chats -> learn -> gate -> promote -> rollback."""

from __future__ import annotations

import pytest
import torch
from learning_data import MEDICINES, NAME_QUESTION, NEW_VIEW, medicine, teach_medicines

from ilearn import plugins
from ilearn.assistant import Assistant
from ilearn.cli import main
from ilearn.config import Config, LearnConfig
from ilearn.errors import InvalidInput
from ilearn.learning.guesses import GUESSES, allowed
from ilearn.learning.update import dataset_kind, split_heldout
from ilearn.types import Event, ModelStatus, answer_key
from test_retrieval_loop import bottle

LEARN = {"recipe": "sft", "trainable": ("vision", "projector", "language"), "lora": (), "max_steps": 150,
         "learning_rate": 3e-3, "batch_size": 8, "heldout_fraction": 0.25, "general_limit": 8, "replay": 0}


def build(home, model: dict | None = None, **learn) -> Assistant:
    config = Config(home=str(home)).override(
        model={"backend": "tiny", **(model or {})}, feedback={"method": "lexical"}, retrieval={"enabled": False},
        learn={**LEARN, **learn})
    return Assistant.from_config(config)


def teach_many(assistant: Assistant, n: int = 12) -> None:
    for i in range(n):
        user = f"user{i % 4}"
        r = assistant.respond(user, "What is this medicine called?", image=bottle(shift=i % 5 - 2, light=i % 3 * 6))
        assistant.respond(user, "No, that's ibuprofen.", session_id=r.session_id)
        assistant.close_session(r.session_id)


def test_each_registered_recipe_names_the_dataset_it_trains_on():
    """Recipe names live in the plugin registry only; each recipe says which dataset it reads."""
    assert {r: dataset_kind(r) for r in plugins.names("recipe")} == {
        "dpo": "dpo", "kto": "kto", "reinforce": "rewards", "sft": "sft"}
    with pytest.raises(InvalidInput, match="unknown recipe 'magic'"):
        dataset_kind("magic")


def test_heldout_split_is_seeded_and_disjoint():
    events = [Event(None, "q", f"a{i % 50}", "u", id=f"evt_{i}") for i in range(200)]  # 50 facts, 4 views each
    train, held = split_heldout(events, 0.2, seed=0)
    assert {e.id for e in train}.isdisjoint({e.id for e in held}) and len(train) + len(held) == 200
    assert 20 < len(held) < 60
    assert [e.id for e in split_heldout(events, 0.2, seed=0)[1]] == [e.id for e in held]


@pytest.mark.parametrize("seed", range(20))
def test_small_snapshots_always_hold_some_events_out(seed):
    events = [Event(None, "q", f"a{i % 4}", "u", id=f"evt_{seed}_{i}") for i in range(8)]  # 4 facts, 2 views each
    assert len(split_heldout(events, 0.25, seed=seed)[1]) == 2
    assert len(split_heldout(events[:2], 0.1, seed=seed)[1]) == 1  # two facts taught once: one held out all the same
    assert split_heldout(events[:1], 0.5, seed=seed)[1] == []  # one event: all of it trains


@pytest.mark.parametrize("seed", range(20))
def test_only_new_views_of_facts_that_stay_taught_are_held_out(seed):
    """A fact whose only event were held out would be missing from the weights, and no candidate could answer it."""
    once = [Event(None, "q", f"once {i}", "u", id=f"evt_once_{i}") for i in range(6)]
    twice = [Event(None, "q", answer, "u", id=f"evt_twice_{i}_{v}")  # the same answer, written two ways
             for i in range(3) for v, answer in enumerate((f"Twice {i}.", f"twice {i}"))]
    thrice = [Event(None, "q", "thrice", "u", id=f"evt_thrice_{v}") for v in range(3)]
    train, held = split_heldout(once + twice + thrice, 0.5, seed=seed)  # half of 15 would be 8
    assert len(held) == 3 + 2  # all but one view of each fact taught more than once
    assert {e.answer for e in once} <= {e.answer for e in train}
    assert {answer_key(e.answer) for e in held} <= {answer_key(e.answer) for e in train}  # every one still taught


def learn_promote_rollback(home, model: dict | None = None) -> Assistant:
    """Teach three bottles, learn, check the promoted model knows each without retrieval, roll back; returns the
    assistant."""
    assistant = build(home, model)
    teach_medicines(assistant)
    photos = {colour: medicine(colour, *NEW_VIEW) for colour in MEDICINES}
    before = {c: assistant.respond("zoe", NAME_QUESTION, image=photo).text for c, photo in photos.items()}

    outcome = assistant.learn()
    assert outcome.version is not None and outcome.n_heldout_events >= 1
    assert outcome.gate["learning"]["candidate"] > outcome.gate["learning"]["active"]
    assert outcome.promoted and outcome.version.status == ModelStatus.ACTIVE, outcome.summary()
    assert set(outcome.gate) >= {"learning", "specificity", "general", "bias", "reasons"}
    # the held-out events also chose whether the memory's guesses may overrule this version (kept with it)
    choice = outcome.version.metrics[GUESSES]
    assert choice["n_heldout"] == outcome.n_heldout_events and choice["allow"] == allowed(outcome.version.metrics)
    assert any(r.startswith("guesses: ") for r in outcome.reasons)

    # retrieval is off: the promoted model itself now knows each taught bottle, and tells them apart
    for colour, photo in photos.items():
        after = assistant.respond("zoe", NAME_QUESTION, image=photo)
        assert MEDICINES[colour][1] in after.text.lower() and after.model_version == outcome.version.id

    assert main(["models", "rollback", "--home", str(home)]) == 0
    for colour, photo in photos.items():
        again = assistant.respond("zoe", NAME_QUESTION, image=photo)
        assert again.model_version == "base" and again.text == before[colour]
    return assistant


def test_learn_promotes_a_better_model_and_rollback_restores_answers(tmp_path):
    learn_promote_rollback(tmp_path / "home")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_learn_promote_rollback_on_cuda_in_bf16(tmp_path):
    """The same loop with the model on the GPU in bf16: training under autocast, gate, promotion, rollback."""
    assistant = learn_promote_rollback(tmp_path / "home", {"device": "cuda", "dtype": "bfloat16"})
    parameter = next(assistant.vlm.model.parameters())
    assert parameter.device.type == "cuda" and parameter.dtype == torch.bfloat16


def test_gate_rejects_a_candidate_that_did_not_learn(tmp_path):
    assistant = build(tmp_path / "home", max_steps=1, learning_rate=1e-9)
    teach_many(assistant, n=8)
    outcome = assistant.learn(general=False)
    assert not outcome.promoted and outcome.version.status == ModelStatus.REJECTED
    assert any("learning" in r for r in outcome.reasons)
    assert GUESSES not in outcome.version.metrics  # a refused candidate never serves: nothing to choose
    assert assistant.registry.active_id() == "base"


def test_each_run_trains_with_its_own_seed_and_holds_out_the_same_events(tmp_path):
    """A candidate the gate turned down is not retrained identically; the held-out events stay the same."""
    assistant = build(tmp_path / "home", max_steps=3, lora=("language",))  # the seed draws LoRA's initial weights
    teach_many(assistant, n=8)
    first, second = assistant.learn(general=False), assistant.learn(general=False)
    seeds = [v.settings["seed"] for v in (first.version, second.version)]
    assert seeds == [LearnConfig().seed, LearnConfig().seed + 1]
    assert first.train["train_loss"] != second.train["train_loss"]
    held = [v.metrics["heldout_event_ids"] for v in (first.version, second.version)]
    assert held[0] == held[1] and held[0]


def test_nothing_to_learn_is_reported(tmp_path):
    assistant = build(tmp_path / "home")
    outcome = assistant.learn()
    assert outcome.version is None and "no sft training examples" in outcome.summary()


def test_background_update_after_enough_events(tmp_path):
    assistant = build(tmp_path / "home", auto_after_events=6)
    teach_many(assistant, n=6)
    assistant.wait_for_learning(timeout=600)
    assert assistant.last_learn is not None and assistant.last_learn.version is not None
    assert assistant.new_events_since_training() == 0


@pytest.mark.parametrize("argv", [["models", "list"], ["learn"]])
def test_cli_without_a_deployment_says_so(tmp_path, capsys, argv):
    assert main([*argv, "--home", str(tmp_path / "none"), "--model", "tiny"]) == 2
    assert "no iLearn deployment" in capsys.readouterr().err


def test_cli_learn_then_models_list(tmp_path, capsys):
    import json

    home = tmp_path / "home"
    assistant = build(home)
    teach_medicines(assistant)
    assistant.close()
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"feedback": {"method": "lexical"}, "retrieval": {"enabled": False},
                                  "learn": {**LEARN, "trainable": list(LEARN["trainable"]), "lora": []}}))
    assert main(["learn", "--home", str(home), "--model", "tiny", "--config", str(config), "--no-general"]) == 0
    out = capsys.readouterr().out
    assert "promoted" in out and "learning: held-out accuracy rose" in out
    assert main(["models", "list", "--home", str(home)]) == 0
    listing = capsys.readouterr().out
    assert "active" in listing and "sft" in listing and "held-out 0.00 -> 1.00" in listing
    assert "false naming 0.00 -> " in listing


def test_replay_rows_are_general_sft_examples_from_the_train_split():
    from ilearn.learning.update import replay_rows

    rows = replay_rows(5, seed=0)
    assert len(rows) == 5 and replay_rows(0, seed=0) == []
    assert all(r["messages"][0]["content"][0] == {"type": "image"} and len(r["images"]) == 1 for r in rows)
    assert [r["messages"][1] for r in rows] == [r["messages"][1] for r in replay_rows(5, seed=0)]


@pytest.mark.parametrize("recipe", ["kto", "reinforce", "dpo"])
def test_replay_rows_come_in_every_recipes_format(recipe):
    from ilearn.data.easyvqa import kind_of
    from ilearn.learning.update import replay_rows

    sft, rows = replay_rows(6, seed=1), replay_rows(6, seed=1, recipe=recipe)
    answers = [r["messages"][1]["content"][0]["text"] for r in sft]
    assert all(r["augment"] is False and len(r["images"]) == 1 for r in rows)
    assert [r["prompt"] for r in rows] == [r["messages"][:1] for r in sft]
    if recipe == "dpo":
        assert [r["chosen"][0]["content"][0]["text"] for r in rows] == answers
        wrong = [r["rejected"][0]["content"][0]["text"] for r in rows]
        assert all(w != a and kind_of(w) == kind_of(a) for w, a in zip(wrong, answers, strict=True))
    else:  # desirable for kto; reward_positive for reinforce
        assert [r["completion"][0]["content"][0]["text"] for r in rows] == answers
        assert all(r["label"] is True for r in rows)
    with pytest.raises(InvalidInput):
        replay_rows(2, seed=0, recipe="ppo")


@pytest.mark.parametrize("recipe", ["kto", "reinforce", "dpo"])
def test_training_set_mixes_replay_into_every_recipe(recipe):
    from ilearn.learning.update import training_set

    event_rows = [{"prompt": [], "completion": [], "label": False, "event_id": "e1"}]
    rows = training_set(event_rows, LearnConfig(recipe=recipe, replay=3, event_repeats=2))
    assert rows[:2] == event_rows * 2 and len(rows) == 5
    assert all("event_id" not in r and r["augment"] is False for r in rows[2:])


def test_learn_trains_every_candidate_setting_and_keeps_the_best(tmp_path):
    """Issue 18, item 3: which settings train is decided by the deployment's own held-out events. The main
    settings cannot learn (a vanishing rate), the alternative can: the alternative is promoted, the main one
    marked rejected, and the outcome says why."""
    from ilearn.learning.select import candidate_settings

    assistant = build(tmp_path / "home", learning_rate=1e-9, max_steps=2,
                      candidates=({"learning_rate": 3e-3, "max_steps": 150}, {"max_steps": 2}))
    assert len(candidate_settings(assistant.config)) == 2  # {"max_steps": 2} is the main settings: trained once
    teach_medicines(assistant)
    outcome = assistant.learn(general=False)
    first, second = assistant.registry.list()
    assert outcome.promoted and outcome.version.id == second.id == assistant.registry.active_id()
    assert second.status == ModelStatus.ACTIVE and second.settings["learning_rate"] == 3e-3
    assert first.status == ModelStatus.REJECTED and first.settings["learning_rate"] == 1e-9
    lines = [r for r in outcome.reasons if r.startswith("candidate ")]
    assert len(lines) == 2 and "main settings" in lines[0]
    assert "learning_rate=0.003" in lines[1] and "max_steps=150" in lines[1]
    assert lines[1].endswith(": kept") and not lines[0].endswith(": kept")


@pytest.mark.parametrize("candidates, message", [
    (({"trainable": ["wings"]},), "unknown parts"),
    (({"nosuch": 1},), "unknown or nested"),
    (({"candidates": ()},), "unknown or nested"),
    (("vision",), "each is an object"),
])
def test_bad_candidates_are_refused(candidates, message):
    with pytest.raises(InvalidInput, match=message):
        LearnConfig(candidates=candidates)
