"""`python -m ilearn.users.measure`: both reports run end to end (tiny model, model-free embedder)."""

from __future__ import annotations

import json

from ilearn.users.measure import main


def test_prompt_report(tmp_path, capsys) -> None:
    main(["prompt", "--model", "tiny", "--limit", "1", "--max-new-tokens", "2", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "prompt.json").read_text())
    styles = report["styles"]
    assert set(styles) == {"none", "tag", "instructions"} and styles["none"]["answers_as_without_profile"] == 1.0
    assert styles["none"]["same_answer_for_every_age_group"] == 1.0  # the model never sees the profile
    assert styles["none"]["prompt_tokens_mean"] < styles["tag"]["prompt_tokens_mean"] \
        < styles["instructions"]["prompt_tokens_mean"]
    assert json.loads(capsys.readouterr().out) == report


def test_concepts_report(tmp_path) -> None:
    from ilearn.users.measure import concepts

    report = concepts("stub", test_views=1, thresholds=(0.9,))
    assert report["users"] == 12 and report["thresholds"]["0.9"]["leaks"] == 0
    assert report["old_name_after_rename"] == 0 and report["named_after_delete"] == 0


def test_counterfactual_report() -> None:
    """Through the whole turn on the tiny model: users who differ only in a protected attribute get the same
    profile and the same replies, here with the profile spelt out to the model."""
    from ilearn.users.measure import COMMON, COUNTERFACTUALS, counterfactual

    report = counterfactual("tiny", prompt="instructions", limit=1, max_new_tokens=2)
    assert report["pairs"] == len(COUNTERFACTUALS) * len(COMMON) == report["same_profile"]
    assert report["consistency"] == 1.0 and report["questions"] == report["pairs"]
