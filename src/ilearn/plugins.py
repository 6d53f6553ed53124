"""One registry for every pluggable backend: kind -> name -> "module:factory", imported on first use.

    from ilearn import plugins

    plugins.names("model")                          # ['hf', 'openai', 'small', 'stub', 'tiny', ...]
    vlm = plugins.create("model", "tiny", ModelConfig(backend="tiny"))
    plugins.register("model", "mine", "my_package.vlm:load")   # in-process, e.g. in a test

A third party adds a backend with one Python entry point in its own package, in the group of the kind
(`GROUPS`), whose value is the usual "module:factory":

    [project.entry-points."ilearn.models"]
    mine = "my_package.vlm:load"

Nothing is imported until a backend is created, so heavy optional dependencies load only when chosen; a built-in
backend whose optional dependency is missing raises `MissingDependency` naming the extra to install. What each
kind's factory receives is written in `KINDS`; the Protocol each returns lives in the base module of its
subpackage (`ilearn.models.base`, `ilearn.memory.base`, ...). `ilearn.runtime.build_runtime` is the one place
that turns a Config into backends through this registry.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ilearn.errors import InvalidInput, require_package

logger = logging.getLogger(__name__)

KINDS: dict[str, str] = {
    "model": "vision-language model backend: factory(ModelConfig) -> VisionLanguageModel",
    "image_embedder": "image embedder: factory(*, device, threads) -> ImageEmbedder",
    "text_embedder": "text embedder: factory(*, device, threads) -> TextEmbedder",
    "store": "event store, by URL scheme: factory(url, *, create) -> EventStore",
    "index": "vector index: a VectorIndex class (constructor (dim, *, meta, **params), classmethod load)",
    "memory": "retrieval memory: factory(store, image_embedder, text_embedder, config, home, *, index_type)",
    "decoder": "feedback decoder: factory(FeedbackConfig, vlm, text_embedder) -> FeedbackDecoder",
    "clarifier": "clarifier: factory(vlm) -> Clarifier",
    "recipe": "training recipe: the Recipe itself, recipe(vlm, rows, LearnConfig, out_dir) -> TrainResult",
    "scenario": "experiment scenario: factory(**options) -> Scenario",
}
"""Every kind of pluggable part, with what its registered target is called with."""

GROUPS: dict[str, str] = {
    "model": "ilearn.models", "image_embedder": "ilearn.image_embedders", "text_embedder": "ilearn.text_embedders",
    "store": "ilearn.stores", "index": "ilearn.indexes", "memory": "ilearn.memories", "decoder": "ilearn.decoders",
    "clarifier": "ilearn.clarifiers", "recipe": "ilearn.recipes", "scenario": "ilearn.scenarios",
}
"""The entry point group through which a third-party package adds a backend of each kind."""

LABELS: dict[str, str] = {
    "model": "model backend", "image_embedder": "image embedder", "text_embedder": "text embedder",
    "store": "store", "index": "vector index", "memory": "retrieval memory", "decoder": "feedback method",
    "clarifier": "clarify method", "recipe": "recipe", "scenario": "scenario",
}


@dataclass(frozen=True)
class Plugin:
    """One registered backend: where its factory lives and what it needs that the core install lacks."""

    kind: str
    name: str
    target: str  # "module:attribute" (the attribute may be dotted, e.g. "module:Class.method")
    requires: tuple[str, ...] = ()  # importable modules it needs beyond the core dependencies
    extra: str = ""  # the `pip install 'ilearn[extra]'` that provides them


_REGISTRY: dict[str, dict[str, Plugin]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str, target: str, *, requires: tuple[str, ...] = (), extra: str = "",
             replace: bool = False) -> None:
    """Register the backend `name` of `kind` as "module:factory" (imported only when it is created).

    A name that is already registered is refused unless `replace` is true."""
    _check_kind(kind)
    module, sep, attr = target.partition(":")
    if not (module and sep and attr):
        raise InvalidInput(f"a {LABELS[kind]} target must read 'module:factory', not {target!r}")
    if requires and not extra:
        raise InvalidInput(f"{LABELS[kind]} {name!r}: name the extra that installs {', '.join(requires)}")
    if name in _REGISTRY[kind] and not replace:
        raise InvalidInput(f"{LABELS[kind]} {name!r} is already registered ({_REGISTRY[kind][name].target})")
    _REGISTRY[kind][name] = Plugin(kind, name, target, tuple(requires), extra)


def unregister(kind: str, name: str) -> None:
    """Remove a backend registered with `register` (no-op when it is not there)."""
    _check_kind(kind)
    _REGISTRY[kind].pop(name, None)


def names(kind: str) -> list[str]:
    """Every backend of `kind`: the registered ones and those of installed entry points, sorted."""
    _check_kind(kind)
    return sorted(set(_REGISTRY[kind]) | set(_entry_points(kind)))


def is_known(kind: str, name: str) -> bool:
    """Whether `name` is a backend of `kind` (entry points are read only when it is not registered)."""
    _check_kind(kind)
    return name in _REGISTRY[kind] or name in _entry_points(kind)


def check(kind: str, name: str, setting: str | None = None) -> None:
    """Raise InvalidInput, listing the known backends, when `name` is not a backend of `kind`."""
    if not is_known(kind, name):
        where = f" (setting {setting})" if setting else ""
        raise InvalidInput(f"unknown {LABELS[kind]} {name!r}{where}; choose one of {', '.join(names(kind))}")


def plugin(kind: str, name: str) -> Plugin:
    """The registration of `name` (an entry point when no in-process registration has that name)."""
    check(kind, name)
    found = _REGISTRY[kind].get(name)
    return found if found is not None else _entry_points(kind)[name]


def resolve(kind: str, name: str) -> Callable[..., Any]:
    """The factory of backend `name` of `kind`, imported now (its optional dependencies checked first)."""
    entry = plugin(kind, name)
    for module in entry.requires:
        require_package(module, entry.extra)
    module_name, _, attr = entry.target.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def create(kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """Build backend `name` of `kind`: its factory called with `args` and `kwargs` (see `KINDS`)."""
    return resolve(kind, name)(*args, **kwargs)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidInput(f"unknown kind of part {kind!r}; choose one of {', '.join(KINDS)}")


def _entry_points(kind: str) -> dict[str, Plugin]:
    """The backends that installed packages declare in the entry point group of `kind` (read on each call)."""
    found = importlib.metadata.entry_points(group=GROUPS[kind])
    return {ep.name: Plugin(kind, ep.name, ep.value) for ep in found}


# -- the built-in backends ----------------------------------------------------------------------------------
_TRAIN = {"requires": ("trl", "peft", "datasets"), "extra": "train"}
_FLEET = {"requires": ("psycopg", "psycopg_pool"), "extra": "fleet"}
BUILTINS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("model", "small", "ilearn.models.small:load_small", {}),
    ("model", "tiny", "ilearn.models.tiny:load_tiny", {}),
    ("model", "hf", "ilearn.models.hf:load_hf", {}),
    ("model", "openai", "ilearn.models.openai:load_openai", {"requires": ("openai",), "extra": "openai"}),
    ("model", "stub", "ilearn.models.stub:load_stub", {}),
    ("image_embedder", "instance", "ilearn.models.instance:InstanceImageEmbedder", {}),
    ("image_embedder", "foreground", "ilearn.models.embedders:ForegroundImageEmbedder", {}),
    ("image_embedder", "efficientnet", "ilearn.models.embedders:EfficientNetImageEmbedder", {}),
    ("image_embedder", "fused", "ilearn.models.embedders:FusedImageEmbedder", {}),
    ("image_embedder", "stub", "ilearn.models.embedders:StubImageEmbedder", {}),
    ("text_embedder", "minilm", "ilearn.models.embedders:MiniLMTextEmbedder", {}),
    ("text_embedder", "hashing", "ilearn.models.embedders:HashingTextEmbedder", {}),
    ("store", "sqlite", "ilearn.memory.sqlite:open_url", {}),
    ("store", "postgresql", "ilearn.memory.postgres:open_url", _FLEET),
    ("store", "postgres", "ilearn.memory.postgres:open_url", _FLEET),
    ("index", "faiss", "ilearn.memory.index:FaissIndex", {}),
    ("index", "partitioned", "ilearn.memory.partitioned:PartitionedIndex", {}),
    ("index", "exact", "ilearn.memory.stub:ExactIndex", {}),
    ("memory", "dual", "ilearn.memory.retrieval:DualModalityMemory", {}),
    ("memory", "stub", "ilearn.memory.stub:StubMemory", {}),
    ("memory", "fleet", "ilearn.memory.feed:FleetMemory", {}),
    ("decoder", "lexical", "ilearn.dialogue.feedback:lexical_decoder", {}),
    ("decoder", "model", "ilearn.dialogue.feedback:model_decoder", {}),
    ("decoder", "hybrid", "ilearn.dialogue.feedback:hybrid_decoder", {}),
    ("clarifier", "lexical", "ilearn.dialogue.clarify:lexical_clarifier", {}),
    ("clarifier", "model", "ilearn.dialogue.clarify:model_clarifier", {}),
    ("clarifier", "never", "ilearn.dialogue.clarify:never_clarifier", {}),
    ("recipe", "sft", "ilearn.learning.recipes:sft", _TRAIN),
    ("recipe", "dpo", "ilearn.learning.recipes:dpo", _TRAIN),
    ("recipe", "kto", "ilearn.learning.recipes:kto", _TRAIN),
    ("recipe", "reinforce", "ilearn.learning.recipes:reinforce", _TRAIN),
    ("scenario", "pharmacy", "ilearn.evaluation.scenarios.pharmacy:pharmacy_scenario", {}),
    ("scenario", "objects", "ilearn.evaluation.scenarios.objects:ObjectsScenario.from_folder", {}),
    ("scenario", "reference-game", "ilearn.evaluation.scenarios.reference_game:reference_game_scenario", {}),
    ("scenario", "personal", "ilearn.evaluation.scenarios.personal:personal_scenario", {}),
)
"""(kind, name, "module:factory", options) of every backend that ships with iLearn."""

for _kind, _name, _target, _options in BUILTINS:
    register(_kind, _name, _target, **_options)
