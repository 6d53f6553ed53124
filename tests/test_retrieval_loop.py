"""Issue: a corrected mistake is fixed at once, through the assistant (tiny model, model-free embedders)."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from helpers import make_png
from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.errors import NotFound
from ilearn.types import EventStatus, TurnKind


def bottle(cap=(200, 30, 30), shift: int = 0, light: int = 0) -> bytes:
    """A drawn bottle; `shift` and `light` make a new photo of the same bottle."""
    image = Image.new("RGB", (96, 96), (235 + light // 2, 235 + light // 2, 225))
    draw = ImageDraw.Draw(image)
    draw.rectangle((30 + shift, 30, 66 + shift, 90), fill=(240 - light, 240 - light, 240 - light))
    draw.rectangle((34 + shift, 12, 62 + shift, 30), fill=cap)
    draw.rectangle((30 + shift, 50, 66 + shift, 62), fill=(20, 90, 160))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def assistant(tmp_path):
    config = Config(home=str(tmp_path / "home")).override(model={"backend": "tiny"}, feedback={"method": "lexical"})
    return Assistant.from_config(config)


def teach(assistant, user: str, answer: str, photo: bytes) -> None:
    r = assistant.respond(user, "What is this medicine called?", image=photo)
    fix = assistant.respond(user, f"No, that's {answer}.", session_id=r.session_id)
    assert fix.feedback.correction == answer
    events = assistant.close_session(r.session_id)
    assert [e.answer for e in events] == [answer] and events[0].rejected == [r.text]


def test_correction_is_reused_for_a_new_photo_of_the_same_object(assistant):
    teach(assistant, "ana", "ibuprofen", bottle())
    again = assistant.respond("ana", "What is this medicine called?", image=bottle(shift=3, light=10))
    assert again.kind == TurnKind.ANSWER
    assert again.text.lower() == "ibuprofen"
    assert again.references and again.references[0].answer == "ibuprofen"
    stored = assistant.get_session(again.session_id).turns[-1]
    assert stored.retrieved == [again.references[0].event_id]  # the turn records what it used


def test_a_correction_is_not_given_as_the_answer_to_another_question(assistant):
    teach(assistant, "ana", "ibuprofen", bottle())
    other = assistant.respond("ana", "What is the dose of this?", image=bottle(shift=3, light=10))
    assert other.kind == TurnKind.ANSWER
    assert other.references and other.references[0].answer == "ibuprofen"  # in context as a reference
    assert other.text.lower() != "ibuprofen"  # but not reused outright


def test_private_correction_does_not_reach_another_user(assistant):
    teach(assistant, "ana", "ibuprofen", bottle())
    other = assistant.respond("bob", "What is this medicine called?", image=bottle(shift=3, light=10))
    assert other.references == [] and other.text.lower() != "ibuprofen"


def test_corroborated_answer_is_shared_and_single_liar_is_not(assistant):
    teach(assistant, "ana", "ibuprofen", bottle())
    teach(assistant, "cy", "ibuprofen", bottle(shift=1))  # corroboration = 2 distinct users
    bob = assistant.respond("bob", "What is this medicine called?", image=bottle(shift=2, light=5))
    assert bob.text.lower() == "ibuprofen"
    # one malicious user cannot overrule two others: the contradicting correction is quarantined
    teach(assistant, "mallory", "poison", bottle(shift=-1))
    assert assistant.store.list_events(user_id="mallory")[0].status == EventStatus.QUARANTINED
    dan = assistant.respond("dan", "What is this medicine called?", image=bottle(shift=2, light=5))
    assert dan.text.lower() == "ibuprofen"


def test_a_different_object_is_not_answered_from_memory(assistant):
    teach(assistant, "ana", "ibuprofen", bottle())
    # (the model-free test embedder sees a 4x4 colour grid: only a clearly different picture is "another
    # object" to it; look-alike objects are measured with the real embedders in benchmarks/retrieval.py)
    other = assistant.respond("ana", "What is this medicine called?", image=make_png((20, 160, 40), shape="square"))
    assert all(ref.answer != "ibuprofen" or ref.score < assistant.config.retrieval.reuse_threshold
               for ref in other.references)
    assert other.text.lower() != "ibuprofen"


def test_forget_user_removes_their_memory(assistant):
    teach(assistant, "ana", "ibuprofen", bottle())
    assistant.forget_user("ana")
    again = assistant.respond("ana", "What is this medicine called?", image=bottle(shift=3, light=10))
    assert again.references == []


def test_forgetting_a_user_leaves_none_of_their_pictures_in_the_process(assistant):
    """The decoded pictures, the memory's query vectors and the model's vision features are caches by content,
    so a forget empties them (`Assistant.forget`); answering goes on."""
    teach(assistant, "ana", "ibuprofen", bottle())
    again = assistant.respond("ana", "What is this medicine called?", image=bottle(shift=3, light=10))
    sha = assistant.get_session(again.session_id).turns[0].image.sha256
    features = assistant.vlm.model.feature_cache
    assert assistant._images.get(sha) is not None
    assert len(features) > 0 and len(assistant.memory._query_cache) > 0
    assistant.forget_user("ana")
    with pytest.raises(NotFound):  # the store has no such picture now, and the cache no copy
        assistant._images.get(sha)
    assert len(features) == 0 and len(assistant.memory._query_cache) == 0
    bob = assistant.respond("bob", "What is this medicine called?", image=bottle(shift=3, light=10))
    assert bob.kind == TurnKind.ANSWER and bob.references == []


def test_a_trusted_users_thanks_shares_the_memorys_taught_answer_but_not_the_models_own_words(tmp_path):
    """With `retrieval.accepted_is_voice`, a trusted user's "Thanks!" to the model's own words is one voice; a
    "Thanks!" to an answer the memory gave from another teacher's shared event confirms taught words on a new view
    and is shared at once (`Turn.answered_from`, `ilearn.learning.construct`)."""
    config = Config(home=str(tmp_path / "home")).override(
        model={"backend": "tiny"}, feedback={"method": "lexical"},
        retrieval={"sharing": "trusted", "accepted_is_voice": True, "guess_threshold": None})  # no guesses here
    assistant = Assistant.from_config(config)
    for user in ("teacher", "careless"):
        assistant.store.ensure_user(user, trusted=True)
    teach(assistant, "teacher", "ibuprofen", bottle())
    given = assistant.respond("careless", "What is this medicine called?", image=bottle(shift=3, light=10))
    assert (given.source, given.text.lower()) == ("memory", "ibuprofen")
    assistant.respond("careless", "Thanks!", session_id=given.session_id)
    [confirmed] = assistant.close_session(given.session_id)
    square = make_png((20, 160, 40), shape="square")  # another object: the model's own words
    said = assistant.respond("careless", "What is this medicine called?", image=square)
    assert said.source == "model" and said.text.lower() != "ibuprofen"
    assistant.respond("careless", "Thanks!", session_id=said.session_id)
    [accepted] = assistant.close_session(said.session_id)
    scopes = {e.id: e.scope.value for e in assistant.store.list_events(user_id="careless")}
    assert scopes == {confirmed.id: "shared", accepted.id: "private"}
    bob = assistant.respond("bob", "What is this medicine called?", image=square)
    assert bob.source == "model" and accepted.id not in [r.event_id for r in bob.references]  # it reached no one
    assert accepted.id in [r.event_id for r in assistant.respond("careless", "What is this medicine called?",
                                                                   image=square).references]  # but its user
