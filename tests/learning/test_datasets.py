"""Datasets from events in TRL's standard columns; JSONL and HF export round trips."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from ilearn.config import LearnConfig
from ilearn.errors import InvalidInput
from ilearn.images import load_image
from ilearn.learning.datasets import (
    build_dpo,
    build_kto,
    build_rewards,
    build_sft,
    export,
    image_path,
    load_jsonl,
    to_hf_dataset,
)
from ilearn.memory.sqlite import SQLiteStore
from ilearn.types import Event, EventStatus, ImageRef, Label


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png((10, 120, 200))
IMG = load_image(PNG)[1]


def events() -> list[Event]:
    q = "what medicine is this?"
    return [
        Event(IMG, q, "It is aspirin.", "ana", label=Label.POSITIVE, id="e_pos"),
        Event(IMG, q, "ibuprofen", "ana", rejected=["It is aspirin."], label=Label.NEGATIVE, id="e_cor"),
        Event(IMG, q, "", "ana", rejected=["It is a pear."], label=Label.NEGATIVE,
              status=EventStatus.QUARANTINED, id="e_neg"),
        Event(IMG, q, "aspirin", "ana", status=EventStatus.SUPERSEDED, id="e_old"),
        Event(None, "what is the capital of France?", "Paris", "ana", rejected=["Lyon"], label=Label.NEGATIVE,
              id="e_txt"),
    ]


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "db.sqlite")
    s.put_image(PNG, IMG)
    s.ensure_user("ana")
    yield s
    s.close()


def test_sft_rows_hold_confirmed_and_corrected_answers_only():
    rows = build_sft(events(), with_ids=True)
    assert [r["event_id"] for r in rows] == ["e_pos", "e_cor", "e_txt"]
    assert rows[1]["messages"] == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what medicine is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ibuprofen"}]},
    ]
    assert rows[1]["images"] == [f"images/{IMG.sha256}.png"]
    assert rows[2]["images"] == [] and rows[2]["messages"][0]["content"] == [
        {"type": "text", "text": "what is the capital of France?"}]


def test_dpo_kto_and_reward_rows():
    dpo = build_dpo(events(), with_ids=True)
    assert [(r["event_id"], r["chosen"][0]["content"][0]["text"], r["rejected"][0]["content"][0]["text"])
            for r in dpo] == [("e_cor", "ibuprofen", "It is aspirin."), ("e_txt", "Paris", "Lyon")]
    kto = build_kto(events(), with_ids=True)
    assert [(r["event_id"], r["completion"][0]["content"][0]["text"], r["label"]) for r in kto] == [
        ("e_pos", "It is aspirin.", True), ("e_cor", "ibuprofen", True), ("e_cor", "It is aspirin.", False),
        ("e_neg", "It is a pear.", False), ("e_txt", "Paris", True), ("e_txt", "Lyon", False)]
    rewards = build_rewards(events(), with_ids=True)
    # the model's own answers only: the user's correction was not sampled from the model
    assert [(r["event_id"], r["reward"]) for r in rewards] == [
        ("e_pos", 1.0), ("e_cor", -0.1), ("e_neg", -0.1), ("e_txt", -0.1)]
    assert LearnConfig().rewards() == {Label.POSITIVE: 1.0, Label.NEGATIVE: -0.1, Label.NEUTRAL: 0.0}  # ReSpect's


def test_rows_have_the_columns_trl_trainers_expect():
    from trl.data_utils import is_conversational

    expected = {"sft": ({"messages", "images"}, build_sft), "dpo": ({"prompt", "chosen", "rejected", "images"}, build_dpo),
                "kto": ({"prompt", "completion", "label", "images"}, build_kto),
                "rewards": ({"prompt", "completion", "reward", "images"}, build_rewards)}
    for columns, build in expected.values():
        rows = build(events())
        assert rows and all(set(r) == columns for r in rows)
        assert all(is_conversational(r) for r in rows)


def test_jsonl_export_round_trips_with_images_and_snapshot(store, tmp_path):
    out = tmp_path / "export"
    snapshot = export(events(), store, out, fmt="jsonl")
    assert snapshot["counts"] == {"sft": 3, "dpo": 2, "kto": 6, "rewards": 4}
    assert snapshot["event_ids"] == sorted(e.id for e in events())
    assert snapshot["datasets"]["dpo"]["event_ids"] == ["e_cor", "e_txt"]
    assert json.loads((out / "snapshot.json").read_text()) == snapshot
    rows = load_jsonl(out / "sft.jsonl")
    assert rows == build_sft(events(), with_ids=True)
    with Image.open(out / rows[0]["images"][0]) as img:
        assert img.size == (8, 8) and img.getpixel((0, 0)) == (10, 120, 200)


def test_hf_export_round_trips(store, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "hf"
    export(events(), store, out, fmt="hf", kinds=("sft", "dpo"))
    sft = datasets.load_from_disk(str(out / "sft"))
    assert len(sft) == 3 and sft[0]["event_id"] == "e_pos"
    assert sft[0]["images"][0].size == (8, 8)
    user = sft[1]["messages"][0]["content"]
    assert [{k: v for k, v in c.items() if v is not None} for c in user] == [
        {"type": "image"}, {"type": "text", "text": "what medicine is this?"}]
    dpo = datasets.load_from_disk(str(out / "dpo"))
    assert dpo["event_id"] == ["e_cor", "e_txt"] and len(dpo[1]["images"]) == 0


def test_to_hf_dataset_reads_image_paths(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "images" / "x.png")
    ds = to_hf_dataset([{"messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}],
                         "images": ["images/x.png"]}], tmp_path)
    assert ds[0]["images"][0].getpixel((0, 0)) == (1, 2, 3)


def test_bad_export_requests_and_missing_images(store, tmp_path):
    with pytest.raises(InvalidInput):
        export(events(), store, tmp_path / "x", fmt="csv")
    with pytest.raises(InvalidInput):
        export(events(), store, tmp_path / "x", kinds=("ppo",))
    ghost = Event(ImageRef("f" * 64), "what is this?", "a ghost", "ana", id="e_ghost")
    snapshot = export([*events(), ghost], store, tmp_path / "y", kinds=("sft",))
    assert snapshot["skipped_event_ids"] == ["e_ghost"] and "e_ghost" not in snapshot["event_ids"]
    assert snapshot["counts"]["sft"] == 3


def test_reinforce_rows_carry_the_reward_settings():
    """Regression: `learn.reward_*` were ignored for event rows (datasets.py wrote ReSpect's constants), so reinforce
    trained on 1 / -0.1 whatever the settings said."""
    from ilearn.learning.recipes import reward_of
    from ilearn.learning.update import training_rows

    learn = LearnConfig(recipe="reinforce", reward_positive=2.0, reward_negative=-0.5)
    rows = training_rows(learn, events(), image_path)
    assert [(r["event_id"], r["reward"]) for r in rows] == [
        ("e_pos", 2.0), ("e_cor", -0.5), ("e_neg", -0.5), ("e_txt", -0.5)]
    assert [reward_of(r, learn) for r in rows] == [2.0, -0.5, -0.5, -0.5]  # what the trainer weighs rows by


def test_exported_rewards_follow_the_settings(store, tmp_path):
    export(events(), store, tmp_path / "out", kinds=("rewards",), learn=LearnConfig(reward_positive=2.0))
    assert [r["reward"] for r in load_jsonl(tmp_path / "out" / "rewards.jsonl")] == [2.0, -0.1, -0.1, -0.1]
