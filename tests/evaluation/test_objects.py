"""The objects scenario read from a folder of a user's own photos."""

from __future__ import annotations

import json
import logging

import pytest
from PIL import Image

from ilearn.errors import InvalidInput
from ilearn.evaluation.scenarios.objects import ObjectsScenario


def _photo(path, colour, mode="RGB", size=(80, 60), fmt=None):
    image = Image.new(mode, size, colour)
    image.save(path, format=fmt)


@pytest.fixture
def folder(tmp_path):
    mug = tmp_path / "blue_mug"
    mug.mkdir()
    for i in range(4):
        _photo(mug / f"mug{i}.jpg", (20, 40, 200 - 10 * i), fmt="JPEG")
    (mug / "facts.json").write_text(json.dumps({"use": "tea", "capacity": 300}))
    keys = tmp_path / "house-keys"
    keys.mkdir()
    _photo(keys / "a.png", (200, 200, 0, 0), mode="RGBA")  # fully transparent: flattened on white
    _photo(keys / "b.png", (200, 200, 0, 255), mode="RGBA", size=(900, 700))
    (keys / "notes.txt").write_text("not a photo")
    solo = tmp_path / "plant"
    solo.mkdir()
    _photo(solo / "p.png", (0, 120, 0))
    (tmp_path / ".hidden").mkdir()
    return tmp_path


def test_split_facts_and_names(folder):
    s = ObjectsScenario.from_folder(folder, seed=0)
    assert [i.id for i in s.items] == ["blue_mug", "house-keys", "plant"]
    mug, keys, plant = s.items
    assert mug.facts == {"use": "tea", "capacity": "300", "name": "blue mug"}
    assert keys.facts == {"name": "house keys"}
    assert (len(mug.teach_views), len(mug.test_views)) == (3, 1)
    assert (len(keys.teach_views), len(keys.test_views)) == (1, 1)  # >= 2 photos: one held out
    assert (len(plant.teach_views), len(plant.test_views)) == (1, 0)
    views = keys.teach_views + keys.test_views
    assert all(v.mode == "RGB" for v in views)
    assert max(max(v.size) for v in views) <= 448  # big photos shrunk
    small = next(v for v in views if v.size == (80, 60))
    assert small.getpixel((0, 0)) == (255, 255, 255)  # transparency on white
    assert set(s.intents) == {"use", "capacity", "name"}
    questions = {t.intent: t.question for t in s.tasks("teach")}
    assert questions["capacity"] == "What is the capacity of this?"
    assert questions["name"] == "What is this called?"
    assert all(t.item.id == "blue_mug" or t.intent == "name" for t in s.tasks("teach"))
    assert {t.item.id for t in s.tasks("test")} == {"blue_mug", "house-keys"}
    # the split is seeded
    again = ObjectsScenario.from_folder(folder, seed=0)
    assert list(again.items[0].test_views[0].getdata()) == list(mug.test_views[0].getdata())


def test_corrupt_photo_is_skipped_with_warning(folder, caplog):
    (folder / "blue_mug" / "broken.jpg").write_bytes(b"\xff\xd8not really a jpeg")
    with caplog.at_level(logging.WARNING):
        s = ObjectsScenario.from_folder(folder)
    assert s.skipped == [str(folder / "blue_mug" / "broken.jpg")]
    assert "broken.jpg" in caplog.text
    assert len(s.items[0].teach_views) + len(s.items[0].test_views) == 4


def test_errors(tmp_path):
    with pytest.raises(InvalidInput, match="no objects folder"):
        ObjectsScenario.from_folder(tmp_path / "missing")
    with pytest.raises(InvalidInput, match="no object folders"):
        ObjectsScenario.from_folder(tmp_path)
    bad = tmp_path / "thing"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"garbage")
    with pytest.raises(InvalidInput, match="no readable photos"):
        ObjectsScenario.from_folder(tmp_path)
    _photo(bad / "y.png", (1, 2, 3))
    (bad / "facts.json").write_text("[1, 2]")
    with pytest.raises(InvalidInput, match="JSON object"):
        ObjectsScenario.from_folder(tmp_path)
    (bad / "facts.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        ObjectsScenario.from_folder(tmp_path)
    (bad / "facts.json").write_text(json.dumps({"use": ["a", "b"]}))
    with pytest.raises(InvalidInput, match="string or a number"):
        ObjectsScenario.from_folder(tmp_path)
