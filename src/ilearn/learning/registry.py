"""The model registry: every trained version kept with its lineage, promote / rollback in one call each.

A version is a folder under `<home>/models/<id>/` (a PEFT adapter, or the trained parts' tensors) plus a
`ModelVersion` row in the store: parent, recipe and settings, the event ids it was trained on (the dataset
snapshot), the gate's metrics and its status (candidate, active, retired, rejected). At most one version is
active; none active means the base model. The running assistant reads `active_id()` at each turn (one SQLite
read); a version it does not hold yet is loaded into a model object of its own with `apply`, which the next turns
take while running turns finish on theirs (`ilearn.models.versions`; no restart).

Forgetting a user (`forget_events`): every version trained on one of the user's events is marked (metrics
"forgotten"), retired and its weights deleted; if it was active, the latest clean version promoted before it
(or the base model) serves instead. Versions that only held such events out for the gate keep their weights;
every version that named them loses the ids and its gate examples (they quote questions and answers). A weights
folder that cannot be deleted (a permission, a busy file system) is recorded as such in the version's metrics and
in the report, never as deleted, and every later forget tries again.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ilearn.errors import InvalidInput, NotFound
from ilearn.learning.parts import WEIGHTS_FILE
from ilearn.types import ModelStatus, ModelVersion, new_id

if TYPE_CHECKING:
    from ilearn.config import ModelConfig
    from ilearn.memory.store import EventStore
    from ilearn.models.base import TrainableModel

logger = logging.getLogger(__name__)

BASE = "base"
"""The id a wrapper reports while it serves the base weights (no version active)."""


@dataclass
class ForgottenVersions:
    """What `ModelRegistry.forget_events` did to the model versions."""

    trained: list[str] = field(default_factory=list)
    """Versions trained on the forgotten events: marked, retired, their weights deleted."""
    scrubbed: list[str] = field(default_factory=list)
    """Versions that named the events (trained on them or held them out): their ids and gate examples removed."""
    undeleted: dict[str, str] = field(default_factory=dict)
    """Versions (of this forget or an earlier one) whose weights folder could not be deleted: id -> the error.
    Each later forget tries again (`ModelRegistry.delete_forgotten_weights`)."""
    active_before: str = "base"
    active_after: str = "base"

    @property
    def replaced(self) -> bool:
        """Whether the serving version was trained on the forgotten events (and another now serves)."""
        return self.active_before != self.active_after


def _without_examples(value: Any) -> Any:
    """`value` (JSON-like metrics) without any "examples" entry, at any depth."""
    if isinstance(value, dict):
        return {k: _without_examples(v) for k, v in value.items() if k != "examples"}
    if isinstance(value, list):
        return [_without_examples(v) for v in value]
    return value


class _Undo(Exception):
    """Undoes a planned change's transaction (`ModelRegistry.change_active`), carrying the version it made active."""

    def __init__(self, version: ModelVersion) -> None:
        super().__init__(version.id)
        self.version = version


class ModelRegistry:
    """Model versions of one deployment, stored in an EventStore, weights under `<home>/models/`."""

    def __init__(self, store: EventStore, home: str | Path) -> None:
        self.store = store
        self.root = Path(home) / "models"
        self._planning = threading.local()  # on while `change_active` plans a change: its logs are left out

    def _log_change(self, message: str, *args: object) -> None:
        if not getattr(self._planning, "on", False):
            logger.info(message, *args)

    # -- versions -----------------------------------------------------------------------------------------
    def new_path(self) -> tuple[str, Path]:
        """A fresh version id and the folder its weights go to (created)."""
        version_id = new_id("mdl")
        path = self.root / version_id
        path.mkdir(parents=True, exist_ok=False)
        return version_id, path

    def register(self, *, path: str | Path, recipe: str, settings: dict[str, Any] | None = None,
                 event_ids: Sequence[str] = (), metrics: dict[str, Any] | None = None,
                 parent: str | None = None, version_id: str | None = None) -> ModelVersion:
        """Record a trained candidate; `parent` defaults to the version active now (None: the base model)."""
        path = Path(path)
        if not path.is_dir():
            raise NotFound(f"no trained weights at {path}")
        if parent is None:
            active = self.active()
            parent = active.id if active else None
        version = ModelVersion(id=version_id or path.name, parent=parent, recipe=recipe,
                               settings=dict(settings or {}), event_ids=list(event_ids),
                               metrics=dict(metrics or {}), status=ModelStatus.CANDIDATE, path=str(path))
        self.store.add_model_version(version)
        logger.info("registered candidate %s (%s, %d events, parent %s)", version.id, recipe, len(version.event_ids),
                    parent or BASE)
        return version

    def get(self, version_id: str) -> ModelVersion:
        """One version by id (NotFound if unknown)."""
        return self.store.get_model_version(version_id)

    def list(self) -> list[ModelVersion]:
        """Every version, oldest first."""
        return self.store.list_model_versions()

    def active(self) -> ModelVersion | None:
        """The active version, or None when the base model serves."""
        return next((v for v in self.list() if v.status == ModelStatus.ACTIVE), None)

    def active_id(self) -> str:
        """The active version's id, or "base"."""
        active = self.active()
        return active.id if active else BASE

    def update_metrics(self, version_id: str, metrics: dict[str, Any]) -> ModelVersion:
        """Merge `metrics` (e.g. the gate's report) into a version's metrics."""
        version = self.get(version_id)
        version.metrics = {**version.metrics, **metrics}
        self.store.update_model_version(version)
        return version

    # -- promote, reject, rollback ------------------------------------------------------------------------
    def promote(self, version_id: str) -> ModelVersion:
        """Make `version_id` the active version ("base": no version active); the previous one is retired."""
        target = None if version_id == BASE else self.get(version_id)
        if target is not None and not Path(target.path or "").exists():
            raise NotFound(f"the weights of {version_id} are missing ({target.path})")
        with self.store.transaction():
            for v in self.list():
                if v.status == ModelStatus.ACTIVE and v.id != version_id:
                    v.status = ModelStatus.RETIRED
                    self.store.update_model_version(v)
            if target is not None:
                target.status = ModelStatus.ACTIVE
                target.metrics = {**target.metrics, "promotions": [*target.metrics.get("promotions", []), time.time()]}
                self.store.update_model_version(target)
        self._log_change("promoted %s", version_id)
        return target if target is not None else ModelVersion(id=BASE, recipe=BASE, status=ModelStatus.ACTIVE)

    def change_active(self, change: Callable[[], ModelVersion],
                      serve: Callable[[ModelVersion], object] | None = None) -> ModelVersion:
        """`change` (a `promote` or a `rollback`), committed only once `serve(version)` returned for the version it
        makes active: whatever `serve` raises (a model server that refuses the version) leaves the registry as it
        was and propagates. (`ilearn models promote` serves with `VLLMAdapters.check`, a service with
        `PublishedVersions.change`.)

        `serve` may take long (a model server loading an adapter), so it runs outside any store transaction: the
        change is first planned (run in a transaction that is undone, which says the version it makes active),
        that version served, then the change run again and committed. Should the store have changed meanwhile so
        that the change now makes another version active (another process promoted one), that one is served too,
        inside the committing transaction."""
        if serve is None:
            return change()
        planned = self._plan(change)
        serve(planned)
        with self.store.transaction():
            version = change()
            if version.id != planned.id:
                serve(version)
        return version

    def _plan(self, change: Callable[[], ModelVersion]) -> ModelVersion:
        """The version `change` would make active, the store left as it was."""
        self._planning.on = True
        try:
            with self.store.transaction():
                raise _Undo(change())
        except _Undo as undo:
            return undo.version
        finally:
            self._planning.on = False

    def reject(self, version_id: str, reason: str = "") -> ModelVersion:
        """Mark a candidate rejected (kept, never served unless promoted by hand)."""
        version = self.get(version_id)
        if version.status == ModelStatus.ACTIVE:
            raise InvalidInput(f"{version_id} is active; roll back first")
        version.status = ModelStatus.REJECTED
        version.metrics = {**version.metrics, "rejected_because": reason}
        self.store.update_model_version(version)
        return version

    def rollback(self) -> ModelVersion:
        """Re-activate the version that was active before the current one (the base model if none was).

        Promotions form a stack: a rollback pops the current version's last promotion, so repeated rollbacks walk
        back through the history (v1 -> v3 -> v2, rollback: v3, rollback: v1, rollback: base).
        """
        versions = self.list()
        current = next((v for v in versions if v.status == ModelStatus.ACTIVE), None)
        if current is None:
            raise InvalidInput("nothing to roll back: the base model is serving")
        current.metrics = {**current.metrics, "promotions": list(current.metrics.get("promotions", []))[:-1]}
        current.status = ModelStatus.RETIRED
        last = {v.id: max(v.metrics.get("promotions") or [0.0]) for v in versions if v.id != current.id}
        earlier = [vid for vid, t in last.items() if t > 0.0]
        previous = next((v for v in versions if earlier and v.id == max(earlier, key=last.__getitem__)), None)
        with self.store.transaction():
            self.store.update_model_version(current)
            if previous is not None:
                previous.status = ModelStatus.ACTIVE
                self.store.update_model_version(previous)
        self._log_change("rolled back from %s to %s", current.id, previous.id if previous else BASE)
        return previous if previous is not None else ModelVersion(id=BASE, recipe=BASE, status=ModelStatus.ACTIVE)

    # -- forgetting ---------------------------------------------------------------------------------------
    def forget_events(self, event_ids: Iterable[str]) -> ForgottenVersions:
        """Take forgotten events out of every version (module docstring); the serving version is replaced by the
        latest clean one promoted before it (or the base model) when it was trained on them."""
        gone = set(event_ids)
        report = ForgottenVersions(active_before=self.active_id())
        if not gone:
            report.active_after = report.active_before
            return report
        versions = self.list()
        trained = {v.id for v in versions if gone & set(v.event_ids)}
        with self.store.transaction():
            for v in versions:
                held = set(v.metrics.get("heldout_event_ids", []))
                if v.id not in trained and not gone & held:
                    continue
                report.scrubbed.append(v.id)
                metrics = _without_examples(v.metrics)
                metrics["heldout_event_ids"] = sorted(held - gone)
                if v.id in trained:
                    report.trained.append(v.id)
                    metrics["forgotten"] = {"events": len(gone & set(v.event_ids)), "time": time.time(),
                                            "weights": "to delete"}
                    v.status = ModelStatus.RETIRED if v.status == ModelStatus.ACTIVE else v.status
                    if v.status == ModelStatus.CANDIDATE:
                        v.status = ModelStatus.REJECTED
                v.event_ids = [i for i in v.event_ids if i not in gone]
                v.metrics = metrics
                self.store.update_model_version(v)
            if report.active_before in trained:
                clean = self._clean_ancestor(versions, trained)
                if clean is not None:
                    clean.status = ModelStatus.ACTIVE
                    self.store.update_model_version(clean)
        report.undeleted = self.delete_forgotten_weights()
        report.active_after = self.active_id()
        if report.trained:
            logger.warning("versions trained on forgotten events retired, weights deleted: %s; serving %s now",
                           ", ".join(sorted(set(report.trained) - set(report.undeleted))) or "none",
                           report.active_after)
        return report

    def delete_forgotten_weights(self) -> dict[str, str]:
        """Delete the weights folder of every version marked forgotten whose folder is still there; returns the
        versions whose folder could not be deleted (id -> error), recorded in their metrics as not deleted."""
        failed: dict[str, str] = {}
        for v in self.list():
            forgotten = v.metrics.get("forgotten")
            if not isinstance(forgotten, dict) or not v.path:
                continue
            try:
                shutil.rmtree(v.path)
            except FileNotFoundError:
                pass
            except OSError as e:
                failed[v.id] = f"{type(e).__name__}: {e}"
            weights = f"not deleted ({failed[v.id]})" if v.id in failed else "deleted"
            if forgotten.get("weights") != weights:
                v.metrics = {**v.metrics, "forgotten": {**forgotten, "weights": weights}}
                self.store.update_model_version(v)
        for vid, error in failed.items():
            logger.error("the weights of %s, trained on forgotten events, could not be deleted (%s): delete "
                         "its folder by hand, or forget again to retry", vid, error)
        return failed

    def forgotten(self, version_id: str) -> bool:
        """Whether `version_id` was trained on forgotten events (`forget_events`) or is gone from the registry:
        its weights must never serve again (the base model never is)."""
        if version_id == BASE:
            return False
        try:
            return "forgotten" in self.get(version_id).metrics
        except NotFound:
            return True

    @staticmethod
    def _clean_ancestor(versions: list[ModelVersion], tainted: set[str]) -> ModelVersion | None:
        """The version promoted last among those not trained on forgotten events whose weights exist, or None."""
        promoted = [v for v in versions if v.id not in tainted and v.metrics.get("promotions")
                    and v.path and Path(v.path).exists()]
        return max(promoted, key=lambda v: max(v.metrics["promotions"]), default=None)

    # -- serving ------------------------------------------------------------------------------------------
    def apply_active(self, vlm: TrainableModel) -> bool:
        """Make `vlm` serve the active version (one store read); True when its weights were swapped."""
        return self.apply(vlm, self.active_id())

    def apply(self, vlm: TrainableModel, version_id: str) -> bool:
        """Make `vlm` serve `version_id` ("base" for the base weights); True when its weights were swapped."""
        if vlm.version == version_id:
            return False
        if version_id == BASE:
            vlm.reset()
        else:
            version = self.get(version_id)
            path = Path(version.path or "")
            vlm.set_weights(served_file(vlm, path), version=version.id)
        logger.info("model now serves %s", version_id)
        return True

    def load(self, model_config: ModelConfig, version_id: str) -> TrainableModel:
        """A new wrapper (a second model in memory, e.g. the gate's candidate) serving `version_id`."""
        from ilearn.models import load_model
        from ilearn.models.base import TrainableModel

        vlm = load_model(model_config)
        if not isinstance(vlm, TrainableModel):
            raise InvalidInput(f"model backend {model_config.backend!r} cannot serve trained versions")
        self.apply(vlm, version_id)
        return vlm


def served_file(vlm: TrainableModel, path: Path) -> Path:
    """What `vlm.set_weights` serves a version from: for a version with both a LoRA adapter and fully trained
    parts, one file of the tensors it changes; else the version's adapter folder or weights file.

    The wrappers serve either an adapter or a weights file; this merges the adapter into a copy of the base
    weights once, keeps only the changed tensors (the adapted projections and the trained parts) and caches
    them beside the version as `served-<dtype>.safetensors`.
    """
    import copy

    import torch
    from safetensors.torch import save_file

    from ilearn.learning.parts import apply_trained

    path = Path(path)
    has_adapter, has_weights = (path / "adapter_config.json").is_file(), (path / WEIGHTS_FILE).is_file()
    if not (has_adapter and has_weights):  # one of them alone is served as it is
        return path / WEIGHTS_FILE if has_weights else path
    dtype = str(next(vlm.model.parameters()).dtype).removeprefix("torch.")
    file = path / f"served-{dtype}.safetensors"
    if file.is_file():
        return file
    vlm.reset()
    base = copy.deepcopy(vlm.model)
    before = {k: v.detach().clone() for k, v in base.state_dict().items()}
    merged = apply_trained(base, path).merge_and_unload().state_dict()
    changed = {k: v.detach().to("cpu").clone().contiguous() for k, v in merged.items()
               if k in before and not torch.equal(v, before[k])}
    tmp = file.with_suffix(".tmp")
    save_file(changed, str(tmp), metadata={"format": "pt"})
    tmp.replace(file)
    logger.info("cached the merged weights of %s (%d tensors) in %s", path.name, len(changed), file)
    return file
