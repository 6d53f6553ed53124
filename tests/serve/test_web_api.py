"""What the web page needs from the service (issue 22): the page and its files, a turn streamed as server-sent
events, references with their images, the review queue, search by text and by photo, and report folders."""

from __future__ import annotations

import io
import json
from importlib import resources

from PIL import Image

from helpers import make_png
from ilearn.images import sha256_bytes
from ilearn.types import Event, EventStatus, ImageRef

QUESTION = "What is this medicine called?"


def _events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def _stream(served, who, user, text, image=None, session_id=None):
    data = {"user": user, "text": text, **({"session_id": session_id} if session_id else {})}
    files = {"image": ("photo.png", io.BytesIO(image), "image/png")} if image is not None else None
    return served.client.post("/v1/turns/stream", headers=served.auth(who), data=data, files=files)


def test_the_page_and_its_files_are_served_from_the_package(served):
    page = served.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]  # nothing from another origin
    folder = resources.files("ilearn.serve").joinpath("web")
    names = sorted(p.name for p in folder.iterdir() if p.name != "index.html")
    assert {"app.js", "api.js", "chat.js", "operator.js", "profile.js", "markdown.js", "style.css"} <= set(names)
    for name in names:
        r = served.client.get(f"/web/{name}")
        assert r.status_code == 200 and r.content == folder.joinpath(name).read_bytes()
        assert "http://" not in r.text and "https://" not in r.text  # no CDN, no remote asset
    assert served.client.get("/web/nothing.js").status_code == 404
    assert served.client.get("/web/..%2Fapp.py").status_code in (404, 422)
    assert "/" not in served.client.get("/openapi.json").json()["paths"]  # the page is not part of the API


def test_a_streamed_turn_sends_start_words_then_the_whole_reply(served, red):
    r = _stream(served, "r1", "gil", QUESTION, red)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    assert events[0] == ("start", {})
    kinds = [e for e, _ in events]
    assert kinds[-1] == "reply" and set(kinds[1:-1]) == {"delta"}
    reply = events[-1][1]
    assert "".join(d["text"] for e, d in events if e == "delta") == reply["text"]
    assert reply["kind"] == "answer" and reply["model_version"] == "base"
    session = served.client.get(f"/v1/sessions/{reply['session_id']}", headers=served.auth("r1")).json()
    assert session["user"] == "gil" and session["turns"][1]["text"] == reply["text"]


def test_a_streamed_clarifying_question_carries_its_options(served, red):
    reply = _events(_stream(served, "r1", "hal", "What is this?", red).text)[-1][1]
    assert reply["kind"] == "clarification" and "its name" in reply["options"]
    answer = _events(_stream(served, "r1", "hal", "its name", session_id=reply["session_id"]).text)[-1][1]
    assert answer["kind"] == "answer" and answer["precise_question"] == "What is this called?"


def test_a_failing_streamed_turn_ends_with_an_error_event(served, red):
    first = served.turn("r1", "ida", QUESTION, red).json()
    served.client.post(f"/v1/sessions/{first['session_id']}/close", headers=served.auth("r1"))
    events = _events(_stream(served, "r1", "ida", "and now?", session_id=first["session_id"]).text)
    assert [e for e, _ in events] == ["start", "error"]
    assert events[1][1]["error"]["code"] == 409
    # another robot's session: the same answer as an unknown one, no data
    events = _events(_stream(served, "r2", "ida", "hello", session_id=first["session_id"]).text)
    error = events[1][1]["error"]
    assert error["code"] == 404 and error["type"] == "not_found_error"
    assert error["message"].startswith(f"unknown session {first['session_id']!r}") and "r1:" not in error["message"]
    assert _stream(served, "r1", "ida", QUESTION).status_code == 200
    assert served.client.post("/v1/turns/stream", data={"user": "ida", "text": "hi"}).status_code == 401


def test_references_name_their_image_which_the_page_can_fetch(served, blue):
    first = served.turn("r1", "jo", QUESTION, blue).json()
    served.client.post(f"/v1/sessions/{first['session_id']}/feedback", headers=served.auth("r1"),
                       json={"rating": "down", "correction": "aspirin"})
    served.client.post(f"/v1/sessions/{first['session_id']}/close", headers=served.auth("r1"))
    again = _events(_stream(served, "r1", "jo", QUESTION, make_png((40, 30, 190), shape="square")).text)[-1][1]
    assert [r["answer"] for r in again["references"]] == ["aspirin"]
    assert again["references"][0]["image_sha256"] == sha256_bytes(blue)
    image = served.client.get(f"/v1/images/{sha256_bytes(blue)}", headers=served.auth("r1"))
    assert image.status_code == 200 and image.content == blue


def _teach(served, user: str, answer: str, image: bytes, *, known: bool = True,
           question: str = "What is this called?") -> Event:
    """`user` (of robot r1) teaches `answer` for the image, straight into the memory (as a closed session would)."""
    store, memory = served.app.state.service.assistant.store, served.app.state.service.assistant.memory
    if known:
        store.ensure_user(f"r1:{user}")
    picture = Image.open(io.BytesIO(image)).convert("RGB")
    ref = store.put_image(image, ImageRef(sha256_bytes(image), *picture.size, "PNG"))
    robot = served.app.state.service.assistant.config.robot_id
    return memory.add(Event(ref, question, answer, f"r1:{user}", robot_id=robot), picture)


def test_the_review_queue_lists_a_disputed_correction_and_takes_a_decision(served):
    bottle = make_png((90, 160, 40), size=(60, 60), shape="square")
    for user in ("kai", "lea"):
        _teach(served, user, "paracetamol", bottle)
    disputed = _teach(served, "mallory", "poison", bottle, known=False)  # an id made up just now
    assert disputed.status == EventStatus.QUARANTINED
    queue = served.client.get("/v1/review", headers=served.auth("admin"))
    assert queue.status_code == 200, queue.text
    (item,) = [i for i in queue.json()["items"] if i["event"]["id"] == disputed.id]
    assert item["event"]["user"] == "mallory" and {d["answer"] for d in item["disputes"]} == {"paracetamol"}
    assert served.client.get("/v1/review", headers=served.auth("r1")).status_code == 403
    decided = served.client.post(f"/v1/review/{disputed.id}", headers=served.auth("admin"),
                                 json={"decision": "reject"})
    assert decided.status_code == 200 and decided.json()["status"] == "deleted"
    again = served.client.post(f"/v1/review/{disputed.id}", headers=served.auth("admin"), json={"decision": "accept"})
    assert again.status_code == 409
    assert disputed.id not in {i["event"]["id"] for i in
                               served.client.get("/v1/review", headers=served.auth("admin")).json()["items"]}


def test_search_by_text_and_by_photo(served):
    tube = make_png((250, 240, 20), size=(90, 40), shape="circle")
    taught = _teach(served, "max", "a pain gel", tube, question="What is this used for?")
    assert taught.status == EventStatus.ACTIVE
    r = served.client.post("/v1/events/search", headers=served.auth("admin"), data={"text": "PAIN GEL"})
    assert r.status_code == 200, r.text
    assert [h["event"]["id"] for h in r.json()["hits"]] == [taught.id] and r.json()["hits"][0]["score"] is None
    by_user = served.client.post("/v1/events/search", headers=served.auth("admin"), data={"text": "max"}).json()
    assert taught.id in {h["event"]["id"] for h in by_user["hits"]}
    # by photo: the memory's retrieval as max gets it (his private event), scored; a bystander does not see it
    photo = {"image": ("tube.png", io.BytesIO(tube), "image/png")}
    as_max = served.client.post("/v1/events/search", headers=served.auth("admin"), files=photo,
                                data={"robot": "r1", "user": "max", "text": "What is this used for?"}).json()["hits"]
    assert as_max[0]["event"]["id"] == taught.id and as_max[0]["score"] > 0.9
    photo = {"image": ("tube.png", io.BytesIO(tube), "image/png")}
    shared = served.client.post("/v1/events/search", headers=served.auth("admin"), files=photo).json()["hits"]
    assert taught.id not in {h["event"]["id"] for h in shared}
    assert served.client.post("/v1/events/search", headers=served.auth("r1"), data={"text": "x"}).status_code == 403


def test_report_folders_are_listed_and_read_and_nothing_outside_them(served, tmp_path):
    root = tmp_path / "reports"
    (root / "run-1").mkdir(parents=True)
    (root / "run-1" / "report.md").write_text("# Run 1\n\n![accuracy](learning_curves.png)\n")
    plot = make_png((10, 10, 10))
    (root / "run-1" / "learning_curves.png").write_bytes(plot)
    (root / "not-a-report").mkdir()
    (tmp_path / "secret.png").write_bytes(b"outside")
    service = served.app.state.service
    settings = service.settings
    try:
        from dataclasses import replace

        service.settings = replace(settings, reports_dir=str(root))
        admin = served.auth("admin")
        assert served.client.get("/v1/reports", headers=admin).json() == {"reports": ["run-1"]}
        report = served.client.get("/v1/reports/run-1", headers=admin).json()
        assert report["markdown"].startswith("# Run 1") and report["files"] == ["learning_curves.png"]
        assert served.client.get("/v1/reports/run-1/files/learning_curves.png", headers=admin).content == plot
        for path in ("/v1/reports/not-a-report", "/v1/reports/..", "/v1/reports/run-1/files/..%2F..%2Fsecret.png",
                     "/v1/reports/run-1/files/missing.png"):
            assert served.client.get(path, headers=admin).status_code in (404, 422), path
        assert served.client.get("/v1/reports", headers=served.auth("r1")).status_code == 403
    finally:
        service.settings = settings
    assert served.client.get("/v1/reports", headers=served.auth("admin")).json() == {"reports": []}


def test_a_key_reads_its_own_robot_and_role(served):
    robot = served.client.get("/v1/key", headers=served.auth("r1")).json()
    admin = served.client.get("/v1/key", headers=served.auth("admin")).json()
    assert (robot["robot"], robot["role"]) == ("r1", "robot") and (admin["robot"], admin["role"]) == ("site", "admin")
    assert served.keys["r1"].startswith(f"ilk_{robot['id']}_") and "secret" not in robot
    assert served.client.get("/v1/key").status_code == 401
