"""A streamed turn (`Assistant.respond(stream=...)`): the model's words go to the stream while it writes them,
only when the words shown are the model's own, and the turn is the same as without a stream."""

from __future__ import annotations

import pytest

from helpers import make_png
from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.dialogue.clarify import PHARMACY_FACETS, facet_settings
from ilearn.memory.sqlite import open_store
from ilearn.memory.stub import StubMemory
from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder
from ilearn.models.stub import StreamingStubVLM
from ilearn.types import Feedback, FeedbackSource, Label, Role, TurnKind
from ilearn.users.profiles import Profile

QUESTION = "What is this medicine called?"
ANSWER = "It is aspirin for pain"


class Recorder:
    """A ReplyStream that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def begin(self, session_id: str, turn_id: str) -> None:
        self.calls.append(("begin", session_id, turn_id))

    def text(self, piece: str) -> None:
        self.calls.append(("text", piece))

    @property
    def pieces(self) -> list[str]:
        return [c[1] for c in self.calls if c[0] == "text"]


class Decoder:
    def decode(self, turns):
        text = turns[-1].text.lower()
        if text.startswith("no"):
            correction = text.split("it's", 1)[1].strip(" .") if "it's" in text else None
            return Feedback(Label.NEGATIVE, 0.9, correction, FeedbackSource.EXPLICIT if correction else
                            FeedbackSource.IMPLICIT)
        return Feedback(Label.NEUTRAL, 0.5)


def build(tmp_path, name: str, responder=lambda messages: ANSWER, memory: bool = False) -> Assistant:
    config = Config(home=str(tmp_path / name)).override(clarify={"facets": facet_settings(PHARMACY_FACETS)})
    store = open_store(tmp_path / name)
    retrieval = StubMemory(store, StubImageEmbedder(), HashingTextEmbedder(), config.retrieval) if memory else None
    return Assistant(config, StreamingStubVLM(responder=responder), store, memory=retrieval,
                     feedback_decoder=Decoder())


def turns_of(assistant: Assistant, session_id: str) -> list[tuple]:
    return [(t.role, t.kind, t.text, t.model_version, t.precise_question, t.retrieved)
            for t in assistant.get_session(session_id).turns]


def test_the_answer_streams_and_the_turn_is_the_same_as_without_a_stream(tmp_path):
    png = make_png()
    plain, streamed = build(tmp_path, "plain"), build(tmp_path, "streamed")
    expected = plain.respond("ana", QUESTION, image=png)
    recorder = Recorder()
    reply = streamed.respond("ana", QUESTION, image=png, stream=recorder)
    assert recorder.calls == [("begin", reply.session_id, reply.turn_id), ("text", "It"), ("text", " is"),
                              ("text", " aspirin"), ("text", " for")]
    assert reply.text == expected.text == ANSWER and reply.text.startswith("".join(recorder.pieces))
    assert (reply.kind, reply.model_version, reply.precise_question, reply.references) == (
        expected.kind, expected.model_version, expected.precise_question, expected.references)
    assert turns_of(streamed, reply.session_id) == turns_of(plain, expected.session_id)
    assert streamed.get_session(reply.session_id).turns[-1].id == reply.turn_id  # the id begin announced


def test_a_clarifying_question_and_a_reaction_are_not_streamed(tmp_path):
    assistant, recorder = build(tmp_path, "a"), Recorder()
    first = assistant.respond("ana", "What is this?", image=make_png(), stream=recorder)
    assert first.kind == TurnKind.CLARIFICATION and recorder.calls == []
    answer = assistant.respond("ana", "its name", session_id=first.session_id, stream=recorder)
    assert answer.kind == TurnKind.ANSWER and recorder.pieces == ["It", " is", " aspirin", " for"]
    recorder.calls.clear()
    fix = assistant.respond("ana", "No, it's ibuprofen.", session_id=first.session_id, stream=recorder)
    assert fix.kind == TurnKind.REACTION and recorder.calls == []


def test_an_answer_that_must_avoid_a_rejected_one_is_not_streamed(tmp_path):
    replies = iter(["aspirin for pain", "ibuprofen for fever"])
    assistant, recorder = build(tmp_path, "a", responder=lambda messages: next(replies)), Recorder()
    first = assistant.respond("ana", QUESTION, image=make_png())
    assistant.respond("ana", "No.", session_id=first.session_id)
    again = assistant.respond("ana", QUESTION, session_id=first.session_id, stream=recorder)
    assert again.text == "ibuprofen for fever" and recorder.calls == []
    assert assistant.vlm.avoided == ["aspirin for pain"]


@pytest.mark.parametrize(("profile", "streams"), [
    (Profile(answer_length="short"), False), (Profile(age_group="child"), False),
    (Profile(expertise="expert"), True), (Profile(name="Ana"), True)])
def test_answers_reworded_for_the_profile_arrive_whole(tmp_path, profile, streams):
    assistant, recorder = build(tmp_path, "a"), Recorder()
    assistant.personal.profiles.put("ana", profile)
    reply = assistant.respond("ana", QUESTION, image=make_png(), stream=recorder)
    assert bool(recorder.calls) is streams
    assert reply.text.startswith("".join(recorder.pieces))


def test_a_reused_answer_arrives_whole(tmp_path):
    png = make_png()
    assistant, recorder = build(tmp_path, "a", memory=True), Recorder()
    first = assistant.respond("ana", QUESTION, image=png)
    assistant.respond("ana", "No, it's ibuprofen.", session_id=first.session_id)
    assistant.close_session(first.session_id)
    again = assistant.respond("ana", QUESTION, image=png, stream=recorder)
    assert again.text == "Ibuprofen" and again.references and recorder.calls == []
    assert [t.role for t in assistant.get_session(again.session_id).turns] == [Role.USER, Role.ASSISTANT]
