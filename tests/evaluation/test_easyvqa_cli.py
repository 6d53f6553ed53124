"""The easy-vqa evaluator's command line: a trained version of an assistant home is named by home and id."""

from __future__ import annotations

import pytest

from ilearn.evaluation.easyvqa import main


def test_home_and_version_go_together_and_the_home_must_exist(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--backend", "tiny", "--home", str(tmp_path)])
    assert "go together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--backend", "tiny", "--home", str(tmp_path / "nowhere"), "--version", "mdl_x"])
    assert "not an assistant home" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()  # a mistyped home is not created
