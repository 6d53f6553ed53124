"""Which weights serve: one model object per version, swapped by reference.

A turn takes a `ModelHandle` (a version id and the model object serving it) when it starts and uses that
object until it ends. Promoting or rolling back never touches a model a turn may be using: the version's
weights are loaded into a model object of their own (a copy of the base model with the version applied), and
the next turns take that object instead. The base model passed in is never changed, so training always starts
from it and rollback to the base is instant.

    versions = ModelVersions(vlm, registry)      # registry: anything with active_id() and apply(vlm, id)
    with versions.hold() as handle:               # a turn
        handle.vlm.generate(...)                  # the same object from start to end

`ServedModel` is a VisionLanguageModel that forwards to the model of the turn running on the calling thread
(a context variable set by `hold`), so that parts built once around "the model" (a model clarifier, a model
feedback decoder) use the turn's version too.

One store read per turn (`active_id`) finds out which version is active, so a promotion made by another
process (`ilearn models promote`) serves from the next turn on. The first turn that sees a version not yet in
memory loads it (a copy of the base model, a second or so for `small`); turns running meanwhile keep the
previous version rather than wait. Loaded versions are kept, least recently used dropped beyond `keep` (a
running turn keeps its object alive until it ends).

With `model.publish` "vllm-lora" the versions are served by a vLLM server instead of model objects in this process:
`ilearn.models.vllm_publish.PublishedVersions` publishes the active version at the same two points (a turn's store
read, `refresh`) and each turn holds the adapter it started with.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ilearn.models.base import Generation, Message, VisionLanguageModel

if TYPE_CHECKING:
    from ilearn.types import ModelVersion

logger = logging.getLogger(__name__)

BASE = "base"
"""The version id of the base weights (no trained version active)."""


@dataclass(frozen=True)
class ModelHandle:
    """The model object a turn uses from start to end, and the version it serves."""

    version: str
    vlm: VisionLanguageModel


class VersionSource(Protocol):
    """Where the active version is decided (the model registry)."""

    def active_id(self) -> str:
        """The active version's id, or "base"."""
        ...

    def apply(self, vlm: VisionLanguageModel, version_id: str) -> bool:
        """Make `vlm` serve `version_id` (its weights changed in place)."""
        ...


_TURN: contextvars.ContextVar[ModelHandle | None] = contextvars.ContextVar("ilearn_turn_model", default=None)


class ModelVersions:
    """The model objects of the versions in memory, and which one the next turn gets (module docstring)."""

    def __init__(self, base: VisionLanguageModel, source: VersionSource | None = None, *, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self._base = base
        self._source = source
        self._keep = keep
        self._loaded: OrderedDict[str, ModelHandle] = OrderedDict()  # version id -> handle (not the base)
        self._failed: set[str] = set()  # versions whose weights could not be loaded (not retried per turn)
        self._lock = threading.Lock()  # guards the dicts above and `_latest`; never held while loading
        self._loading = threading.Lock()  # one load at a time
        self._latest = ModelHandle(getattr(base, "version", BASE), base)
        self.served = ServedModel(self)
        self.note: str | None = None
        """Why the version served is not the active one (its weights could not be loaded), else None."""

    @property
    def base(self) -> VisionLanguageModel:
        """The base model (never changed by a promotion; training starts from it)."""
        return self._base

    def current(self, *, wait: bool = False) -> ModelHandle:
        """The handle the next turn gets: the active version (one store read).

        A version not in memory is loaded by the first caller; with `wait` False, callers that find another
        thread loading keep the latest handle meanwhile. A version that fails to load is logged and the
        latest handle serves on (`refresh` retries it).
        """
        if self._source is None:  # no registry: the model serves whatever it was given
            return ModelHandle(getattr(self._base, "version", BASE), self._base)
        wanted = self._source.active_id()
        with self._lock:
            handle = self._cached(wanted)
            if handle is not None or wanted in self._failed:
                return handle or self._latest
        if not self._loading.acquire(blocking=wait):
            with self._lock:
                return self._latest
        try:
            with self._lock:
                handle = self._cached(wanted)  # loaded by the thread we waited for
            return handle if handle is not None else self._load(wanted)
        finally:
            self._loading.release()

    def refresh(self) -> ModelHandle:
        """Load the active version now if it is not in memory (waits for a load in progress); its handle."""
        with self._lock:
            self._failed.clear()
        return self.current(wait=True)

    def change(self, change: Callable[[], ModelVersion]) -> ModelVersion:
        """Run `change` (the registry's promote or rollback) and load the version it made active (`refresh`); the
        version. (`PublishedVersions` commits the change only once the vLLM server serves the version.)"""
        version = change()
        self.refresh()
        return version

    def forget(self, version_ids: Collection[str]) -> str:
        """After `ModelRegistry.forget_events`: the versions trained on forgotten events dropped from memory (the
        base model serves in their place until the active version loads) and the active version loaded; the id
        of the version that serves now. (A turn running on one of them ends on it.)"""
        gone = set(version_ids)
        with self._lock:
            for version_id in gone:
                self._loaded.pop(version_id, None)
            if self._latest.version in gone:
                self._latest = ModelHandle(BASE, self._base)
        return self.refresh().version

    def clear_caches(self) -> None:
        """Empty the caches of recently seen images of the models in memory, those that keep one (a `clear_caches`
        method: `ComposedVLMChat`'s vision features); after a user is forgotten, so that none of theirs stays."""
        with self._lock:
            models = {id(m): m for m in (self._base, self._latest.vlm, *(h.vlm for h in self._loaded.values()))}
        for vlm in models.values():
            clear = getattr(vlm, "clear_caches", None)
            if clear is not None:
                clear()

    @contextmanager
    def hold(self) -> Iterator[ModelHandle]:
        """The current handle, bound to this thread's context for the block (what `served` forwards to)."""
        with bind(self.current()) as handle:
            yield handle

    def in_memory(self) -> list[str]:
        """The ids of the versions held in memory besides the base, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def _cached(self, version_id: str) -> ModelHandle | None:
        """The handle of `version_id` if in memory (caller holds `_lock`); it becomes the latest."""
        if version_id == BASE:
            handle = ModelHandle(BASE, self._base)
        else:
            handle = self._loaded.get(version_id)
            if handle is None:
                return None
            self._loaded.move_to_end(version_id)
        self._latest = handle
        self.note = None
        return handle

    def _load(self, version_id: str) -> ModelHandle:
        """A copy of the base model serving `version_id` (caller holds `_loading`, not `_lock`)."""
        try:
            vlm = copy.deepcopy(self._base)
            self._source.apply(vlm, version_id)
        except Exception as exc:  # a broken version must not take answering down
            logger.exception("could not load model version %s; serving %s meanwhile", version_id,
                             self._latest.version)
            with self._lock:
                self._failed.add(version_id)
                self.note = f"model version {version_id} could not be loaded ({exc}); {self._latest.version} serves"
                return self._latest
        handle = ModelHandle(version_id, vlm)
        with self._lock:
            self._loaded[version_id] = handle
            while len(self._loaded) > self._keep:
                dropped, _ = self._loaded.popitem(last=False)
                logger.info("model version %s dropped from memory", dropped)
            self._latest = handle
            self.note = None
        logger.info("model version %s loaded; it serves from the next turn on", version_id)
        return handle


@contextmanager
def bind(handle: ModelHandle) -> Iterator[ModelHandle]:
    """`handle` as the running turn's model in this thread's context for the block (what `ServedModel` uses)."""
    token = _TURN.set(handle)
    try:
        yield handle
    finally:
        _TURN.reset(token)


class ServedModel:
    """A VisionLanguageModel that forwards to the running turn's model (else the current one)."""

    def __init__(self, versions: ModelVersions) -> None:
        self._versions = versions
        self.name = getattr(versions.base, "name", "model")

    def _handle(self) -> ModelHandle:
        return _TURN.get() or self._versions.current()

    @property
    def version(self) -> str:
        """The version the running turn uses."""
        return self._handle().version

    def generate(self, messages: Sequence[Message], *, max_new_tokens: int = 48,
                 avoid: Sequence[str] = ()) -> Generation:
        """See `VisionLanguageModel.generate`."""
        return self._handle().vlm.generate(messages, max_new_tokens=max_new_tokens, avoid=avoid)

    def score(self, messages: Sequence[Message], candidates: Sequence[str]) -> list[float]:
        """See `VisionLanguageModel.score`."""
        return self._handle().vlm.score(messages, candidates)


__all__ = ["BASE", "ModelHandle", "ModelVersions", "ServedModel", "VersionSource", "bind"]
