"""Two `ilearn serve` workers (each its own home folder) on one PostgreSQL store, over HTTP: one set of API keys
for the fleet, a correction taught through one worker reused through the other, scopes and forgetting everywhere.
Skipped only without a PostgreSQL server, never in CI (`tests/postgres_helpers.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_helpers import b64, tiny_config

from ilearn.cli import main
from ilearn.runtime import build_runtime
from ilearn.serve import create_app
from postgres_helpers import fresh_schema
from test_retrieval_loop import bottle

QUESTION = "What is this medicine called?"


@pytest.fixture
def url():
    yield from fresh_schema()


def worker(url: str, home: Path) -> TestClient:
    return TestClient(create_app(build_runtime(tiny_config(home).override(store=url))))


def create_key(url: str, home: Path, capsys, *options: str) -> str:
    assert main(["keys", "create", "--home", str(home), "--store", url, *options]) == 0
    return next(line.split()[-1] for line in capsys.readouterr().out.splitlines() if "ilk_" in line)


def test_a_fleet_shares_its_keys_and_what_each_worker_was_taught(url, tmp_path, capsys) -> None:
    robot = create_key(url, tmp_path / "cli", capsys, "--robot", "r1")  # made once, by any process
    other = create_key(url, tmp_path / "cli", capsys, "--robot", "r2")
    admin = create_key(url, tmp_path / "cli", capsys, "--robot", "site", "--role", "admin")
    assert not (tmp_path / "cli" / "keys.db").exists()  # the keys live in the store's schema
    auth = {name: {"Authorization": f"Bearer {key}"} for name, key in
            (("robot", robot), ("other", other), ("admin", admin))}
    with worker(url, tmp_path / "w1") as one, worker(url, tmp_path / "w2") as two:
        asked = one.post("/v1/turns", headers=auth["robot"],
                         json={"user": "ana", "text": QUESTION, "image_base64": b64(bottle())}).json()
        fixed = one.post("/v1/turns", headers=auth["robot"],
                         json={"user": "ana", "text": "No, that's ibuprofen.", "session_id": asked["session_id"]})
        assert fixed.json()["feedback"]["correction"] == "ibuprofen"
        assert one.post(f"/v1/sessions/{asked['session_id']}/close", headers=auth["robot"]).status_code == 200

        again = two.post("/v1/turns", headers=auth["robot"],
                         json={"user": "ana", "text": QUESTION, "image_base64": b64(bottle(shift=3, light=10))})
        reply = again.json()
        assert again.status_code == 200 and reply["kind"] == "answer" and reply["text"].lower() == "ibuprofen"
        assert reply["references"] and reply["references"][0]["answer"] == "ibuprofen"
        assert reply["source"] == "memory"  # given outright, from the event the other worker stored
        session = f"/v1/sessions/{asked['session_id']}"
        assert two.get(session, headers=auth["robot"]).status_code == 200  # the session, from the other worker
        assert two.get(session, headers=auth["other"]).status_code == 404  # never another robot's
        assert two.get("/v1/events", headers=auth["other"]).json()["events"] == []

        assert two.delete("/v1/robots/r1/users/ana", headers=auth["admin"]).status_code == 200
        after = one.post("/v1/turns", headers=auth["robot"],
                         json={"user": "ana", "text": QUESTION, "image_base64": b64(bottle(shift=3, light=10))})
        assert after.json()["text"].lower() != "ibuprofen" and not after.json()["references"]
        assert after.json()["source"] == "model"  # forgotten: nothing in memory to answer or guess from
        assert one.get(session, headers=auth["robot"]).status_code == 404

        key_id = robot.split("_")[1]
        assert main(["keys", "revoke", key_id, "--home", str(tmp_path / "cli"), "--store", url]) == 0
        for client in (one, two):  # revoked once, refused by every worker
            assert client.get("/v1/events", headers=auth["robot"]).status_code == 401
