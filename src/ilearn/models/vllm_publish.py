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
before serves on, unless that one was trained on a forgotten user's events (`ModelRegistry.forget_events`): its
adapter is unloaded at once whatever happens and the base model serves until the server takes the replacement.

A vLLM server that restarted has lost every adapter loaded at run time and answers 404 for them: the request that
meets that loads the served adapter again on each server that lacks it (`VLLMAdapters.restore`) and is sent once
more, unless that adapter was unloaded on purpose (retired and idle, or a forgotten version's).

Each worker holds a lease in the store on every adapter it serves (`ADAPTER_LEASE`, renewed by its turns every
third of `lease_s`, given up when it unloads the adapter; the store's clock decides when it expires). A worker
killed while it served the active version leaves that adapter loaded under a name no live worker uses: its lease
expires, the live workers' turns sweep it (`AdapterPublisher.sweep_expired`, at most once per `lease_s` each, in
the background), and `ilearn models adapters` lists it stale meanwhile (`--sweep` unloads it). A live worker idle
for longer than `lease_s` may have its adapter swept too; its next turn renews the lease, meets the 404 and loads
the adapter again (above).

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
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ilearn.config import parse_path_map, parse_servers
from ilearn.errors import ILearnError, InvalidInput, require_package
from ilearn.memory.store import Lease
from ilearn.models.openai import OpenAIVisionLanguageModel, RemoteModelError
from ilearn.models.versions import BASE, ModelHandle, ModelVersions, bind

if TYPE_CHECKING:
    from ilearn.config import ModelConfig
    from ilearn.learning.registry import ModelRegistry
    from ilearn.memory.store import EventStore
    from ilearn.types import ModelVersion

logger = logging.getLogger(__name__)


class VLLMAdapters:
    """vLLM's runtime LoRA API: load and unload adapters by name, on one server or on each of several replicas.

    Replicas behind one address (a load balancer at `model.path`, `model.publish_servers` naming each replica's own
    URL) must all hold an adapter before a turn may ask for it, since any replica can take the turn: a load is
    made on every replica or on none (those that took it unload it again when one refuses), an unload goes to
    every replica, and the adapters held are those any replica holds."""

    def __init__(self, base_url: str | Sequence[str], *, api_key: str | None = None, timeout: float = 120.0,
                 http_client: Any = None, path_map: str | None = None) -> None:
        """`base_url`: the server's base URL, or each replica's. `path_map` "LOCAL=SERVER": an adapter folder
        under LOCAL (as this process writes it) is under SERVER for the vLLM servers (a shared volume mounted
        elsewhere in their containers or machines)."""
        require_package("httpx", extra="openai")
        import httpx

        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self.base_urls = [u.split("#", 1)[0].rstrip("/") for u in urls]
        if not self.base_urls or not all(self.base_urls):
            raise InvalidInput("VLLMAdapters needs the base URL of at least one vLLM server")
        self.path_map = parse_path_map(path_map)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = http_client or httpx.Client(timeout=timeout, headers=headers)

    @classmethod
    def from_config(cls, config: ModelConfig) -> VLLMAdapters:
        """The servers the openai backend's turns reach: each of `model.publish_servers` when set, else the one at
        `model.path` (its model fragment dropped); the backend's API key (`OPENAI_API_KEY`)."""
        if not config.path:
            raise InvalidInput("model.publish 'vllm-lora' needs model.path: the vLLM server's base URL, "
                               "e.g. http://localhost:8000/v1#Qwen/Qwen2-VL-7B-Instruct")
        servers = parse_servers(config.publish_servers) or [config.path]
        return cls(servers, api_key=os.environ.get("OPENAI_API_KEY"), path_map=config.publish_path_map)

    def _post(self, base_url: str, endpoint: str, body: dict[str, str]) -> None:
        import httpx

        url = f"{base_url}/{endpoint}"
        try:
            response = self._http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise RemoteModelError(f"the vLLM server at {base_url} could not be reached: {exc}") from exc
        if response.status_code >= 400:
            where = f" at {base_url}" if len(self.base_urls) > 1 else ""
            error = RemoteModelError(f"vLLM{where} refused {endpoint} of {body.get('lora_name')!r} "
                                     f"({response.status_code}): {response.text[:300]}")
            error.status_code = response.status_code  # type: ignore[attr-defined]
            raise error

    def load(self, name: str, path: str) -> None:
        """Load the LoRA adapter folder `path` (as this process sees it: `path_map` gives the servers') under
        `name` on every server, or on none: when one refuses (RemoteModelError), those that took it unload it."""
        body = {"lora_name": name, "lora_path": self.server_path(path)}
        done: list[str] = []
        for url in self.base_urls:
            try:
                self._post(url, "load_lora_adapter", body)
            except RemoteModelError:
                for took in done:
                    try:
                        self._post(took, "unload_lora_adapter", {"lora_name": name})
                    except RemoteModelError as exc:
                        logger.warning("adapter %s stays loaded at %s after another replica refused it: %s",
                                       name, took, exc)
                raise
            done.append(url)

    def server_path(self, path: str) -> str:
        """`path` as the server sees it (`path_map`; unchanged outside its LOCAL folder)."""
        if self.path_map is None:
            return path
        local, server = self.path_map
        inside = Path(path)
        try:
            rest = inside.relative_to(local)
        except ValueError:
            return path
        return str(PurePosixPath(server) / rest.as_posix()) if str(rest) != "." else server

    def unload(self, name: str) -> None:
        """Unload the adapter `name` from every server. A replica that does not hold it (404) is skipped while
        another one unloaded it; RemoteModelError when a server refused or none held it."""
        unloaded, missing, errors = 0, [], []
        for url in self.base_urls:
            try:
                self._post(url, "unload_lora_adapter", {"lora_name": name})
                unloaded += 1
            except RemoteModelError as exc:
                (missing if getattr(exc, "status_code", None) == 404 else errors).append(exc)
        if errors or not unloaded:
            raise (errors or missing)[0]

    def loaded(self) -> list[str]:
        """The names of the adapters any server holds now (`GET /v1/models`: the entries with a parent model)."""
        return sorted(set().union(*(self._listed(url) for url in self.base_urls)))

    def _listed(self, url: str) -> set[str]:
        """The adapters the server at `url` holds (RemoteModelError when it cannot list them)."""
        import httpx

        try:
            response = self._http.get(f"{url}/models")
            response.raise_for_status()
            entries = response.json().get("data", [])
            return {str(e["id"]) for e in entries if isinstance(e, dict) and e.get("parent") and e.get("id")}
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise RemoteModelError(f"could not list the adapters of the vLLM server at {url}: {exc}") from exc

    def restore(self, name: str, path: str) -> list[str]:
        """Load the adapter `name` (folder `path`) again on each server that does not hold it: a replica that
        restarted lost every adapter loaded at run time. Returns the URLs of the servers it was loaded on;
        RemoteModelError when a server cannot list its adapters or refuses the load (those done stay loaded:
        a replica that holds it serves it)."""
        body = {"lora_name": name, "lora_path": self.server_path(path)}
        restored = []
        for url in self.base_urls:
            if name not in self._listed(url):
                self._post(url, "load_lora_adapter", body)
                restored.append(url)
        return restored

    def unload_versions(self, version_ids: Collection[str], prefix: str = "ilearn") -> list[str]:
        """Unload every adapter of `version_ids` the server holds, whichever process loaded it (the names
        `adapter_name` gives, checks included): a worker that is idle or was killed leaves its adapter loaded
        until then. Returns the names unloaded; RemoteModelError when the server cannot list them."""
        starts = tuple(f"{p}-{v}-" for v in version_ids for p in (prefix, f"{prefix}-check"))
        unloaded, failed = self.unload_each([n for n in self.loaded() if starts and n.startswith(starts)])
        for name, reason in failed:
            logger.error("could not unload adapter %s of a forgotten version: %s", name, reason)
        return unloaded

    def unload_each(self, names: Collection[str]) -> tuple[list[str], list[tuple[str, str]]]:
        """Unload each of `names`, going on past a refusal: (the names unloaded, (name, reason) of the others)."""
        unloaded, failed = [], []
        for name in names:
            try:
                self.unload(name)
                unloaded.append(name)
            except RemoteModelError as exc:
                failed.append((name, str(exc)))
        return unloaded, failed

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


ADAPTER_LEASE = "vllm-adapter"
"""The kind of the store leases a worker holds on the adapters it serves (`EventStore.hold_lease`, keyed by the
adapter's name)."""


def this_process() -> str:
    """Who holds a lease: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def adapter_name(version_id: str, prefix: str = "ilearn") -> str:
    """A name never used before for `version_id`'s adapter (vLLM caches adapters by name)."""
    return f"{prefix}-{version_id}-{uuid.uuid4().hex[:8]}"


def adapter_version(name: str, prefix: str = "ilearn") -> tuple[str, bool] | None:
    """(version id, whether it is a check's adapter) of a name `adapter_name` gave with `prefix` or
    `<prefix>-check`; None for any other name (another deployment's prefix, an adapter loaded by hand)."""
    for start, check in ((f"{prefix}-check-", True), (f"{prefix}-", False)):
        if name.startswith(start):
            version, sep, suffix = name[len(start):].rpartition("-")
            if sep and version and len(suffix) == 8:
                return version, check
    return None


@dataclass(frozen=True)
class LoadedAdapter:
    """One iLearn adapter the vLLM server holds (`loaded_adapters`)."""

    name: str
    version: str
    check: bool
    """A gate check's adapter (`VLLMAdapters.check` unloads it at once; one left behind is stale)."""
    state: str
    """"active", the version's status ("retired", "rejected", ...), "forgotten", or "not this deployment's"."""
    stale: bool


def drop_spent_leases(store: EventStore, leases: Collection[Lease], unloaded: Collection[str],
                      loaded: Collection[str]) -> None:
    """After a sweep: drop the leases of the adapters it `unloaded`, and the expired ones of adapters no server
    held (`loaded`: the servers' adapters before it)."""
    for lease in leases:
        if lease.key in unloaded or (not lease.live and lease.key not in loaded):
            store.drop_lease(lease.kind, lease.key)


def loaded_adapters(loaded: Collection[str], registry: ModelRegistry, prefix: str = "ilearn", *,
                    active: str | None = None, leases: Collection[Lease] | None = None) -> list[LoadedAdapter]:
    """The iLearn adapters among `loaded` (by name), each with its version's state, read from the registry once.

    Stale: an adapter no worker of `registry`'s deployment should serve, a version of it that is not the active one
    (retired by a promotion or a rollback, refused by the gate, forgotten) or a check's adapter, and, given the
    workers' `leases` (`ADAPTER_LEASE`), an adapter of the active version that no live lease holds (its worker
    died; `Lease.live`, on the store's clock). Workers unload their own retired adapters; those of a worker killed
    before its turns ended, or whose unload the server refused, stay loaded until swept. Adapters of versions this
    registry does not know (another deployment's) are never stale. `active`: the active version's id when the caller
    read it already."""
    active = registry.active_id() if active is None else active
    states = {v.id: ("forgotten" if v.metrics.get("forgotten") else v.status.value) for v in registry.list()}
    held = None if leases is None else {lease.key for lease in leases if lease.live}
    out = []
    for name in sorted(loaded):
        parsed = adapter_version(name, prefix)
        if parsed is None:
            continue
        version_id, check = parsed
        mine = version_id in states
        serving = version_id == active and not check
        state = "active" if serving else states.get(version_id, "not this deployment's")
        orphaned = serving and mine and held is not None and name not in held
        if orphaned:
            state = "active, held by no live worker"
        out.append(LoadedAdapter(name, version_id, check, state, mine and (not serving or orphaned)))
    return out


@dataclass
class _Served:
    version: str
    name: str  # the chat requests' `model`
    path: str | None = None  # the adapter folder (None: the base model)
    users: int = 0
    retired: bool = False
    unloaded: bool = False


class AdapterPublisher:
    """Which adapter the vLLM server serves for iLearn's active version, switched without stopping turns."""

    def __init__(self, vlm: OpenAIVisionLanguageModel, adapters: VLLMAdapters, *, prefix: str = "ilearn",
                 leases: EventStore | None = None, lease_s: float = 300.0, holder: str | None = None) -> None:
        """`leases`: the store in which this worker holds a lease on each adapter it serves (module docstring),
        for `lease_s` seconds from each renewal, as `holder` (default: this host and process)."""
        if lease_s <= 0:
            raise InvalidInput("lease_s must be > 0")
        self.vlm = vlm
        self.adapters = adapters
        self.prefix = prefix
        self.leases = leases
        self.lease_s = lease_s
        self.holder = holder or this_process()
        self._renewed: dict[str, float] = {}  # adapter name -> time.monotonic() of its lease's last renewal
        self._swept = time.monotonic()  # the first sweep one `lease_s` after start: leases of the dead have expired
        self.base_name = vlm.model_name
        self._lock = threading.Lock()
        self._restoring = threading.Lock()  # one load-again at a time, never beside the unload of the same adapter
        self._current = _Served(BASE, self.base_name)
        self._lingering: set[str] = set()  # retired adapters the server could not unload

    @property
    def served(self) -> tuple[str, str]:
        """(version id, name the server serves it under) of what the next turn gets."""
        with self._lock:
            return self._current.version, self._current.name

    @property
    def lingering(self) -> set[str]:
        """Names of retired adapters the server refused to unload (they waste its memory; no turn asks them)."""
        with self._lock:
            return set(self._lingering)

    def publish(self, version_id: str, path: str | None = None, *, revoke: bool = False) -> str:
        """Serve `version_id` from the next turn on: its adapter at `path` loaded under a new name (BASE: the base
        model's name); the adapter served before is unloaded once its turns end, or at once with `revoke` (a
        version trained on forgotten data: the turns holding it fail their next request rather than be answered
        by it). Returns the served name. A refused load changes nothing (RemoteModelError)."""
        if version_id == BASE:
            name = self.base_name
        else:
            path = _adapter_path(version_id, path)
            name = adapter_name(version_id, self.prefix)
            self.adapters.load(name, path)
            self._hold(name)
        with self._lock:
            old, self._current = self._current, _Served(version_id, name, path)
            old.retired = True
            idle = old.users == 0
        logger.info("vLLM serves version %s as %s (was %s)", version_id, name, old.name)
        if revoke and not idle:
            logger.warning("adapter %s (version %s) revoked while %d turn(s) hold it: their next requests fail",
                           old.name, old.version, old.users)
        if idle or revoke:
            self._unload(old)
        return name

    def revoke(self, version_ids: Collection[str]) -> list[str]:
        """Unload every adapter of `version_ids` (versions trained on forgotten data) the server holds, this
        process's and others' (`VLLMAdapters.unload_versions`); the names unloaded. A server that cannot list
        them is logged: each worker still unloads its own at its next store read."""
        try:
            names = self.adapters.unload_versions(version_ids, self.prefix)
        except RemoteModelError as exc:
            logger.error("adapters of forgotten versions %s not swept from the server: %s", ", ".join(version_ids), exc)
            return []
        if names:
            logger.warning("adapters of forgotten versions unloaded from the vLLM server: %s", ", ".join(names))
        return names

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
            renew = (served.path is not None and self.leases is not None
                     and time.monotonic() - self._renewed.get(served.name, -math.inf) > self.lease_s / 3)
        if renew:
            self._hold(served.name)
            self._sweep_soon()
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
        if served.path is not None:
            model.restore = lambda: self._restore(served)
        return model

    def _restore(self, served: _Served) -> bool:
        """After a request for `served`'s adapter was answered 404: load it again on the replicas that lost it
        (restarted); whether the request may be sent again. Never for an adapter unloaded on purpose (retired
        and idle, or revoked: a forgotten version's)."""
        with self._restoring:
            with self._lock:
                if served.unloaded:
                    return False
            try:
                restored = self.adapters.restore(served.name, str(served.path))
            except RemoteModelError as exc:
                logger.error("adapter %s (version %s) is missing on a vLLM server and could not be loaded again: %s",
                             served.name, served.version, exc)
                return False
        if restored:
            logger.warning("adapter %s (version %s) loaded again on %s, which had lost it (restarted?)",
                           served.name, served.version, ", ".join(restored))
        return True

    def _hold(self, name: str) -> None:
        """Take or renew this worker's lease on adapter `name` (a store that fails is logged: the adapter serves
        on, and may be listed stale once the lease expires)."""
        if self.leases is None:
            return
        try:
            self.leases.hold_lease(ADAPTER_LEASE, name, self.holder, self.lease_s)
        except Exception as exc:  # a lease is bookkeeping: never fail a turn for it
            logger.warning("could not renew the lease on adapter %s: %s", name, exc)
            return
        with self._lock:
            self._renewed[name] = time.monotonic()

    def sweep_expired(self) -> list[str]:
        """Unload the adapters whose lease expired (their worker died, or idled past `lease_s`) and drop those
        leases, and the expired leases of adapters no server holds; the names unloaded. Never this worker's own
        adapters. A worker whose adapter is swept while it idles loads it again at its next turn (the 404); one
        that renewed between the listing and the unload does the same. Two workers sweeping at once unload each
        adapter once (the other's refusal is ignored)."""
        if self.leases is None:
            return []
        with self._lock:
            mine = {self._current.name, *self._renewed}
        expired = [lease for lease in self.leases.list_leases(ADAPTER_LEASE)
                   if not lease.live and lease.key not in mine]
        if not expired:
            return []
        loaded = set(self.adapters.loaded())
        unloaded, _ = self.adapters.unload_each([lease.key for lease in expired if lease.key in loaded])
        drop_spent_leases(self.leases, expired, unloaded, loaded)
        if unloaded:
            logger.warning("unloaded %d adapter(s) whose workers' leases expired: %s", len(unloaded),
                           ", ".join(unloaded))
        return unloaded

    def _sweep_soon(self) -> None:
        """At most once per `lease_s`, sweep the expired leases' adapters in the background (`sweep_expired`): a
        killed worker's adapters go without anyone running `ilearn models adapters --sweep`."""
        with self._lock:
            due = time.monotonic() - self._swept > self.lease_s
            if due:
                self._swept = time.monotonic()
        if due:
            threading.Thread(target=self._sweep_quietly, name="ilearn-adapter-sweep", daemon=True).start()

    def _sweep_quietly(self) -> None:
        try:
            self.sweep_expired()
        except Exception as exc:  # bookkeeping: the next sweep tries again, `--sweep` by hand still works
            logger.warning("could not sweep expired adapters: %s", exc)

    def _release(self, name: str) -> None:
        """Give up this worker's lease on an adapter it unloaded."""
        with self._lock:
            self._renewed.pop(name, None)
        if self.leases is not None:
            try:
                self.leases.drop_lease(ADAPTER_LEASE, name)
            except Exception as exc:  # it expires anyway
                logger.warning("could not give up the lease on adapter %s: %s", name, exc)

    def _unload(self, served: _Served) -> None:
        with self._lock:
            if served.unloaded or served.name == self.base_name:
                return  # unloaded already (a revoked adapter whose last turn ended), or the server's own model
            served.unloaded = True
        try:
            with self._restoring:  # a load-again in progress finishes first, then this unloads it everywhere
                self.adapters.unload(served.name)
            logger.info("adapter %s (version %s) unloaded", served.name, served.version)
        except RemoteModelError as exc:  # no turn asks it any more; it wastes server memory until a restart
            logger.warning("could not unload adapter %s: %s", served.name, exc)
            with self._lock:
                served.unloaded = False  # the end of a turn still holding it tries again
                self._lingering.add(served.name)
            return
        with self._lock:
            self._lingering.discard(served.name)
        self._release(served.name)


class PublishedVersions(ModelVersions):
    """The runtime's `ModelVersions` when a vLLM server serves the versions (`model.publish` "vllm-lora").

    Where `ModelVersions` loads the active version into a model object, this publishes it (`AdapterPublisher`):
    at the store read of a turn's `current` (a promotion made by another process serves from the next turn on)
    and at `refresh`. Each turn holds the adapter it started with to its end. `change` (a promotion or rollback
    of this process) commits only once the server serves the version; a version found active at a turn or a
    `refresh` that the server refuses is logged and the version served before serves on; a turn tries it again
    `retry_s` after the refusal, `refresh` at once.

    A version trained on forgotten events (`ModelRegistry.forget_events`, in this process: `forget`, or in another
    one) never answers again once this process has read the forget: its adapter is unloaded at once, even while
    turns hold it (their next requests fail), and the active version is published; while the server refuses that
    one, the base model serves. `note` says why the served version is not the active one.
    """

    _source: ModelRegistry

    def __init__(self, publisher: AdapterPublisher, registry: ModelRegistry, *, retry_s: float = 30.0) -> None:
        super().__init__(publisher.vlm, registry)
        self.publisher = publisher
        self.retry_s = retry_s
        """Seconds after a refusal before a turn tries the refused version again (`refresh` tries it at once)."""
        self._refused_at: dict[str, float] = {}  # version id -> time.monotonic() of the server's last refusal

    @classmethod
    def from_config(cls, vlm: OpenAIVisionLanguageModel, registry: ModelRegistry,
                    config: ModelConfig) -> PublishedVersions:
        """Publish to the vLLM server of the openai backend's `vlm` (`VLLMAdapters.from_config`), a refused
        version tried again after `model.publish_retry_s`, each adapter served leased in the registry's store."""
        return cls(AdapterPublisher(vlm, VLLMAdapters.from_config(config), leases=registry.store), registry,
                   retry_s=config.publish_retry_s)

    def current(self, *, wait: bool = False) -> ModelHandle:
        """The served version's handle (one store read); the active version published first if another one
        serves. While another thread publishes (`wait` False), the version served now, unless that one was
        trained on forgotten events: then this waits for the thread."""
        wanted = self._source.active_id()
        served = self.publisher.served[0]
        if wanted != served:
            forgotten = self._source.forgotten(served)
            if (forgotten or self._due(wanted)) and self._loading.acquire(blocking=wait or forgotten):
                try:
                    self._catch_up(wanted)
                finally:
                    self._loading.release()
        model = self.publisher.model()
        return ModelHandle(model.version, model)

    def refresh(self) -> ModelHandle:
        """Publish the active version now if another one serves, a refused one tried again (waits for a publish
        in progress); the served version's handle."""
        with self._lock:
            self._refused_at.clear()
        return self.current(wait=True)

    def change(self, change: Callable[[], ModelVersion]) -> ModelVersion:
        """Run `change` (the registry's promote or rollback) and serve the version it made active, in one store
        transaction (`ModelRegistry.change_active`): when the server refuses the adapter (RemoteModelError), the
        change is undone and the version served before serves on. Turns meanwhile keep the served version."""
        with self._loading:
            version = self._source.change_active(change, serve=self._serve)
        with self._lock:
            self._refused_at.pop(version.id, None)
            self.note = None
        return version

    def forget(self, version_ids: Collection[str]) -> str:
        """After `ModelRegistry.forget_events` in this process: the adapter of a forgotten version unloaded at once
        and the active version served, or the base model while the server refuses it (`note` says so); then every
        adapter of those versions the server still holds (other workers', idle or killed) unloaded too. The id of
        the version that serves now."""
        with self._loading:
            self._catch_up(self._source.active_id())
        self.publisher.revoke(version_ids)
        return self.publisher.served[0]

    @contextmanager
    def hold(self) -> Iterator[ModelHandle]:
        """One turn: the active version published if needed, then its adapter held until the block ends."""
        self.current()
        with self.publisher.turn() as model, bind(ModelHandle(model.version, model)) as handle:
            yield handle

    def _due(self, version_id: str) -> bool:
        """Whether a turn may try to publish `version_id` (never refused, or refused over `retry_s` ago)."""
        with self._lock:
            refused = self._refused_at.get(version_id)
        return refused is None or time.monotonic() - refused >= self.retry_s

    def _catch_up(self, wanted: str) -> None:
        """Publish `wanted` if another version serves (caller holds `_loading`): at once, the adapter served
        before unloaded at once, when that one was forgotten; else only if `_due`."""
        served = self.publisher.served[0]
        if wanted == served:
            return  # published by the thread we waited for
        forgotten = self._source.forgotten(served)
        if forgotten or self._due(wanted):
            self._publish(wanted, revoke=forgotten)

    def _serve(self, version: ModelVersion) -> None:
        """Publish `version` unless it serves already (caller holds `_loading`); a refusal raises."""
        if version.id != self.publisher.served[0]:
            self.publisher.publish(version.id, version.path)

    def _publish(self, version_id: str, *, revoke: bool) -> None:
        """Serve `version_id` from the next turn on (caller holds `_loading`); a refusal is logged, and with
        `revoke` (the version served now was forgotten) the base model serves instead."""
        before, before_name = self.publisher.served
        try:
            path = None if version_id == BASE else self._source.get(version_id).path
            self.publisher.publish(version_id, path, revoke=revoke)
        except Exception as exc:  # a version the server refuses must not take answering down
            with self._lock:
                self._refused_at[version_id] = time.monotonic()
            if revoke:
                name = self.publisher.publish(BASE, revoke=True)
                unloaded = "its unload refused too" if before_name in self.publisher.lingering else "unloaded"
                outcome = (f"{before}, served before, was trained on forgotten data: {unloaded}; the base model "
                           f"serves until the server loads it")
                logger.info("vLLM serves the base model %s in place of the forgotten version %s", name, before)
            else:
                outcome = f"{before} serves on"
            self.note = f"the model server refused version {version_id} ({exc}); {outcome}"
            logger.error("could not publish model version %s to the vLLM server: %s; %s", version_id, exc, outcome,
                         exc_info=not isinstance(exc, ILearnError))
            return
        with self._lock:
            self._refused_at.pop(version_id, None)
        self.note = None
