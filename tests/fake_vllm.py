"""A fake vLLM server on a free loopback port (chat and runtime-LoRA endpoints, recording every call), and the
factories of the tests that publish model versions to it (import as `from fake_vllm import ...`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ilearn.config import Config
from ilearn.learning.registry import ModelRegistry
from ilearn.models.base import Message


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

    def do_GET(self) -> None:
        if self.path != "/v1/models":
            return self._reply(404, "no such endpoint")
        self.calls.append(("models", {}))
        adapters = [{"id": name, "object": "model", "root": name, "parent": "base-vlm"} for name in sorted(self.loaded)]
        return self._reply(200, {"object": "list", "data": [{"id": "base-vlm", "object": "model", "root": "base-vlm",
                                                             "parent": None}, *adapters]})

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
            if body["lora_name"] not in self.loaded:  # as vLLM answers
                return self._reply(404, {"error": {"message": f"The lora adapter '{body['lora_name']}' cannot "
                                                              "be found."}})
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


@contextmanager
def fake_vllm() -> Iterator[str]:
    """A fresh fake server (no calls, nothing loaded or refused) for the block; its base URL."""
    FakeVLLM.calls, FakeVLLM.loaded, FakeVLLM.refuse = [], set(), set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeVLLM)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def fake_replicas(n: int) -> Iterator[tuple[str, list[tuple[str, type[FakeVLLM]]]]]:
    """`n` fake vLLM replicas, each with its own calls and adapters, behind a round-robin balancer (every request
    goes to the next replica, as a load balancer without affinity does): (the balancer's base URL, [(a replica's
    base URL, its handler class holding `calls`, `loaded`, `refuse`)])."""
    import itertools
    import urllib.error
    import urllib.request

    handlers = [type(f"Replica{i}", (FakeVLLM,), {"calls": [], "loaded": set(), "refuse": set()}) for i in range(n)]
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), h) for h in handlers]
    urls = [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    turn = itertools.cycle(urls)
    lock = threading.Lock()

    class Balancer(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _forward(self, data: bytes | None) -> None:
            with lock:
                target = next(turn)
            request = urllib.request.Request(target + self.path, data=data, method=self.command,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status, body = response.status, response.read()
            except urllib.error.HTTPError as exc:
                status, body = exc.code, exc.read()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._forward(None)

        def do_POST(self) -> None:
            self._forward(self.rfile.read(int(self.headers["Content-Length"])))

    balancer = ThreadingHTTPServer(("127.0.0.1", 0), Balancer)
    every = [*servers, balancer]
    for server in every:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield (f"http://127.0.0.1:{balancer.server_address[1]}/v1",
               [(f"{url}/v1", h) for url, h in zip(urls, handlers, strict=True)])
    finally:
        for server in every:
            server.shutdown()
            server.server_close()


def published_config(home, server: str) -> Config:
    """A deployment whose versions the fake server at `server` serves (`model.publish` "vllm-lora")."""
    return Config(home=str(home)).override(
        model={"backend": "openai", "path": f"{server}#base-vlm", "publish": "vllm-lora"},
        retrieval={"image_embedder": "stub", "text_embedder": "hashing", "index": "exact"})


def version(registry: ModelRegistry, event_ids: Sequence[str] = ()) -> str:
    """A registered candidate with an (empty) adapter folder, trained on `event_ids`; its id."""
    version_id, path = registry.new_path()
    (path / "adapter_config.json").write_text("{}")
    return registry.register(path=path, recipe="sft", event_ids=event_ids).id


def ask(model) -> str:
    return model.generate([Message("user", "what is this?")]).text  # the fake answers with the model it served


def lora_calls(kind: str) -> list[str]:
    """The adapter names of the `kind` ("load", "unload") calls, in order."""
    return [body["lora_name"] for endpoint, body in FakeVLLM.calls if endpoint == f"{kind}_lora_adapter"]


def chat_models() -> list[str]:
    """The `model` of every chat request, in order."""
    return [body["model"] for endpoint, body in FakeVLLM.calls if endpoint == "chat/completions"]
