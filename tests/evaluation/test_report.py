"""Report folder: exact files, required keys, table; RoundCache round-trip and resume safety."""

from __future__ import annotations

import json

import pytest

from ilearn.errors import InvalidInput
from ilearn.evaluation.report import ROUND_KEYS, SCHEMA_VERSION, RoundCache, format_table, write_report


def _result(rounds):
    return {"scenario": "pharmacy", "model": "tiny", "seed": 7, "rounds": rounds, "settings": {"quick": True}}


PHARMACY_ROUNDS = [
    {"name": "R1", "method": "base", "retrieval": False, "n_interactions": 40, "accuracy": 0.1,
     "task_completion": 0.2, "turns_per_task": 3.5, "clarification_rate": 0.6, "rouge1_f1": 0.3,
     "general_accuracy": 0.8, "latency_ms_p50": 120.0, "prompt_tokens_mean": 210.0, "bertscore_f1": 0.5},
    {"name": "R2", "method": "base", "retrieval": True, "n_interactions": 40, "accuracy": 0.9},
    {"name": "R3", "method": "sft", "retrieval": False, "n_interactions": 40, "accuracy": 0.85,
     "general_accuracy": float("nan")},
    {"name": "R3+retrieval", "method": "sft", "retrieval": True, "n_interactions": 40, "accuracy": 0.95},
]


def test_write_report_files_and_keys(tmp_path):
    paths = write_report(_result(PHARMACY_ROUNDS), tmp_path / "rep")
    files = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert files == ["learning_curves.png", "metrics.png", "report.json", "report.md"]
    assert set(paths) == set(files)
    for png in ("learning_curves.png", "metrics.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["schema_version"] == SCHEMA_VERSION
    assert (report["scenario"], report["model"], report["seed"]) == ("pharmacy", "tiny", 7)
    assert report["settings"] == {"quick": True} and report["created"]
    assert [r["name"] for r in report["rounds"]] == ["R1", "R2", "R3", "R3+retrieval"]
    for r in report["rounds"]:
        assert set(ROUND_KEYS) <= set(r)
    r2 = report["rounds"][1]
    assert r2["retrieval"] is True and r2["task_completion"] is None and r2["rouge1_f1"] is None
    assert report["rounds"][2]["general_accuracy"] is None  # NaN becomes null
    assert report["rounds"][0]["bertscore_f1"] == 0.5
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| R3+retrieval | sft | yes | 40 | 95.0 |" in md
    assert "bertscore_f1" in md and "learning_curves.png" in md


def test_reference_game_report_lines_per_method(tmp_path):
    rounds = [{"name": f"round{i}", "method": m, "retrieval": False, "n_interactions": 10,
               "task_completion": 0.3 + 0.1 * i} for m in ("sft", "kto") for i in range(3)]
    write_report({**_result(rounds), "scenario": "reference-game"}, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["rounds"]) == 6 and report["scenario"] == "reference-game"
    md = (tmp_path / "report.md").read_text()
    assert "| round | sft | kto |" in md and "| round2 | 50.0 | 50.0 |" in md  # rounds x methods table
    cache = RoundCache(tmp_path)
    for r in rounds:
        cache.save(r, key=f"{r['method']}-{r['name']}")
    assert cache.load("kto-round1")["method"] == "kto" and len(cache.load_all()) == 6


def test_report_errors(tmp_path):
    with pytest.raises(InvalidInput, match="lacks"):
        write_report({"scenario": "x", "rounds": []}, tmp_path)
    with pytest.raises(InvalidInput, match="unique"):
        write_report(_result([{"name": "R1"}, {"name": "R1"}]), tmp_path)
    write_report(_result([{"name": "round1", "method": "sft"}, {"name": "round1", "method": "kto"}]), tmp_path)
    with pytest.raises(InvalidInput, match="name"):
        write_report(_result([{"method": "sft"}]), tmp_path)


def test_format_table():
    table = format_table(PHARMACY_ROUNDS[:2])
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["round", "method", "retrieval", "n"]
    assert lines[2].split()[:5] == ["R1", "base", "no", "40", "10.0"]
    assert "-" in lines[3].split()  # missing metrics shown as "-"
    assert format_table(PHARMACY_ROUNDS[2:3]).splitlines()[2].split()[9] == "-"  # NaN too


def test_round_cache_round_trip(tmp_path):
    cache = RoundCache(tmp_path, fingerprint={"seed": 1, "rounds": 3})
    assert not cache.has("R1") and cache.load("R1") is None
    cache.save(PHARMACY_ROUNDS[0])
    cache.save(PHARMACY_ROUNDS[3])
    again = RoundCache(tmp_path, fingerprint={"seed": 1, "rounds": 3})
    assert again.has("R1") and again.has("R3+retrieval")
    loaded = again.load("R1")
    assert loaded["accuracy"] == 0.1 and loaded["bertscore_f1"] == 0.5 and set(ROUND_KEYS) <= set(loaded)
    assert [r["name"] for r in again.load_all(["R3+retrieval", "R2", "R1"])] == ["R3+retrieval", "R1"]
    assert [r["name"] for r in again.load_all()] == ["R1", "R3+retrieval"]
    assert sorted(p.name for p in (tmp_path / "rounds").iterdir()) == ["R1.json", "R3+retrieval.json", "_run.json"]
    with pytest.raises(InvalidInput, match="other settings"):
        RoundCache(tmp_path, fingerprint={"seed": 2, "rounds": 3})
    with pytest.raises(InvalidInput):
        cache.save({"name": "../evil"})


def test_report_json_has_wilson_intervals_and_v1_loads(tmp_path):
    from ilearn.evaluation.metrics import wilson_interval
    from ilearn.evaluation.report import load_report

    rounds = [{**PHARMACY_ROUNDS[1], "accuracy_taught": 1.0, "n_taught_interactions": 14, "general_accuracy": 0.9}]
    result = {**_result(rounds), "settings": {"sizes": {"general": 100}},
              "baseline": {"name": "frozen 1-NN", "accuracy": 0.5, "n": 24}}
    write_report(result, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    r2 = report["rounds"][0]
    assert r2["accuracy_ci"] == pytest.approx(list(wilson_interval(0.9, 40)), abs=1e-6)
    assert r2["accuracy_taught_ci"] == pytest.approx(list(wilson_interval(1.0, 14)), abs=1e-6)
    assert r2["n_general"] == 100 and r2["general_accuracy_ci"] == pytest.approx(list(wilson_interval(0.9, 100)),
                                                                                abs=1e-6)
    assert r2["task_completion_ci"] is None  # no rate, no interval
    assert report["baseline"]["accuracy_ci"] == pytest.approx(list(wilson_interval(0.5, 24)), abs=1e-6)
    md = (tmp_path / "report.md").read_text()
    assert "What a user would pick instead: frozen 1-NN: 50.0% [31.4, 68.6] of 24" in md
    assert "| 90.0 | [76.9, 96.0] | 100.0 | [78.5, 100.0] | 14 |" in md  # taught facts beside accuracy
    # a version 1 report (no intervals, no taught keys) still loads, upgraded
    old = {"schema_version": 1, "scenario": "pharmacy", "model": "tiny", "seed": 0, "created": "2025-01-01",
           "rounds": [{k: v for k, v in PHARMACY_ROUNDS[0].items()}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = load_report(tmp_path / "old.json")
    assert loaded["schema_version"] == SCHEMA_VERSION == 2
    assert loaded["rounds"][0]["accuracy_ci"] == pytest.approx(list(wilson_interval(0.1, 40)), abs=1e-6)
    assert loaded["rounds"][0]["accuracy_taught"] is None and loaded["rounds"][0]["accuracy_taught_ci"] is None
    (tmp_path / "new.json").write_text(json.dumps({**old, "schema_version": 99}))
    with pytest.raises(InvalidInput):
        load_report(tmp_path / "new.json")


def test_plot_draws_one_bar_with_error_bar_per_round_and_method(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ilearn.evaluation import report as report_mod

    rounds = [dict(PHARMACY_ROUNDS[0]), *[dict(r) for r in PHARMACY_ROUNDS[1:]],
              {"name": "R3 (vision trained)", "method": "sft", "retrieval": False, "n_interactions": 40,
               "accuracy": 0.7}]
    for r in rounds:
        r.update(accuracy_taught=0.5 if r["name"] != "R1" else None, n_taught_interactions=20)
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figures to inspect them
    write_report(_result(rounds), tmp_path)
    accuracy_fig = figures[0]
    titles = [ax.get_title() for ax in accuracy_fig.axes]
    assert titles == ["accuracy on taught facts %", "accuracy (all held-out) %"]
    ax = accuracy_fig.axes[1]  # overall accuracy: every round has a value
    bars = [p for p in ax.patches if p.get_gid()]
    assert sorted(b.get_gid() for b in bars) == sorted([
        "R1|base", "R2|base + retrieval", "R3|sft", "R3+retrieval|sft + retrieval",
        "R3 (vision trained)|sft (vision trained)"])
    assert sorted(round(b.get_height(), 6) for b in bars) == sorted([10.0, 90.0, 85.0, 95.0, 70.0])
    # the ablation is a bar in R3's group, not a fourth round; R3 and R3+retrieval side by side, not on top
    assert [t.get_text() for t in ax.get_xticklabels()] == ["R1", "R2", "R3"]
    r3 = {b.get_gid().split("|")[0]: b for b in bars}
    assert len({round(b.get_x(), 6) for b in bars}) == 5  # no two bars at the same place
    assert r3["R3"].get_x() + r3["R3"].get_width() <= r3["R3+retrieval"].get_x() + 1e-9
    # one error bar (vertical line collection) per bar, spanning the Wilson interval in percent
    segments = [seg for c in ax.collections for seg in c.get_segments()]
    assert len(segments) == 5
    lows = sorted(round(min(s[:, 1]), 3) for s in segments)
    assert lows[0] == pytest.approx(100 * report_mod.wilson_interval(0.1, 40)[0], abs=1e-3)
    # the other figure draws other numbers: no panel repeats accuracy
    assert all("accuracy (all" not in ax.get_title() for ax in figures[1].axes)
    monkeypatch.undo()
    for fig in figures:
        plt.close(fig)


def test_round_cache_saves_rounds_as_the_report_will_show_them(tmp_path):
    from ilearn.evaluation.report import build_report

    settings = {"sizes": {"general": 50}}
    cache = RoundCache(tmp_path, fingerprint=settings)
    cache.save({"name": "R1", "n_interactions": 24, "accuracy": 0.5, "general_accuracy": 0.9})
    saved = cache.load("R1")
    assert saved["n_general"] == 50 and saved["general_accuracy_ci"] is not None
    report = build_report({**_result([saved]), "settings": settings})
    assert report["rounds"][0] == saved  # a resumed run reports the saved round unchanged


def test_report_md_says_where_the_first_answers_came_from(tmp_path):
    rounds = [dict(r) for r in PHARMACY_ROUNDS]
    rounds[1]["first_answer_sources"] = {"memory": {"n": 10, "right": 9}, "memory-guess": {"n": 4, "right": 3},
                                         "model": {"n": 6, "right": 0}}
    rounds[0]["first_answer_sources"] = {"model": {"n": 20, "right": 1}}
    write_report(_result(rounds), tmp_path / "rep")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Where the first answers came from" in md
    assert "| R1 | 20 (1 right) | 0 | 0 |" in md
    assert "| R2 | 6 (0 right) | 10 (9 right) | 4 (3 right) |" in md
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["rounds"][1]["first_answer_sources"]["memory-guess"] == {"n": 4, "right": 3}
    write_report(_result(PHARMACY_ROUNDS), tmp_path / "old")  # rounds without the counts: no such section
    assert "first answers came from" not in (tmp_path / "old" / "report.md").read_text()


def _scored(rounds_outcomes, taught):
    """Fact-protocol rounds with `outcomes` (item, intent, right) in one order and what R1 / R2 taught."""
    rounds = []
    for name, right in rounds_outcomes.items():
        items = [("a", "name"), ("b", "name"), ("c", "name"), ("d", "use")]
        rounds.append({"name": name, "method": "sft" if name.startswith("R3") else "base",
                       "retrieval": name == "R2" or name.endswith("+retrieval"), "n_interactions": 4,
                       "outcomes": [[i, f, r] for (i, f), r in zip(items, right, strict=True)],
                       "taught": taught.get(name, [])})
    return rounds


def test_together_compares_memory_and_tuned_model_with_each_part_on_its_facts():
    from ilearn.evaluation.report import together, together_lines

    taught = {"R1": [["a", "name"], ["b", "name"]], "R2": [["c", "name"]]}
    rounds = _scored({"R1": [0, 0, 0, 0], "R2": [1, 1, 0, 1], "R3": [1, 0, 1, 0],
                      "R3+retrieval": [1, 1, 0, 0]}, taught)
    rows = {t["part"]: t for t in together(rounds)}
    # against R3 on a, b, c (R1 and R2 taught them): R3 right on a, c; together on a, b: 2 and 2, lost c, won b
    assert rows["R3"] == {"combined": "R3+retrieval", "part": "R3", "n": 3, "part_right": 2, "together_right": 2,
                          "lost": 1, "won": 1,
                          "holds": True}
    # against R2 on a, b only (what R1 taught): R2 right on both, together too; d (never taught) counts nowhere
    assert rows["R2"] == {"combined": "R3+retrieval", "part": "R2", "n": 2, "part_right": 2, "together_right": 2,
                          "lost": 0, "won": 0,
                          "holds": True}
    worse = _scored({"R1": [0, 0, 0, 0], "R2": [1, 1, 0, 1], "R3": [1, 0, 1, 0],
                     "R3+retrieval": [1, 0, 0, 1]}, taught)
    lines = together_lines(worse)
    assert lines[0].endswith("1 against 2 of 3 right (lost 1, won 0): BELOW R3")
    assert lines[1].endswith("1 against 2 of 2 right (lost 1, won 0): BELOW R2")
    assert together(PHARMACY_ROUNDS) == []  # rounds without outcomes: nothing to compare


def test_together_checks_the_vision_trained_model_with_retrieval_too():
    """`learn` may serve either trained version with the memory: each "+retrieval" round against its own part."""
    from ilearn.evaluation.report import together_lines

    taught = {"R1": [["a", "name"], ["b", "name"]], "R2": [["c", "name"]]}
    rounds = _scored({"R1": [0, 0, 0, 0], "R2": [1, 1, 0, 1], "R3": [1, 0, 1, 0], "R3+retrieval": [1, 1, 1, 0],
                      "R3 (vision trained)": [1, 1, 1, 0], "R3 (vision trained)+retrieval": [1, 1, 0, 0]}, taught)
    lines = together_lines(rounds)
    assert len(lines) == 4 and lines[0].startswith("R3+retrieval against R3 alone")
    assert lines[2] == ("R3 (vision trained)+retrieval against R3 (vision trained) alone on the facts taught before "
                        "R3 (vision trained): 2 against 3 of 3 right (lost 1, won 0): BELOW R3 (vision trained)")
    assert lines[3].startswith("R3 (vision trained)+retrieval against R2 alone") and lines[3].endswith("holds")


def test_report_md_says_whether_memory_and_tuned_model_together_hold(tmp_path):
    taught = {"R1": [["a", "name"], ["b", "name"]], "R2": [["c", "name"]]}
    rounds = _scored({"R1": [0, 0, 0, 0], "R2": [1, 1, 0, 1], "R3": [1, 0, 1, 0],
                      "R3+retrieval": [1, 1, 1, 0]}, taught)
    write_report(_result(rounds), tmp_path / "rep")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Memory and tuned model together" in md
    assert "- R3+retrieval against R3 alone on the facts taught before R3: 3 against 2 of 3 right (lost 0, won 1): " \
           "holds" in md
    write_report(_result(PHARMACY_ROUNDS), tmp_path / "old")
    assert "together" not in (tmp_path / "old" / "report.md").read_text()


def test_report_says_what_each_tuned_version_chose_about_guesses(tmp_path):
    from ilearn.evaluation.report import guess_lines

    taught = {"R1": [["a", "name"], ["b", "name"]], "R2": [["c", "name"]]}
    rounds = _scored({"R1": [0, 0, 0, 0], "R2": [1, 1, 0, 1], "R3": [1, 0, 1, 0], "R3+retrieval": [1, 1, 1, 0],
                      "R3 (vision trained)": [1, 1, 1, 0], "R3 (vision trained)+retrieval": [1, 1, 1, 0]}, taught)
    off = {"allow": False, "n_heldout": 9, "cases": 3, "model_right": 2, "guess_right": 1, "right": 4}
    unseen = {"allow": True, "n_heldout": 9, "cases": 0, "model_right": 0, "guess_right": 0}
    for r in rounds[2:]:  # the tuned rounds record their version's choice; only those with retrieval are shown
        r["guesses"] = off if "vision" in r["name"] else unseen
    assert guess_lines(rounds) == [
        "R3+retrieval: no guess would overrule it on 9 held-out events: guesses on",  # chosen before "right" was kept
        "R3 (vision trained)+retrieval: right on 4 of 9 held-out events; a guess would overrule it on 3 of 9 held-out "
        "events, right 1 times against its 2: guesses off"]
    write_report(_result(rounds), tmp_path / "rep")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "- R3 (vision trained)+retrieval: right on 4 of 9 held-out events; a guess would overrule it on 3" in md
    assert guess_lines(PHARMACY_ROUNDS) == []
