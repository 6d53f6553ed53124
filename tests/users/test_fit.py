"""Answers fitted to the user: wording changes with the profile, facts do not; protected attributes change nothing."""

from __future__ import annotations

import itertools

import pytest

from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.memory.sqlite import open_store
from ilearn.models.embedders import StubImageEmbedder
from ilearn.models.stub import StubVLM
from ilearn.text import contains_answer
from ilearn.types import Role, TurnKind
from ilearn.users.fit import fit_answer, instruction_prompt, profile_tag
from ilearn.users.personal import PersonalMemory
from ilearn.users.profiles import AGE_GROUPS, ANSWER_LENGTHS, EXPERTISE, Profile

# (a model's answer, the facts it states first)
ANSWERS = [
    ("I think this is aspirin, an analgesic; take one 500 mg tablet with water. Ask a pharmacist if unsure.",
     ["aspirin", "analgesic", "500 mg", "tablet"]),
    ("It's a red ceramic mug.", ["red", "ceramic", "mug"]),
    ("This is ibuprofen 400 mg, an anti-inflammatory tablet taken by mouth every 8 hours with food.",
     ["ibuprofen", "400 mg", "anti-inflammatory", "every 8 hours"]),
    ("Probably a blue cylindrical container of paracetamol.", ["blue", "cylindrical", "container", "paracetamol"]),
]
PROFILES = [Profile(age_group=a, expertise=e, answer_length=n)
            for a, e, n in itertools.product((None, *AGE_GROUPS), (None, *EXPERTISE), (None, *ANSWER_LENGTHS))]


def test_wording_fits_the_profile() -> None:
    text = ANSWERS[0][0]
    assert fit_answer(text, Profile()) == text
    assert fit_answer(text, Profile(expertise="expert")) == text
    assert fit_answer(text, Profile(answer_length="short")) == (
        "This is aspirin, an analgesic; take one 500 mg tablet with water.")
    assert fit_answer(text, Profile(age_group="child", answer_length="short")) == (
        "This is aspirin (a pain medicine), an analgesic (a pain medicine); take one 500 mg (milligrams) tablet "
        "(a pill) with water.")
    assert fit_answer(ANSWERS[2][0], Profile(age_group="child")) == (
        "This is ibuprofen (a pain medicine) 400 mg (milligrams). An anti-inflammatory (it calms swelling) tablet "
        "(a pill) taken by mouth every 8 hours with food.")
    assert fit_answer("It's a red ceramic mug.", Profile(expertise="newcomer")) == (
        "It's a red ceramic (baked clay) mug.")


@pytest.mark.parametrize(("answer", "facts"), ANSWERS)
def test_facts_are_the_same_for_every_profile(answer: str, facts: list[str]) -> None:
    """Every fact of the answer's first sentence survives every combination of age group, expertise and length."""
    for profile in PROFILES:
        fitted = fit_answer(answer, profile)
        assert all(contains_answer(fitted, fact) for fact in facts), (profile, fitted)


def test_the_tag_is_a_few_tokens_and_the_prompt_is_long() -> None:
    profile = Profile(age_group="child", answer_length="short", accessibility=("plain language",))
    assert profile_tag(profile) == "[user: child; short; plain language]"
    assert len(profile_tag(profile).split()) <= 6 < 60 < len(instruction_prompt(profile).split())
    assert profile_tag(Profile(name="Ana")) == ""  # nothing that changes an answer


COUNTERFACTUALS = [  # same facts about the user, differing only in a protected attribute (or an irrelevant age)
    ("I'm a woman. I'm a nurse and please keep it short", "I'm a man. I'm a nurse and please keep it short"),
    ("I'm Black and I'm new to technology", "I'm white and I'm new to technology"),
    ("I'm Muslim, I'm 8", "I'm Christian, I'm 8"),
    ("I'm gay and I'm a pharmacist", "I'm straight and I'm a pharmacist"),
    ("I'm 30 and I'm a chemist", "I'm 50 and I'm a chemist"),
]


@pytest.mark.parametrize("prompt", ["none", "tag", "instructions"])
def test_counterfactual_users_get_the_same_answer(tmp_path, png, prompt: str) -> None:
    """What the model sees and what the user reads are identical when two users differ only in a protected
    attribute: 5 pairs x 3 prompt styles (the stub model echoes its whole input, so any difference would show)."""
    store = open_store(tmp_path)
    personal = PersonalMemory(store, StubImageEmbedder(), prompt=prompt)
    echo = StubVLM()  # replies with the text of every message it was given
    with Assistant(Config(home=str(tmp_path)), echo, store, personal=personal) as assistant:
        for i, (first, second) in enumerate(COUNTERFACTUALS):
            replies = []
            for who, words in ((f"a{i}", first), (f"b{i}", second)):
                told = assistant.respond(who, words)
                replies.append(assistant.respond(who, "What is the dose of this medicine?", image=png,
                                                 session_id=told.session_id))
            assert personal.profiles.get(f"a{i}") == personal.profiles.get(f"b{i}")
            assert replies[0].kind == TurnKind.ANSWER and replies[0].text == replies[1].text
            assert replies[0].prompt_tokens == replies[1].prompt_tokens


def test_the_user_reads_the_fitted_answer_and_the_log_keeps_the_models(tmp_path, png) -> None:
    answer = "I think it is aspirin, an analgesic. It helps with headaches."
    with Assistant(Config(home=str(tmp_path)), StubVLM(responder=lambda m: answer), open_store(tmp_path)) as a:
        told = a.respond("kid", "I'm 8")
        reply = a.respond("kid", "What is this medicine called?", image=png, session_id=told.session_id)
        assert reply.text == "It is aspirin (a pain medicine), an analgesic (a pain medicine). It helps with headaches."
        logged = [t for t in a.get_session(reply.session_id).turns if t.role == Role.ASSISTANT][-1]
        assert logged.text == answer  # distillation, retrieval and training read the model's words
        plain = a.respond("adult", "What is this medicine called?", image=png)
        assert plain.text == answer


def test_a_version_tuned_user_aware_words_its_own_answers(tmp_path, png) -> None:
    """A version trained on user-aware rows (`USER_AWARE` in its metrics) already fits its answer to the tag:
    the wording rules step aside for it (no second gloss), and still fit the answers of any other version. It is
    sent the user's tag though `personal.prompt` is "none" (the default): it was trained to read it."""
    from ilearn.learning.registry import ModelRegistry
    from ilearn.models.versions import ModelVersions
    from ilearn.users.tuning import USER_AWARE

    answer = "I think it is aspirin, an analgesic. It helps with headaches."
    store = open_store(tmp_path)
    registry = ModelRegistry(store, tmp_path)

    class Weights:  # the registry's versions, served by the stub as they are (it has no weights)
        def active_id(self) -> str:
            return registry.active_id()

        def apply(self, vlm, version_id: str) -> bool:
            vlm.version = version_id
            return True

    def version(metrics: dict) -> str:
        version_id, path = registry.new_path()
        return registry.register(path=path, recipe="sft", version_id=version_id, metrics=metrics).id

    tuned, plain = version({USER_AWARE: True}), version({})
    asked: list[str] = []
    vlm = StubVLM(responder=lambda m: (asked.append(m[-1].content), answer)[1])
    with Assistant(Config(home=str(tmp_path)), vlm, store, registry=registry,
                   versions=ModelVersions(vlm, Weights())) as a:
        told = a.respond("kid", "I'm 8")
        registry.promote(plain)
        reply = a.respond("kid", "What is this medicine called?", image=png, session_id=told.session_id)
        assert reply.model_version == plain and reply.text.startswith("It is aspirin (a pain medicine)")
        registry.promote(tuned)
        reply = a.respond("kid", "What is this medicine called?", image=png, session_id=told.session_id)
        assert reply.model_version == tuned and reply.text == answer
    assert len(asked) == 2 and not asked[0].startswith("[user:") and asked[1] == f"[user: child] {asked[0]}"
