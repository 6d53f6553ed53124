"""Profiles: learned from the conversation, shown to the user, correctable, private, forgotten with the user."""

from __future__ import annotations

import pytest

from ilearn.errors import InvalidInput
from ilearn.types import Label, Role, TurnKind
from ilearn.users.profiles import Profile, ProfileBook


def test_a_statement_about_the_user_is_kept_and_acknowledged(assistant) -> None:
    reply = assistant.respond("ana", "I'm a nurse.")
    assert reply.kind == TurnKind.REACTION and "nurse" in reply.text
    assert assistant.personal.profiles.get("ana") == Profile(occupation="nurse", expertise="expert")
    short = assistant.respond("ana", "Please keep it short", session_id=reply.session_id)
    assert "short answers" in short.text
    assert assistant.personal.profiles.get("ana").answer_length == "short"
    session = assistant.get_session(reply.session_id)
    users = [t for t in session.turns if t.role == Role.USER]
    assert all(t.kind == TurnKind.REACTION and t.feedback.label == Label.NEUTRAL for t in users)
    assert assistant.close_session(reply.session_id) == []  # nothing about the user becomes an event


def test_profile_facts_in_a_question_are_kept_and_the_question_answered(assistant, png) -> None:
    reply = assistant.respond("ana", "I'm 8, what is this?", image=png)
    assert reply.kind == TurnKind.ANSWER and reply.text == "A cup"  # worded for a child: a sentence
    assert assistant.personal.profiles.get("ana").age_group == "child"


def test_the_user_sees_and_corrects_their_profile(assistant) -> None:
    first = assistant.respond("ana", "My name is Ana and I'm a nurse")
    shown = assistant.respond("ana", "What do you know about me?", session_id=first.session_id)
    assert "Ana" in shown.text and "nurse" in shown.text
    fixed = assistant.respond("ana", "I'm not a nurse", session_id=first.session_id)
    assert "forgotten your expertise and occupation" in fixed.text
    assert assistant.personal.profiles.get("ana") == Profile(name="Ana")
    gone = assistant.respond("ana", "forget my name", session_id=first.session_id)
    assert "forgotten" in gone.text and assistant.personal.profiles.get("ana").empty
    assert assistant.store.list_user_records("ana", "profile") == []  # an empty profile leaves no record


def test_profiles_are_private_to_their_user(assistant) -> None:
    assistant.respond("ana", "I'm a pharmacist, keep it short")
    assert assistant.personal.profiles.get("bob").empty
    reply = assistant.respond("bob", "What do you know about me?")
    assert "pharmacist" not in reply.text and "anything" in reply.text


def test_forgetting_the_user_deletes_the_profile(assistant) -> None:
    assistant.respond("ana", "I'm 72 years old and I'm hard of hearing")
    assert not assistant.personal.profiles.get("ana").empty
    assistant.forget("ana")
    assert assistant.personal.profiles.get("ana").empty
    assert assistant.store.list_user_records("ana", "profile") == []


def test_the_api_validates_and_merges() -> None:
    with pytest.raises(InvalidInput, match="age_group"):
        Profile(age_group="toddler")
    with pytest.raises(InvalidInput, match="unknown profile field"):
        Profile.from_dict({"gender": "f"})  # no field for a protected attribute
    with pytest.raises(InvalidInput, match="accessibility"):
        Profile(accessibility=("telepathy",))
    profile = Profile(accessibility=("hearing",)).merged({"accessibility": ["low vision", "-hearing"],
                                                          "answer_length": "short"})
    assert profile == Profile(accessibility=("low vision",), answer_length="short")


def test_the_book_round_trips(tmp_path) -> None:
    from ilearn.memory.sqlite import open_store

    with open_store(tmp_path) as store:
        book = ProfileBook(store)
        book.put("ana", Profile(name="Ana", language="Spanish", accessibility=("plain language",)))
        assert book.get("ana").to_dict() == {"name": "Ana", "age_group": None, "expertise": None,
                                             "occupation": None, "language": "Spanish",
                                             "accessibility": ["plain language"], "answer_length": None}
        assert book.delete("ana") and not book.delete("ana") and book.get("ana").empty
