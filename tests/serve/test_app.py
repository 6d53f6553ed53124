"""The app itself: nothing built at import, the server-wide body limit, graceful shutdown, the CLI commands."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from serve_helpers import live_server

from ilearn.cli import main
from ilearn.config import Config
from ilearn.models.stub import StubVLM
from ilearn.runtime import build_runtime, open_store
from ilearn.serve import create_app
from ilearn.serve.settings import ServeSettings


def stub_config(home) -> Config:
    return Config(home=str(home)).override(model={"backend": "stub"})


def test_importing_the_package_builds_nothing_and_needs_no_fastapi():
    code = "import sys, ilearn.serve, ilearn.serve.cli; print('fastapi' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_bodies_over_the_server_limit_are_refused_before_they_are_read(tmp_path):
    app = create_app(build_runtime(stub_config(tmp_path)), ServeSettings(max_body_bytes=2_000))
    _, token = app.state.service.keys.create("r1")
    auth = {"Authorization": f"Bearer {token}"}
    with live_server(app) as (_, url):
        r = httpx.post(f"{url}/v1/turns", headers=auth, json={"user": "ana", "text": "x" * 5_000})
        assert r.status_code == 413 and "server's limit" in r.json()["error"]["message"]

        def chunks():  # no Content-Length: sent chunked, counted as it arrives
            yield b'{"user": "ana", "text": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}'

        r = httpx.post(f"{url}/v1/turns", headers={**auth, "Content-Type": "application/json"}, content=chunks())
        assert r.status_code == 413
        r = httpx.post(f"{url}/v1/turns", headers=auth, json={"user": "ana", "text": "hello?"})
        assert r.status_code == 200, r.text


def test_a_store_that_cannot_serve_now_is_a_503_to_retry(tmp_path, caplog):
    """A store that is locked too long or lost its database connection: 503 with Retry-After (a client or a load
    balancer tries again, or another worker), the reason in the server's log, none in the reply."""
    from ilearn.memory.sqlite import StoreUnavailable

    app = create_app(build_runtime(stub_config(tmp_path)))
    _, token = app.state.service.keys.create("r1")
    auth = {"Authorization": f"Bearer {token}"}
    assistant = app.state.service.assistant

    def busy(*args, **kwargs):
        raise StoreUnavailable("PostgreSQL cannot serve the store now: canceling statement due to lock timeout")

    with live_server(app) as (_, url):
        real, assistant.respond = assistant.respond, busy
        r = httpx.post(f"{url}/v1/turns", headers=auth, json={"user": "ana", "text": "hello?"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"] == "unavailable" and "try again" in r.json()["error"]["message"]
        assert "lock timeout" not in r.text and "lock timeout" in caplog.text
        assistant.respond = real
        assert httpx.post(f"{url}/v1/turns", headers=auth, json={"user": "ana", "text": "hello?"}).status_code == 200


def test_shutdown_lets_an_open_turn_finish_and_keeps_it(tmp_path):
    entered, release = threading.Event(), threading.Event()

    def slow(messages):
        entered.set()
        release.wait(60)
        return "aspirin"

    config = stub_config(tmp_path)
    app = create_app(build_runtime(config, vlm=StubVLM(slow)))
    _, token = app.state.service.keys.create("r1")
    result = {}
    with live_server(app) as (server, url):
        def send():
            result["response"] = httpx.post(f"{url}/v1/turns", headers={"Authorization": f"Bearer {token}"},
                                            json={"user": "ana", "text": "What is this called?"}, timeout=60)

        sender = threading.Thread(target=send)
        sender.start()
        assert entered.wait(60)
        server.should_exit = True  # what SIGTERM does: stop accepting, let open requests finish
        release.set()
        sender.join(60)
    response = result["response"]
    assert response.status_code == 200 and response.json()["text"] == "aspirin"
    store = open_store(config, create=False)  # the app closed its store on shutdown; what it wrote is there
    try:
        session = store.get_session(response.json()["session_id"])
        assert [t.text for t in session.turns] == ["What is this called?", "aspirin"]
    finally:
        store.close()


def test_keys_commands_create_list_and_revoke(tmp_path, capsys):
    home = ["--home", str(tmp_path)]
    assert main(["keys", "create", *home, "--robot", "r1", "--name", "kitchen", "--rate", "30"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("ilk_")
    assert main(["keys", "list", *home]) == 0
    listed = capsys.readouterr().out
    key_id = token.split("_")[1]
    assert key_id in listed and '"rate_per_minute": 30' in listed and token.split("_", 2)[2] not in listed
    assert main(["keys", "revoke", *home, key_id]) == 0
    capsys.readouterr()
    assert main(["keys", "list", *home]) == 0 and capsys.readouterr().out == ""
    assert main(["keys", "revoke", *home, key_id]) == 2
    assert main(["keys", "create", *home, "--robot", "a:b"]) == 2


def test_serve_refuses_several_workers_on_sqlite(tmp_path, capsys):
    assert main(["serve", "--home", str(tmp_path), "--model", "stub", "--workers", "2"]) == 2
    assert "one process" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(*options: str) -> tuple[subprocess.Popen, str, str]:
    """`ilearn serve` started with `options` on a free port, once ready: (process, the admin key it made, URL)."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "ilearn.cli", "serve", *options, "--port", str(port)],
                               stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    while not any(line.startswith("ilk_") for line in lines):
        line = process.stderr.readline()
        if not line:
            process.kill()
            pytest.fail("ilearn serve exited: " + "".join(lines))
        lines.append(line.strip())
    token = next(line for line in lines if line.startswith("ilk_"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return process, token, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("ilearn serve did not become ready")
        time.sleep(0.2)


def test_ilearn_serve_end_to_end(tmp_path):
    """`ilearn serve` on the tiny model: the first start makes an admin key, a turn is answered, SIGTERM stops it."""
    process, token, url = _serve("--home", str(tmp_path), "--model", "tiny", "--set", "model.max_new_tokens=4")
    try:
        r = httpx.post(f"{url}/v1/turns", headers={"Authorization": f"Bearer {token}"}, timeout=60,
                       json={"user": "ana", "text": "What is this called?"})
        assert r.status_code == 200 and r.json()["model_version"] == "base"
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so that the exit status tells why it stopped
        assert process.wait(60) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (tmp_path / "keys.db").is_file() and (tmp_path / "ilearn.db").is_file()


def test_ilearn_serve_runs_several_workers_on_a_postgresql_store(tmp_path):
    """`--workers 2` on PostgreSQL: two processes on one port, each with a home folder of its own, one set of keys
    (in the store's schema); both answer turns of one conversation, stored once."""
    from postgres_helpers import fresh_schema

    schema = fresh_schema()
    store = next(schema)
    process, token, url = _serve("--home", str(tmp_path), "--store", store, "--model", "tiny", "--workers", "2",
                                 "--set", "model.max_new_tokens=4")
    try:
        locks = [tmp_path / f"worker-{i}" / "ilearn.lock" for i in range(2)]
        deadline = time.monotonic() + 120
        while not all(lock.is_file() and lock.read_text().strip() for lock in locks):
            assert time.monotonic() < deadline, "both workers did not start"
            time.sleep(0.2)
        pids = {lock.read_text().strip() for lock in locks}
        assert len(pids) == 2 and str(process.pid) not in pids  # two worker processes, not the supervisor
        auth = {"Authorization": f"Bearer {token}"}
        first = httpx.post(f"{url}/v1/turns", headers=auth, timeout=60, json={"user": "ana", "text": "Hello?"}).json()
        for _ in range(5):  # new connections: the kernel hands them to either worker
            r = httpx.post(f"{url}/v1/turns", headers=auth, timeout=60,
                           json={"user": "ana", "text": "What is this called?", "session_id": first["session_id"]})
            assert r.status_code == 200, r.text
        turns = httpx.get(f"{url}/v1/sessions/{first['session_id']}", headers=auth, timeout=60).json()["turns"]
        assert len(turns) == 12
        assert httpx.get(f"{url}/readyz", timeout=60).json()["worker"] in {"worker-0", "worker-1"}
        assert not (tmp_path / "keys.db").exists() and not (tmp_path / "ilearn.db").exists()
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        next(schema, None)  # drops the schema


def test_an_app_over_an_assistant_leaves_it_open_and_is_ready_only_while_it_runs(tmp_path):
    from fastapi.testclient import TestClient

    from ilearn.assistant import Assistant
    from ilearn.memory.sqlite import open_store as open_sqlite

    assistant = Assistant(stub_config(tmp_path), StubVLM(lambda messages: "aspirin"), open_sqlite(tmp_path))
    app = create_app(assistant)
    _, token = app.state.service.keys.create("r1")
    assert TestClient(app).get("/readyz").status_code == 503  # the lifespan has not started
    with TestClient(app) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        r = client.post("/v1/turns", headers={"Authorization": f"Bearer {token}"},
                        json={"user": "ana", "text": "What is this called?"})
        assert r.status_code == 200 and r.json()["text"] == "aspirin"
    assert assistant.get_session(r.json()["session_id"]).user_id == "r1:ana"  # the caller's assistant is still open
    assistant.close()


def test_remote_image_urls_are_fetched_only_when_the_operator_allows(tmp_path, png):
    import http.server

    class Image(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            if self.path != "/bottle.png":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args):
            pass

    images = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Image)
    threading.Thread(target=images.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{images.server_address[1]}"
    app = create_app(build_runtime(stub_config(tmp_path)), ServeSettings(allow_remote_images=True))
    _, token = app.state.service.keys.create("r1")

    def ask(url):
        return client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {token}"}, json={
            "model": "ilearn", "user": "ana", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this called?"}, {"type": "image_url", "image_url": {"url": url}}]}]})

    from fastapi.testclient import TestClient

    try:
        with TestClient(app) as client:
            r = ask(f"{base}/bottle.png")
            assert r.status_code == 200, r.text
            session = app.state.service.assistant.get_session(r.json()["ilearn"]["session_id"])
            assert app.state.service.assistant.store.get_image_bytes(session.turns[0].image.sha256) == png
            r = ask(f"{base}/missing.png")
            assert r.status_code == 400 and "could not fetch" in r.json()["error"]["message"]
    finally:
        images.shutdown()
