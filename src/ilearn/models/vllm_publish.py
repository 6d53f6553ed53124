"""Serve promoted versions from a vLLM server: each version a LoRA adapter loaded at run time under a new name.

With the `openai` backend pointed at vLLM (started with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` and
`--enable-lora`) and `model.publish` "vllm-lora", a version that is promoted (by `learn`, `ilearn models promote`,
the service) is published without restarting anything:

1. its adapter folder (the version's `path`, readable by the vLLM server) is loaded with vLLM's
   `POST /v1/load_lora_adapter` under a name never used before (`ilearn-<version>-<random>`: vLLM caches adapters
   by name, so a reused name could serve old weights);
2. the served alias switches: the next turns send that name as the chat request's `model`;
3. the adapter served before is unloaded (`POST /v1/unload_lora_adapter`) once no turn uses it any more (turns
   take the alias when they start, `turn()`, and keep it to their end).

A rollback is the same backwards: the older version is loaded again under a new name (or the base model's name
is served again) and the newer adapter unloaded when idle. A refused load changes nothing: the version served
before serves on.

`PublishedVersions` (built by `build_runtime` for that setting) is the runtime's `ModelVersions`: it publishes
the registry's active version where `ModelVersions` would load it, at the store read of each turn (so a promotion
by another process serves from that process's next turn) and at `refresh`. A promotion or a rollback made in
this process (the service's routes, a learning update's promotion) goes through `change`, and one made by
`ilearn models promote` / `rollback` through `VLLMAdapters.check`: both run `ModelRegistry.change_active`, so the
change commits only once the server has loaded the adapter, and a refused one leaves the registry as it was.
By hand:

    adapters = VLLMAdapters("http://vllm:8000/v1")
    publisher = AdapterPublisher(vlm, adapters)          # vlm: the openai backend's model
    publisher.sync(registry)                             # serve the registry's active version
    with publisher.turn() as model:                      # one turn: the same adapter from start to end
        model.generate(messages)
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ilearn.errors import ILearnError, InvalidInput, require_package
from ilearn.models.openai import OpenAIVisionLanguageModel, RemoteModelError
from ilearn.models.versions import BASE, ModelHandle, ModelVersions, bind

if TYPE_CHECKING:
    from ilearn.config import ModelConfig
    from ilearn.learning.registry import ModelRegistry
    from ilearn.types import ModelVersion

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

    @classmethod
    def from_config(cls, config: ModelConfig) -> VLLMAdapters:
        """The server the openai backend talks to: `model.path` (its model fragment dropped) and the backend's
        API key (`OPENAI_API_KEY`)."""
        if not config.path:
            raise InvalidInput("model.publish 'vllm-lora' needs model.path: the vLLM server's base URL, "
                               "e.g. http://localhost:8000/v1#Qwen/Qwen2-VL-7B-Instruct")
        return cls(config.path, api_key=os.environ.get("OPENAI_API_KEY"))

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

    def check(self, version_id: str, path: str | None) -> None:
        """That the server can serve `version_id`: its adapter loaded under a new name and unloaded at once
        (RemoteModelError when the server refuses it; nothing to check for the base model)."""
        if version_id == BASE:
            return
        path = _adapter_path(version_id, path)
        name = adapter_name(version_id, prefix="ilearn-check")
        self.load(name, path)
        try:
            self.unload(name)
        except RemoteModelError as exc:
            logger.warning("could not unload the checked adapter %s: %s", name, exc)


def _adapter_path(version_id: str, path: str | None) -> str:
    if not path:
        raise InvalidInput(f"model version {version_id!r} has no adapter folder to publish")
    return str(path)


def adapter_name(version_id: str, prefix: str = "ilearn") -> str:
    """A name never used before for `version_id`'s adapter (vLLM caches adapters by name)."""
    return f"{prefix}-{version_id}-{uuid.uuid4().hex[:8]}"


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
            path = _adapter_path(version_id, path)
            name = adapter_name(version_id, self.prefix)
            self.adapters.load(name, path)
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
        the new served name, or None when nothing changed. (`PublishedVersions` does this at each turn.)"""
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
        try:
            yield self._model(served)
        finally:
            with self._lock:
                served.users -= 1
                idle = served.retired and served.users == 0
            if idle:
                self._unload(served)

    def model(self) -> OpenAIVisionLanguageModel:
        """The model of the version served now, for a request outside a turn (its adapter is not held: a turn
        takes `turn()`)."""
        with self._lock:
            return self._model(self._current)

    def _model(self, served: _Served) -> OpenAIVisionLanguageModel:
        model = copy.copy(self.vlm)  # shares the client; only the requests' model name differs
        model.model_name, model.version = served.name, served.version
        return model

    def _unload(self, served: _Served) -> None:
        if served.name == self.base_name:
            return  # the base model is the server's own, never unloaded
        try:
            self.adapters.unload(served.name)
            logger.info("adapter %s (version %s) unloaded", served.name, served.version)
        except RemoteModelError as exc:  # it only wastes server memory until the server restarts
            logger.warning("could not unload adapter %s: %s", served.name, exc)


class PublishedVersions(ModelVersions):
    """The runtime's `ModelVersions` when a vLLM server serves the versions (`model.publish` "vllm-lora").

    Where `ModelVersions` loads the active version into a model object, this publishes it (`AdapterPublisher`):
    at the store read of a turn's `current` (a promotion made by another process serves from the next turn on)
    and at `refresh`. Each turn holds the adapter it started with to its end. `change` (a promotion or rollback
    of this process) commits only once the server serves the version; a version found active at a turn or a
    `refresh` that the server refuses is logged and the version served before serves on; it is not tried again
    at every turn, only at the next `refresh`.
    """

    _source: ModelRegistry

    def __init__(self, publisher: AdapterPublisher, registry: ModelRegistry) -> None:
        super().__init__(publisher.vlm, registry)
        self.publisher = publisher

    @classmethod
    def from_config(cls, vlm: OpenAIVisionLanguageModel, registry: ModelRegistry,
                    config: ModelConfig) -> PublishedVersions:
        """Publish to the vLLM server of the openai backend's `vlm` (`VLLMAdapters.from_config`)."""
        return cls(AdapterPublisher(vlm, VLLMAdapters.from_config(config)), registry)

    def current(self, *, wait: bool = False) -> ModelHandle:
        """The served version's handle (one store read); the active version published first if another one
        serves. While another thread publishes (`wait` False), the version served now."""
        wanted = self._source.active_id()
        with self._lock:
            failed = wanted in self._failed
        if wanted != self.publisher.served[0] and not failed and self._loading.acquire(blocking=wait):
            try:
                self._publish(wanted)
            finally:
                self._loading.release()
        model = self.publisher.model()
        return ModelHandle(model.version, model)

    def change(self, change: Callable[[], ModelVersion]) -> ModelVersion:
        """Run `change` (the registry's promote or rollback) and serve the version it made active, in one store
        transaction (`ModelRegistry.change_active`): when the server refuses the adapter (RemoteModelError), the
        change is undone and the version served before serves on. Turns meanwhile keep the served version."""
        with self._loading:
            version = self._source.change_active(change, serve=self._serve)
        with self._lock:
            self._failed.discard(version.id)
        return version

    @contextmanager
    def hold(self) -> Iterator[ModelHandle]:
        """One turn: the active version published if needed, then its adapter held until the block ends."""
        self.current()
        with self.publisher.turn() as model, bind(ModelHandle(model.version, model)) as handle:
            yield handle

    def _serve(self, version: ModelVersion) -> None:
        """Publish `version` unless it serves already (caller holds `_loading`); a refusal raises."""
        if version.id != self.publisher.served[0]:
            self.publisher.publish(version.id, version.path)

    def _publish(self, version_id: str) -> None:
        """Serve `version_id` from the next turn on (caller holds `_loading`); a failure is logged."""
        if version_id == self.publisher.served[0]:
            return  # published by the thread we waited for
        try:
            path = None if version_id == BASE else self._source.get(version_id).path
            self.publisher.publish(version_id, path)
        except Exception as exc:  # a version the server refuses must not take answering down
            logger.error("could not publish model version %s to the vLLM server: %s; %s serves on", version_id,
                         exc, self.publisher.served[0], exc_info=not isinstance(exc, ILearnError))
            with self._lock:
                self._failed.add(version_id)
