"""The `openai` backend against a mocked HTTP layer (the real SDK, a MockTransport; never the network)."""

from __future__ import annotations

import base64
import importlib
import io
import json
import math

import pytest
from PIL import Image

from ilearn.config import ModelConfig
from ilearn.errors import InvalidInput
from ilearn.models import Message, VisionLanguageModel, load_model
from ilearn.models.openai import OpenAIVisionLanguageModel, RemoteModelError, ScoringUnsupported

openai = pytest.importorskip("openai")
# the HTTP library the installed SDK is built on (httpx, or httpx2 in openai 3.x)
httpx = importlib.import_module(openai.DefaultHttpxClient.__mro__[1].__module__.split(".")[0])

URL = "http://vlm.test/v1"
RED = Image.new("RGB", (40, 30), (200, 30, 30))


def _completion(text: str, prompt_tokens: int = 12, completion_tokens: int = 2, **extra) -> dict:
    return {"id": "c1", "object": "chat.completion", "created": 0, "model": "tiny-vlm",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}, **extra}


class FakeServer:
    """Records requests; answers like vLLM (prompt token i has log-prob -i/10 when `logprobs` is on)."""

    def __init__(self, *, logprobs: bool = True, status: int = 200, models: tuple[str, ...] = ("tiny-vlm",)):
        self.requests: list[dict] = []
        self.logprobs, self.status, self.models = logprobs, status, models

    def __call__(self, request):
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "me"} for m in self.models]})
        body = json.loads(request.content)
        self.requests.append(body)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"message": "unknown field prompt_logprobs"}})
        if "prompt_logprobs" not in body:
            return httpx.Response(200, json=_completion("red"))
        if not self.logprobs:
            return httpx.Response(200, json=_completion("x"))
        # a "token" per word of the flattened chat, plus an end-of-turn token per finished assistant turn
        words = [w for m in body["messages"] for w in _text(m).split()]
        n = len(words) + 1 + (0 if body["add_generation_prompt"] else 1)
        entries = [None] + [{str(i): {"logprob": -i / 10, "rank": 1, "decoded_token": "w"}} for i in range(1, n)]
        return httpx.Response(200, json=_completion("x", prompt_logprobs=entries))


def _text(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


def _vlm(server: FakeServer, url: str = URL + "#tiny-vlm") -> OpenAIVisionLanguageModel:
    return OpenAIVisionLanguageModel.from_url(url, http_client=httpx.Client(transport=httpx.MockTransport(server)))


def test_generate_sends_images_as_data_urls_and_reads_usage():
    server = FakeServer()
    vlm = _vlm(server)
    assert isinstance(vlm, VisionLanguageModel) and (vlm.name, vlm.version) == ("openai", "base")
    gen = vlm.generate([Message("system", "be brief"), Message("user", "what color?", image=RED)], max_new_tokens=7)
    assert (gen.text, gen.prompt_tokens, gen.completion_tokens) == ("red", 12, 2)
    assert gen.seconds > 0
    body = server.requests[0]
    assert body["model"] == "tiny-vlm" and body["max_tokens"] == 7 and body["temperature"] == 0
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    image_part, text_part = body["messages"][1]["content"]
    assert text_part == {"type": "text", "text": "what color?"}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (40, 30) and decoded.getpixel((5, 5)) == (200, 30, 30)


def test_model_defaults_to_the_first_served_model():
    server = FakeServer(models=("served-a", "served-b"))
    vlm = _vlm(server, URL)
    assert vlm.model_name == "served-a"
    vlm.generate([Message("user", "hi")])
    assert server.requests[0]["model"] == "served-a"


def test_score_sums_the_reply_tokens_from_prompt_logprobs():
    server = FakeServer()
    vlm = _vlm(server)
    messages = [Message("user", "what color is it?", image=RED)]
    scores = vlm.score(messages, ["red", "dark red"])
    # prompt: 4 words + first token -> 5 entries; reply "red" adds tokens 5 (word) and 6 (end of turn)
    assert scores == pytest.approx([-(0.5 + 0.6), -(0.5 + 0.6 + 0.7)])
    assert all(math.isfinite(s) for s in scores)
    first, *per_candidate = server.requests
    assert first["add_generation_prompt"] is True and first["prompt_logprobs"] == 0
    assert [r["messages"][-1] for r in per_candidate] == [{"role": "assistant", "content": c}
                                                         for c in ("red", "dark red")]
    assert all(r["add_generation_prompt"] is False for r in per_candidate)
    assert vlm.score(messages, []) == []


@pytest.mark.parametrize("server", [FakeServer(logprobs=False), FakeServer(status=400)])
def test_score_on_servers_without_prompt_logprobs_raises_a_clear_error(server):
    with pytest.raises(ScoringUnsupported, match="score"):
        _vlm(server).score([Message("user", "hi")], ["yes"])


def test_server_errors_and_bad_input():
    with pytest.raises(RemoteModelError, match="500"):
        _vlm(FakeServer(status=500)).generate([Message("user", "hi")])
    vlm = _vlm(FakeServer())
    with pytest.raises(InvalidInput):
        vlm.generate([])
    with pytest.raises(InvalidInput, match="last message"):
        vlm.generate([Message("user", "hi"), Message("assistant", "hello")])
    with pytest.raises(InvalidInput, match="role"):
        vlm.score([Message("robot", "hi")], ["x"])


def test_load_model_validates_the_url():
    with pytest.raises(InvalidInput, match="base URL"):
        load_model(ModelConfig(backend="openai"))
    with pytest.raises(InvalidInput, match="http"):
        load_model(ModelConfig(backend="openai", path="/some/folder"))


def test_unreachable_server_gives_a_clear_error():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.Client(transport=httpx.MockTransport(refuse))
    with pytest.raises(RemoteModelError, match="could not be reached"):
        OpenAIVisionLanguageModel.from_url(URL, http_client=client)
