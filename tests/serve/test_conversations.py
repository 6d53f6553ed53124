"""Session continuation by conversation digest: bounded, per user, forgotten with the user."""

from __future__ import annotations

from ilearn.serve.conversations import Conversations, digest


def test_the_digest_depends_on_user_roles_texts_and_images():
    base = digest("r1:ana", [("user", "what is this?", "abc")])
    assert base == digest("r1:ana", [("user", "what is this?", "abc")])
    assert base != digest("r2:ana", [("user", "what is this?", "abc")])
    assert base != digest("r1:ana", [("user", "what is this?", "abd")])
    assert base != digest("r1:ana", [("assistant", "what is this?", "abc")])


def test_least_recently_used_conversations_are_dropped_and_a_forgotten_users_go():
    conversations = Conversations(size=2)
    conversations.remember("a", "ses_a", "r1:ana")
    conversations.remember("b", "ses_b", "r1:bob")
    assert conversations.find("a") == "ses_a"  # "a" is now the most recently used
    conversations.remember("c", "ses_c", "r1:ana")
    assert conversations.find("b") is None and len(conversations) == 2
    conversations.forget_user("r1:ana")
    assert conversations.find("a") is None and conversations.find("c") is None and len(conversations) == 0
