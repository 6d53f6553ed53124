"""The one factory that builds a deployment's parts from a Config: model, store, memory, decoder, clarifier, registry.

    with build_runtime(Config(home="ilearn-data", model=ModelConfig(backend="tiny"))) as runtime:
        runtime.memory.search(image, "What is this called?", user_id="ana")

Every backend is chosen by name through `ilearn.plugins` (the settings say which: `model.backend`, `store`,
`retrieval.image_embedder` / `text_embedder` / `index` / `memory`, `feedback.method`, `clarify.method`; the
clarifier's facets come from `clarify.facets` and the store's events). The assistant, the experiments
(`ilearn.evaluation.runner_common.Deployment`), the CLI and the benchmarks all build their parts here, so a part
is wired the same way everywhere. `model.publish` says how a promoted version comes to serve (`build_versions`).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from ilearn import plugins
from ilearn.config import Config, store_scheme
from ilearn.dialogue.clarify import Clarifier, make_clarifier
from ilearn.dialogue.feedback import FeedbackDecoder, make_decoder
from ilearn.memory.base import RetrievalMemory
from ilearn.memory.store import EventStore
from ilearn.models.base import ImageEmbedder, TextEmbedder, VisionLanguageModel
from ilearn.models.versions import ModelVersions

if TYPE_CHECKING:
    from ilearn.learning.registry import ModelRegistry

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The parts of one deployment, built by `build_runtime`; `close()` saves the index and closes the store."""

    config: Config
    vlm: VisionLanguageModel
    store: EventStore
    memory: RetrievalMemory
    decoder: FeedbackDecoder
    clarifier: Clarifier
    registry: ModelRegistry
    versions: ModelVersions
    """Which version serves; the decoder and the clarifier use the running turn's version through it."""

    def close(self) -> None:
        """Save what the memory holds and close the store."""
        try:
            self.memory.close()
        finally:
            self.store.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def open_store(config: Config, *, create: bool = True) -> EventStore:
    """The store `config.store_url` names (the SQLite file in the home folder by default).

    With `create` false a deployment that does not exist yet raises NotFound instead of being created."""
    url = config.store_url
    return plugins.create("store", store_scheme(url), url, create=create)


def build_embedders(config: Config) -> tuple[ImageEmbedder, TextEmbedder]:
    """The retrieval image and text embedders the settings name ("auto" resolved by `Config.embedder`)."""
    device, threads = config.model.device, config.model.threads
    name = config.embedder("image_embedder")
    extra = {"weight": config.retrieval.fused_weight} if name == "fused" else {}
    image = plugins.create("image_embedder", name, device=device, threads=threads, **extra)
    text = plugins.create("text_embedder", config.embedder("text_embedder"), device=device, threads=threads)
    return image, text


def build_memory(config: Config, store: EventStore) -> RetrievalMemory:
    """The retrieval memory over `store`, its index saved in the home folder.

    On a store that several processes share (one with a change feed: PostgreSQL), memory "dual" is its "fleet"
    form, whose index follows the store's changes (`ilearn.memory.feed`, docs/fleet.md)."""
    from ilearn.memory.feed import ChangeFeed

    image_embedder, text_embedder = build_embedders(config)
    index_type = plugins.resolve("index", config.retrieval.index)
    name = config.retrieval.memory
    if name == "dual" and isinstance(store, ChangeFeed):
        name = "fleet"
    return plugins.create("memory", name, store, image_embedder, text_embedder, config.retrieval,
                          config.home_path, index_type=index_type)


def build_runtime(config: Config, *, vlm: VisionLanguageModel | None = None) -> Runtime:
    """Build every part of a deployment from `config`; `vlm` reuses a model already loaded (experiments share
    one model between deployments) instead of loading `config.model`."""
    from ilearn.learning.registry import ModelRegistry

    _limit_index_threads(config.model.threads)
    config.home_path.mkdir(parents=True, exist_ok=True)
    store = open_store(config)
    try:
        if vlm is None:
            vlm = plugins.create("model", config.model.backend, config.model)
        memory = build_memory(config, store)
    except BaseException:
        store.close()
        raise
    registry = ModelRegistry(store, config.home_path)
    versions = build_versions(config, vlm, registry)
    # A model decoder or clarifier judges with the version that serves the turn, not the base weights.
    decoder = make_decoder(config.feedback, versions.served, text_embedder=memory.text_embedder)
    method = config.clarify.method if config.clarify.enabled else "never"
    clarifier = make_clarifier(method, versions.served, settings=config.clarify, store=store)
    logger.debug("runtime built: model %s, store %s, memory %s", config.model.backend, config.store_url,
                 config.retrieval.memory)
    return Runtime(config, vlm, store, memory, decoder, clarifier, registry, versions)


def build_versions(config: Config, vlm: VisionLanguageModel, registry: ModelRegistry) -> ModelVersions:
    """Which version serves: model objects of this process, or (`model.publish` "vllm-lora") LoRA adapters that
    the vLLM server of the openai backend loads (`ilearn.models.vllm_publish`)."""
    if config.model.publish == "vllm-lora":
        from ilearn.models.vllm_publish import PublishedVersions

        return PublishedVersions.from_config(vlm, registry, config.model)
    return ModelVersions(vlm, registry)


def _limit_index_threads(threads: int) -> None:
    """FAISS uses every core by default; keep it to the model's thread budget (when FAISS is installed)."""
    if importlib.util.find_spec("faiss") is not None:
        import faiss

        faiss.omp_set_num_threads(threads)
