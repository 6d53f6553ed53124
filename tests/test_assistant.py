"""The turn pipeline on a stub model and the real SQLite store."""

from __future__ import annotations

import pytest

from helpers import make_png
from ilearn.assistant import Assistant, looks_like_question
from ilearn.config import Config
from ilearn.dialogue import prompts
from ilearn.dialogue.clarify import PHARMACY_FACETS, facet_settings
from ilearn.errors import InvalidImage, InvalidInput, NotFound, SessionClosed
from ilearn.memory.sqlite import open_store
from ilearn.models.stub import StubVLM
from ilearn.models.versions import ModelVersions
from ilearn.types import Feedback, FeedbackSource, Label, Role, TurnKind


class KeywordDecoder:
    """A minimal feedback decoder for these tests: 'thanks' is positive, 'no, it's X' a correction."""

    def decode(self, turns):
        text = turns[-1].text.lower()
        if "thank" in text:
            return Feedback(Label.POSITIVE, 0.9)
        if text.startswith("no"):
            correction = text.split("it's", 1)[1].strip(" .") if "it's" in text else None
            return Feedback(Label.NEGATIVE, 0.9, correction, FeedbackSource.EXPLICIT if correction else
                            FeedbackSource.IMPLICIT)
        return Feedback(Label.NEUTRAL, 0.5)


# a pharmacy robot: its clarifying questions offer the name, the use and the dose
PHARMACY = {"clarify": {"facets": facet_settings(PHARMACY_FACETS)}}


@pytest.fixture
def assistant(tmp_path):
    config = Config(home=str(tmp_path / "home")).override(**PHARMACY)
    store = open_store(tmp_path / "home")
    vlm = StubVLM(responder=lambda messages: "aspirin")
    return Assistant(config, vlm, store, feedback_decoder=KeywordDecoder())


def test_clear_question_is_answered_and_both_turns_persisted(assistant, png):
    reply = assistant.respond("ana", "What is this medicine called?", image=png)
    assert reply.kind == TurnKind.ANSWER and reply.text == "aspirin"
    assert reply.precise_question == "What is this called?"  # the facet's canonical precise question
    session = assistant.get_session(reply.session_id)
    assert [(t.role, t.kind) for t in session.turns] == [(Role.USER, TurnKind.QUESTION),
                                                         (Role.ASSISTANT, TurnKind.ANSWER)]
    assert session.turns[0].image is not None
    assert assistant.store.get_image_bytes(session.turns[0].image.sha256) == png


def test_ambiguous_question_gets_one_clarification_then_precise_answer(assistant, png):
    first = assistant.respond("ana", "What is this?", image=png)
    assert first.kind == TurnKind.CLARIFICATION and "dose" in first.text
    second = assistant.respond("ana", "the dose", session_id=first.session_id)
    assert second.kind == TurnKind.ANSWER
    assert second.precise_question == "What is the dose of this?"
    # the model saw the image and the precise question
    last_call = assistant.vlm.calls[-1]
    assert last_call[-1].content == "What is the dose of this?" and last_call[-1].image is not None


def test_clarification_is_bounded(tmp_path, png):
    config = Config(home=str(tmp_path)).override(clarify={"max_clarifications": 2, **PHARMACY["clarify"]})
    a = Assistant(config, StubVLM(responder=lambda m: "aspirin"), open_store(tmp_path))
    r1 = a.respond("bo", "what is this?", image=png)
    r2 = a.respond("bo", "hmm the blue one", session_id=r1.session_id)
    assert r2.kind == TurnKind.CLARIFICATION
    r3 = a.respond("bo", "the blue one!", session_id=r1.session_id)
    assert r3.kind == TurnKind.ANSWER and r3.precise_question.startswith("what is this?")


def test_reactions_are_decoded_and_acknowledged(assistant, png):
    r = assistant.respond("ana", "What is this medicine called?", image=png)
    fix = assistant.respond("ana", "No, it's ibuprofen.", session_id=r.session_id)
    assert fix.kind == TurnKind.REACTION and "ibuprofen" in fix.text
    assert fix.feedback.label == Label.NEGATIVE and fix.feedback.correction == "ibuprofen"
    stored = assistant.get_session(r.session_id).turns[2]
    assert stored.kind == TurnKind.REACTION and stored.feedback.correction == "ibuprofen"


def test_a_new_question_after_an_answer_is_answered(assistant, png):
    r = assistant.respond("ana", "What is this medicine called?", image=png)
    again = assistant.respond("ana", "What is the dose?", session_id=r.session_id)
    assert again.kind == TurnKind.ANSWER and again.feedback.label == Label.NEUTRAL


def test_new_image_starts_a_new_session(assistant, png):
    r = assistant.respond("ana", "What is this medicine called?", image=png)
    other = assistant.respond("ana", "What is this medicine called?", image=make_png((0, 0, 200)),
                              session_id=r.session_id)
    assert other.new_session and other.session_id != r.session_id
    assert assistant.get_session(r.session_id).closed


@pytest.mark.parametrize("text, error", [("", InvalidInput), ("   ", InvalidInput), ("x" * 5000, InvalidInput)])
def test_bad_messages_are_refused_and_nothing_is_written(assistant, text, error):
    with pytest.raises(error):
        assistant.respond("ana", text)
    assert assistant.store.list_sessions() == []


def test_bad_images_are_refused_and_nothing_is_written(assistant):
    with pytest.raises(InvalidImage):
        assistant.respond("ana", "what is this?", image=b"\x89PNG broken")
    assert assistant.store.list_sessions() == []


def test_unknown_or_foreign_session(assistant, png):
    with pytest.raises(NotFound, match="unknown session"):
        assistant.respond("ana", "hello", session_id="ses_nope")
    r = assistant.respond("ana", "What is this medicine called?", image=png)
    with pytest.raises(NotFound):
        assistant.respond("mallory", "and the dose?", session_id=r.session_id)


def test_bad_user_id(assistant):
    with pytest.raises(InvalidInput, match="user_id"):
        assistant.respond("", "hello")
    with pytest.raises(InvalidInput, match="user_id"):
        assistant.respond("a b/c", "hello")


def test_closed_session_refuses_turns(assistant, png, monkeypatch):
    r = assistant.respond("ana", "What is this medicine called?", image=png)
    assistant.store.close_session(r.session_id)
    with pytest.raises(SessionClosed):
        assistant.respond("ana", "thanks", session_id=r.session_id)


def test_timings_cover_the_pipeline(assistant, png):
    r = assistant.respond("ana", "What is this medicine called?", image=png)
    assert {"clarify", "answer", "store", "total"} <= set(r.timings_ms)


@pytest.mark.parametrize("text, expected", [("what is it?", True), ("Is it safe", True), ("thanks!", False),
                                            ("no, it's ibuprofen", False)])
def test_looks_like_question(text, expected):
    assert looks_like_question(text) is expected


def test_requests_naming_the_same_facet_share_one_precise_question(assistant, png):
    a = assistant.respond("ana", "What's the name of this medicine?", image=png)
    b = assistant.respond("bo", "which medicine is this", image=png)
    c = assistant.respond("cy", "Is the cap red?", image=png)
    assert a.precise_question == b.precise_question == "What is this called?"
    assert c.precise_question == "Is the cap red?"  # no facet: kept as asked


def test_an_answer_the_user_rejected_is_not_given_again_in_the_dialogue(assistant, png):
    r = assistant.respond("ana", "What is this medicine called?", image=png)
    assert r.text == "aspirin" and assistant.vlm.avoided == []
    assistant.respond("ana", "No, that's wrong.", session_id=r.session_id)
    again = assistant.respond("ana", "What is this medicine called?", session_id=r.session_id)
    assert assistant.vlm.avoided == ["aspirin"]  # the model was asked for another reply
    assert again.kind == TurnKind.ANSWER and again.text == prompts.NOT_SURE  # the stub has no other one
    assistant.respond("ana", "Thanks!", session_id=r.session_id)  # approval starts a fresh request
    assistant.respond("ana", "What is the dose?", session_id=r.session_id)
    assert assistant.vlm.avoided == []


def test_a_question_asked_again_with_a_rejection_gets_another_answer(assistant, png):
    """'no really. what is it called?' turns the answer down and asks again in one turn: the answer it turned down
    is not the reply (a real-image run answered the same wrong name twice, then stored the re-ask as a name)."""
    r = assistant.respond("ana", "What is this medicine called?", image=png)
    again = assistant.respond("ana", "no really. what is this medicine called?", session_id=r.session_id)
    assert assistant.vlm.avoided == ["aspirin"]
    assert again.kind == TurnKind.ANSWER and again.text == prompts.NOT_SURE


def test_the_model_is_asked_for_its_next_best_reply(tmp_path, png):
    replies = iter(["aspirin", "ibuprofen"])
    vlm = StubVLM(responder=lambda messages: next(replies))
    a = Assistant(Config(home=str(tmp_path)), vlm, open_store(tmp_path), feedback_decoder=KeywordDecoder())
    r = a.respond("ana", "What is this medicine called?", image=png)
    a.respond("ana", "No.", session_id=r.session_id)
    assert a.respond("ana", "What is this medicine called?", session_id=r.session_id).text == "ibuprofen"


@pytest.mark.parametrize(("says", "version", "defers", "expected"), [
    ("aspirin", "mdl_tuned", True, "aspirin"),  # the tuned model's answer, backed by a reference, stands
    ("paracetamol", "mdl_tuned", True, "ibuprofen"),  # not backed by any reference: the memory's answer
    ("aspirin", "base", True, "ibuprofen"),  # the base model never overrules the memory
    ("aspirin", "mdl_tuned", False, "ibuprofen")])  # reuse_defers_to_model off
def test_a_tuned_models_answer_that_the_memory_backs_is_not_overruled_by_a_reused_one(tmp_path, png, says, version,
                                                                                    defers, expected):
    """Memory and tuned model together must do no worse than the tuned model: a look-alike's answer that tops the
    matches is not given outright over the tuned model's own answer when another reference carries the latter."""
    from ilearn.memory.base import Match
    from ilearn.memory.stub import StubMemory
    from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder
    from ilearn.types import Event, Scope

    config = Config(home=str(tmp_path)).override(retrieval={"reuse_defers_to_model": defers}, **PHARMACY)
    events = [Event(None, "What is this called?", answer, "bo", scope=Scope.SHARED) for answer in ("ibuprofen",
                                                                                                 "aspirin")]

    class LookAlikeFirst(StubMemory):
        def search(self, *args, **kwargs):
            return [Match(events[0], 0.95, 0.94, 1.0), Match(events[1], 0.9, 0.88, 1.0)]

    vlm = StubVLM(responder=lambda messages: f"It is {says}.")
    vlm.version = version
    store = open_store(tmp_path)
    memory = LookAlikeFirst(store, StubImageEmbedder(), HashingTextEmbedder(), config.retrieval)
    assistant = Assistant(config, vlm, store, memory=memory, feedback_decoder=KeywordDecoder())
    reply = assistant.respond("ana", "What is this medicine called?", image=png)
    assert reply.kind == TurnKind.ANSWER and expected in reply.text.lower()
    assert len(vlm.calls) == (1 if defers and version != "base" else 0)  # the model answers only to be checked


@pytest.mark.parametrize(("setting", "version", "shown"), [
    ("untuned", "base", True), ("untuned", "mdl_tuned", False), ("always", "mdl_tuned", True),
    ("never", "base", False)])
def test_references_below_the_reuse_threshold_reach_the_prompt_only_as_configured(tmp_path, png, setting, version,
                                                                                shown):
    """A fine-tuned version answers without sub-threshold references: they pulled it to wrong answers."""
    from ilearn.memory.base import Match
    from ilearn.memory.stub import StubMemory
    from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder

    config = Config(home=str(tmp_path)).override(retrieval={"prompt_references": setting, "guess_threshold": None},
                                                 **PHARMACY)

    class BelowReuse(StubMemory):  # every match is a reference under the reuse threshold: the model must answer
        def search(self, *args, **kwargs):
            return [Match(m.event, 0.85, 0.8125, 1.0) for m in super().search(*args, **kwargs)]

    vlm = StubVLM(responder=lambda messages: "aspirin")
    vlm.version = version
    store = open_store(tmp_path)
    memory = BelowReuse(store, StubImageEmbedder(), HashingTextEmbedder(), config.retrieval)
    assistant = Assistant(config, vlm, store, memory=memory, feedback_decoder=KeywordDecoder())
    first = assistant.respond("ana", "What is this medicine called?", image=png)
    assistant.respond("ana", "No, it's ibuprofen.", session_id=first.session_id)
    assistant.close_session(first.session_id)
    again = assistant.respond("ana", "What is this medicine called?", image=png)
    assert again.references and again.text == "aspirin"  # below the reuse threshold: the model answers
    prompt = "\n".join(m.content for m in vlm.calls[-1])
    assert ("ibuprofen" in prompt) is shown


class _Guessing:
    """An assistant whose memory returns `matches` (whatever the floor asked for) and whose model says `says`."""

    def __init__(self, tmp_path, matches, says: str, weight: float | None = None, gate: float | None = None,
                 version_metrics: dict | None = None, tuned_gate: float | None = None, **retrieval):
        from ilearn.memory.stub import StubMemory
        from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder

        config = Config(home=str(tmp_path)).override(retrieval=retrieval, **PHARMACY)
        self.floors: list = []
        outer = self

        class Fixed(StubMemory):
            def search(self, *args, floor=None, **kwargs):
                outer.floors.append(floor)
                return [m for m in matches if m.score >= (config.retrieval.threshold if floor is None else floor)]

            def guess_rule(self, tuned=False):  # a tuned version's answers face their own gate
                return weight, tuned_gate if tuned else gate

        self.vlm = StubVLM(responder=lambda messages: says)
        self.store = open_store(tmp_path)
        registry = None
        if version_metrics is not None:  # the model serves a tuned version with these metrics
            from ilearn.learning.registry import ModelRegistry

            registry = ModelRegistry(self.store, tmp_path)
            (tmp_path / "weights").mkdir()
            self.vlm.version = registry.register(path=tmp_path / "weights", recipe="sft", metrics=version_metrics).id
        memory = Fixed(self.store, StubImageEmbedder(), HashingTextEmbedder(), config.retrieval)
        self.assistant = Assistant(config, self.vlm, self.store, memory=memory, feedback_decoder=KeywordDecoder(),
                                   registry=registry, versions=ModelVersions(self.vlm))


def _match(answer: str, score: float, text_sim: float = 1.0, question: str = "What is this called?"):
    from ilearn.memory.base import Match
    from ilearn.types import Event, Scope

    image_sim = (score - 0.2 * text_sim) / 0.8
    return Match(Event(None, question, answer, "bo", scope=Scope.SHARED), score, image_sim, text_sim)


@pytest.mark.parametrize("score", [0.80, 0.85])  # under the match threshold (0.84) and between it and reuse (0.87)
def test_a_close_past_answer_is_offered_as_a_guess_when_the_model_does_not_have_it(tmp_path, png, score):
    matches = [_match("ibuprofen", score), _match("aspirin", score - 0.03)]
    g = _Guessing(tmp_path, matches, says="It is a bottle.")
    reply = g.assistant.respond("ana", "What is this medicine called?", image=png)
    assert reply.kind == TurnKind.ANSWER and reply.source == "memory-guess"
    assert reply.text == prompts.tentative_answer("Ibuprofen") and reply.text.startswith("I'm not sure")
    assert g.floors == [-1.0]  # one search: every nearest event is a candidate
    turn = g.store.get_session(reply.session_id).turns[-1]
    assert turn.text == "Ibuprofen"  # what is learnt is the answer, not the hedge
    assert turn.retrieved == [m.event.id for m in matches if m.score >= 0.84]  # the references: >= the threshold
    assert turn.answered_from == matches[0].event.id  # the guess's event: its words, confirmed, are no mere "thanks"
    # the user confirms: the event carries the plain answer
    g.assistant.respond("ana", "Thanks!", session_id=reply.session_id)
    assert [e.answer for e in g.assistant.close_session(reply.session_id)] == ["Ibuprofen"]


@pytest.mark.parametrize("metrics, guessed", [
    ({}, True),  # a version that never chose: guesses as before
    ({"guesses": {"allow": True, "cases": 3, "model_right": 0, "guess_right": 2}}, True),
    ({"guesses": {"allow": False, "cases": 3, "model_right": 2, "guess_right": 1}}, False),
])
def test_a_tuned_version_takes_guesses_only_if_its_held_out_events_chose_them(tmp_path, png, metrics, guessed):
    matches = [_match("ibuprofen", 0.85), _match("aspirin", 0.82)]
    g = _Guessing(tmp_path, matches, says="naproxen", version_metrics=metrics)
    reply = g.assistant.respond("ana", "What is this medicine called?", image=png)
    assert reply.model_version == g.vlm.version != "base"
    assert (reply.source, reply.text) == (("memory-guess", prompts.tentative_answer("Ibuprofen")) if guessed
                                          else ("model", "naproxen"))


def test_a_tuned_version_s_answers_face_the_tuned_gate_and_the_base_weights_the_base_one(tmp_path, png):
    close = [_match("ibuprofen", 0.85), _match("aspirin", 0.82), _match("naproxen", 0.3)]  # naproxen: taught, far
    base = _Guessing(tmp_path / "a", close, says="naproxen", tuned_gate=float("inf"))
    assert base.assistant.respond("ana", "What is it called?", image=png).source == "memory-guess"
    tuned = _Guessing(tmp_path / "b", close, says="naproxen", version_metrics={}, tuned_gate=float("inf"))
    reply = tuned.assistant.respond("ana", "What is it called?", image=png)
    assert reply.model_version != "base" and (reply.source, reply.text) == ("model", "naproxen")
    # an answer no event taught ("nope") is nothing the tuned gate protects: the base weights' gate judges
    unlearnt = _Guessing(tmp_path / "d", close, says="nope", version_metrics={}, tuned_gate=float("inf"))
    reply = unlearnt.assistant.respond("ana", "What is it called?", image=png)
    assert reply.model_version != "base" and reply.source == "memory-guess"
    off = _Guessing(tmp_path / "e", close, says="nope", version_metrics={}, tuned_gate=float("inf"),
                    tuned_gate_known_only=False)
    assert off.assistant.respond("ana", "What is it called?", image=png).source == "model"
    sooner = _Guessing(tmp_path / "c", [_match("ibuprofen", 0.6)], says="naproxen", version_metrics={},
                       tuned_gate=0.45, gate=float("inf"))
    assert sooner.assistant.respond("ana", "What is it called?", image=png).source == "memory-guess"


@pytest.mark.parametrize("names_its_picture, source", [
    ("Aspirin.", "memory-guess"),  # it did not learn the guess's object: judged as the base weights' guess
    ("Ibuprofen.", "model"),  # it knows that object: its own gate (here: never) judges the guess
])
def test_a_tuned_version_s_gate_judges_only_guesses_from_events_it_knows(tmp_path, png, names_its_picture, source):
    from ilearn.images import decode_image

    picture = make_png(color=(30, 30, 200), shape="square")  # the guess's event's own picture, stored
    event_image, ref = decode_image(picture, max_pixels=10_000)
    close = _match("ibuprofen", 0.85)  # passes the base weights' gate (0.76 fused), not the tuned one (never)
    close.event.image = ref
    asked = []

    def says(messages):
        if messages[-1].image.getpixel((32, 32)) == event_image.getpixel((32, 32)):
            asked.append(messages[-1].content)
            return names_its_picture
        return "naproxen"

    taught = _match("naproxen", 0.3)  # what the version answers here, taught by an event far from this picture
    g = _Guessing(tmp_path, [close, taught], says="", version_metrics={}, tuned_gate=float("inf"))
    g.vlm.responder = says
    g.store.put_image(picture, ref)
    for _ in range(2):
        reply = g.assistant.respond("ana", "What is this called?", image=png)
        assert reply.model_version != "base" and reply.source == source
        g.assistant.close_session(reply.session_id)
    assert asked == ["What is this called?"]  # asked once about the event's picture, with its question; kept
    g.store.ensure_user("bo")
    g.store.add_events([close.event])
    g.assistant.forget("bo")  # the event's teacher is forgotten: nothing is kept about their event
    g.store.put_image(picture, ref)  # (this fake memory still offers the event: its picture back for the check)
    g.assistant.respond("ana", "What is this called?", image=png)
    assert len(asked) == 2


def test_the_memory_s_own_gate_decides_how_alike_a_guess_must_be(tmp_path, png):
    far = [_match("ibuprofen", 0.6), _match("aspirin", 0.5)]  # image cosines 0.5 and 0.375: far under 0.76 fused
    reply = _Guessing(tmp_path / "a", far, says="It is a bottle.").assistant.respond("ana", "What is it called?",
                                                                                     image=png)
    assert reply.source == "model"  # no gate calibrated: the fixed fused threshold
    guessed = _Guessing(tmp_path / "b", far, says="It is a bottle.", gate=0.45).assistant.respond(
        "ana", "What is it called?", image=png)
    assert guessed.source == "memory-guess" and guessed.text.endswith("Ibuprofen")  # its events say 0.45 is enough
    close = [_match("ibuprofen", 0.86), _match("aspirin", 0.5)]
    never = _Guessing(tmp_path / "c", close, says="It is a bottle.", gate=float("inf")).assistant.respond(
        "ana", "What is it called?", image=png)
    assert never.source == "model"  # its events say guesses are wrong more often than not: none, however close


def test_a_rejected_guess_is_not_offered_again_and_the_correction_is_learnt(tmp_path, png):
    g = _Guessing(tmp_path, [_match("ibuprofen", 0.82), _match("aspirin", 0.80)], says="It is a bottle.")
    first = g.assistant.respond("ana", "What is this medicine called?", image=png)
    assert first.source == "memory-guess" and first.text.endswith("Ibuprofen")
    again = g.assistant.respond("ana", "No. What is this medicine called?", session_id=first.session_id)
    assert again.source == "memory-guess" and again.text.endswith("Aspirin")  # the next one, never the rejected
    g.assistant.respond("ana", "No, it's naproxen.", session_id=first.session_id)
    [event] = g.assistant.close_session(first.session_id)
    assert event.answer == "naproxen" and set(event.rejected) == {"Ibuprofen", "Aspirin"}
    assert event.supersedes is None  # a wrong guess (under the match threshold) retires nothing


@pytest.mark.parametrize(("matches", "says", "retrieval"), [
    ([_match("ibuprofen", 0.75)], "It is a bottle.", {}),  # under the guess threshold (0.76)
    ([_match("ibuprofen", 0.80)], "It is a bottle.", {"guess_threshold": None}),  # guesses off
    ([_match("ibuprofen", 0.85, text_sim=0.5, question="What is it for?")], "It is a bottle.", {}),  # other question
    ([_match("ibuprofen", 0.80)], "I think it is ibuprofen.", {}),  # the model already says it
    ([_match("ibuprofen", 0.86), _match("aspirin", 0.845)], "Aspirin.", {}),  # a weaker reference carries it
    # the model's answer is carried by an event under the match threshold, as alike as the guess's within a margin
    ([_match("ibuprofen", 0.80), _match("naproxen", 0.78)], "Naproxen.", {"guess_margin": 0.05}),
], ids=["below", "off", "other-question", "model-says-it", "reference-carries-it", "as-alike-as-the-guess"])
def test_the_models_answer_stands_when_no_guess_is_called_for(tmp_path, png, matches, says, retrieval):
    g = _Guessing(tmp_path, sorted(matches, key=lambda m: -m.score), says=says, **retrieval)
    reply = g.assistant.respond("ana", "What is this medicine called?", image=png)
    assert reply.kind == TurnKind.ANSWER and reply.source == "model" and reply.text == says


def test_a_reference_keeps_the_models_answer_only_while_references_stand(tmp_path, png):
    matches = [_match("ibuprofen", 0.86), _match("aspirin", 0.845)]  # both references; ibuprofen's more alike
    kept = _Guessing(tmp_path / "a", matches, says="Aspirin.").assistant.respond("ana", "What is it called?", image=png)
    assert (kept.source, kept.text) == ("model", "Aspirin.")
    g = _Guessing(tmp_path / "b", matches, says="Aspirin.", guess_references_stand=False)
    guessed = g.assistant.respond("ana", "What is it called?", image=png)
    assert (guessed.source, guessed.text) == ("memory-guess", prompts.tentative_answer("Ibuprofen"))


def test_an_answer_given_outright_says_it_came_from_memory(tmp_path, png):
    g = _Guessing(tmp_path, [_match("ibuprofen", 0.95)], says="It is a bottle.")
    reply = g.assistant.respond("ana", "What is this medicine called?", image=png)
    assert reply.source == "memory" and reply.text == "Ibuprofen" and not g.vlm.calls
    ids = [g.store.get_session(reply.session_id).turns[-1].answered_from]
    said = _Guessing(tmp_path / "b", [_match("ibuprofen", 0.5)], says="It is a bottle.").assistant
    reply = said.respond("ana", "What is this medicine called?", image=png)
    assert reply.source == "model" and reply.text == "It is a bottle."
    ids.append(said.store.get_session(reply.session_id).turns[-1].answered_from)
    assert ids[0] is not None and ids[0].startswith("evt_") and ids[1] is None  # the model's own words: from no event


def test_guess_threshold_must_be_a_score():
    from ilearn.config import RetrievalConfig

    with pytest.raises(InvalidInput, match="guess_threshold"):
        RetrievalConfig(guess_threshold=1.5)
    with pytest.raises(InvalidInput, match="guess_margin"):
        RetrievalConfig(guess_margin=-0.1)


@pytest.mark.parametrize(("weight", "guessed"), [(None, "Ibuprofen"), (0.1, "Aspirin"), (0.9, "Ibuprofen")])
def test_the_guess_weighs_the_image_parts_as_the_memorys_events_chose(tmp_path, png, weight, guessed):
    from dataclasses import replace

    instance_near = replace(_match("ibuprofen", 0.80), parts=(0.95, 0.5))  # the best fused score opens the guess
    general_near = replace(_match("aspirin", 0.70), parts=(0.45, 0.9))
    g = _Guessing(tmp_path, [instance_near, general_near], says="It is a bottle.", weight=weight)
    reply = g.assistant.respond("ana", "What is this medicine called?", image=png)
    assert reply.source == "memory-guess" and reply.text == prompts.tentative_answer(guessed)


def test_a_guess_replaces_a_model_answer_that_only_a_less_alike_event_carries(tmp_path, png):
    matches = [_match("ibuprofen", 0.80), _match("naproxen", 0.78)]  # image 0.75 vs 0.725
    g = _Guessing(tmp_path, matches, says="Naproxen.")  # no margin by default: the more alike event's answer
    reply = g.assistant.respond("ana", "What is this medicine called?", image=png)
    assert reply.source == "memory-guess" and reply.text.endswith("Ibuprofen")
    g2 = _Guessing(tmp_path / "wide", matches, says="Naproxen.", guess_margin=0.05)
    assert g2.assistant.respond("ana", "What is this medicine called?", image=png).text == "Naproxen."
    g3 = _Guessing(tmp_path / "narrow", matches, says="Naproxen.", guess_margin=0.02)
    assert g3.assistant.respond("ana", "What is this medicine called?", image=png).source == "memory-guess"

