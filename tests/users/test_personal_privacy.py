"""Personal memory on the full stack (tiny model, retrieval memory, lexical feedback): nothing personal reaches
events, datasets, other users or the logs, and forgetting the user leaves no trace."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from helpers import make_png
from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.learning.datasets import build
from ilearn.learning.update import shared_events


@pytest.fixture
def deployed(tmp_path):
    config = Config(home=str(tmp_path / "home")).override(model={"backend": "tiny", "max_new_tokens": 4},
                                                          feedback={"method": "lexical"})
    with Assistant.from_config(config) as assistant:
        yield assistant


def test_nothing_personal_is_learnt_shared_or_logged(deployed, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    mug, again = make_png((200, 30, 30)), make_png((210, 40, 35), size=(80, 80))
    for user, name in (("ana", "Bobby"), ("bob", "Bobby"), ("carl", "Bobby")):  # three voices, one name
        taught = deployed.respond(user, f"This is my mug, it's called {name}", image=mug)
        deployed.respond(user, "I'm a nurse, please keep it short", session_id=taught.session_id)
        seen = deployed.respond(user, "What is this?", image=again, session_id=taught.session_id)
        assert seen.text == f"That's {name}, your mug."
        deployed.respond(user, "Thanks!", session_id=seen.session_id)
        deployed.respond(user, "Actually it's Rex", session_id=seen.session_id)
        deployed.close_session(seen.session_id)
    events = deployed.store.list_events()
    assert not [e for e in events if "bobby" in (e.answer + e.question).lower() or "rex" in e.answer.lower()]
    assert shared_events(deployed.store, deployed.config.robot_id) == []
    for kind in ("sft", "dpo", "kto"):
        assert "Bobby" not in str(build(kind, events)) and "nurse" not in str(build(kind, events))
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "Bobby" not in logged and "Rex" not in logged and "nurse" not in logged


def test_forget_leaves_no_trace_in_the_database_file(deployed) -> None:
    mug = make_png((200, 30, 30))
    taught = deployed.respond("ana", "This is my mug, it's called Zorbobby", image=mug)
    deployed.respond("ana", "My name is Quilliam and I'm a pharmacist", session_id=taught.session_id)
    deployed.close_session(taught.session_id)
    deployed.forget("ana")
    path = deployed.store.path
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM user_records").fetchone()[0] == 0
    deployed.store.checkpoint()
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert b"Zorbobby" not in raw and b"Quilliam" not in raw and b"pharmacist" not in raw
