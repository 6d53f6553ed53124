"""The OpenAI-compatible endpoint over a real uvicorn on loopback: the official `openai` client (plain and
streaming) and iLearn's own `openai` backend pointed at the service."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image
from serve_helpers import require

openai = require("openai", "openai")

from serve_helpers import data_url, live_server  # noqa: E402

from ilearn.models.base import Message  # noqa: E402
from ilearn.models.openai import OpenAIVisionLanguageModel  # noqa: E402

QUESTION = "What is this medicine called?"


@pytest.fixture(scope="module")
def live(served):
    with live_server(served.app) as (_, url):
        yield url


def _client(served, live, who="r1"):
    return openai.OpenAI(base_url=f"{live}/v1", api_key=served.keys[who], max_retries=0)


def _ask(text, image=None):
    parts = [{"type": "text", "text": text}]
    if image is not None:
        parts.append({"type": "image_url", "image_url": {"url": data_url(image)}})
    return {"role": "user", "content": parts}


def _native(served, live, method, path, who="r1", **kwargs):
    return httpx.request(method, f"{live}{path}", headers=served.auth(who), timeout=60, **kwargs)


def test_models_lists_the_served_model(served, live):
    assert [m.id for m in _client(served, live).models.list().data] == ["ilearn"]


def test_image_answer_correction_by_history_then_a_new_photo_answered_with_the_reference(served, live, blue):
    client = _client(served, live)
    messages = [_ask(QUESTION, blue)]
    first = client.chat.completions.create(model="ilearn", messages=messages, user="ana")
    answer = first.choices[0].message.content
    ext = first.model_extra["ilearn"]
    assert ext["kind"] == "answer" and ext["model_version"] == "base" and ext["references"] == []
    session = _native(served, live, "GET", f"/v1/sessions/{ext['session_id']}").json()
    assert session["user"] == "ana" and session["turns"][1]["text"] == answer
    # the client resends the history with its next message: the server continues the same session
    messages += [{"role": "assistant", "content": answer}, _ask("No, it's ibuprofen.")]
    second = client.chat.completions.create(model="ilearn", messages=messages, user="ana")
    assert second.model_extra["ilearn"]["session_id"] == ext["session_id"]
    assert second.model_extra["ilearn"]["kind"] == "reaction" and "ibuprofen" in second.choices[0].message.content
    closed = _native(served, live, "POST", f"/v1/sessions/{ext['session_id']}/close").json()
    assert [e["answer"] for e in closed["events"]] == ["ibuprofen"]
    # a new conversation about the same object: answered from the corrected event, with its score
    third = client.chat.completions.create(model="ilearn", messages=[_ask(QUESTION, blue)], user="ana")
    references = third.model_extra["ilearn"]["references"]
    assert third.model_extra["ilearn"]["session_id"] != ext["session_id"]
    assert [r["answer"] for r in references] == ["ibuprofen"] and references[0]["score"] > 0.5
    assert "ibuprofen" in third.choices[0].message.content.lower()
    assert third.model_extra["ilearn"]["source"] in ("memory", "memory-guess")  # not the model's words
    assert ext["source"] == "model"
    # another user of the same robot does not get ana's private answer
    other = client.chat.completions.create(model="ilearn", messages=[_ask(QUESTION, blue)], user="bea")
    assert other.model_extra["ilearn"]["references"] == []


def test_streaming_sends_the_reply_in_chunks_and_the_extension_last(served, live, red):
    client = _client(served, live)
    stream = client.chat.completions.create(model="ilearn", messages=[_ask(QUESTION, red)], user="cid", stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason == "stop"
    ext = chunks[-1].model_extra["ilearn"]
    session = _native(served, live, "GET", f"/v1/sessions/{ext['session_id']}").json()
    assert session["turns"][-1]["text"] == text and text


def test_a_clarifying_question_and_the_session_header(served, live, red):
    client = _client(served, live)
    first = client.chat.completions.create(model="ilearn", messages=[_ask("What is this?", red)], user="dee")
    ext = first.model_extra["ilearn"]
    assert ext["kind"] == "clarification" and any("dose" in o for o in ext["options"])
    # a client that keeps no history names the session in a header instead
    raw = client.chat.completions.with_raw_response.create(
        model="ilearn", messages=[_ask("the dose")], user="dee", extra_headers={"X-Session-Id": ext["session_id"]})
    assert raw.headers["x-session-id"] == ext["session_id"]
    second = raw.parse()
    assert second.model_extra["ilearn"]["kind"] == "answer"
    assert second.model_extra["ilearn"]["precise_question"] == "What is the dose of this?"


def test_remote_urls_unknown_models_and_other_robots_sessions_are_clear_errors(served, live, red):
    client = _client(served, live)
    remote = {"role": "user", "content": [{"type": "text", "text": "hi"},
                                          {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}
    with pytest.raises(openai.BadRequestError, match="data URL"):
        client.chat.completions.create(model="ilearn", messages=[remote])
    with pytest.raises(openai.NotFoundError, match="unknown model"):
        client.chat.completions.create(model="gpt-4o", messages=[_ask("hi")])
    with pytest.raises(openai.BadRequestError, match="last message"):
        client.chat.completions.create(model="ilearn", messages=[_ask("hi"), {"role": "assistant", "content": "x"}])
    mine = client.chat.completions.create(model="ilearn", messages=[_ask(QUESTION, red)], user="eva")
    with pytest.raises(openai.NotFoundError):
        _client(served, live, "r2").chat.completions.create(
            model="ilearn", messages=[_ask("No, it's aspirin.")], user="eva",
            extra_headers={"X-Session-Id": mine.model_extra["ilearn"]["session_id"]})
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live}/v1", api_key="wrong", max_retries=0).models.list()


def test_ilearns_own_openai_backend_talks_to_the_service(served, live, red):
    backend = OpenAIVisionLanguageModel.from_url(f"{live}/v1", api_key=served.keys["r1"])
    assert backend.model_name == "ilearn"
    image = Image.open(io.BytesIO(red))
    generation = backend.generate([Message("user", QUESTION, image=image)])
    assert generation.text
    users = served.app.state.service.assistant.store.list_users()
    key_user = [u for u in users if u.startswith("r1:key-")]
    assert len(key_user) == 1  # no `user` sent: the key's own user
    session = served.app.state.service.assistant.store.list_sessions(user_id=key_user[0])[-1]
    assert session.turns[-1].text == generation.text
