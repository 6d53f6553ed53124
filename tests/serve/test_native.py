"""The native API on the tiny model: turns, sessions, explicit feedback, events, scopes, keys and limits."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ilearn.serve.keys import KeyLimits


def test_a_turn_with_a_base64_image_is_answered_and_stored(served, red):
    r = served.turn("r1", "ana", "What is this medicine called?", red)
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["kind"] == "answer" and reply["model_version"] == "base" and reply["text"]
    assert reply["precise_question"] == "What is this called?" and reply["options"] == []
    session = served.client.get(f"/v1/sessions/{reply['session_id']}", headers=served.auth("r1")).json()
    assert session["user"] == "ana" and session["robot"] == "r1" and not session["closed"]
    assert [(t["role"], t["kind"]) for t in session["turns"]] == [("user", "question"), ("assistant", "answer")]
    assert session["turns"][0]["image_sha256"] and session["turns"][1]["text"] == reply["text"]
    store = served.app.state.service.assistant.store
    assert store.get_session(reply["session_id"]).user_id == "r1:ana"  # namespaced by the key's robot


def test_a_multipart_upload_is_a_turn_too(served, red):
    r = served.client.post("/v1/turns/upload", headers=served.auth("r1"),
                           data={"user": "ben", "text": "What is this medicine called?"},
                           files={"image": ("pill.png", io.BytesIO(red), "image/png")})
    assert r.status_code == 200, r.text
    session = served.client.get(f"/v1/sessions/{r.json()['session_id']}", headers=served.auth("r1")).json()
    assert session["turns"][0]["image_sha256"] is not None


def test_a_clarifying_question_carries_its_options_and_the_reply_resolves_it(served, red):
    first = served.turn("r1", "cleo", "What is this?", red).json()
    assert first["kind"] == "clarification"
    assert first["options"] and any("dose" in o for o in first["options"])
    second = served.turn("r1", "cleo", "the dose", session_id=first["session_id"]).json()
    assert second["kind"] == "answer" and second["precise_question"] == "What is the dose of this?"
    assert second["session_id"] == first["session_id"]


def _event_of(served, who, session_id):
    r = served.client.post(f"/v1/sessions/{session_id}/close", headers=served.auth(who))
    assert r.status_code == 200, r.text
    events = r.json()["events"]
    assert len(events) == 1
    return events[0]


def test_explicit_correction_gives_the_same_event_as_a_spoken_one(served, red):
    spoken = served.turn("r1", "dan", "What is this medicine called?", red).json()
    said = served.turn("r1", "dan", "No, it's ibuprofen.", session_id=spoken["session_id"]).json()
    assert said["kind"] == "reaction" and said["feedback"]["correction"] == "ibuprofen"
    clicked = served.turn("r1", "eve", "What is this medicine called?", red).json()
    r = served.client.post(f"/v1/sessions/{clicked['session_id']}/feedback", headers=served.auth("r1"),
                           json={"rating": "down", "correction": "ibuprofen", "turn_id": clicked["turn_id"]})
    assert r.status_code == 200, r.text
    assert "ibuprofen" in r.json()["text"]
    a, b = _event_of(served, "r1", spoken["session_id"]), _event_of(served, "r1", clicked["session_id"])
    same = ("question", "answer", "label", "rejected", "status", "robot", "model_version")
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    assert b["answer"] == "ibuprofen" and b["label"] == "negative" and b["rejected"] == [clicked["text"]]
    assert b["user"] == "eve"
    turns = served.client.get(f"/v1/sessions/{clicked['session_id']}", headers=served.auth("r1")).json()["turns"]
    assert turns[2]["feedback"] == {"label": "negative", "confidence": 1.0, "correction": "ibuprofen",
                                    "source": "explicit"}


def test_thumbs_up_confirms_the_answer(served, blue):
    reply = served.turn("r1", "fay", "What is this medicine called?", blue).json()
    r = served.client.post(f"/v1/sessions/{reply['session_id']}/feedback", headers=served.auth("r1"),
                           json={"rating": "up"})
    assert r.status_code == 200, r.text
    event = _event_of(served, "r1", reply["session_id"])
    assert event["label"] == "positive" and event["rejected"] == []
    if reply["source"] == "memory-guess":  # the words the user saw say it is a guess; what is learnt is the answer
        assert reply["text"].startswith("I'm not sure") and reply["text"].endswith(event["answer"])
    else:
        assert event["answer"] == reply["text"]


def test_feedback_needs_an_answer_to_rate_and_a_thumbs_down_for_a_correction(served, red):
    asked = served.turn("r1", "gil", "What is this?", red).json()
    assert asked["kind"] == "clarification"
    url = f"/v1/sessions/{asked['session_id']}/feedback"
    r = served.client.post(url, headers=served.auth("r1"), json={"rating": "down"})
    assert r.status_code == 409 and "not an answer" in r.json()["error"]["message"]
    answer = served.turn("r1", "gil", "the name", session_id=asked["session_id"]).json()
    r = served.client.post(url, headers=served.auth("r1"), json={"rating": "up", "correction": "aspirin"})
    assert r.status_code == 400 and "thumbs down" in r.json()["error"]["message"]
    r = served.client.post(url, headers=served.auth("r1"), json={"rating": "down", "turn_id": asked["turn_id"]})
    assert r.status_code == 409 and answer["turn_id"] in r.json()["error"]["message"]
    served.client.post(f"/v1/sessions/{asked['session_id']}/close", headers=served.auth("r1"))
    r = served.client.post(url, headers=served.auth("r1"), json={"rating": "up"})
    assert r.status_code == 409 and "closed" in r.json()["error"]["message"]


def test_another_robots_session_is_not_found_and_its_events_not_listed(served, red):
    mine = served.turn("r1", "hal", "What is this medicine called?", red).json()
    sid = mine["session_id"]
    for method, url, body in [("get", f"/v1/sessions/{sid}", None), ("post", f"/v1/sessions/{sid}/close", None),
                              ("post", f"/v1/sessions/{sid}/feedback", {"rating": "up"})]:
        r = served.client.request(method, url, headers=served.auth("r2"), json=body)
        assert r.status_code == 404 and "hal" not in r.text, (url, r.text)
    # the same user name with r2's key is r2's own user: it cannot continue r1's session
    r = served.turn("r2", "hal", "No, it's aspirin.", session_id=sid)
    assert r.status_code == 404
    served.client.post(f"/v1/sessions/{sid}/feedback", headers=served.auth("r1"), json={"rating": "up"})
    assert served.client.post(f"/v1/sessions/{sid}/close", headers=served.auth("r1")).status_code == 200
    r2_events = served.client.get("/v1/events", headers=served.auth("r2")).json()["events"]
    assert all(e["robot"] == "r2" for e in r2_events)
    r1_events = served.client.get("/v1/events?user=hal", headers=served.auth("r1")).json()["events"]
    assert [e["session_id"] for e in r1_events] == [sid]
    assert served.client.get("/v1/events?robot=r1", headers=served.auth("r2")).status_code == 404
    everyone = served.client.get("/v1/events?robot=r1&user=hal", headers=served.auth("admin")).json()["events"]
    assert [e["id"] for e in everyone] == [e["id"] for e in r1_events]


def test_keys_missing_wrong_revoked_or_without_the_role(served):
    assert served.client.get("/v1/events").status_code == 401
    r = served.client.get("/v1/events", headers={"Authorization": "Bearer ilk_000000000000_" + "x" * 43})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "authentication_error"
    keys = served.app.state.service.keys
    row, token = keys.create("r3")
    assert served.client.get("/v1/events", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    keys.revoke(row.id)
    assert served.client.get("/v1/events", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    for method, url in [("post", "/v1/learn"), ("get", "/v1/learn"), ("post", "/v1/model-versions/rollback"),
                        ("post", "/v1/model-versions/base/promote"), ("delete", "/v1/robots/r1/users/ana")]:
        r = served.client.request(method, url, headers=served.auth("r1"))
        assert r.status_code == 403, (url, r.text)
        assert r.json()["error"]["type"] == "permission_error"


def test_limits_per_key_rate_body_and_image(served, red):
    keys = served.app.state.service.keys
    _, slow = keys.create("r1", limits=KeyLimits(rate_per_minute=2))
    auth = {"Authorization": f"Bearer {slow}"}
    assert [served.client.get("/v1/model-versions", headers=auth).status_code for _ in range(3)] == [200, 200, 429]
    r = served.client.get("/v1/model-versions", headers=auth)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    _, small = keys.create("r1", limits=KeyLimits(max_image_bytes=len(red) - 1, max_body_bytes=10_000))
    auth = {"Authorization": f"Bearer {small}"}
    r = served.client.post("/v1/turns", headers=auth, json={"user": "ivy", "text": "what?", "image_base64": served.b64(red)})
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    r = served.client.post("/v1/turns/upload", headers=auth, data={"user": "ivy", "text": "what?"},
                           files={"image": ("x.png", io.BytesIO(red), "image/png")})
    assert r.status_code == 413
    r = served.client.post("/v1/turns", headers=auth, json={"user": "ivy", "text": "x" * 20_000})
    assert r.status_code == 413


def test_bad_input_is_a_clear_4xx_and_writes_nothing(served):
    store = served.app.state.service.assistant.store
    before = len(store.list_sessions())
    cases = [({"user": "jo", "text": "hi", "image_base64": "not base64!"}, 400, "base64"),
             ({"user": "jo", "text": "hi", "image_base64": served.b64(b"not an image")}, 400, "image"),
             ({"user": "jo", "text": "hi", "image_base64": "data:text/plain,hello"}, 400, "base64"),
             ({"user": "jo", "text": ""}, 422, "text"),
             ({"user": "no spaces", "text": "hi"}, 422, "user"),
             ({"user": "jo", "text": "hi", "session_id": "ses_unknown"}, 404, "ses_unknown"),
             ({"user": "jo", "text": "hi", "extra": 1}, 422, "extra")]
    for body, status, word in cases:
        r = served.client.post("/v1/turns", json=body, headers=served.auth("r1"))
        assert r.status_code == status and word in r.json()["error"]["message"], (body, r.text)
    r = served.client.post("/v1/turns", content=b"{not json", headers={**served.auth("r1"),
                                                                       "Content-Type": "application/json"})
    assert r.status_code == 422
    assert len(store.list_sessions()) == before


def test_forget_a_user_deletes_every_trace(served, red):
    reply = served.turn("r2", "kim", "What is this medicine called?", red).json()
    served.client.post(f"/v1/sessions/{reply['session_id']}/feedback", headers=served.auth("r2"),
                       json={"rating": "down", "correction": "paracetamol"})
    served.client.post(f"/v1/sessions/{reply['session_id']}/close", headers=served.auth("r2"))
    r = served.client.delete("/v1/robots/r2/users/kim", headers=served.auth("admin"))
    assert r.status_code == 200 and r.json() == {"robot": "r2", "user": "kim", "deleted_events": 1,
                                           "retired_versions": [], "served": None, "note": None,
                                           "weights_not_deleted": {}}
    assert served.client.get(f"/v1/sessions/{reply['session_id']}", headers=served.auth("r2")).status_code == 404
    assert served.client.get("/v1/events?user=kim", headers=served.auth("r2")).json()["events"] == []
    assert served.client.delete("/v1/robots/r2/users/kim", headers=served.auth("admin")).status_code == 404


def test_health_readiness_and_metrics(served, red):
    assert served.client.get("/healthz").json() == {"status": "ok"}
    assert served.client.get("/readyz").json() == {"status": "ready", "model_version": "base"}
    served.turn("r1", "lou", "What is this medicine called?", red)
    text = served.client.get("/metrics").text
    assert 'ilearn_turns_total{api="native",kind="answer"}' in text
    assert 'ilearn_model_version_info{version="base"} 1.0' in text
    assert 'ilearn_http_requests_total{method="POST",route="/v1/turns",status="200"}' in text
    assert "ilearn_turn_seconds_bucket" in text


def _noise_png() -> bytes:
    pixels = np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_datasets_and_their_images_are_exported_in_the_callers_scope(served):
    picture = _noise_png()  # an object nobody else taught: no shared answer contradicts the correction
    reply = served.turn("r1", "mia", "What is this medicine called?", picture).json()
    served.client.post(f"/v1/sessions/{reply['session_id']}/feedback", headers=served.auth("r1"),
                       json={"rating": "down", "correction": "naproxen"})
    event = _event_of(served, "r1", reply["session_id"])
    r = served.client.get("/v1/datasets/sft?user=mia", headers=served.auth("r1"))
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert [row["event_id"] for row in rows] == [event["id"]]
    assert rows[0]["messages"][-1]["content"][0]["text"] == "naproxen"
    assert rows[0]["images"] == [f"images/{event['image_sha256']}.png"]
    dpo = served.client.get("/v1/datasets/dpo?user=mia", headers=served.auth("r1")).json()["rows"]
    assert [(row["chosen"][0]["content"][0]["text"], row["rejected"][0]["content"][0]["text"]) for row in dpo] == [
        ("naproxen", reply["text"])]
    image = served.client.get(f"/v1/images/{event['image_sha256']}", headers=served.auth("r1"))
    assert image.status_code == 200 and image.content == picture and image.headers["content-type"] == "image/png"
    assert served.client.get(f"/v1/images/{event['image_sha256']}", headers=served.auth("r2")).status_code == 404
    r2_rows = served.client.get("/v1/datasets/sft", headers=served.auth("r2")).json()["rows"]
    assert event["id"] not in [row["event_id"] for row in r2_rows]
    assert served.client.get("/v1/datasets/sql", headers=served.auth("r1")).status_code == 422
