"""benchmarks/stored_answers.py on a tiny store and objects folder whose right answers are known."""

from __future__ import annotations

import importlib.util
import io
import json
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "stored_answers.py"


@pytest.fixture(scope="module")
def sa():
    spec = importlib.util.spec_from_file_location("benchmarks_stored_answers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG", optimize=True)  # other bytes, same pixels
    return buf.getvalue()


def test_asked_fact(sa):
    keys = ["name", "use", "colour"]
    assert sa.asked_fact("What is this called?", keys) == "name"
    assert sa.asked_fact("What's this used for?", keys) == "use"
    assert sa.asked_fact("What is the colour of this?", keys) == "colour"
    assert sa.asked_fact("Hmm?", keys) is None


def test_audit_counts_right_wrong_and_empty(sa, tmp_path):
    objects = tmp_path / "objects"
    for name, colour, facts in (("mug", (200, 0, 0), {"use": "tea"}), ("trash_can", (0, 0, 200), {})):
        (objects / name).mkdir(parents=True)
        Image.new("RGB", (8, 8), colour).save(objects / name / "a.png")
        (objects / name / "facts.json").write_text(json.dumps(facts))
    db = sqlite3.connect(tmp_path / "ilearn.db")
    db.execute("CREATE TABLE images (sha256 TEXT PRIMARY KEY, data BLOB)")
    db.execute("CREATE TABLE events (question TEXT, answer TEXT, status TEXT, label TEXT, image_sha TEXT, "
               "created REAL)")
    db.executemany("INSERT INTO images VALUES (?, ?)", [("r", png((200, 0, 0))), ("b", png((0, 0, 200)))])
    db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", [
        ("What is this called?", "Mug.", "active", "negative", "r", 1),
        ("What is this used for?", "tea", "active", "positive", "r", 2),
        ("What is this called?", "name of this", "active", "negative", "b", 3),
        ("What is this called?", "", "quarantined", "negative", "b", 4),
        ("What is this called?", "trash  can", "superseded", "positive", "b", 5)])
    db.commit()
    result = sa.audit(tmp_path / "ilearn.db", objects)
    assert result["by_status"] == {"active": {"right": 2, "wrong": 1}, "quarantined": {"empty": 1},
                                   "superseded": {"right": 1}}
    assert (result["active_right"], result["active"]) == (2, 3)
    assert result["wrong_active"] == [{"object": "trash_can", "question": "What is this called?",
                                       "answer": "name of this", "label": "negative", "expected": "trash can"}]


def test_repeats_counts_answers_copied_from_references(sa, tmp_path):
    objects = tmp_path / "objects"
    for name, colour in (("mug", (200, 0, 0)), ("cup", (0, 0, 200))):
        (objects / name).mkdir(parents=True)
        Image.new("RGB", (8, 8), colour).save(objects / name / "a.png")
    db = sqlite3.connect(tmp_path / "ilearn.db")
    db.execute("CREATE TABLE images (sha256 TEXT PRIMARY KEY, data BLOB)")
    db.execute("CREATE TABLE events (id TEXT, answer TEXT)")
    db.execute("CREATE TABLE sessions (id TEXT, user_id TEXT, created REAL)")
    db.execute("CREATE TABLE turns (session_id TEXT, seq INTEGER, role TEXT, kind TEXT, text TEXT, image_sha TEXT, "
               "retrieved TEXT, precise_question TEXT)")
    db.executemany("INSERT INTO images VALUES (?, ?)", [("r", png((200, 0, 0))), ("b", png((0, 0, 200)))])
    db.executemany("INSERT INTO events VALUES (?, ?)", [("e1", "mug"), ("e2", "")])
    db.executemany("INSERT INTO sessions VALUES (?, ?, ?)", [("s1", "R2-teach-ana", 1), ("s2", "R2-teach-bob", 2),
                                                             ("s3", "R1-teach-ana", 0)])
    q = "What is this called?"
    db.executemany("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
        ("s3", 0, "user", "question", q, "b", "[]", None),
        ("s3", 1, "assistant", "answer", "a cup", None, "[]", q),            # no references
        ("s1", 0, "user", "question", q, "r", "[]", None),
        ("s1", 1, "assistant", "answer", "Mug", None, '["e1"]', q),          # a right repeat
        ("s2", 0, "user", "question", q, "b", "[]", None),
        ("s2", 1, "assistant", "answer", "mug!", None, '["e1", "e2"]', q),   # the mug's name for the cup
        ("s2", 2, "user", "feedback", "no", None, "[]", None),
        ("s2", 3, "assistant", "answer", "a bowl", None, '["e1"]', q)])      # references, but not repeated
    db.commit()
    assert sa.repeats(tmp_path / "ilearn.db", objects) == {
        "R1": {"answers": 1, "with_references": 0},
        "R2": {"answers": 3, "with_references": 3, "repeats": 2, "wrong_repeats": 1}}

