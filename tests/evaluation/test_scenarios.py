"""Pharmacy and reference-game scenarios: deterministic rendering, views that differ, tasks."""

from __future__ import annotations

import numpy as np
import pytest

from ilearn.data.bottles import BOTTLES, render_view
from ilearn.errors import InvalidInput
from ilearn.evaluation.scenarios.base import precise_question
from ilearn.evaluation.scenarios.pharmacy import pharmacy_scenario
from ilearn.evaluation.scenarios.reference_game import (
    describe,
    make_game,
    parse_slot,
    reference_game_scenario,
)


def _arr(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def pharmacy():
    return pharmacy_scenario(seed=3, n_teach=3, n_test=2)


def test_at_least_ten_distinct_lookalike_bottles():
    assert len(BOTTLES) >= 10
    looks = {tuple(b.attributes.values()) for b in BOTTLES}
    assert len(looks) == len(BOTTLES)  # every bottle can be told apart...
    names = {b.name for b in BOTTLES}
    assert len(names) == len(BOTTLES)
    for b in BOTTLES:  # ...but each has a look-alike that differs in one or two attributes only
        diffs = [sum(x != y for x, y in zip(b.attributes.values(), o.attributes.values(), strict=True))
                 for o in BOTTLES if o is not b]
        assert min(diffs) <= 2
        assert set(b.facts) == {"name", "use", "dose"} and all(b.facts.values())


def test_rendering_is_deterministic_and_views_differ(pharmacy):
    again = pharmacy_scenario(seed=3, n_teach=3, n_test=2)
    for a, b in zip(pharmacy.items, again.items, strict=True):
        for va, vb in zip(a.teach_views + a.test_views, b.teach_views + b.test_views, strict=True):
            assert va.size == (224, 224) and va.mode == "RGB"
            assert np.array_equal(_arr(va), _arr(vb))
    views = [v for item in pharmacy.items for v in item.teach_views + item.test_views]
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            assert np.abs(_arr(views[i]) - _arr(views[j])).mean() > 2.0
    other_seed = pharmacy_scenario(seed=4, n_teach=1, n_test=1)
    assert not np.array_equal(_arr(other_seed.items[0].teach_views[0]), _arr(pharmacy.items[0].teach_views[0]))


def test_render_is_fast():
    import time

    start = time.perf_counter()
    for i in range(20):
        render_view(BOTTLES[i % len(BOTTLES)], i)
    assert (time.perf_counter() - start) / 20 < 0.05  # a few ms normally; loose bound for a shared CPU


def test_tasks_are_seeded_and_cover_items(pharmacy):
    a = pharmacy.tasks("teach", 30, seed=1)
    b = pharmacy.tasks("teach", 30, seed=1)
    c = pharmacy.tasks("teach", 30, seed=2)
    assert [t.id for t in a] == [t.id for t in b]
    assert [t.id for t in a] != [t.id for t in c]
    assert {t.item.id for t in a[: len(BOTTLES)]} == {b.id for b in BOTTLES}  # round-robin over items
    for t in a:
        assert t.reference == t.item.facts[t.intent]
        assert t.question == precise_question(t.intent)
        assert t.reference not in t.distractors and t.distractors
        assert t.split == "teach" and any(t.view is v for v in t.item.teach_views)
    test = pharmacy.tasks("test")
    assert len(test) == len(BOTTLES) * 2 * 3
    assert all(any(t.view is v for v in t.item.test_views) for t in test)
    assert {t.intent for t in pharmacy.tasks("test", 10, intents=["dose"])} == {"dose"}
    with pytest.raises(InvalidInput):
        pharmacy.tasks("train", 3)  # type: ignore[arg-type]


def test_reference_game_boards():
    scenario = reference_game_scenario(seed=5, n_teach=4, n_test=2)
    again = reference_game_scenario(seed=5, n_teach=4, n_test=2)
    assert len(scenario.games("teach")) == 4 and len(scenario.games("test")) == 2
    for game, same in zip(scenario.teach_games, again.teach_games, strict=True):
        assert 6 <= len(game.figures) <= 10 and 2 <= len(game.targets) <= 3
        assert len(set(game.targets)) == len(game.targets)
        assert [f.slot for f in game.figures] == list(range(1, len(game.figures) + 1))
        assert len({f.description for f in game.figures}) == len(game.figures)  # descriptions are unique
        assert np.array_equal(_arr(game.board), _arr(same.board))
        assert game.targets == same.targets
        assert all(f.crop.size == (96, 96) for f in game.figures)
    assert scenario.teach_games[0].targets != scenario.test_games[0].targets or not np.array_equal(
        _arr(scenario.teach_games[0].board), _arr(scenario.test_games[0].board))


def test_describe_and_parse_slot():
    a = {"kind": "tower", "piece": "triangles", "parts": "3", "fill": "striped", "orientation": "tilted left"}
    assert describe(a) == "the striped tower of three triangles, tilted left"
    assert describe(a, ["kind"]) == "the tower"
    assert describe(a, ["piece", "parts"]) == "the figure of three triangles"
    assert parse_slot("I pick number 4.", 8) == 4
    assert parse_slot("It is figure seven", 8) == 7
    assert parse_slot("figure 12, no wait, 3", 8) == 3
    assert parse_slot("no idea", 8) is None
    game = make_game(1)
    with pytest.raises(InvalidInput):
        game.figure(0)


def test_load_scenario_by_name(tmp_path):
    from PIL import Image

    from ilearn.evaluation.scenarios import load_scenario

    assert load_scenario("pharmacy", n_teach=1, n_test=1).name == "pharmacy"
    assert len(load_scenario("reference-game", n_teach=1, n_test=0).teach_games) == 1
    (tmp_path / "cup").mkdir()
    Image.new("RGB", (10, 10)).save(tmp_path / "cup" / "a.png")
    assert load_scenario("objects", directory=tmp_path).items[0].name == "cup"
    with pytest.raises(InvalidInput, match="unknown scenario"):
        load_scenario("zoo")


def test_view_style_presets():
    from ilearn.data.bottles import VIEW_STYLES

    easy = pharmacy_scenario(seed=0, n_teach=1, n_test=1, views="easy")
    hard = pharmacy_scenario(seed=0, n_teach=1, n_test=1, views=VIEW_STYLES["hard"])
    assert not np.array_equal(_arr(easy.items[0].teach_views[0]), _arr(hard.items[0].teach_views[0]))
    with pytest.raises(InvalidInput, match="view style"):
        pharmacy_scenario(views="blurry")
