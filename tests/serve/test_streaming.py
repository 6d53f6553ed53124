"""Token streaming through the service: the answer's words reach the client while the model is still writing
them, on `POST /v1/turns/stream` and on `/v1/chat/completions` with `stream: true`.

Each test pauses the model between two pieces until the client has seen the first one (with a time limit): a
service that sent the words only after the whole answer would leave the model waiting, and the test fails. A
stub model first (in process), then the tiny model taught one sentence, over a real uvicorn on loopback.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from serve_helpers import data_url, live_server, tiny_config

from helpers import make_png
from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.dialogue import prompts
from ilearn.dialogue.clarify import PHARMACY_FACETS, facet_settings
from ilearn.memory.sqlite import open_store
from ilearn.models.stub import StreamingStubVLM
from ilearn.runtime import build_runtime
from ilearn.serve import create_app

QUESTION = "What is this medicine called?"
PRECISE = "What is this called?"  # the pharmacy clarifier's precise question for QUESTION
WAIT_S = 20.0
"""How long the paused model waits for the client to see the first piece."""


class Pause:
    """Holds the model at one point until `seen` is set (or WAIT_S passed); `released` says which happened."""

    def __init__(self) -> None:
        self.seen = threading.Event()
        self.released: list[bool] = []

    def hold(self) -> None:
        self.released.append(self.seen.wait(WAIT_S))


def read_native(lines, pause: Pause) -> list[tuple[str, dict]]:
    """(event, data) of a streamed turn's server-sent events, `pause.seen` set at the first delta."""
    events, name = [], None
    for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line[5:])))
            if name == "delta":
                pause.seen.set()
    return events


def read_chunks(lines, pause: Pause) -> list[dict]:
    """The chat.completion.chunk events of a streamed completion, `pause.seen` set at the first content."""
    chunks = []
    for line in lines:
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            chunks.append(json.loads(line[5:]))
            if chunks[-1]["choices"][0]["delta"].get("content"):
                pause.seen.set()
    return chunks


def joined_deltas(events: list[tuple[str, dict]]) -> str:
    return "".join(d["text"] for e, d in events if e == "delta")


# ---------------------------------------------------------------------------------------------------- a stub model
@pytest.fixture
def stub(tmp_path):
    pause = Pause()
    vlm = StreamingStubVLM(responder=lambda messages: "It is aspirin for pain",
                           between=lambda i: pause.hold() if i == 2 else None)
    config = Config(home=str(tmp_path)).override(clarify={"facets": facet_settings(PHARMACY_FACETS)})
    app = create_app(Assistant(config, vlm, open_store(tmp_path)))
    key = app.state.service.keys.create("r1")[1]
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {key}"}, pause, vlm


def test_the_native_stream_sends_each_piece_while_the_model_writes_the_next(stub):
    client, auth, pause, vlm = stub
    form = {"user": "ana", "text": QUESTION}
    with client.stream("POST", "/v1/turns/stream", headers=auth, data=form,
                       files={"image": ("a.png", make_png(), "image/png")}) as r:
        events = read_native(r.iter_lines(), pause)
    assert pause.released == [True]  # the client saw "It", " is" while the model was held before " aspirin"
    assert vlm.streamed == ["It", " is", " aspirin", " for"]
    assert [e for e, _ in events] == ["start", "delta", "delta", "delta", "delta", "delta", "reply"]
    reply = events[-1][1]
    assert joined_deltas(events) == reply["text"] == "It is aspirin for pain"
    stored = client.get(f"/v1/sessions/{reply['session_id']}", headers=auth).json()["turns"][-1]
    assert (stored["id"], stored["text"]) == (reply["turn_id"], reply["text"])


def test_openai_streaming_sends_each_piece_while_the_model_writes_the_next(stub):
    client, auth, pause, _ = stub
    body = {"model": "ilearn", "user": "bo", "stream": True, "messages": [{"role": "user", "content": [
        {"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": data_url(make_png())}}]}]}
    with client.stream("POST", "/v1/chat/completions", headers=auth, json=body) as r:
        session = r.headers["x-session-id"]
        chunks = read_chunks(r.iter_lines(), pause)
    assert pause.released == [True]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    extension = chunks[-1]["ilearn"]
    assert text == "It is aspirin for pain" and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert extension["session_id"] == session and {c["id"] for c in chunks} == {f"chatcmpl-{extension['turn_id']}"}


def test_a_stream_that_cannot_start_is_a_plain_http_error(stub):
    client, auth, pause, _ = stub
    body = {"model": "ilearn", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    r = client.post("/v1/chat/completions", headers={**auth, "X-Session-Id": "ses_unknown"}, json=body)
    assert r.status_code == 404 and r.json()["error"]["code"] == 404
    assert pause.released == []


# ------------------------------------------------------------------------------------- the tiny model, over HTTP
REPLY = "it is a small red box of pills"


def teach(vlm, messages, reply: str) -> None:
    """The tiny model taught to answer `messages` with `reply` (random weights write only newlines)."""
    model = vlm.model
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    prompt, images = vlm.prompt_text(messages)
    batch = vlm._encode(prompt + reply + "<|im_end|>", images)
    for _ in range(30):
        model.train()
        for _ in range(10):
            loss = model(**batch, labels=batch["input_ids"]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        if vlm.generate(messages).text == reply:
            return


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model's service, its base model taught REPLY for QUESTION about a red photo, over uvicorn; a pause
    at the forward pass that chooses the reply's second-to-last token."""
    import io

    home = tmp_path_factory.mktemp("stream")
    config = tiny_config(home).override(model={"backend": "tiny", "max_new_tokens": 24})
    app = create_app(build_runtime(config))
    red = make_png((200, 30, 30))
    vlm = app.state.service.assistant.vlm
    messages = prompts.answer_messages(PRECISE, Image.open(io.BytesIO(red)).convert("RGB"))
    teach(vlm, messages, REPLY)
    generation = vlm.generate(messages)
    assert generation.text == REPLY  # the lesson was learnt
    state = {"pause": None, "forwards": 0}

    def hook(*args) -> None:
        state["forwards"] += 1
        if state["pause"] is not None and state["forwards"] == generation.completion_tokens - 1:
            state["pause"].hold()

    vlm.model.language.register_forward_hook(hook)
    key = app.state.service.keys.create("r1")[1]
    with live_server(app) as (_, url):
        yield url, {"Authorization": f"Bearer {key}"}, red, state


def paused(state) -> Pause:
    state["pause"], state["forwards"] = Pause(), 0
    return state["pause"]


def test_the_tiny_model_streams_its_answer_over_http(tiny):
    url, auth, red, state = tiny
    pause = paused(state)
    with httpx.stream("POST", f"{url}/v1/turns/stream", headers=auth, timeout=120,
                      data={"user": "cy", "text": QUESTION}, files={"image": ("red.png", red, "image/png")}) as r:
        assert r.status_code == 200
        events = read_native(r.iter_lines(), pause)
    assert pause.released == [True]
    reply = events[-1][1]
    assert reply["kind"] == "answer" and reply["text"] == REPLY == joined_deltas(events)
    assert len([e for e, _ in events if e == "delta"]) == len(REPLY.split())
    session = httpx.get(f"{url}/v1/sessions/{reply['session_id']}", headers=auth).json()
    assert session["turns"][-1]["text"] == REPLY and session["turns"][-1]["id"] == reply["turn_id"]


def test_the_tiny_model_streams_to_the_openai_client(tiny):
    openai = pytest.importorskip("openai", reason="the openai extra is not installed: pip install 'ilearn[openai]'")
    url, auth, red, state = tiny
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=auth["Authorization"].split()[1], max_retries=0)
    pause = paused(state)
    stream = client.chat.completions.create(model="ilearn", user="dee", stream=True, messages=[
        {"role": "user", "content": [{"type": "text", "text": QUESTION},
                                     {"type": "image_url", "image_url": {"url": data_url(red)}}]}])
    pieces = []
    for chunk in stream:
        if chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            pause.seen.set()
    assert pause.released == [True]
    assert "".join(pieces) == REPLY and chunk.model_extra["ilearn"]["kind"] == "answer"
