"""Learning as a job over HTTP (admin), then promoting and rolling back the version it made."""

from __future__ import annotations

import threading
import time

import pytest

from ilearn.learning.progress import at, for_candidate
from ilearn.learning.update import LearnOutcome
from ilearn.serve.jobs import Job, LearningJobs
from ilearn.serve.service import job_out


def _wait(served, job_id: str, limit_s: float = 300.0) -> dict:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        job = served.client.get(f"/v1/learn/{job_id}", headers=served.auth("admin")).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    pytest.fail(f"learning job {job_id} did not finish in {limit_s} s")


def _teach(served, image: bytes, users: list[str], answer: str) -> None:
    for user in users:
        reply = served.turn("r1", user, "What is this medicine called?", image).json()
        r = served.client.post(f"/v1/sessions/{reply['session_id']}/feedback", headers=served.auth("r1"),
                               json={"rating": "down", "correction": answer})
        assert r.status_code == 200, r.text
        served.client.post(f"/v1/sessions/{reply['session_id']}/close", headers=served.auth("r1"))


def test_nothing_to_learn_is_an_outcome_not_an_error(served):
    r = served.client.post("/v1/learn", json={"general": False}, headers=served.auth("admin"))
    assert r.status_code == 202 and r.json()["status"] in ("queued", "running", "done")
    job = _wait(served, r.json()["id"])
    assert job["status"] == "done" and job["outcome"]["decision"] == "nothing to learn"
    assert job["outcome"]["version"] is None and job["outcome"]["reasons"]


def test_a_learning_job_trains_a_version_that_can_be_promoted_and_rolled_back(served, red, blue):
    _teach(served, red, ["ann", "bob", "cat"], "aspirin")
    _teach(served, blue, ["dan", "eli", "fox"], "ibuprofen")
    r = served.client.post("/v1/learn", json={"general": False, "promote": False}, headers=served.auth("admin"))
    job = _wait(served, r.json()["id"])
    assert job["status"] == "done", job
    assert (job["progress"], job["phase"], job["detail"]) == (1.0, "done", "done")
    outcome = job["outcome"]
    assert outcome["decision"] == "refused" and outcome["version"] and outcome["reasons"]  # promote: False
    assert outcome["train_events"] + outcome["heldout_events"] == 6
    listed = served.client.get("/v1/learn", headers=served.auth("admin")).json()["jobs"]
    assert job["id"] in [j["id"] for j in listed]
    versions = served.client.get("/v1/model-versions", headers=served.auth("r1")).json()
    assert versions["serving"] == "base" and outcome["version"] in [v["id"] for v in versions["versions"]]

    r = served.client.post(f"/v1/model-versions/{outcome['version']}/promote", headers=served.auth("admin"))
    assert r.status_code == 200 and r.json()["serving"] == outcome["version"]
    assert served.turn("r1", "gus", "What is this medicine called?", red).json()["model_version"] == outcome["version"]
    assert f'ilearn_model_version_info{{version="{outcome["version"]}"}} 1.0' in served.client.get("/metrics").text

    r = served.client.post("/v1/model-versions/rollback", headers=served.auth("admin"))
    assert r.status_code == 200 and r.json()["serving"] == "base"
    assert served.turn("r1", "gus", "What is this medicine called?", red).json()["model_version"] == "base"
    r = served.client.post("/v1/model-versions/rollback", headers=served.auth("admin"))
    assert r.status_code == 400 and "nothing to roll back" in r.json()["error"]["message"]
    r = served.client.post("/v1/model-versions/mdl_nope/promote", headers=served.auth("admin"))
    assert r.status_code == 404
    assert served.client.get("/v1/learn/job_nope", headers=served.auth("admin")).status_code == 404


def test_a_failed_job_reports_its_error():
    def broken(**kwargs):
        raise RuntimeError("disk full")

    done = []
    jobs = LearningJobs(broken, on_done=done.append)
    job = jobs.start()
    jobs.shutdown(timeout=30)
    assert job.status == "failed" and job.error == "RuntimeError: disk full" and done == [job]
    assert jobs.active() == 0


def test_a_running_job_reports_its_phase_and_fraction_done():
    reached, hold = threading.Event(), threading.Event()

    def learning(*, promote, general, progress):
        progress(at("distilling"))
        progress(for_candidate_progress(at("training", 2, 4)))
        reached.set()
        hold.wait(30)
        progress(for_candidate_progress(at("gating")))
        return LearnOutcome(None, reasons=["no sft training examples yet"])

    jobs = LearningJobs(learning)
    job = jobs.start()
    assert reached.wait(30)
    running = job_out(job)
    assert (running.status, running.phase, running.step, running.steps) == ("running", "training", 2, 4)
    assert running.progress == pytest.approx(0.45 / 2) and running.detail == "candidate 1 of 2: training step 2 of 4"
    hold.set()
    jobs.shutdown(timeout=30)
    done = job_out(job)
    assert (done.status, done.phase, done.progress, done.detail) == ("done", "done", 1.0, "done")
    queued = job_out(Job("job_x", True, True))
    assert (queued.phase, queued.progress, queued.detail) == (None, 0.0, "")


def test_a_failed_job_says_where_it_stopped():
    def learning(*, promote, general, progress):
        progress(at("gating"))
        raise RuntimeError("out of memory")

    jobs = LearningJobs(learning)
    job = jobs.start()
    jobs.shutdown(timeout=30)
    out = job_out(job)
    assert (out.status, out.phase, out.detail, out.error) == ("failed", "gating", "gating", "RuntimeError: out of memory")


def for_candidate_progress(p):
    """`p` as the first of two candidate settings reports it."""
    seen = []
    for_candidate(seen.append, 0, 2)(p)
    return seen[0]
