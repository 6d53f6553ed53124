"""Session continuation for OpenAI clients, which resend the whole conversation and know nothing of sessions.

After each reply the server remembers a digest of the conversation so far (the caller's user, every message's
role, text and image, and the reply) -> the session. A request whose messages, less the last one, have a
remembered digest continues that session, so a correction in a later message teaches the robot as in
`ilearn chat`. The header `X-Session-Id` names a session outright (and survives restarts; the digests live in
memory, least recently used dropped). Digests hold no text, only hashes, and a user's are dropped when the user is
forgotten.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence


def digest(user: str, messages: Sequence[tuple[str, str, str]]) -> str:
    """The key of a conversation: the user and each message's (role, text, image key)."""
    return hashlib.sha256(json.dumps([user, list(messages)]).encode()).hexdigest()


class Conversations:
    """Conversation digest -> (session id, user), bounded, thread-safe."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def find(self, key: str) -> str | None:
        with self._lock:
            found = self._sessions.get(key)
            if found is not None:
                self._sessions.move_to_end(key)
            return found[0] if found else None

    def remember(self, key: str, session_id: str, user: str) -> None:
        with self._lock:
            self._sessions[key] = (session_id, user)
            self._sessions.move_to_end(key)
            while len(self._sessions) > self._size:
                self._sessions.popitem(last=False)

    def forget_user(self, user: str) -> None:
        with self._lock:
            for key in [k for k, (_, u) in self._sessions.items() if u == user]:
                del self._sessions[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


__all__ = ["Conversations", "digest"]
