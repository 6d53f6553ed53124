"""Personal concepts: a user's own named things, recognised for that user only, renamed and deleted at once, never
made into events (so never shared, never trained on), forgotten with the user."""

from __future__ import annotations

from ilearn.errors import NotFound
from ilearn.types import TurnKind


def teach(assistant, user: str, photo: bytes, words: str):
    reply = assistant.respond(user, words, image=photo)
    assert reply.kind == TurnKind.REACTION, reply.text
    return reply


def ask(assistant, user: str, photo: bytes) -> str:
    return assistant.respond(user, "What is this?", image=photo).text


def test_a_taught_thing_is_named_again_on_new_photos(assistant, photos) -> None:
    reply = teach(assistant, "ana", photos["mug"], "This is my mug, it's called Bobby.")
    assert "Bobby" in reply.text
    assert ask(assistant, "ana", photos["mug_again"]) == "That's Bobby, your mug."
    assert ask(assistant, "ana", photos["mug_third"]) == "That's Bobby, your mug."
    assert "Bobby" not in ask(assistant, "ana", photos["box"])  # another object: the usual answer path
    (concept,) = assistant.personal.concepts.list("ana")
    assert (concept.kind, concept.name, concept.views) == ("mug", "Bobby", 1)


def test_never_named_for_another_user_even_beside_look_alikes(assistant, photos) -> None:
    teach(assistant, "ana", photos["mug"], "This is my mug, it's called Bobby")
    teach(assistant, "bob", photos["lookalike"], "This is Max, my mug")
    assert ask(assistant, "ana", photos["mug_again"]) == "That's Bobby, your mug."
    assert ask(assistant, "bob", photos["mug_again"]) == "That's Max, your mug."
    for photo in photos.values():  # carol owns nothing: no photo, however alike, gets anyone's name
        text = ask(assistant, "carol", photo)
        assert "Bobby" not in text and "Max" not in text
    assert "Max" not in assistant.respond("ana", "What do you know about me?").text


def test_renamed_at_once(assistant, photos) -> None:
    teach(assistant, "ana", photos["mug"], "This is my mug, it's called Bobby")
    seen = assistant.respond("ana", "What is this?", image=photos["mug_again"])
    renamed = assistant.respond("ana", "Actually it's Rex", session_id=seen.session_id)
    assert renamed.text == "Got it: your mug is called Rex now."
    assert ask(assistant, "ana", photos["mug_third"]) == "That's Rex, your mug."
    assistant.respond("ana", "rename Rex to Bobby")
    assert ask(assistant, "ana", photos["mug_third"]) == "That's Bobby, your mug."
    assistant.respond("ana", "Please call my mug Rex from now on")
    assert ask(assistant, "ana", photos["mug_again"]) == "That's Rex, your mug."


def test_a_correction_of_an_ordinary_answer_is_no_rename(assistant, photos) -> None:
    teach(assistant, "ana", photos["mug"], "This is my mug, it's called Bobby")
    answer = assistant.respond("ana", "What colour is this?", image=photos["box"])
    assert answer.kind == TurnKind.ANSWER
    reaction = assistant.respond("ana", "No, it's Blue", session_id=answer.session_id)
    assert "mug" not in reaction.text
    assert assistant.personal.concepts.list("ana")[0].name == "Bobby"


def test_deleted_at_once(assistant, photos) -> None:
    taught = teach(assistant, "ana", photos["mug"], "This is my mug, it's called Bobby")
    teach(assistant, "ana", photos["plant"], "This is my plant, it's called Fern")
    gone = assistant.respond("ana", "Forget my mug", session_id=taught.session_id)
    assert gone.text == "Done: I have forgotten Bobby, your mug."
    assert "Bobby" not in ask(assistant, "ana", photos["mug_again"])
    assert [c.name for c in assistant.personal.concepts.list("ana")] == ["Fern"]
    assert all(r.data["concept"] != "Bobby" for r in assistant.store.list_user_records("ana", "concept_view"))
    assert len(assistant.store.list_user_records("ana", "concept_view")) == 1
    assert assistant.respond("ana", "forget my mug").text == "I don't know a mug of yours."


def test_a_second_photo_adds_a_view_and_unnamed_things_work(assistant, photos) -> None:
    teach(assistant, "ana", photos["mug"], "This is my mug, it's called Bobby")
    teach(assistant, "ana", photos["mug_again"], "This is Bobby, my mug")
    assert assistant.personal.concepts.list("ana")[0].views == 2
    teach(assistant, "ana", photos["box"], "These are my pills")
    assert ask(assistant, "ana", photos["box"]) == "That's your pills."
    no_photo = assistant.respond("bob", "This is my mug, it's called Max")
    assert "photo" in no_photo.text and assistant.personal.concepts.list("bob") == []


def test_personal_names_never_become_events(assistant, photos) -> None:
    """The teaching, the recognition, the rename and a thanks make no event: nothing to share or train on."""
    taught = teach(assistant, "ana", photos["mug"], "This is my mug, it's called Bobby")
    seen = assistant.respond("ana", "What is this?", image=photos["mug_again"], session_id=taught.session_id)
    assistant.respond("ana", "Actually it's Rex", session_id=seen.session_id)
    assistant.respond("ana", "Thanks!", session_id=seen.session_id)
    assistant.close_session(seen.session_id)
    assert assistant.store.list_events() == []


def test_forgetting_the_user_deletes_their_things_and_photos(assistant, photos) -> None:
    taught = teach(assistant, "ana", photos["mug"], "This is my mug, it's called Bobby")
    teach(assistant, "bob", photos["lookalike"], "This is Max, my mug")
    sha = assistant.get_session(taught.session_id).turns[0].image.sha256
    assistant.respond("ana", "I'm a nurse")
    report = assistant.forget("ana")
    assert "their profile (deleted) and 1 personal thing(s), deleted with their photos" in report.summary()
    assert assistant.store.list_user_records("ana", "concept") == []
    assert assistant.store.list_user_records("ana", "concept_view") == []
    try:
        assistant.store.get_image_bytes(sha)
        raise AssertionError("ana's photo outlived her")
    except NotFound:
        pass
    assert ask(assistant, "bob", photos["mug_again"]) == "That's Max, your mug."
