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
