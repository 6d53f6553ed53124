"""Serve promoted versions from a vLLM server: each version a LoRA adapter loaded at run time under a new name.

With the `openai` backend pointed at vLLM (started with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` and
`--enable-lora`), a version that `learn` promotes is published without restarting anything:

1. its adapter folder (the version's `path`, readable by the vLLM server) is loaded with vLLM's
   `POST /v1/load_lora_adapter` under a name never used before (`ilearn-<version>-<random>`: vLLM caches adapters
   by name, so a reused name could serve old weights);
2. the served alias switches: the next turns send that name as the chat request's `model`;
3. the adapter served before is unloaded (`POST /v1/unload_lora_adapter`) once no turn uses it any more (turns
   take the alias when they start, `turn()`, and keep it to their end).

A rollback is the same backwards: the older version is loaded again under a new name (or the base model's name
is served again) and the newer adapter unloaded when idle. `sync(registry)` does whichever the registry's active
version asks for; call it after `ilearn models promote` / `rollback` or from the learning scheduler.

    adapters = VLLMAdapters("http://vllm:8000/v1")
    publisher = AdapterPublisher(vlm, adapters)          # vlm: the openai backend's model
    publisher.sync(registry)                             # serve the registry's active version
    with publisher.turn() as model:                      # one turn: the same adapter from start to end
        model.generate(messages)
"""

from __future__ import annotations

import copy
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ilearn.errors import InvalidInput, require_package
from ilearn.models.openai import OpenAIVisionLanguageModel, RemoteModelError
from ilearn.models.versions import BASE

if TYPE_CHECKING:
    from ilearn.learning.registry import ModelRegistry

logger = logging.getLogger(__name__)


class VLLMAdapters:
    """vLLM's runtime LoRA API of one server: load and unload adapters by name."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 120.0,
                 http_client: Any = None) -> None:
        require_package("httpx", extra="openai")
        import httpx

        self.base_url = base_url.split("#", 1)[0].rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = http_client or httpx.Client(timeout=timeout, headers=headers)

    def _post(self, endpoint: str, body: dict[str, str]) -> None:
        import httpx

        url = f"{self.base_url}/{endpoint}"
        try:
            response = self._http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise RemoteModelError(f"the vLLM server at {self.base_url} could not be reached: {exc}") from exc
        if response.status_code >= 400:
            error = RemoteModelError(f"vLLM refused {endpoint} of {body.get('lora_name')!r} ({response.status_code}): "
                                     f"{response.text[:300]}")
            error.status_code = response.status_code  # type: ignore[attr-defined]
            raise error

    def load(self, name: str, path: str) -> None:
        """Load the LoRA adapter folder `path` (as the server sees it) under `name`."""
        self._post("load_lora_adapter", {"lora_name": name, "lora_path": path})

    def unload(self, name: str) -> None:
        """Unload the adapter `name`."""
        self._post("unload_lora_adapter", {"lora_name": name})


@dataclass
class _Served:
    version: str
    name: str  # the chat requests' `model`
    users: int = 0
    retired: bool = False


class AdapterPublisher:
    """Which adapter the vLLM server serves for iLearn's active version, switched without stopping turns."""

    def __init__(self, vlm: OpenAIVisionLanguageModel, adapters: VLLMAdapters, *, prefix: str = "ilearn") -> None:
        self.vlm = vlm
        self.adapters = adapters
        self.prefix = prefix
        self.base_name = vlm.model_name
        self._lock = threading.Lock()
        self._current = _Served(BASE, self.base_name)

    @property
    def served(self) -> tuple[str, str]:
        """(version id, name the server serves it under) of what the next turn gets."""
        with self._lock:
            return self._current.version, self._current.name

    def publish(self, version_id: str, path: str | None = None) -> str:
        """Serve `version_id` from the next turn on: its adapter at `path` loaded under a new name (BASE: the base
        model's name); the adapter served before is unloaded once its turns end. Returns the served name. A
        refused load changes nothing (RemoteModelError)."""
        if version_id == BASE:
            name = self.base_name
        else:
            if not path:
                raise InvalidInput(f"model version {version_id!r} has no adapter folder to publish")
            name = f"{self.prefix}-{version_id}-{uuid.uuid4().hex[:8]}"
            self.adapters.load(name, str(path))
        with self._lock:
            old, self._current = self._current, _Served(version_id, name)
            old.retired = True
            idle = old.users == 0
        logger.info("vLLM serves version %s as %s (was %s)", version_id, name, old.name)
        if idle:
            self._unload(old)
        return name

    def sync(self, registry: ModelRegistry) -> str | None:
        """Publish the registry's active version if another one is served (a promotion or a rollback); returns
        the new served name, or None when nothing changed."""
        wanted = registry.active_id()
        if wanted == self.served[0]:
            return None
        path = None if wanted == BASE else registry.get(wanted).path
        return self.publish(wanted, path)

    @contextmanager
    def turn(self) -> Iterator[OpenAIVisionLanguageModel]:
        """The model for one turn: requests name the adapter served when the turn started, until it ends."""
        with self._lock:
            served = self._current
            served.users += 1
        model = copy.copy(self.vlm)  # shares the client; only the requests' model name differs
        model.model_name, model.version = served.name, served.version
        try:
            yield model
        finally:
            with self._lock:
                served.users -= 1
                idle = served.retired and served.users == 0
            if idle:
                self._unload(served)

    def _unload(self, served: _Served) -> None:
        if served.name == self.base_name:
            return  # the base model is the server's own, never unloaded
        try:
            self.adapters.unload(served.name)
            logger.info("adapter %s (version %s) unloaded", served.name, served.version)
        except RemoteModelError as exc:  # it only wastes server memory until the server restarts
            logger.warning("could not unload adapter %s: %s", served.name, exc)
