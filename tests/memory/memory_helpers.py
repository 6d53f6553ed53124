"""Helpers shared by the memory tests: a small in-memory store fake and images stub embedders tell apart."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
from PIL import Image

from ilearn.errors import NotFound
from ilearn.images import sha256_bytes
from ilearn.types import Event, EventStatus, ImageRef


class FakeStore:
    """The few EventStore methods the retrieval memory calls, in memory."""

    def __init__(self) -> None:
        self.events: dict[str, Event] = {}
        self.embeddings: dict[tuple[str, str], np.ndarray] = {}
        self.images: dict[str, bytes] = {}
        self.trusted: set[str] = set()
        self.users: dict[str, float] = {}  # user id -> first seen

    def transaction(self):
        return nullcontext()

    def ensure_user(self, user_id: str, *, trusted: bool | None = None) -> None:
        self.users.setdefault(user_id, time.time())
        if trusted:
            self.trusted.add(user_id)

    def user_since(self, user_id: str) -> float:
        if user_id not in self.users:
            raise NotFound(user_id)
        return self.users[user_id]

    def is_trusted(self, user_id: str) -> bool:
        if user_id not in self.users:
            raise NotFound(user_id)
        return user_id in self.trusted

    def put_image(self, data: bytes, ref: ImageRef) -> ImageRef:
        self.images[ref.sha256] = data
        return ref

    def get_image_bytes(self, sha256: str) -> bytes:
        return self.images[sha256]

    def add_events(self, events: Sequence[Event]) -> None:
        for e in events:
            self.ensure_user(e.user_id)
            self.events[e.id] = e

    def get_event(self, event_id: str) -> Event:
        return self.get_events([event_id])[0]

    def get_events(self, ids: Sequence[str]) -> list[Event]:
        missing = [i for i in ids if i not in self.events]
        if missing:
            raise NotFound(missing[0])
        return [self.events[i] for i in ids]

    def iter_events(self, *, status=None, **_):
        return iter(self.list_events(status=status))

    def list_events(self, *, status=None, robot_id=None, user_id=None, scope=None, limit=None, **_) -> list[Event]:
        found = [e for e in self.events.values() if (status is None or e.status == status)
                 and (robot_id is None or e.robot_id == robot_id) and (user_id is None or e.user_id == user_id)
                 and (scope is None or e.scope == scope)]
        return found if limit is None else found[:limit]

    def update_event(self, event: Event) -> None:
        if event.id not in self.events:
            raise NotFound(event.id)
        self.events[event.id] = event

    def delete_user(self, user_id: str) -> list[str]:
        if user_id not in self.users:
            raise NotFound(user_id)
        ids = [i for i, e in self.events.items() if e.user_id == user_id]
        for i in ids:
            del self.events[i]
            self.embeddings = {k: v for k, v in self.embeddings.items() if k[1] != i}
        del self.users[user_id]
        return ids

    def get_embedding(self, kind: str, key: str) -> np.ndarray | None:
        return self.embeddings.get((kind, key))

    def put_embedding(self, kind: str, key: str, vector: np.ndarray) -> None:
        self.embeddings[(kind, key)] = np.asarray(vector, dtype=np.float32).copy()


def make_image(color: tuple[int, int, int], *, mark: int = 0, size: int = 32) -> Image.Image:
    """A flat-coloured square with an optional dark bar at row `mark` (tells objects apart for stub vectors)."""
    im = Image.new("RGB", (size, size), color)
    if mark:
        for x in range(size):
            for y in range(mark, min(size, mark + 6)):
                im.putpixel((x, y), (10, 10, 10))
    return im


def image_ref(store, image: Image.Image) -> ImageRef:
    """Store the image's PNG bytes and return its content address."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    data = buf.getvalue()
    ref = ImageRef(sha256=sha256_bytes(data), width=image.width, height=image.height, format="PNG")
    return store.put_image(data, ref)


def make_event(store, image: Image.Image, answer: str, user: str, *, question: str = "what is this?",
               status: EventStatus = EventStatus.ACTIVE, **kwargs) -> Event:
    """An event about `image` (whose bytes are put in the store), not yet added."""
    return Event(image=image_ref(store, image), question=question, answer=answer, user_id=user, status=status,
                 **kwargs)
