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
