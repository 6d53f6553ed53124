"""`ilearn experiment`: the real command end to end on the tiny model (--quick), its options and errors."""

from __future__ import annotations

import argparse
import json

import pytest

from ilearn.cli_settings import overrides
from ilearn.errors import InvalidInput
from ilearn.evaluation.experiment_cli import add_experiment_parser
from ilearn.evaluation.report import ROUND_KEYS, TOP_KEYS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ilearn")
    add_experiment_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


def test_options_parse():
    args = _parser().parse_args(["experiment", "reference-game", "--report", "out", "--methods", "sft, kto",
                                 "--rounds", "2", "--users", "5", "--seed", "3", "--model", "tiny", "--threads", "1"])
    assert (args.scenario, args.report, args.methods, args.rounds, args.users, args.seed) == (
        "reference-game", "out", ["sft", "kto"], 2, 5, 3)
    assert overrides(args) == {"model.backend": "tiny", "model.threads": 1}
    assert args.quick is False and args.home is None and args.objects is None
    with pytest.raises(SystemExit):
        _parser().parse_args(["experiment", "chess", "--report", "out"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["experiment", "pharmacy"])  # --report is required


def test_objects_without_a_folder_is_refused(tmp_path):
    with pytest.raises(InvalidInput, match="--objects"):
        _run(["experiment", "objects", "--report", str(tmp_path / "r"), "--model", "tiny"])


def test_quick_pharmacy_end_to_end(tmp_path, capsys):
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"feedback": {"method": "lexical"}}))  # tiny's own judgement is random
    report_dir = tmp_path / "report"
    argv = ["experiment", "pharmacy", "--quick", "--model", "tiny", "--report", str(report_dir),
            "--config", str(config), "--no-progress"]
    assert _run(argv) == 0
    assert sorted(p.name for p in report_dir.iterdir()) == [
        "learning_curves.png", "metrics.png", "report.json", "report.md", "rounds", "work"]
    assert sorted(p.name for p in (report_dir / "rounds").iterdir()) == [
        "R1.json", "R2.json", "R3+retrieval.json", "R3-vision+retrieval.json", "R3-vision.json", "R3.json",
        "_run.json"]
    report = json.loads((report_dir / "report.json").read_text())
    assert set(TOP_KEYS) <= set(report) and report["settings"]["quick"] is True
    names = [r["name"] for r in report["rounds"]]
    assert names == ["R1", "R2", "R3", "R3+retrieval", "R3 (vision trained)", "R3 (vision trained)+retrieval"]
    for r in report["rounds"]:
        assert set(ROUND_KEYS) <= set(r)
        assert r["bertscore_f1"] is not None and r["latency_ms_p50"] > 0
    out = capsys.readouterr().out
    assert "R3+retrieval" in out and "accuracy" in out  # the table
    assert "R3+retrieval against R3 alone on the facts taught before R3: " in out  # together against each part
    assert "R3 (vision trained)+retrieval against R3 (vision trained) alone" in out
    # a rerun resumes: every round is loaded, nothing is recomputed, the numbers are the same
    assert _run(argv) == 0
    again = json.loads((report_dir / "report.json").read_text())
    assert again["rounds"] == report["rounds"]
