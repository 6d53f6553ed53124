"""Forgetting a user leaves nothing of theirs in any file of the deployment (issue 26, item 5).

Forty active events from five users, so that forgetting one (8 active events and one they superseded)
stays under the index's automatic compaction (`max_dead_fraction` 0.25): the rows must go anyway. After `Assistant.forget_user`, every file
under the home folder is read as raw bytes and searched for the user's id, their session and event ids, the
marker words of their questions and corrections, their images (a chunk of the PNG bytes, the sha256 hex) and
the float32 bytes of their vectors (the fused rows indexed for their events and the cached image and text
embeddings). The other users' events must still be retrieved.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.images import sha256_bytes
from ilearn.types import EventStatus

USERS = ("ana", "bob", "cy", "dan", "quillon.vasquez")
FORGOTTEN = "quillon.vasquez"
PER_USER = 8


def photo(seed: int, nudge: int = 0) -> bytes:
    """A PNG of a random 4x4 colour grid: far apart for the stub embedder, so no event supersedes another;
    `nudge` brightens one cell (another photo of the same object)."""
    grid = np.random.default_rng(seed).integers(0, 200, (4, 4, 3), dtype=np.uint8)
    grid[0, 0] += np.uint8(nudge)
    buf = io.BytesIO()
    Image.fromarray(grid).resize((48, 48), Image.Resampling.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


def marker(user: str, kind: str, i: int) -> str:
    return f"zq{user.split('.')[0]}{kind}{i}x"


def question(user: str, i: int) -> str:
    """A question naming no facet, so the event keeps it (and its marker) as its precise question."""
    return f"Where does this {marker(user, 'q', i)} bottle come from?"


def files_holding(home: Path, needles: dict[str, bytes]) -> dict[str, list[str]]:
    """For each needle found, the files (relative to `home`) whose raw bytes contain it."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for name, needle in needles.items():
            if needle in data:
                found.setdefault(name, []).append(str(path.relative_to(home)))
    return found


def teach(assistant: Assistant, user: str, i: int, image: bytes, answer: str):
    """One session: the user asks `question(user, i)` about `image` and corrects the answer to `answer`."""
    r = assistant.respond(user, question(user, i), image=image)
    assistant.respond(user, f"No, that's {answer}.", session_id=r.session_id)
    [event] = assistant.close_session(r.session_id)
    assert (event.question, event.answer, event.status) == (question(user, i), answer, EventStatus.ACTIVE)
    return event, r.session_id


@pytest.mark.parametrize("index", [{}, {"hnsw_min_size": 16, "index_storage": "flat"}], ids=["exact", "hnsw"])
def test_forget_user_leaves_no_trace_in_any_file(tmp_path, index):
    # "hnsw": the graph file keeps its own float32 copy of every vector, tombstones included, until compaction
    config = Config(home=str(tmp_path / "home")).override(model={"backend": "tiny"}, feedback={"method": "lexical"},
                                                          retrieval=index)
    assistant = Assistant.from_config(config)
    memory, store = assistant.memory, assistant.store
    taught: dict[str, list[tuple[str, str, bytes, int]]] = {}  # user -> (event id, session id, image, question)
    vectors: dict[str, bytes] = {}  # event id -> the float32 bytes of its indexed row
    for u, user in enumerate(USERS):
        for i in range(PER_USER):
            image = photo(100 * u + i)
            event, session_id = teach(assistant, user, i, image, marker(user, "a", i))
            taught.setdefault(user, []).append((event.id, session_id, image, i))
            vectors[event.id] = memory.index.get_vectors([event.id])[0].tobytes()
    # the forgotten user also corrects an answer memory gave them: that event supersedes their first one,
    # whose row then stays in the index as a tombstone
    first, image = taught[FORGOTTEN][0][0], photo(100 * USERS.index(FORGOTTEN), nudge=30)
    again, session_id = teach(assistant, FORGOTTEN, 0, image, marker(FORGOTTEN, "a", PER_USER))
    assert again.supersedes == first and store.get_event(first).status == EventStatus.SUPERSEDED
    taught[FORGOTTEN].append((again.id, session_id, image, 0))
    vectors[again.id] = memory.index.get_vectors([again.id])[0].tobytes()
    assert len(memory.index) == len(USERS) * PER_USER and memory.index.dead == 1
    assert memory.index.mode == ("hnsw" if index else "flat")
    assert PER_USER + 1 <= memory.config.max_dead_fraction * (len(memory.index) + 1)  # no automatic compaction

    needles = {"user id": FORGOTTEN.encode()}
    for i, (event_id, session_id, image, q) in enumerate(taught[FORGOTTEN]):
        sha = sha256_bytes(image)
        needles |= {
            f"question marker {i}": marker(FORGOTTEN, "q", q).encode(),
            f"answer marker {i}": marker(FORGOTTEN, "a", i).encode(),
            f"event id {i}": event_id.encode(), f"session id {i}": session_id.encode(),
            f"image bytes {i}": image[len(image) // 2: len(image) // 2 + 48], f"image sha256 {i}": sha.encode(),
            f"cached image vector {i}": store.get_embedding(memory._images.kind, sha).tobytes(),
            f"cached text vector {i}": store.get_embedding(memory._text_kind, event_id).tobytes(),
            f"indexed vector {i}": vectors[event_id],
        }
    memory.save()
    home = assistant.config.home_path
    # before forgetting, the scan finds every needle but the superseded event's indexed row (a tombstone)
    assert set(needles) - set(files_holding(home, needles)) <= {"indexed vector 0"}

    assert sorted(assistant.forget_user(FORGOTTEN)) == sorted(t[0] for t in taught[FORGOTTEN])
    assert files_holding(home, needles) == {}
    assistant.close()
    assert files_holding(home, needles) == {}

    with Assistant.from_config(config) as reopened:
        assert not reopened.store.has_user(FORGOTTEN)
        assert len(reopened.memory.index) == (len(USERS) - 1) * PER_USER
        for u, user in enumerate(USERS):
            for i in (0, PER_USER - 1):
                answers = [ref.answer for ref in reopened.respond(user, question(user, i),
                                                                  image=photo(100 * u + i)).references]
                if user == FORGOTTEN:
                    assert answers == []
                else:
                    assert answers[:1] == [marker(user, "a", i)]
