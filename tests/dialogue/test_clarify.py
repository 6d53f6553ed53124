import json
from importlib import resources
from pathlib import Path

import pytest
from PIL import Image

from ilearn import runtime
from ilearn.config import ClarifyConfig, Config
from ilearn.dialogue.clarify import (
    GENERAL_FACETS,
    PHARMACY_FACETS,
    LexicalClarifier,
    ModelClarifier,
    facet_for_key,
    facet_settings,
    facets_for_keys,
    facets_from_settings,
    find_facet,
    learn_facets,
    make_clarifier,
)
from ilearn.errors import InvalidInput
from ilearn.evaluation.scenarios.base import precise_question
from ilearn.evaluation.scenarios.objects import ObjectsScenario
from ilearn.evaluation.scenarios.pharmacy import pharmacy_scenario
from ilearn.models.stub import StubVLM
from ilearn.types import Event


@pytest.mark.parametrize("request_text", ["What is this?", "hey, what's that thing??", "Tell me about it.",
                                          "Robot, is this ok please?", "And this one?",
                                          "Hmm, what is this one then?", "Oh, and what about this one here?"])
def test_vague_requests_are_ambiguous(request_text):
    decision = LexicalClarifier().assess(request_text, image_given=True)
    assert decision.ambiguous
    assert "name" in decision.question and "dose" in decision.question


@pytest.mark.parametrize("request_text", ["What is this medicine called?", "What colour is the cap?",
                                          "How much should I take?", "Is there a circle?", "What does this do?",
                                          "What is it used for then?"])
def test_specific_requests_are_clear(request_text):
    assert not LexicalClarifier().assess(request_text, image_given=True).ambiguous


@pytest.mark.parametrize("reply, expected", [("the dose please", "What is the dose of this?"),
                                             ("what it's for", "What is this used for?"),
                                             ("its name", "What is this called?")])
def test_reply_resolves_to_precise_question(reply, expected):
    assert LexicalClarifier().resolve("what is this?", reply) == expected


def test_reply_without_facet_is_unresolved_and_has_a_fallback():
    clarifier = LexicalClarifier()
    assert clarifier.resolve("what is this?", "the blue one") is None
    assert clarifier.fallback("what is this?", "the blue one") == "what is this? (the blue one)"


def test_earliest_facet_cue_wins():
    assert find_facet("how much is the dose, and what is it called").name == "dose"


def test_model_clarifier_asks_when_model_prefers_unclear():
    unclear = StubVLM(scorer=lambda messages, c: 0.0 if c.startswith("Yes") else -5.0)
    clear = StubVLM(scorer=lambda messages, c: -5.0 if c.startswith("Yes") else 0.0)
    assert ModelClarifier(unclear).assess("what about the thing", True).ambiguous
    assert not ModelClarifier(clear).assess("what about the thing", True).ambiguous
    # a request naming a facet never reaches the model
    assert not ModelClarifier(unclear).assess("what is the dose", True).ambiguous


def test_make_clarifier_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown clarify method"):
        make_clarifier("telepathy")
    assert not make_clarifier("never").assess("what is this?", True).ambiguous


# -- the domain's facets -------------------------------------------------------------------------------------
BIRD_FACETS = [
    {"name": "name", "cues": ["name", "called", "species", "what bird"], "question": "What is this called?",
     "option": "its name"},
    {"name": "habitat", "cues": ["habitat", "live", "lives"], "question": "Where does this live?",
     "option": "where it lives"},
    {"name": "song", "cues": ["song", "sing", "sound"], "question": "What does this sound like?",
     "option": "its song"},
]


def test_a_config_with_bird_facets_never_offers_the_dose(tmp_path):
    config = Config(home=str(tmp_path / "home")).override(model={"backend": "stub"}, clarify={"facets": BIRD_FACETS})
    with runtime.build_runtime(config) as parts:
        clarifier = parts.clarifier
        for text in ["What is this?", "hey, what's that thing??", "Tell me about it.", "And this one?"]:
            decision = clarifier.assess(text, image_given=True)
            assert decision.ambiguous
            assert decision.options == ["its name", "where it lives", "its song"]
            assert "dose" not in decision.question
        assert clarifier.resolve("what is this?", "where it lives") == "Where does this live?"
        assert clarifier.resolve("what is this?", "the dose please") is None
        assert clarifier.precise("What bird is this?") == "What is this called?"
    model = make_clarifier("model", StubVLM(scorer=lambda m, c: 0.0 if c.startswith("Yes") else -5.0),
                           settings=config.clarify)
    assert "dose" not in model.assess("what about the thing", True).question


def test_the_default_settings_offer_a_general_set_without_dose():
    clarifier = make_clarifier("lexical", settings=ClarifyConfig())
    decision = clarifier.assess("What is this?", image_given=True)
    assert decision.ambiguous and "dose" not in decision.question
    assert [f.name for f in clarifier.facets] == [f.name for f in GENERAL_FACETS] == ["name", "use", "colour"]


def _objects_folder(root: Path, facts: dict[str, dict]) -> Path:
    for name, object_facts in facts.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i, colour in enumerate(["red", "green"]):
            Image.new("RGB", (16, 16), colour).save(folder / f"{i}.png")
        if object_facts:
            (folder / "facts.json").write_text(json.dumps(object_facts))
    return root


def test_an_objects_folder_with_facts_name_and_habitat_offers_those(tmp_path):
    root = _objects_folder(tmp_path / "birds", {
        "robin": {"habitat": "gardens", "name": "robin"}, "heron": {"name": "grey heron", "habitat": "rivers"}})
    scenario = ObjectsScenario.from_folder(root)
    assert [f["name"] for f in scenario.facets] == ["name", "habitat"]
    clarifier = make_clarifier("lexical", settings=ClarifyConfig(facets=scenario.facets))
    decision = clarifier.assess("what is this?", image_given=True)
    assert decision.ambiguous and decision.options == ["its name", "the habitat"]
    assert "dose" not in decision.question and "used for" not in decision.question
    # the reply a simulated user gives resolves to the question the scenario asks for that fact
    assert clarifier.resolve("what is this?", "The habitat, please.") == precise_question("habitat")
    assert clarifier.precise("what is the habitat of this bird?") == precise_question("habitat")
    assert clarifier.resolve("what is this?", "its name") == precise_question("name")


def test_a_domain_with_one_facet_does_not_ask(tmp_path):
    scenario = ObjectsScenario.from_folder(_objects_folder(tmp_path / "things", {"mug": {}, "keys": {}}))
    assert [f["name"] for f in scenario.facets] == ["name"]
    for clarifier in (make_clarifier("lexical", settings=ClarifyConfig(facets=scenario.facets)),
                      make_clarifier("model", StubVLM(scorer=lambda m, c: 0.0 if c.startswith("Yes") else -5.0),
                                     settings=ClarifyConfig(facets=scenario.facets)),
                      LexicalClarifier(facets_for_keys(["habitat"]))):
        decision = clarifier.assess("What is this?", image_given=True)
        assert not decision.ambiguous, decision
        assert clarifier.precise("What is this?") == clarifier.facets[0].question
    assert make_clarifier("lexical", settings=ClarifyConfig(facets=scenario.facets)).precise(
        "what is this?") == "What is this called?"
    # a specific request is still kept as it is
    assert LexicalClarifier(facets_for_keys(["name"])).precise("Is the cap red?") == "Is the cap red?"


def _ask(store, users: list[str], question: str) -> None:
    store.add_events([Event(image=None, question=question, answer="gardens", user_id=u) for u in users])


@pytest.mark.parametrize("n_users, offered", [(3, True), (2, False)])
def test_a_question_asked_by_enough_users_becomes_a_facet(tmp_path, n_users, offered):
    config = Config(home=str(tmp_path / "home")).override(model={"backend": "stub"})
    assert config.clarify.learn_facets_users == 3
    with runtime.build_runtime(config) as parts:
        clarifier = parts.clarifier
        assert "habitat" not in clarifier.assess("what is this?", True).question
        users = [f"user{i}" for i in range(n_users)]
        # the same question in other words, one user asking it twice: distinct users count
        _ask(parts.store, users[:1], "What is the habitat of this?")
        _ask(parts.store, users, "what's the habitat of this?")
        _ask(parts.store, ["other", "another", "third"], "What is this called?")  # a configured facet: learns nothing
        _ask(parts.store, ["a", "b", "c"], "what is this?")  # vague: learns nothing
        decision = clarifier.assess("what is this?", True)
        assert decision.ambiguous
        assert ("the habitat" in decision.options) is offered
        assert len(decision.options) == 3 + offered
        if offered:
            assert clarifier.resolve("what is this?", "the habitat") == "what's the habitat of this?"
            assert not clarifier.assess("and its habitat?", True).ambiguous
        else:
            assert clarifier.resolve("what is this?", "the habitat") is None


def test_a_learned_facet_does_not_outbid_a_configured_one(tmp_path):
    config = Config(home=str(tmp_path / "home")).override(model={"backend": "stub"})
    with runtime.build_runtime(config) as parts:
        _ask(parts.store, ["a", "b", "c"], "Where does this bird live?")
        clarifier = parts.clarifier
        assert [f.name for f in clarifier.facets] == ["name", "use", "colour", "bird live"]
        assert clarifier.precise("What is this bird called?") == "What is this called?"
        assert clarifier.precise("where does the bird live") == "Where does this bird live?"


def test_learn_facets_counts_distinct_users_and_skips_covered_questions():
    events = [Event(image=None, question="Where does it live?", answer="x", user_id=u) for u in "abc"]
    events += [Event(image=None, question="Where does it live?", answer="x", user_id="a") for _ in range(5)]
    events += [Event(image=None, question="what is this? (the blue one)", answer="x", user_id=u) for u in "abc"]
    learned = learn_facets(events, GENERAL_FACETS, 3)
    assert [(f.name, f.cues, f.question) for f in learned] == [("live", ("live",), "Where does it live?")]
    assert learn_facets(events, GENERAL_FACETS, 4) == ()
    assert learn_facets(events, GENERAL_FACETS, 0) == ()
    assert learn_facets(events, facets_for_keys(["live"]), 3) == ()


def test_facet_settings_are_checked():
    with pytest.raises(InvalidInput):
        Config.from_dict({"clarify": {"facets": [{"cues": ["x"]}]}})
    with pytest.raises(InvalidInput):
        facets_from_settings([{"name": "habitat", "colour": "x"}])
    facet = facets_from_settings([{"name": "shelf_life"}])[0]
    assert (facet.cues, facet.question, facet.option) == (("shelf life",), "What is the shelf life of this?",
                                                          "the shelf life")
    loaded = Config.from_dict({"clarify": {"facets": BIRD_FACETS}})
    assert [f.name for f in facets_from_settings(loaded.clarify.facets)] == ["name", "habitat", "song"]


@pytest.mark.parametrize("key", ["name", "use", "dose", "colour", "habitat", "shelf_life"])
def test_a_facts_key_resolves_to_the_question_the_scenarios_ask_for_it(key):
    facet = facet_for_key(key)
    assert facet.question == precise_question(key)
    assert LexicalClarifier(facets_for_keys(["name", key, "habitat"])).resolve(
        "what is this?", f"The {key.replace('_', ' ')}, please.") == precise_question(key)


def test_the_pharmacy_scenario_passes_the_pharmacy_facets():
    scenario = pharmacy_scenario(n_teach=1, n_test=1)
    assert facets_from_settings(scenario.facets) == PHARMACY_FACETS
    assert facets_for_keys(scenario.intents) == PHARMACY_FACETS


def test_the_pharmacy_facets_keep_precision_and_recall_of_ask():
    rows = [json.loads(line) for line in
            resources.files("ilearn.data").joinpath("clarify.jsonl").read_text().splitlines() if line.strip()]
    clarifier = make_clarifier("lexical", settings=ClarifyConfig(facets=facet_settings(PHARMACY_FACETS)))
    asks = [clarifier.assess(r["request"], True).ambiguous for r in rows]
    tp = sum(a and r["ambiguous"] for r, a in zip(rows, asks, strict=True))
    fp = sum(a and not r["ambiguous"] for r, a in zip(rows, asks, strict=True))
    fn = sum(r["ambiguous"] and not a for r, a in zip(rows, asks, strict=True))
    # benchmarks/clarify.py --lexical-only before facets came from the domain: 284 requests, tp 136, fp 0, fn 0
    assert (len(rows), tp, fp, fn) == (284, 136, 0, 0)
