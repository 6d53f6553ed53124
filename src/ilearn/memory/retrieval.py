"""Dual-Modality Retrieval memory (iLearnRobot): past events found by image and precise question.

One FAISS index holds, per ACTIVE event, the concatenation `[sqrt(wi) * image_vec, sqrt(wt) * text_vec]`,
so that its inner product with the query built the same way is exactly the fused score
`wi * image_sim + wt * text_sim` (one search instead of two plus a merge; see benchmarks/retrieval.py).
Candidates are re-ranked exactly from the stored vectors, which also gives each modality's similarity.

Scope: a user sees their own active events and the robot's SHARED events. The trust rules of
`ilearn.memory.trust` decide which events are shared (corroborated by the voices of distinct users, taught by a
trusted user, or kept by a reviewer) and which go to the review queue (QUARANTINED until `resolve`); the
memory applies them to every event it admits (`add`), on the live path and when `ensure_fresh` finds events
a crash left unadmitted, and settles them again around a forgotten user's events. Only ACTIVE events are
indexed or returned. One process at a time holds a home folder (`HomeLock`).

Where the index has partitions (`PartitionedVectorIndex`, index "partitioned"), each robot's SHARED events
live in one partition and each user's other events on a robot in one per (robot, user) (`partition_of`):
a user's scope is then the robot's shared partition, the user's own partitions and the user's few events
shared on other robots, and the robot-wide search reads the robot's partitions only, instead of a bitmap
over every event (whose cost grows with the size of the whole memory). An event whose scope changes moves
to its new partition. Other indexes get key filters as before.
The store is the source of truth; the index file beside it is a cache that `ensure_fresh` repairs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ilearn.config import RetrievalConfig
from ilearn.errors import ILearnError, InvalidInput, NotFound
from ilearn.memory.base import IndexCorrupt, KeyFilter, Match, PartitionedVectorIndex, VectorIndex
from ilearn.memory.calibration import ReuseCalibrator
from ilearn.memory.lock import HomeLock, os_reason
from ilearn.memory.store import upsert_event
from ilearn.memory.trust import (
    ADMITTED_KEY,
    SCOPE_KEY,
    Answer,
    TrustPolicy,
    Voices,
    description_winners,
    group,
    is_description,
    outvotes,
    shared_rejections,
    winner,
)
from ilearn.models.embedders import CachedImageEmbedder, image_key
from ilearn.text import contains_answer
from ilearn.types import Event, EventStatus, Scope, answer_key, is_rejection, now

if TYPE_CHECKING:
    from PIL import Image

    from ilearn.memory.store import EventStore
    from ilearn.models.base import ImageEmbedder, TextEmbedder

logger = logging.getLogger(__name__)

INDEX_NAME = "index/events"
EMBEDDERS_NAME = "index/embedders.json"
"""Beside the index: the registered names of the embedders (and the weights) its vectors were built with, so that
maintenance commands build the same ones (`recorded_settings`) instead of rebuilding the index with others."""
SAME_QUESTION = 0.8
"""Question similarity from which two events answer the same question: only their answers compete, corroborate
one another or dispute one another (the trust rules). The assistant stores the precise question of the intent it
recognised, so one intent usually scores 1.0; another facet of the same object (its use rather than its name)
scores 0.63 with the test embedder and at most 0.57 (p99) with all-MiniLM-L6-v2 (`reuse_min_text_sim`)."""
SCOPE_FILTERS = 256
"""Prepared scope filters kept (least recently used dropped)."""


@dataclass(frozen=True)
class _Meta:
    user_id: str
    robot_id: str
    scope: Scope


def partition_of(user_id: str, robot_id: str, scope: Scope | str) -> str:
    """The index partition of an event: one per robot for its SHARED events, one per (robot, user) for the rest."""
    return json.dumps(["shared", robot_id] if scope == Scope.SHARED else ["own", robot_id, user_id])


def format_references(matches: Sequence[Match]) -> str:
    """Short numbered references for the model's context (never ids): question, correct and wrong answers."""
    lines = []
    for i, m in enumerate(matches, 1):
        line = f"Reference [{i}]: asked '{m.event.question}' about a similar image; correct answer: '{m.event.answer}'"
        if m.event.rejected:
            line += "; wrong answers before: " + ", ".join(f"'{r}'" for r in m.event.rejected)
        lines.append(line)
    return "\n".join(lines)


def reusable(matches: Sequence[Match], reuse_threshold: float, reuse_margin: float = 0.0,
             min_text_sim: float = -1.0) -> Match | None:
    """The match whose answer may be given outright, or None (the one place the reuse decision is made).

    `matches` are best first (as `RetrievalMemory.search` returns them). The top match is reusable when its
    fused score is >= `reuse_threshold`, its question is similar enough to the one asked (text cosine >=
    `min_text_sim`: the answer to another question is never given outright, however alike the images), and it
    beats the best match carrying a DIFFERENT normalised answer by at least `reuse_margin` (a ratio test: two
    look-alikes that both match well make neither decisive). Matches below the search threshold are not in
    the list; with no other answer among them, the top wins.
    """
    if not matches or matches[0].score < reuse_threshold or matches[0].text_sim < min_text_sim:
        return None
    top = matches[0]
    key = answer_key(top.event.answer)
    rival = next((m.score for m in matches[1:] if answer_key(m.event.answer) != key), None)
    if rival is not None and top.score - rival < reuse_margin:
        return None
    return top


GUESS_WEIGHTS = tuple(round(w, 1) for w in np.linspace(0.0, 1.0, 11))
"""The fused image embedder's part weights `DualModalityMemory.guess_weight` chooses from."""
GUESS_MIN_QUERIES = 3
"""Events that share their answer with another event about the same question, needed before the weight is chosen
(with fewer, leave-one-out says nothing and the embedder's own weight stays)."""
GUESS_EVENTS = 500
"""Most events the choice reads (the store's first ones): the cost grows with that number squared (0.08 s for 500,
0.43 s for 1000 on 2 busy cores, `guess_weight` with a fused embedder of stub parts), paid once per change of the
index, by the next turn that guesses (the turns beside it wait for its choice rather than choose too). Once chosen
again only after n // 20 changes for n events: then the rule a process served depended on when it had last chosen
(docs/real-images.md)."""


def tentative(matches: Sequence[Match], guess_threshold: float, min_text_sim: float = -1.0,
              weight: float | None = None, gate: float | None = None) -> Match | None:
    """The match whose answer may be offered as a guess when none is decisive (`reusable` gave None), or None.

    Which one: the match about the same question (text cosine >= `min_text_sim`: never another question's answer)
    most alike by `guess_similarity` (with `weight`, the memory's `guess_weight`, its image parts weighed so;
    without, its image cosine). It is offered when that similarity is >= `gate` (the memory's `guess_gate`,
    calibrated on its own events), or, without a gate, when the best same-question match has a fused score >=
    `guess_threshold` (`RetrievalConfig.guess_threshold`). `matches` best first, as `RetrievalMemory.search`
    returns them with a `floor` under the guess threshold."""
    same = [m for m in matches if m.text_sim >= min_text_sim]
    if not same:
        return None
    best = max(same, key=lambda m: guess_similarity(m, weight))
    if gate is not None:
        return best if guess_similarity(best, weight) >= gate - 1e-9 else None
    return best if same[0].score >= guess_threshold else None


def references(found: Sequence[Match], config: RetrievalConfig) -> list[Match]:
    """The references among `found` (best first): matches scoring >= `threshold`, at most `top_k` of them (what a
    turn shows the model and judges a reuse or a guess against)."""
    return [m for m in found if m.score >= config.threshold - 1e-6][: config.top_k]


def carrying(answer: str, matches: Sequence[Match], min_text_sim: float = -1.0) -> list[Match]:
    """The matches about the same question (text cosine >= `min_text_sim`) whose answer is the answer `answer`."""
    return [m for m in matches if m.text_sim >= min_text_sim and m.event.answer and contains_answer(answer, m.event.answer)]


def guess_overrules(answer: str, guess: Match, matches: Sequence[Match], candidates: Sequence[Match], *,
                    min_text_sim: float = -1.0, margin: float = 0.0, weight: float | None = None,
                    references_stand: bool = True) -> bool:
    """Whether the memory's `guess` replaces the model's `answer` (the one place that is decided). The answer
    stands when it is the guess's answer, or (`references_stand`) a reference (`matches`, >= the search threshold)
    about the same question carries it, or a nearby event about it (`candidates`) does that the memory cannot
    tell from the guess's (within `margin` of its `guess_similarity`). A model that knows the thing, tuned on these
    events or reading them in its prompt, is not overruled by a match no better than its own."""
    if contains_answer(answer, guess.event.answer) or (references_stand and carrying(answer, matches, min_text_sim)):
        return False
    support = [guess_similarity(m, weight) for m in carrying(answer, candidates, min_text_sim)]
    return not (support and max(support) >= guess_similarity(guess, weight) - margin)


def guess_similarity(match: Match, weight: float | None) -> float:
    """How alike a guess finds the asked picture and `match`'s: its image parts weighed `weight` : 1 - weight
    (`DualModalityMemory.guess_weight`), else its image cosine."""
    if weight is None or match.parts is None:
        return match.image_sim
    return weight * match.parts[0] + (1.0 - weight) * match.parts[1]


def leave_one_out_weight(first: np.ndarray, second: np.ndarray, same_question: np.ndarray, labels: Sequence[str],
                         default: float) -> float | None:
    """The weight w in `GUESS_WEIGHTS` under which `w * first + (1 - w) * second` (image cosine matrices of some
    labelled events) names the most events after their nearest other event about the same question
    (`same_question`, a boolean matrix), counting the events whose label another such event shares. Among weights
    that name as many, the one whose nearest same-label event stands out most from the nearest other-label one
    (the mean gap, in standard deviations of that weight's similarities: a few events name one another right
    under many weights, but not with the same room), then the one nearest `default`. None with fewer than
    `GUESS_MIN_QUERIES` such events."""
    labels = np.asarray([answer_key(a) for a in labels])
    n = len(labels)
    mask = same_question & ~np.eye(n, dtype=bool)
    same_label = labels[:, None] == labels[None, :]
    usable = np.flatnonzero((same_label & mask).any(axis=1))
    if len(usable) < GUESS_MIN_QUERIES:
        return None
    best: tuple[int, float] = (-1, -np.inf)
    chosen = default
    for w in GUESS_WEIGHTS:
        sims = w * first + (1.0 - w) * second
        masked = np.where(mask, sims, -np.inf)[usable]
        right = int((labels[masked.argmax(axis=1)] == labels[usable]).sum())
        spread = float(sims[mask].std()) or 1.0
        own = np.where(same_label[usable], masked, -np.inf).max(axis=1)
        other = np.where(~same_label[usable], masked, -np.inf).max(axis=1)
        gaps = np.where(np.isfinite(other), own - other, 0.0)
        key = (right, round(float(gaps.mean()) / spread, 6))
        if key > best or (key == best and abs(w - default) < abs(chosen - default)):
            best, chosen = key, w
    return float(chosen)


def leave_one_out_gate(sims: np.ndarray, same_question: np.ndarray, labels: Sequence[str],
                       precision: float) -> float | None:
    """The similarity from which a guess is worth offering, as some labelled events say (`sims`: their image
    similarity matrix, as guesses are chosen; `same_question`: a boolean matrix).

    Each event that has another about the same question is named after the nearest such event; taking them from
    the most alike down, a right name gains 1 - `precision` and a wrong one loses `precision`; the gate is the
    similarity where the running total is highest (so a guess is offered only where names have been right at
    least `precision` of the time, and a tail of wrong ones is cut off). An event whose answer no other shares is
    named wrong, as a never-taught object would be. inf when no similarity gains (never guess); None with fewer
    than `GUESS_MIN_QUERIES` events named."""
    keys = np.asarray([answer_key(a) for a in labels])
    n = len(keys)
    mask = same_question & ~np.eye(n, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) < GUESS_MIN_QUERIES:
        return None
    masked = np.where(mask, sims, -np.inf)[rows]
    nearest = masked.argmax(axis=1)
    top = masked[np.arange(len(rows)), nearest]
    right = keys[nearest] == keys[rows]
    order = np.argsort(-top, kind="stable")
    gains = np.cumsum(np.where(right[order], 1.0 - precision, -precision))
    best = int(np.argmax(gains))
    return float(top[order][best]) if gains[best] > 0 else float("inf")


class DualModalityMemory:
    """Events indexed by image and question; scoped search, supersede, quarantine and forget (module docstring).

    The `ilearn.memory.base.RetrievalMemory` of every deployment (registered as memory "dual"); `index_type`
    is the `VectorIndex` class that holds the fused vectors (FAISS unless given).
    """

    def __init__(self, store: EventStore, image_embedder: ImageEmbedder, text_embedder: TextEmbedder,
                 config: RetrievalConfig | None = None, home: str | Path | None = None, *, load: bool = True,
                 index_type: type[VectorIndex] | None = None, trust: TrustPolicy | None = None):
        if index_type is None:
            from ilearn.memory.index import FaissIndex

            index_type = FaissIndex
        self.index_type = index_type
        self.store = store
        self.config = config or RetrievalConfig()
        self.trust = trust or TrustPolicy(self.config.sharing, self.config.corroboration, self.config.min_age_s,
                                          self.config.accepted_is_voice)
        """The trust rules' settings (`ilearn.memory.trust`); by default the config's sharing, corroboration,
        min_age_s and accepted_is_voice."""
        self.image_embedder = image_embedder
        self.text_embedder = text_embedder
        self._images = CachedImageEmbedder(image_embedder, store)
        self._text_kind = f"text:{getattr(text_embedder, 'name', type(text_embedder).__name__)}"
        self.path = Path(home) / INDEX_NAME if home is not None else None
        self.home = Path(home) if home is not None else None
        self._home_lock = HomeLock(home).acquire() if home is not None else None
        self._wi = float(np.sqrt(self.config.image_weight))
        self._wt = float(np.sqrt(self.config.text_weight))
        self._di, self._dt = image_embedder.dim, text_embedder.dim
        self._lock = threading.RLock()
        self._meta: dict[str, _Meta] = {}
        self._by_user: dict[str, set[str]] = {}
        self._by_robot: dict[str, set[str]] = {}
        self._shared: dict[str, set[str]] = {}  # robot -> SHARED-scope event ids
        self._owners: dict[str, dict[str, int]] = {}  # robot -> user -> how many of their events there are not SHARED
        # prepared index filters per (robot_wide, user, robot), dropped whenever any membership above changes
        self._filters: OrderedDict[tuple[bool, str | None, str], tuple[VectorIndex, KeyFilter]] = OrderedDict()
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._forget_hooks: list[Callable[[], None]] = []  # `on_forget`
        self._changes = 0
        self._generation = 0  # every change to the index counts (what guess_weight was computed on)
        # (generation, weight, (similarities, same question, answers), {share: gate}): what guess_rule chose, what it
        # chose on (kept so that another share's gate needs no new read) and the gates chosen so far
        self._guess_rule: tuple[int, float | None, tuple | None, dict[float | None, float | None]] = \
            (-1, None, None, {})
        self._guess_choosing = threading.Lock()
        self._use(self._new_index())
        try:
            self.calibrator = ReuseCalibrator(self.config, home)  # this deployment's reuse threshold (its feedback)
            if load:
                self.ensure_fresh()
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------------ index plumbing
    def _index_meta(self) -> dict[str, Any]:
        return {"image_embedder": self._images.kind, "text_embedder": self._text_kind,
                "image_weight": self.config.image_weight, "text_weight": self.config.text_weight}

    def _index_params(self) -> dict[str, Any]:
        c = self.config
        return {"hnsw_min_size": c.hnsw_min_size, "hnsw_m": c.hnsw_m, "ef_construction": c.ef_construction,
                "ef_search": c.ef_search, "exact_filter_fraction": c.exact_filter_fraction,
                "max_dead_fraction": c.max_dead_fraction, "storage": c.index_storage, "rerank": c.index_rerank}

    def _new_index(self) -> VectorIndex:
        return self.index_type(self._di + self._dt, meta=self._index_meta(), **self._index_params())

    def _use(self, index: VectorIndex) -> None:
        self.index = index
        self._parts: PartitionedVectorIndex | None = index if isinstance(index, PartitionedVectorIndex) else None

    def _index_add(self, events: Sequence[Event], vectors: np.ndarray) -> None:
        """Index events' vectors, each in its scope's partition where the index has partitions."""
        if self._parts is None:
            self.index.add([e.id for e in events], vectors)
            return
        groups: dict[str, list[int]] = {}
        for i, e in enumerate(events):
            groups.setdefault(partition_of(e.user_id, e.robot_id, e.scope), []).append(i)
        for name, rows in groups.items():
            self._parts.add([events[i].id for i in rows], vectors[rows], partition=name)

    def _place(self, events: Iterable[Event]) -> int:
        """Move indexed events whose scope changed into their scope's partition; returns how many moved."""
        if self._parts is None:
            return 0
        moves: dict[str, list[str]] = {}
        for e in events:
            name = partition_of(e.user_id, e.robot_id, e.scope)
            if e.id in self.index and self._parts.partition_of(e.id) != name:
                moves.setdefault(name, []).append(e.id)
        return sum(self._parts.move(ids, name) for name, ids in moves.items())

    def ensure_fresh(self, store: EventStore | None = None) -> str:
        """Load the index file and bring it in line with the store's ACTIVE events.

        A missing, corrupt or incompatible file (other embedders or weights) is rebuilt; a stale one (ids
        differ) gets the missing events added and the extra ones removed. Events the memory never admitted
        (a crash between distilling a session and admitting its events), rejections too, go through the same
        rules as `add`, oldest first. Returns what was done: "loaded", "updated", "rebuilt" or "built".
        """
        store = store or self.store
        with self._lock:
            active = {e.id: e for e in store.iter_events(status=EventStatus.ACTIVE)}
            unadmitted = sorted((e for e in active.values() if ADMITTED_KEY not in e.provenance and e.answer.strip()),
                                key=lambda e: (e.created, e.id))
            for e in unadmitted:
                del active[e.id]
            action = "loaded"
            index: VectorIndex | None = None
            if self.path is not None:
                try:
                    index = self.index_type.load(self.path, **self._index_params())
                    if index.meta != self._index_meta() or index.dim != self._di + self._dt:
                        logger.warning("index at %s was built with other settings; rebuilding", self.path)
                        index, action = None, "rebuilt"
                except FileNotFoundError:
                    action = "built"
                except IndexCorrupt as exc:
                    logger.warning("index at %s is unusable (%s); rebuilding from the store", self.path, exc)
                    action = "rebuilt"
            else:
                action = "built"
            self._use(index or self._new_index())
            extra = [k for k in self.index.keys() if k not in active]
            missing = [e for k, e in active.items() if k not in self.index]
            moved = self._place(active.values())
            if extra or missing or unadmitted or moved:
                action = "updated" if action == "loaded" else action
                self.index.remove(extra)
                for start in range(0, len(missing), 256):
                    chunk = missing[start:start + 256]
                    self._index_add(chunk, self._event_vectors(chunk))
            self._meta, self._by_user, self._by_robot, self._shared, self._owners = {}, {}, {}, {}, {}
            self._filters.clear()
            for e in active.values():
                self._remember(e, place=False)  # placed above
            for e in unadmitted:
                logger.warning("event %s was never admitted (a crash?): applying the rules now", e.id)
                self.add(e)
            turned_down = sorted((e for e in store.iter_events(status=EventStatus.QUARANTINED)
                                  if is_rejection(e) and ADMITTED_KEY not in e.provenance),
                                 key=lambda e: (e.created, e.id))
            if turned_down:
                logger.warning("%d rejection(s) never admitted (a crash, or written before rejections were shared): "
                               "applying the rules now", len(turned_down))
                action = "updated" if action == "loaded" else action
            for e in turned_down:
                self.add(e)
            if action != "loaded":
                logger.info("index %s: %d events (%d added, %d removed, %d moved, %d admitted)", action,
                            len(self.index), len(missing), len(extra), moved, len(unadmitted))
                self.save()
            return action

    def save(self) -> None:
        """Write the index file beside the store, with the names of its embedders (no-op without a home).

        An OSError (disk full, read-only home) becomes an ILearnError naming it."""
        with self._lock:
            if self.path is not None:
                try:
                    self.index.save(self.path)
                    self._write_embedders()
                except OSError as exc:
                    raise ILearnError(f"cannot write the vector index in {self.path.parent}: {os_reason(exc)}") from exc
            self._changes = 0

    def _write_embedders(self) -> None:
        from ilearn import plugins

        def registered(kind: str, embedder: Any) -> str | None:
            target = f"{type(embedder).__module__}:{type(embedder).__qualname__}"
            return next((n for n in plugins.names(kind) if plugins.plugin(kind, n).target == target), None)

        record = {"image_embedder": registered("image_embedder", self.image_embedder),
                  "text_embedder": registered("text_embedder", self.text_embedder),
                  "image_weight": self.config.image_weight, "text_weight": self.config.text_weight,
                  "meta": self._index_meta()}
        path = self.home / EMBEDDERS_NAME
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, path)

    def close(self) -> None:
        """Write the index if it changed since the last save; give the home folder back."""
        try:
            if self._changes:
                self.save()
            self.calibrator.close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._home_lock is not None:
            self._home_lock.release()
            self._home_lock = None

    def _changed(self, n: int = 1) -> None:
        self._changes += n
        self._generation += n
        if self._changes >= self.config.save_every:
            try:
                self.save()
            except ILearnError as exc:  # the index is a cache of the store: a turn goes on; saved again later
                logger.warning("%s; retried at the next change (the store keeps everything)", exc)

    def _remember(self, e: Event, place: bool = True) -> None:
        """Note an indexed event's user, robot and scope (and, with `place`, move it to its scope's partition)."""
        meta = _Meta(e.user_id, e.robot_id, Scope(e.scope))
        self._forget_meta(e.id)
        self._filters.clear()
        self._meta[e.id] = meta
        self._by_user.setdefault(meta.user_id, set()).add(e.id)
        self._by_robot.setdefault(meta.robot_id, set()).add(e.id)
        if meta.scope == Scope.SHARED:
            self._shared.setdefault(meta.robot_id, set()).add(e.id)
        else:
            owners = self._owners.setdefault(meta.robot_id, {})
            owners[meta.user_id] = owners.get(meta.user_id, 0) + 1
        if place and self._place([e]):
            self._changed()

    def _forget_meta(self, event_id: str) -> None:
        meta = self._meta.pop(event_id, None)
        if meta is None:
            return
        self._filters.clear()
        for table, key in ((self._by_user, meta.user_id), (self._by_robot, meta.robot_id),
                           (self._shared, meta.robot_id)):
            ids = table.get(key)
            if ids is not None:
                ids.discard(event_id)
                if not ids:
                    del table[key]
        owners = self._owners.get(meta.robot_id, {})
        if meta.scope != Scope.SHARED and meta.user_id in owners:
            owners[meta.user_id] -= 1
            if not owners[meta.user_id]:
                del owners[meta.user_id]
                if not owners:
                    del self._owners[meta.robot_id]

    def _fuse(self, image_vecs: np.ndarray, text_vecs: np.ndarray) -> np.ndarray:
        fused = np.concatenate([self._wi * image_vecs, self._wt * text_vecs], axis=1)
        return fused.astype(np.float32)  # pragma: no mutate (the index takes float32, converting if not)

    def _event_vectors(self, events: Sequence[Event], images: Sequence[Image.Image | None] | None = None) -> np.ndarray:
        """Fused vectors of events: image vectors cached by sha256, text vectors cached by event id."""
        img = np.zeros((len(events), self._di), dtype=np.float32)  # pragma: no mutate (cast by _fuse)
        todo = [(i, e) for i, e in enumerate(events) if e.image is not None]
        if todo:
            pil = []
            for i, e in todo:
                given = images[i] if images is not None else None
                if given is None and self.store.get_embedding(self._images.kind, e.image.sha256) is None:
                    given = self._load_image(e.image.sha256)
                pil.append(given)
            img[[i for i, _ in todo]] = self._images.embed_images(pil, keys=[e.image.sha256 for _, e in todo])
        txt = np.zeros((len(events), self._dt), dtype=np.float32)  # pragma: no mutate (cast by _fuse)
        missing = []
        for i, e in enumerate(events):
            vec = self.store.get_embedding(self._text_kind, e.id)
            if vec is not None and vec.shape == (self._dt,):
                txt[i] = vec
            else:
                missing.append(i)
        if missing:
            fresh = self.text_embedder.embed_texts([events[i].question for i in missing])
            for j, i in enumerate(missing):
                self.store.put_embedding(self._text_kind, events[i].id, fresh[j])
                txt[i] = fresh[j]
        return self._fuse(img, txt)

    def _load_image(self, sha256: str) -> Image.Image:
        from ilearn.images import decode_image

        # the store's own images were checked when stored; the limit only guards against a corrupt file
        image, _ = decode_image(self.store.get_image_bytes(sha256), max_pixels=40_000_000)  # pragma: no mutate
        return image

    def _query_vector(self, image: Image.Image | None, question: str) -> np.ndarray:
        img = np.zeros((1, self._di), dtype=np.float32)  # pragma: no mutate (cast by _fuse)
        if image is not None:
            key = image_key(image)
            with self._lock:
                cached = self._query_cache.get(key)
            if cached is None:
                cached = self.image_embedder.embed_images([image])[0]
                with self._lock:
                    self._query_cache[key] = cached
                    while len(self._query_cache) > 64:
                        self._query_cache.popitem(last=False)
            img[0] = cached
        return self._fuse(img, self.text_embedder.embed_texts([question]))[0]

    # ------------------------------------------------------------------ search
    def _pool(self, query: np.ndarray, user_id: str | None, robot_id: str) -> dict[str, float]:
        """Candidate event ids with fused scores: the user's own + SHARED events, then the robot's events."""
        k = self.config.candidates
        with self._lock:
            pool = dict(self.index.search(query, k, allowed=self._scope_filter(user_id, robot_id))[0])
            alone = set(self._by_robot) <= {robot_id}  # pragma: no mutate (no filter needed: a speed-up only)
            robot_ids = None if alone else self._scope_filter(None, robot_id, robot_wide=True)
            for key, score in self.index.search(query, k, allowed=robot_ids)[0]:
                pool.setdefault(key, score)
        return pool

    def _scope_filter(self, user_id: str | None, robot_id: str, robot_wide: bool = False) -> KeyFilter:
        """The prepared index filter of a scope (caller holds the lock): the user's own + the robot's SHARED
        events, or all the robot's events (`robot_wide`). Built once per membership change, not per query
        (a filter over 10k ids costs about 10 ms to build)."""
        key = (robot_wide, user_id, robot_id)
        cached = self._filters.get(key)
        if cached is not None and cached[0] is self.index and cached[1].generation == self.index.generation:
            self._filters.move_to_end(key)
            return cached[1]
        if self._parts is not None:
            prepared = self._partition_filter(self._parts, user_id, robot_id, robot_wide)
        else:
            ids = (self._by_robot.get(robot_id, set()) if robot_wide
                   else self._by_user.get(user_id, set()) | self._shared.get(robot_id, set()))
            prepared = self.index.make_filter(ids)
        self._filters[key] = (self.index, prepared)
        while len(self._filters) > SCOPE_FILTERS:
            self._filters.popitem(last=False)
        return prepared

    def _partition_filter(self, index: PartitionedVectorIndex, user_id: str | None, robot_id: str,
                          robot_wide: bool) -> KeyFilter:
        """`_scope_filter` by partitions: the robot's shared one, then every user's own ones on the robot
        (`robot_wide`) or the user's own ones on any robot plus the user's events shared on other robots."""
        names = [partition_of("", robot_id, Scope.SHARED)]
        if robot_wide:
            names += [partition_of(u, robot_id, Scope.PRIVATE) for u in self._owners.get(robot_id, {})]
            return index.make_filter(partitions=names)
        keys = []
        for k in self._by_user.get(user_id, set()) if user_id is not None else ():
            meta = self._meta[k]
            if meta.scope != Scope.SHARED:
                names.append(partition_of(meta.user_id, meta.robot_id, meta.scope))
            elif meta.robot_id != robot_id:
                keys.append(k)
        return index.make_filter(keys, partitions=names)

    def _matches(self, query: np.ndarray, pool: dict[str, float], floor: float | None = None) -> list[Match]:
        floor = self.config.threshold if floor is None else floor
        keys = [k for k, s in pool.items() if s >= floor - 1e-6]
        if not keys:
            return []
        with self._lock:
            keys = [k for k in keys if k in self.index]
            vecs = self.index.get_vectors(keys)
        try:
            events = self.store.get_events(keys)
        except NotFound:  # deleted meanwhile: fetch the survivors one by one
            events = []
            for k in keys:
                try:
                    events.append(self.store.get_event(k))
                except NotFound:
                    continue
            vecs = vecs[[keys.index(e.id) for e in events]]
        di = self._di
        img = vecs[:, :di] @ query[:di] / self.config.image_weight if self.config.image_weight else 0 * vecs[:, 0]
        txt = vecs[:, di:] @ query[di:] / self.config.text_weight if self.config.text_weight else 0 * vecs[:, 0]
        parts = self._image_parts(vecs, query[None, :])
        out = [Match(e, float(s), float(a), float(b), None if parts is None else (float(parts[0][i, 0]),
                                                                                float(parts[1][i, 0])))
               for i, (e, s, a, b) in enumerate(zip(events, vecs @ query, img, txt, strict=True))
               if e.status == EventStatus.ACTIVE]
        return sorted(out, key=lambda m: -m.score)

    def _image_parts(self, rows: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The image cosines of fused `rows` against fused `others` ((len(rows), len(others)) each), one matrix per
        part of a fused image embedder (`ilearn.models.embedders.fuse_vectors`), or None for another embedder."""
        first, weight = getattr(self.image_embedder, "first", None), getattr(self.image_embedder, "weight", None)
        iw = self.config.image_weight
        if first is None or weight is None or not 0.0 < weight < 1.0 or not iw:
            return None
        da, di = first.dim, self._di
        a = rows[:, :da] @ others[:, :da].T / (iw * weight)
        b = rows[:, da:di] @ others[:, da:di].T / (iw * (1.0 - weight))
        return a, b

    def guess_weight(self) -> float | None:
        """The weight of the fused image embedder's first part (the instance CNN) under which this memory's own
        events best name one another (`leave_one_out_weight`: each event named after its nearest other event about
        the same question), for choosing a guess (`tentative`); None for another embedder or too few events.

        A deployment of look-alike bottles keeps the instance CNN's weight; one of real pictures, where that CNN
        finds everything alike, moves to the general features. Chosen again after any change of the index, so it
        is a function of the events alone; what it reads stays inside (only the weight comes out, never an event)."""
        return self.guess_rule()[0]

    def guess_gate(self) -> float | None:
        """The similarity (at `guess_weight`) from which a guess is offered, calibrated on this memory's own events
        (`leave_one_out_gate` with `RetrievalConfig.guess_precision`); inf: never; None: no weight chosen, or no
        precision set (the fixed `guess_threshold` gates). Chosen with the weight, in the same pass."""
        return self.guess_rule()[1]

    def guess_rule(self, tuned: bool = False, *, precision: float | None = None) -> tuple[float | None, float | None]:
        """(guess_weight, guess_gate) in one read, as a turn uses them; computed again after any change of the
        index (`GUESS_EVENTS`). `tuned`: the gate for a tuned version's answers (`RetrievalConfig.tuned_guess_precision`)
        instead of the base weights' (`guess_precision`); `precision`: the gate at this share instead (an offline
        reading of several, `scripts/first_answers.py --shares`). The weight and what the gates are chosen on are
        read once; a gate per share is kept with them."""
        share = precision if precision is not None else (
            self.config.tuned_guess_precision if tuned else self.config.guess_precision)
        weight = getattr(self.image_embedder, "weight", None)
        if getattr(self.image_embedder, "first", None) is None or weight is None:
            return None, None
        with self._lock:
            computed, chosen, calibration, gates = self._guess_rule
            if computed == self._generation and share in gates:
                return chosen, gates[share]
        with self._guess_choosing:  # one turn chooses after a change; the turns beside it wait for its choice
            with self._lock:
                computed, chosen, calibration, gates = self._guess_rule
                fresh = computed == self._generation
                if fresh and share in gates:
                    return chosen, gates[share]
                generation = self._generation
            if not fresh:
                generation, chosen, calibration = self._calibrate_guesses(float(weight))
                gates = {}
            gate = leave_one_out_gate(*calibration, share) if calibration is not None and share is not None else None
            with self._lock:
                self._guess_rule = (generation, chosen, calibration, {**gates, share: gate})
            return chosen, gate

    def _calibrate_guesses(self, default: float) -> tuple[int, float | None, tuple | None]:
        """What guess_rule's gates are chosen on: (generation, weight, (similarities at that weight, same-question
        matrix, answers) or None), from up to `GUESS_EVENTS` active events with an answer."""
        with self._lock:
            generation = self._generation
        # the store is read outside the memory's lock (a store connection is never awaited while holding it)
        events = self.store.list_events(status=EventStatus.ACTIVE, limit=GUESS_EVENTS)
        with self._lock:
            events = [e for e in events if e.answer.strip() and e.id in self.index]
            vecs = self.index.get_vectors([e.id for e in events]) if events else None
        parts = self._image_parts(vecs, vecs) if vecs is not None else None
        if parts is None:
            return generation, None, None
        di = self._di
        text = vecs[:, di:] @ vecs[:, di:].T / self.config.text_weight if self.config.text_weight else None
        same = text >= SAME_QUESTION - 1e-6 if text is not None else np.ones((len(events),) * 2, dtype=bool)
        answers = [e.answer for e in events]
        chosen = leave_one_out_weight(parts[0], parts[1], same, answers, default)
        if chosen is None:
            return generation, None, None
        return generation, chosen, (chosen * parts[0] + (1.0 - chosen) * parts[1], same, answers)

    def _visible(self, matches: list[Match], user_id: str | None, robot_id: str) -> list[Match]:
        """The user's own events and the robot's SHARED events (the trust rules decide what is shared)."""
        return [m for m in matches if m.event.user_id == user_id
                or (m.event.robot_id == robot_id and m.event.scope == Scope.SHARED)]

    def _is_trusted(self, user_id: str) -> bool:
        try:
            return bool(self.store.is_trusted(user_id))
        except NotFound:
            return False

    def search(self, image: Image.Image | None, question: str, user_id: str | None,
               robot_id: str = "default", k: int | None = None, floor: float | None = None) -> list[Match]:
        """Up to `k` (default top_k) visible ACTIVE events scoring >= `floor` (default: the threshold), best first."""
        if not isinstance(question, str):
            raise InvalidInput("the question must be text")
        query = self._query_vector(image, question)
        matches = self._matches(query, self._pool(query, user_id, robot_id), floor)
        return self._visible(matches, user_id, robot_id)[: k or self.config.top_k]

    format_references = staticmethod(format_references)

    # ------------------------------------------------------------------ reuse calibration (memory/calibration.py)
    def reuse_threshold(self) -> float:
        """The reuse threshold calibrated from this deployment's feedback (`RetrievalConfig.calibrate`)."""
        return self.calibrator.threshold()

    def note_answer(self, turn_id: str, matches: Sequence[Match], reused: bool) -> None:
        """Remember the top match behind answer turn `turn_id` until the user reacts to it."""
        self.calibrator.note_answer(turn_id, matches, reused)

    def record_reuse_outcome(self, turn_id: str, reply_text: str, feedback: Any) -> bool | None:
        """The user's reaction to answer turn `turn_id` as a labelled (score, right) pair; its label or None."""
        return self.calibrator.record_outcome(turn_id, reply_text, feedback)

    # ------------------------------------------------------------------ writes
    def add(self, event: Event, image: Image.Image | None = None) -> Event:
        """Admit an event: store it (if new), put it to review (QUARANTINED) if it disputes a shared answer, index
        it, retire what it supersedes and settle which answers around it are shared (`ilearn.memory.trust`).

        An ACTIVE event that `supersedes` an event of the same user (or, under sharing="trusted", any event, if
        its author is trusted) retires that event. A rejection (no answer, only rejected answers) is stored and
        never indexed; the rules decide whether it is shared (`ilearn.memory.trust.shared_rejections`). The store's
        writes are one transaction. Returns the event as stored.
        """
        if not isinstance(event, Event) or not event.question.strip() \
                or not (event.answer.strip() or is_rejection(event)):
            raise InvalidInput("an event needs a question and an answer (or, a rejection, the answers turned down)")
        vec = self._event_vectors([event], [image])  # the slow part, outside the lock: searches go on
        if not event.answer.strip():
            return self._add_rejection(event, vec[0])
        with self._lock, self.store.transaction():
            voices = Voices(self.store, self.trust)
            majority: list[Event] = []
            if event.status == EventStatus.ACTIVE and not is_description(event):
                reason, majority = self._dispute(event, vec[0], voices)
                if reason:
                    event = replace(event, status=EventStatus.QUARANTINED)
                    logger.warning("event %s goes to review: %s", event.id, reason)
            event = replace(event, provenance={**event.provenance, ADMITTED_KEY: f"{now():.3f}"})
            upsert_event(self.store, event)
            if event.status != EventStatus.ACTIVE:
                self._drop([event.id])
                return event
            self._activate(event, vec)
            for held in majority:
                logger.warning("event %s leaves review: its answer %r now has the most voices", held.id, held.answer)
                self._activate(replace(held, status=EventStatus.ACTIVE))
            self._retire_superseded(event)
            settle = self._settle_descriptions if is_description(event) else self._settle
            return settle(vec[0], event.robot_id, voices).get(event.id, event)

    def _activate(self, event: Event, vec: np.ndarray | None = None) -> None:
        """Write `event` as ACTIVE and index it."""
        upsert_event(self.store, event)
        self._index_add([event], vec if vec is not None else self._event_vectors([event]))
        self._remember(event)
        self._changed()

    def _neighbours(self, vec: np.ndarray, robot_id: str, descriptions: bool = False) -> list[Event]:
        """The robot's ACTIVE events that match `vec` (above the threshold) and ask the same question (question
        similarity >= `SAME_QUESTION`: an answer to another question competes with no answer to this one): those
        whose answers compete, or with `descriptions` the users' descriptions (`ilearn.memory.trust`)."""
        return [m.event for m in self._matches(vec, self._pool(vec, None, robot_id))
                if m.event.robot_id == robot_id and m.text_sim >= SAME_QUESTION - 1e-6
                and is_description(m.event) == descriptions]

    def _settle_descriptions(self, vec: np.ndarray, robot_id: str, voices: Voices) -> dict[str, Event]:
        """Share the descriptions matching `vec` that the rules share (`description_winners`) and unshare those the
        rules had shared and no longer do. Returns the events it changed, by id."""
        events = self._neighbours(vec, robot_id, descriptions=True)
        return self._share(events, description_winners(events, voices))

    def _share(self, events: Sequence[Event], share: dict[str, str]) -> dict[str, Event]:
        """Share the `events` named in `share` (id -> why) that are not shared yet, and unshare the others that the
        rules had shared (an event its creator shared, or a reviewer kept, stays shared). Rejections too (they are
        not indexed). Returns the events it changed, by id."""
        changed: dict[str, Event] = {}
        for e in events:
            if e.id in share and e.scope != Scope.SHARED:
                e = replace(e, scope=Scope.SHARED, provenance={**e.provenance, SCOPE_KEY: share[e.id]})
            elif e.id not in share and e.scope == Scope.SHARED and e.provenance.get(SCOPE_KEY) in ("corroborated",
                                                                                                   "trusted"):
                e = replace(e, scope=Scope.PRIVATE, provenance={k: v for k, v in e.provenance.items() if k != SCOPE_KEY})
            else:
                continue
            self.store.update_event(e)
            if e.id in self.index:
                self._remember(e)
            changed[e.id] = e
            logger.info("event %s (%s: %r) is now %s", e.id, e.user_id, e.answer or e.rejected, e.scope.value)
        return changed

    def _dispute(self, event: Event, vec: np.ndarray, voices: Voices) -> tuple[str | None, list[Event]]:
        """Why `event` goes to review, or None; with None, the quarantined events its answer's majority frees.

        Other users' events count even when `event` names one of them in `supersedes`: a user cannot retire what
        others taught, so the answer it tries to replace still stands."""
        others = [e for e in self._neighbours(vec, event.robot_id) if e.user_id != event.user_id and e.id != event.id]
        answers = group(others)
        shared = winner(answers, voices)
        mine = answer_key(event.answer)
        target = self._supersede_target(event)
        if target is not None and target.user_id != event.user_id and voices.trusted(event.user_id) \
                and (voices.trusted(target.user_id) or answer_key(target.answer) == shared):
            return (f"trusted {event.user_id} would retire {target.user_id}'s "
                    f"{'trusted' if voices.trusted(target.user_id) else 'shared'} answer {target.answer!r}"), []
        if shared is None or shared == mine:
            return None, []
        if voices.teaches(event):
            return f"trusted {event.user_id}'s answer {event.answer!r} contradicts the shared {shared!r}", []
        held = [e for e in self._quarantined_near(vec, event.robot_id) if answer_key(e.answer) == mine
                and e.user_id != event.user_id]
        challenger = Answer(mine, [event, *held, *answers[mine].events] if mine in answers else [event, *held])
        if outvotes(challenger, answers, voices):
            return None, held
        backers = voices.count(answers[shared])
        return (f"answer {event.answer!r} from {event.user_id} contradicts {shared!r}, shared with the voices of "
                f"{backers} other user(s)"), []

    def _quarantined_near(self, vec: np.ndarray, robot_id: str) -> list[Event]:
        """Events waiting for review (with an answer) that match `vec`: they count as voices of their answers."""
        held = [e for e in self.store.list_events(status=EventStatus.QUARANTINED, robot_id=robot_id)
                if e.answer.strip() and e.question.strip()]
        if not held:
            return []
        scores = self._event_vectors(held) @ vec
        return [held[i] for i in np.flatnonzero(scores >= self.config.threshold - 1e-6)]

    def _add_rejection(self, event: Event, vec: np.ndarray) -> Event:
        """Store a rejection (never indexed) and share what the rules share around it (`add`)."""
        with self._lock, self.store.transaction():
            voices = Voices(self.store, self.trust)
            event = replace(event, provenance={**event.provenance, ADMITTED_KEY: f"{now():.3f}"})
            upsert_event(self.store, event)
            answers = group(self._neighbours(vec, event.robot_id))
            others = self._rejections_near(vec, event.robot_id, event.id)
            share = shared_rejections(event, others, answers, voices)
            self._share([e for e, _ in share.values()], {i: why for i, (_, why) in share.items()})
            return self.store.get_event(event.id)

    def _settle_rejections(self, vec: np.ndarray, robot_id: str, voices: Voices) -> None:
        """Unshare the rejections matching `vec` (where a forgotten user's event was) that the rules no longer
        share: the voices or the shared answer they had are gone."""
        near = self._rejections_near(vec, robot_id)
        answers = group(self._neighbours(vec, robot_id))
        shared = [e for e in near if e.scope == Scope.SHARED]
        self._share(shared, {e.id: e.provenance.get(SCOPE_KEY, "") for e in shared
                             if e.id in shared_rejections(replace(e, scope=Scope.PRIVATE), near, answers, voices)})

    def _rejections_near(self, vec: np.ndarray, robot_id: str, but: str | None = None) -> list[Event]:
        """The robot's rejections (QUARANTINED, as `construct` writes them; but the event `but`) about the same
        object and question as `vec` (fused score over the threshold, question similarity >= `SAME_QUESTION`)."""
        others = [e for e in self.store.list_events(robot_id=robot_id, status=EventStatus.QUARANTINED)
                  if is_rejection(e) and e.id != but and e.question.strip()]
        if not others:
            return []
        vecs = self._event_vectors(others)
        di, wt = self._di, self.config.text_weight
        text = vecs[:, di:] @ vec[di:] / wt if wt else np.ones(len(others))
        ok = (vecs @ vec >= self.config.threshold - 1e-6) & (text >= SAME_QUESTION - 1e-6)
        return [others[i] for i in np.flatnonzero(ok)]

    def _supersede_target(self, event: Event) -> Event | None:
        if not event.supersedes:
            return None
        try:
            return self.store.get_event(event.supersedes)
        except NotFound:
            return None

    def _settle(self, vec: np.ndarray, robot_id: str, voices: Voices) -> dict[str, Event]:
        """Share the winning answer among the events matching `vec` and unshare the others the rules had shared
        (an event its creator shared, or a reviewer kept, stays shared). Returns the events it changed, by id."""
        events = self._neighbours(vec, robot_id)
        best = winner(group(events), voices)
        return self._share(events, {e.id: "trusted" if voices.teaches(e) else "corroborated"
                                    for e in events if best is not None and answer_key(e.answer) == best})

    def _retire_superseded(self, event: Event) -> None:
        old = self._supersede_target(event)
        if old is None:
            if event.supersedes:
                logger.warning("event %s supersedes unknown event %s", event.id, event.supersedes)
            return
        allowed = old.user_id == event.user_id or (self.trust.sharing == "trusted" and self._is_trusted(event.user_id))
        if not allowed:
            logger.warning("event %s by %s cannot retire %s taught by %s", event.id, event.user_id, old.id, old.user_id)
            return
        if old.status != EventStatus.SUPERSEDED:
            self.store.update_event(replace(old, status=EventStatus.SUPERSEDED))
        self._drop([old.id])

    def _drop(self, event_ids: Iterable[str]) -> int:
        ids = list(event_ids)
        for i in ids:
            self._forget_meta(i)
        n = self.index.remove(ids)
        if n:
            self._changed(n)
        return n

    def supersede(self, old_event_id: str, new_event: Event, image: Image.Image | None = None) -> Event:
        """Add `new_event` as the correction of `old_event_id`; the old event is retired unless the new one
        is quarantined (then it is retired on `resolve(keep=True)`). Unknown id -> NotFound."""
        self.store.get_event(old_event_id)
        return self.add(replace(new_event, supersedes=old_event_id), image)

    def remove(self, event_ids: Iterable[str]) -> int:
        """Drop events' vectors from the index (their store rows are left as they are)."""
        with self._lock:
            return self._drop(event_ids)

    # ------------------------------------------------------------------ review
    def review_queue(self, robot_id: str | None = None) -> list[tuple[Event, list[Event]]]:
        """Events waiting for review (QUARANTINED, with an answer), oldest first, each with the shared events
        whose answer it disputes (what `resolve(keep=True)` would unshare)."""
        with self._lock:
            out = []
            for e in self.store.list_events(status=EventStatus.QUARANTINED, robot_id=robot_id):
                if not e.answer.strip():
                    continue  # a rejected answer with no correction: kept for preference training, no dispute
                vec = self._event_vectors([e])[0]
                disputed = [o for o in self._neighbours(vec, e.robot_id)
                            if o.scope == Scope.SHARED and answer_key(o.answer) != answer_key(e.answer)]
                out.append((e, disputed))
            return out

    def resolve(self, event_id: str, keep: bool) -> Event:
        """Settle a quarantined event. keep: the reviewer sides with it: it becomes ACTIVE and SHARED (reason
        "reviewed"), retires what it supersedes, and the answers it disputed are unshared; else it is DELETED."""
        with self._lock, self.store.transaction():
            event = self.store.get_event(event_id)
            if event.status != EventStatus.QUARANTINED:
                raise InvalidInput(f"event {event_id!r} is {event.status}, not quarantined")
            if not keep:
                event = replace(event, status=EventStatus.DELETED)
                self.store.update_event(event)
                logger.info("quarantined event %s rejected", event_id)
                return event
            vec = self._event_vectors([event])
            for other in self._neighbours(vec[0], event.robot_id):
                if other.scope == Scope.SHARED and answer_key(other.answer) != answer_key(event.answer):
                    other = replace(other, scope=Scope.PRIVATE,
                                    provenance={k: v for k, v in other.provenance.items() if k != SCOPE_KEY})
                    self.store.update_event(other)
                    self._remember(other)
            event = replace(event, status=EventStatus.ACTIVE, scope=Scope.SHARED,
                            provenance={**event.provenance, SCOPE_KEY: "reviewed", ADMITTED_KEY: f"{now():.3f}"})
            self._activate(event, vec)
            self._retire_superseded(event)
            logger.info("quarantined event %s accepted", event_id)
            return event

    # ------------------------------------------------------------------ forget
    def forget_user(self, user_id: str) -> list[str]:
        """Delete a user's events, sessions and images from the store and their vectors from the index, then
        settle again which answers are shared where the user's events were (their voices are gone).

        The index is compacted before it is saved: a tombstone (this removal's, or one left when an event
        of the user was superseded) keeps the vector's graph code until then, and no file may keep it."""
        with self._lock:
            mine = [k for k in self._by_user.get(user_id, set()) if k in self.index]
            vecs = self.index.get_vectors(mine)
            places = [(self._meta[k].robot_id, vecs[i]) for i, k in enumerate(mine)]
            rejections = [e for e in self.store.list_events(user_id=user_id) if is_rejection(e)]
            turned_down = list(zip(rejections, self._event_vectors(rejections), strict=True)) if rejections else []
            deleted = self.store.delete_user(user_id)
            self._drop(set(deleted) | self._by_user.get(user_id, set()))
            voices = Voices(self.store, self.trust)
            with self.store.transaction():
                for robot_id, vec in places:
                    self._settle(vec, robot_id, voices)
                    self._settle_descriptions(vec, robot_id, voices)
                for robot_id, vec in places + [(e.robot_id, v) for e, v in turned_down]:
                    self._settle_rejections(vec, robot_id, voices)
            del places, turned_down
            if self.index.dead:
                self.index.compact()
                self._filters.clear()
            self.save()
        self._forgotten()
        return deleted

    def on_forget(self, hook: Callable[[], None]) -> None:
        """Call `hook` after every forget this memory learns of: its own `forget_user`, and (a fleet's memory,
        `ilearn.memory.feed`) a forget in another process. The assistant empties its caches of pictures by content
        with it, which cannot tell the forgotten user's pictures from others'."""
        self._forget_hooks.append(hook)

    def _forgotten(self) -> None:
        """A user was forgotten: the query vectors by pixels go (theirs among them), then the hooks run."""
        with self._lock:
            self._query_cache.clear()
        for hook in self._forget_hooks:
            hook()


def recorded_settings(home: str | Path) -> dict[str, Any]:
    """The retrieval settings an existing index in `home` was built with (`EMBEDDERS_NAME`): the registered names
    of its embedders and its weights, for `RetrievalConfig` ({} when nothing was recorded or it is unreadable)."""
    path = Path(home) / EMBEDDERS_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    return {k: record[k] for k in ("image_embedder", "text_embedder", "image_weight", "text_weight")
            if record.get(k) is not None}
