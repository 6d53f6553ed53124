"""Personal concepts: a user's own named objects ("this is my mug, it's called Bobby"), recognised again for that
user on new photos, renamed and deleted at once.

A concept is a user record (kind "concept": its kind of object and name) with one record per photo that taught
it (kind "concept_view": the photo and its image vector). Recognition compares a new photo with the views of the
asking user's concepts only: another user's concepts are never read, so their names cannot come out, whatever
look-alikes they own. Concepts are not events: they are never shared, never distilled into a training row and
never trained on; renaming or deleting one changes what the next turn says, with nothing else to update.
Forgetting the user deletes them with their photos (`EventStore.delete_user`).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ilearn.errors import InvalidInput, NotFound
from ilearn.images import load_image
from ilearn.memory.store import EventStore, UserRecord
from ilearn.models.base import ImageEmbedder
from ilearn.types import ImageRef, new_id, now

logger = logging.getLogger(__name__)

CONCEPT = "concept"
VIEW = "concept_view"
MAX_NAME = 64


@dataclass(frozen=True)
class Concept:
    """One of a user's own things."""

    id: str
    user_id: str
    kind: str
    """What it is ("mug")."""
    name: str | None
    """What the user calls it ("Bobby"), or None ("these are my pills")."""
    views: int = 0
    """Photos that taught it."""
    created: float = 0.0

    def label(self) -> str:
        """How the assistant speaks of it to its owner: "Bobby, your mug" or "your pills"."""
        return f"{self.name}, your {self.kind}" if self.name else f"your {self.kind}"


@dataclass(frozen=True)
class Recognition:
    """A concept seen on a photo, with the similarity of its closest view."""

    concept: Concept
    score: float


def _check(kind: str, name: str | None) -> None:
    if not isinstance(kind, str) or not kind.strip() or len(kind) > MAX_NAME:
        raise InvalidInput(f"a concept's kind must be a non-empty text of at most {MAX_NAME} characters")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME):
        raise InvalidInput(f"a concept's name must be a non-empty text of at most {MAX_NAME} characters, or null")


DEFAULT_THRESHOLD = 0.8
"""The recognition threshold for an embedder that states no `concept_threshold`."""


class ConceptBook:
    """The personal concepts of every user, in the store; one user's are only ever read for that user.

    `threshold`: the least cosine similarity between a photo and a concept's closest view to name it; None: the
    embedder's own scale, its `concept_threshold` (the deployed "fused" embedder 0.8: 96.7% of new photos of a user's
    own look-alike bottle named after one photo, 0.6% of other users' look-alikes taken for it; "instance" 0.8;
    `python -m ilearn.users.measure concepts`; the model-free "stub" 0.95), else `DEFAULT_THRESHOLD`;
    `margin`: how far the best concept must lead the next one of the same user (two look-alike things of one
    user are named only when the photo tells them apart).
    """

    def __init__(self, store: EventStore, embedder: ImageEmbedder, *, threshold: float | None = None,
                 margin: float = 0.02) -> None:
        if threshold is None:
            threshold = float(getattr(embedder, "concept_threshold", DEFAULT_THRESHOLD))
        if not -1.0 <= threshold <= 1.0 or margin < 0:
            raise InvalidInput("threshold must be in [-1, 1] and margin >= 0")
        self.store = store
        self.embedder = embedder
        self.threshold = threshold
        self.margin = margin
        self.embedder_name = getattr(embedder, "name", type(embedder).__name__)

    # ------------------------------------------------------------------ reading
    def list(self, user_id: str) -> list[Concept]:
        """The user's concepts, oldest first."""
        views: dict[str, int] = {}
        for view in self.store.list_user_records(user_id, VIEW):
            views[view.data["concept"]] = views.get(view.data["concept"], 0) + 1
        return [self._concept(r, views.get(r.key, 0)) for r in self.store.list_user_records(user_id, CONCEPT)]

    def get(self, user_id: str, concept_id: str) -> Concept:
        """One of the user's concepts (NotFound for another user's or an unknown one)."""
        found = next((c for c in self.list(user_id) if c.id == concept_id), None)
        if found is None:
            raise NotFound(f"unknown concept {concept_id!r}")
        return found

    def find(self, user_id: str, *, name: str | None = None, kind: str | None = None) -> Concept | None:
        """The user's concept called `name` (any case), else their latest one of `kind`."""
        concepts = self.list(user_id)
        if name is not None:
            named = [c for c in concepts if c.name is not None and c.name.lower() == name.lower()]
            if named:
                return named[-1]
        if kind is not None:
            kinds = [c for c in concepts if c.kind == kind.lower()]
            if kinds:
                return kinds[-1]
        return None

    def mentioned(self, user_id: str, text: str) -> Concept | None:
        """The user's concept a reply of the assistant spoke of (its name, or "your <kind>"), if any."""
        low = f" {text.lower()} "
        for concept in reversed(self.list(user_id)):
            if concept.label().lower() in low or (concept.name and f" {concept.name.lower()}" in low):
                return concept
        return None

    # ------------------------------------------------------------------ teaching, renaming, forgetting
    def teach(self, user_id: str, kind: str, name: str | None, image: Image.Image, image_ref: ImageRef) -> Concept:
        """Add a photo of the user's thing: to the concept of that name (or, unnamed, of that kind) if the user has
        one, else to a new concept. `image_ref` must be stored already (`put_image`)."""
        _check(kind, name)
        kind = kind.strip().lower()
        vector = self.embedder.embed_images([image])[0]  # before the transaction: no lock held while embedding
        with self.store.transaction():
            concept = self.find(user_id, name=name) if name else next(
                (c for c in reversed(self.list(user_id)) if c.kind == kind and c.name is None), None)
            if concept is None:
                concept = Concept(new_id("cpt"), user_id, kind, name.strip() if name else None, 0, now())
            self._put(concept if concept.kind == kind else Concept(concept.id, user_id, kind, concept.name, 0,
                                                                    concept.created))
            self.store.put_user_record(UserRecord(user_id, VIEW, f"{concept.id}/{image_ref.sha256}",
                                                  self._view_data(concept.id, vector), image_ref))
        logger.debug("a personal concept was taught")  # never its name: logs are not forgotten with the user
        return self.get(user_id, concept.id)

    def rename(self, user_id: str, concept_id: str, name: str) -> Concept:
        """Give one of the user's concepts a new name (from the next turn on)."""
        _check("kind", name)
        with self.store.transaction():
            concept = self.get(user_id, concept_id)
            self._put(Concept(concept.id, user_id, concept.kind, name.strip(), 0, concept.created))
        return self.get(user_id, concept_id)

    def forget(self, user_id: str, concept_id: str) -> bool:
        """Delete one of the user's concepts with its views (and their photos, unless a turn still shows them);
        False when the user has no such concept."""
        with self.store.transaction():
            found = self.store.delete_user_record(user_id, CONCEPT, concept_id)
            for view in self.store.list_user_records(user_id, VIEW):
                if view.data.get("concept") == concept_id:
                    self.store.delete_user_record(user_id, VIEW, view.key)
        return found

    # ------------------------------------------------------------------ recognising
    def recognise(self, user_id: str, image: Image.Image) -> Recognition | None:
        """The user's concept the photo shows, or None (no concept, none close enough, or two too alike)."""
        views = self.store.list_user_records(user_id, VIEW)
        if not views:
            return None
        vectors = np.stack([self._vector(v) for v in views])
        query = self.embedder.embed_images([image])[0]
        scores = vectors @ query
        best: dict[str, float] = {}
        for view, score in zip(views, scores, strict=True):
            key = view.data["concept"]
            best[key] = max(best.get(key, -1.0), float(score))
        ranked = sorted(best.items(), key=lambda kv: -kv[1])
        concept_id, score = ranked[0]
        if score < self.threshold or (len(ranked) > 1 and score - ranked[1][1] < self.margin):
            return None
        return Recognition(self.get(user_id, concept_id), score)

    # ------------------------------------------------------------------ records
    def _put(self, concept: Concept) -> None:
        self.store.put_user_record(UserRecord(concept.user_id, CONCEPT, concept.id,
                                              {"kind": concept.kind, "name": concept.name},
                                              created=concept.created or now(), updated=now()))

    @staticmethod
    def _concept(record: UserRecord, views: int) -> Concept:
        return Concept(record.key, record.user_id, record.data["kind"], record.data.get("name"), views,
                       record.created)

    def _view_data(self, concept_id: str, vector: np.ndarray) -> dict:
        data = np.asarray(vector, dtype=np.float32)
        return {"concept": concept_id, "embedder": self.embedder_name, "dim": int(data.size),
                "vector": base64.b64encode(data.tobytes()).decode()}

    def _vector(self, view: UserRecord) -> np.ndarray:
        """A view's vector; a view embedded by another embedder is embedded again from its photo (and kept)."""
        data = view.data
        if data.get("embedder") == self.embedder_name and data.get("dim") == self.embedder.dim:
            return np.frombuffer(base64.b64decode(data["vector"]), dtype=np.float32)
        image, _, _ = load_image(self.store.get_image_bytes(view.image.sha256))
        vector = self.embedder.embed_images([image])[0]
        self.store.put_user_record(UserRecord(view.user_id, VIEW, view.key, self._view_data(data["concept"], vector),
                                              view.image, view.created))
        return np.asarray(vector, dtype=np.float32)


__all__ = ["CONCEPT", "VIEW", "Concept", "ConceptBook", "Recognition"]
