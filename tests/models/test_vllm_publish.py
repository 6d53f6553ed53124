"""Publishing promoted versions to a vLLM server, against a small fake server that records the calls."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ilearn.learning.registry import ModelRegistry
from ilearn.memory.sqlite import SQLiteStore
from ilearn.models.base import Message
from ilearn.models.openai import OpenAIVisionLanguageModel, RemoteModelError
from ilearn.models.vllm_publish import AdapterPublisher, VLLMAdapters


class FakeVLLM(BaseHTTPRequestHandler):
    """vLLM's chat and runtime-LoRA endpoints; records (endpoint, body) and which adapters are loaded."""

    calls: list[tuple[str, dict]] = []
    loaded: set[str] = set()
    refuse: set[str] = set()  # lora paths whose load fails

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, status: int, body: dict | str) -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        endpoint = self.path.removeprefix("/v1/")
        self.calls.append((endpoint, body))
        if endpoint == "load_lora_adapter":
            if body["lora_path"] in self.refuse or body["lora_name"] in self.loaded:
                return self._reply(400, f"cannot load {body['lora_name']}")
            self.loaded.add(body["lora_name"])
            return self._reply(200, f"Success: LoRA adapter '{body['lora_name']}' added successfully.")
        if endpoint == "unload_lora_adapter":
            self.loaded.discard(body["lora_name"])
            return self._reply(200, "unloaded")
        if endpoint == "chat/completions":
            known = body["model"] == "base-vlm" or body["model"] in self.loaded
            if not known:
                return self._reply(404, {"error": {"message": f"model {body['model']} does not exist"}})
            return self._reply(200, {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                                     "choices": [{"index": 0, "finish_reason": "stop",
                                                  "message": {"role": "assistant", "content": body["model"]}}],
                                     "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
        return self._reply(404, "no such endpoint")


@pytest.fixture
def server():
    FakeVLLM.calls, FakeVLLM.loaded, FakeVLLM.refuse = [], set(), set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeVLLM)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


@pytest.fixture
def registry(tmp_path):
    store = SQLiteStore(tmp_path / "ilearn.db")
    yield ModelRegistry(store, tmp_path)
    store.close()


def version(registry: ModelRegistry) -> str:
    version_id, path = registry.new_path()
    (path / "adapter_config.json").write_text("{}")
    return registry.register(path=path, recipe="sft").id


def ask(model) -> str:
    return model.generate([Message("user", "what is this?")]).text  # the fake answers with the model it served


def lora_calls(kind: str) -> list[str]:
    return [body["lora_name"] for endpoint, body in FakeVLLM.calls if endpoint == f"{kind}_lora_adapter"]


def test_promotions_and_rollbacks_switch_adapters_under_new_names(server, registry) -> None:
    publisher = AdapterPublisher(OpenAIVisionLanguageModel.from_url(f"{server}#base-vlm"), VLLMAdapters(server))
    with publisher.turn() as model:
        assert ask(model) == "base-vlm"
    v1, v2 = version(registry), version(registry)
    assert publisher.sync(registry) is None  # the base serves: nothing to do

    registry.promote(v1)
    first = publisher.sync(registry)
    assert first.startswith(f"ilearn-{v1}-") and lora_calls("load") == [first]
    assert FakeVLLM.calls[-1][1]["lora_path"] == registry.get(v1).path
    with publisher.turn() as model:
        assert ask(model) == first and model.version == v1

    registry.promote(v2)
    with publisher.turn() as running:  # a turn that started on v1 ...
        second = publisher.sync(registry)
        assert ask(running) == first and lora_calls("unload") == []  # ... keeps v1 to its end
        with publisher.turn() as model:
            assert ask(model) == second
    assert lora_calls("unload") == [first]  # unloaded once no turn used it

    registry.rollback()  # back to v1: loaded again under a name never used before
    again = publisher.sync(registry)
    assert again.startswith(f"ilearn-{v1}-") and again not in (first, second)
    assert lora_calls("unload") == [first, second] and FakeVLLM.loaded == {again}
    registry.rollback()  # back to the base: its name serves, nothing loaded
    assert publisher.sync(registry) == "base-vlm" and FakeVLLM.loaded == set()
    with publisher.turn() as model:
        assert ask(model) == "base-vlm"


def test_a_refused_load_changes_nothing(server, registry) -> None:
    publisher = AdapterPublisher(OpenAIVisionLanguageModel.from_url(f"{server}#base-vlm"), VLLMAdapters(server))
    v1, v2 = version(registry), version(registry)
    registry.promote(v1)
    served = publisher.sync(registry)
    FakeVLLM.refuse.add(registry.get(v2).path)
    registry.promote(v2)
    with pytest.raises(RemoteModelError, match="refused load_lora_adapter.*400"):
        publisher.sync(registry)
    assert publisher.served == (v1, served) and lora_calls("unload") == []
    with publisher.turn() as model:
        assert ask(model) == served


def test_an_unreachable_server_is_a_clear_error(registry) -> None:
    adapters = VLLMAdapters("http://127.0.0.1:9/v1", timeout=2)
    with pytest.raises(RemoteModelError, match="could not be reached"):
        adapters.load("x", "/models/x")
