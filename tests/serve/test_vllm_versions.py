"""Promote, rollback, a learning job's promotion and a forget through the service when a vLLM server serves the
versions (`model.publish` "vllm-lora"), against the fake server of `fake_vllm`: a version the server refuses is a
502 with its reason, the registry and the served adapter as they were; a later good change goes through. A forget
whose replacement the server refuses serves the base model, never the forgotten version's adapter."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import ilearn.learning.select
from fake_vllm import FakeVLLM, chat_models, fake_vllm, lora_calls, published_config, version
from ilearn.learning.update import LearnOutcome
from ilearn.runtime import build_runtime
from ilearn.serve import create_app
from ilearn.types import Event


class Deployment:
    """A service over a runtime that publishes to the fake server, with an admin key and a robot key."""

    def __init__(self, client: TestClient, app) -> None:
        self.client, self.service = client, app.state.service
        self.registry = self.service.assistant.registry
        keys = self.service.keys
        self.admin = {"Authorization": f"Bearer {keys.create('site', 'admin')[1]}"}
        self.robot = {"Authorization": f"Bearer {keys.create('r1')[1]}"}

    def post(self, url: str, **kwargs):
        return self.client.post(url, headers=self.admin, **kwargs)

    def serving(self) -> str:
        return self.client.get("/v1/model-versions", headers=self.admin).json()["serving"]

    def answer(self, user: str = "ana") -> str:
        """What a turn answers: the fake server replies with the model name (adapter) the turn asked."""
        r = self.client.post("/v1/turns", json={"user": user, "text": "hello"}, headers=self.robot)
        assert r.status_code == 200, r.text
        return r.json()["text"]

    def refuse(self, version_id: str) -> None:
        FakeVLLM.refuse = {self.registry.get(version_id).path}


@pytest.fixture
def deployment(tmp_path):
    with fake_vllm() as url, TestClient(create_app(build_runtime(published_config(tmp_path, url)))) as client:
        yield Deployment(client, client.app)


def test_a_refused_promotion_is_a_502_and_changes_nothing(deployment) -> None:
    d = deployment
    v1, v2 = version(d.registry), version(d.registry)
    r = d.post(f"/v1/model-versions/{v1}/promote")
    assert r.status_code == 200 and r.json()["serving"] == v1
    first = lora_calls("load")[0]
    assert first.startswith(f"ilearn-{v1}-") and d.answer() == first

    d.refuse(v2)
    r = d.post(f"/v1/model-versions/{v2}/promote")
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["message"].startswith("the model server did not take the change, the active version is "
                                       "unchanged: vLLM refused load_lora_adapter of 'ilearn-" + v2)
    assert error["message"].endswith(f"(400): cannot load {lora_calls('load')[1]}") and error["type"] == "server_error"
    assert d.registry.active_id() == v1 and d.registry.get(v2).status.value == "candidate"
    assert d.serving() == v1 and d.service.assistant.versions.publisher.served == (v1, first)
    assert lora_calls("unload") == [] and FakeVLLM.loaded == {first}
    assert d.answer() == first and len(lora_calls("load")) == 2  # a turn does not try the refused version again

    FakeVLLM.refuse = set()
    r = d.post(f"/v1/model-versions/{v2}/promote")
    assert r.status_code == 200 and r.json()["serving"] == v2
    second = lora_calls("load")[2]
    assert second.startswith(f"ilearn-{v2}-") and d.answer() == second
    assert lora_calls("unload") == [first] and FakeVLLM.loaded == {second}
    assert f'ilearn_model_version_info{{version="{v2}"}} 1.0' in d.client.get("/metrics").text


def test_a_refused_rollback_is_a_502_and_changes_nothing(deployment) -> None:
    d = deployment
    v1, v2 = version(d.registry), version(d.registry)
    assert d.post(f"/v1/model-versions/{v1}/promote").status_code == 200
    assert d.post(f"/v1/model-versions/{v2}/promote").status_code == 200
    second = lora_calls("load")[1]

    d.refuse(v1)
    r = d.post("/v1/model-versions/rollback")
    assert r.status_code == 502 and f"vLLM refused load_lora_adapter of 'ilearn-{v1}-" in r.json()["error"]["message"]
    assert d.registry.active_id() == v2 and d.serving() == v2 and d.answer() == second
    assert FakeVLLM.loaded == {second}

    FakeVLLM.refuse = set()
    r = d.post("/v1/model-versions/rollback")  # the rollback refused before is the same rollback now
    assert r.status_code == 200 and r.json()["serving"] == v1
    again = lora_calls("load")[-1]
    assert again.startswith(f"ilearn-{v1}-") and d.answer() == again and FakeVLLM.loaded == {again}
    r = d.post("/v1/model-versions/rollback")  # to the base: its name serves, nothing to load
    assert r.status_code == 200 and r.json()["serving"] == "base" and d.answer() == "base-vlm"
    assert FakeVLLM.loaded == set()


def _wait(d: Deployment, job_id: str, limit_s: float = 60.0) -> dict:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        job = d.client.get(f"/v1/learn/{job_id}", headers=d.admin).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    pytest.fail(f"learning job {job_id} did not finish in {limit_s} s")


def test_a_learning_job_whose_promotion_is_refused_leaves_the_version_before(deployment, monkeypatch) -> None:
    d = deployment
    v1, candidate = version(d.registry), version(d.registry)
    assert d.post(f"/v1/model-versions/{v1}/promote").status_code == 200
    first = lora_calls("load")[0]

    def gate_passes(vlm, store, registry, config, *, promote, gate_vlm, general, progress, memory):
        """What `learn_best` returns when its candidate passes the gate (the openai backend cannot train)."""
        promoted = registry.promote(candidate) if promote else registry.get(candidate)
        return LearnOutcome(promoted, promoted=promote, reasons=["learned"], gate={"promote": True})

    monkeypatch.setattr(ilearn.learning.select, "learn_best", gate_passes)
    d.refuse(candidate)
    job = _wait(d, d.post("/v1/learn", json={"general": False}).json()["id"])
    assert job["status"] == "done", job
    outcome = job["outcome"]
    assert outcome["decision"] == "refused" and not outcome["promoted"] and outcome["version"] == candidate
    assert outcome["reasons"][0] == "learned"
    assert outcome["reasons"][1].startswith("not promoted: the model server refused it (vLLM refused "
                                            f"load_lora_adapter of 'ilearn-{candidate}-")
    assert d.registry.active_id() == v1 and d.registry.get(candidate).status.value == "candidate"
    assert d.serving() == v1 and d.answer() == first and FakeVLLM.loaded == {first}

    FakeVLLM.refuse = set()
    job = _wait(d, d.post("/v1/learn", json={"general": False}).json()["id"])
    assert job["outcome"]["decision"] == "promoted" and job["outcome"]["version"] == candidate
    published = lora_calls("load")[-1]
    assert d.registry.active_id() == candidate and d.serving() == candidate and d.answer() == published


def test_a_forget_whose_replacement_vllm_refuses_serves_the_base_never_the_forgotten_adapter(deployment) -> None:
    d = deployment
    taught = Event(image=None, question="what is this?", answer="zqsecret", user_id="r1:kim", robot_id="r1")
    d.service.assistant.store.add_events([taught])
    clean, tainted = version(d.registry), version(d.registry, event_ids=[taught.id])
    assert d.post(f"/v1/model-versions/{clean}/promote").status_code == 200
    assert d.post(f"/v1/model-versions/{tainted}/promote").status_code == 200
    forgotten = lora_calls("load")[1]
    assert forgotten.startswith(f"ilearn-{tainted}-") and d.answer() == forgotten

    d.refuse(clean)
    r = d.client.delete("/v1/robots/r1/users/kim", headers=d.admin)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["deleted_events"] == 1 and out["retired_versions"] == [tainted] and out["served"] == "base"
    assert out["note"].startswith(f"the model server refused version {clean} (vLLM refused load_lora_adapter")
    assert out["note"].endswith(f"{tainted}, served before, was trained on forgotten data: unloaded; the base model "
                                "serves until the server loads it")
    assert forgotten in lora_calls("unload") and forgotten not in FakeVLLM.loaded  # unloaded at once
    assert not Path(d.registry.get(tainted).path).exists()
    assert d.registry.active_id() == clean and d.registry.get(clean).status.value == "active"  # kept

    turns_before = len(chat_models())
    assert [d.answer(), d.answer("bob")] == ["base-vlm", "base-vlm"]
    assert forgotten not in chat_models()[turns_before:]
    assert d.client.get("/readyz").json()["model_version"] == "base"
    listed = d.client.get("/v1/model-versions", headers=d.admin).json()
    assert listed["serving"] == clean and listed["served"] == "base" and "refused" in listed["note"]
    assert 'ilearn_model_version_info{version="base"} 1.0' in d.client.get("/metrics").text

    FakeVLLM.refuse = set()  # vLLM takes the replacement now: served from the next turn after the retry delay
    d.service.assistant.versions.retry_s = 0.0
    replacement = d.answer()
    assert replacement.startswith(f"ilearn-{clean}-") and lora_calls("load")[-1] == replacement
    assert FakeVLLM.loaded == {replacement} and forgotten not in chat_models()[turns_before:]
    listed = d.client.get("/v1/model-versions", headers=d.admin).json()
    assert listed["served"] == clean and listed["note"] is None
