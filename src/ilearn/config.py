"""Typed settings for every part of iLearn, with documented defaults; one place for defaults.

Each field is documented by the docstring right under it; the CLI help is built from the same text.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from ilearn import plugins
from ilearn.errors import InvalidInput
from ilearn.types import Label

DB_NAME = "ilearn.db"
"""File name of the SQLite store inside the deployment folder when `Config.store` is not set."""

STUB_MODELS = frozenset({"tiny", "stub"})
"""Model backends without real image understanding: "auto" embedders are the model-free stubs for them."""


PUBLISH = ("none", "vllm-lora")
"""The values of `ModelConfig.publish`."""


def parse_path_map(value: str | None) -> tuple[str, str] | None:
    """"LOCAL=SERVER" (two absolute folders) as a pair, None for none; InvalidInput otherwise."""
    if not value:
        return None
    local, sep, server = value.partition("=")
    if not sep or not local.startswith("/") or not server.startswith("/"):
        raise InvalidInput(f"model.publish_path_map must be LOCAL=SERVER, two absolute folders, not {value!r}")
    return local.rstrip("/") or "/", server.rstrip("/") or "/"


def parse_servers(value: str | None) -> list[str]:
    """`model.publish_servers` ("URL,URL,..."; each http:// or https://) as a list, [] for none; InvalidInput
    otherwise."""
    servers = [s.strip() for s in (value or "").split(",") if s.strip()]
    bad = [s for s in servers if not s.startswith(("http://", "https://"))]
    if bad:
        raise InvalidInput(f"model.publish_servers must be http(s) base URLs separated by commas, not {bad[0]!r}")
    return servers


@dataclass(frozen=True)
class ModelConfig:
    backend: str = "small"
    """Vision-language model backend: small (embedded default), tiny (random weights), hf, openai, stub, or one
    registered in `ilearn.plugins` (kind "model")."""
    path: str | None = None
    """Local folder of an `hf` model, or base URL of an `openai` server."""
    device: str = "cpu"
    """Torch device: cpu, cuda, cuda:1 ..."""
    dtype: str = "float32"
    """Weights dtype: float32, bfloat16 or float16 (bf16 on GPUs)."""
    threads: int = 1
    """Torch CPU threads (measured: with other load present, 1 thread beats 2 on a 2-core machine)."""
    max_new_tokens: int = 48
    """Longest reply the model generates."""
    max_batch: int = 8
    """Most answers of turns running at the same time that are generated in one batched pass (1: each alone).
    Only backends with batched generation batch (small, tiny); one user alone is answered as without it. Measured
    by benchmarks/concurrency.py."""
    batch_split: bool = True
    """When more turns wait than one batch worker should take alone, the free workers (two) share them: two
    batches of 4 at once rather than one of 8, both cores busy with `threads` 1. Off: one batch takes them all,
    which gives more turns per second on cores that other jobs keep busy (docs/batching.md)."""
    cache_dir: str | None = None
    """Where derived weights are cached (de-quantised LM, projector); default ~/.cache/ilearn."""
    seed: int = 0
    """Seed for models built with random weights (tiny)."""
    publish: str = "none"
    """How a promoted or rolled-back version comes to serve: "none" (this process loads its weights into a model
    object of its own) or "vllm-lora" (only with the openai backend on a vLLM server started with
    `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` and `--enable-lora`: the version's adapter folder is loaded on that
    server under a new name, at model.path with the backend's API key; `ilearn.models.vllm_publish`,
    docs/fleet.md)."""
    publish_path_map: str | None = None
    """With publish "vllm-lora", when the vLLM server sees the versions' folders elsewhere (a shared volume mounted
    at another path): "LOCAL=SERVER", e.g. "/srv/ilearn/models=/adapters"; a version under LOCAL is loaded from
    the same place under SERVER."""
    publish_servers: str | None = None
    """With publish "vllm-lora" and several vLLM replicas behind one address (model.path a load balancer): each
    replica's own base URL, comma-separated ("http://vllm-0:8000/v1,http://vllm-1:8000/v1"). An adapter is loaded
    on every replica before the next turns ask for it (on all or on none) and unloaded from each; unset: the
    server at model.path."""
    publish_retry_s: float = 30.0
    """With publish "vllm-lora": seconds after the server refused the active version's adapter before a turn
    tries it again (the version served before serves meanwhile; a refresh, e.g. /readyz, tries at once)."""

    def __post_init__(self) -> None:
        plugins.check("model", self.backend, "model.backend")
        parse_path_map(self.publish_path_map)
        parse_servers(self.publish_servers)
        if self.publish_retry_s < 0:
            raise InvalidInput("model.publish_retry_s must be >= 0")
        if self.publish not in PUBLISH:
            raise InvalidInput(f"model.publish must be one of {', '.join(PUBLISH)}, not {self.publish!r}")
        if self.publish == "vllm-lora" and self.backend != "openai":
            raise InvalidInput(f"model.publish 'vllm-lora' needs model.backend 'openai' (a vLLM server), "
                               f"not {self.backend!r}")
        if self.threads < 1:
            raise InvalidInput("model.threads must be >= 1")
        if self.dtype not in {"float32", "bfloat16", "float16"}:
            raise InvalidInput(f"model.dtype must be float32, bfloat16 or float16, not {self.dtype!r}")
        if self.max_new_tokens < 1:
            raise InvalidInput("model.max_new_tokens must be >= 1")
        if self.max_batch < 1:
            raise InvalidInput("model.max_batch must be >= 1")


@dataclass(frozen=True)
class LimitsConfig:
    max_message_chars: int = 4000
    """Longest user message accepted; longer ones are refused with a clear error."""
    max_image_bytes: int = 20_000_000
    """Largest image file accepted (bytes)."""
    max_image_pixels: int = 40_000_000
    """Largest decoded image accepted (width x height); guards against decompression bombs."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 1:
                raise InvalidInput(f"limits.{f.name} must be positive")


@dataclass(frozen=True)
class ClarifyConfig:
    enabled: bool = True
    """Ask a clarifying question when a request is ambiguous for the image (Chain of Question)."""
    max_clarifications: int = 1
    """At most this many clarifying questions per request, then answer."""
    method: str = "lexical"
    """How ambiguity is decided: lexical (facet cues and vague-request words; best measured, see README), model (the
    VLM judges requests that name no facet), or never."""
    facets: tuple[dict[str, Any], ...] = ()
    """What a clarifying question offers to know about an object, this domain's: a list of {"name", "cues" (words
    that ask for it), "question" (the precise question), "option" (how the clarifying question names it)}, e.g.
    {"name": "habitat", "cues": ["habitat", "live"], "question": "Where does this live?", "option": "where it
    lives"}. Empty: a general set (its name, what it is used for, its colour). The experiments' scenarios pass
    their own (the pharmacy: name, use, dose; objects: the keys of its facts.json files). A vague request ("what
    is this?") is only asked about when the domain has several facets; with one, it means that one."""
    learn_facets_users: int = 3
    """A precise question that no facet covers becomes a facet once this many distinct users of the deployment
    asked it (its cues: the question's content words), so that later clarifying questions offer it; 0: never."""

    def __post_init__(self) -> None:
        plugins.check("clarifier", self.method, "clarify.method")
        if self.max_clarifications < 0:
            raise InvalidInput("clarify.max_clarifications must be >= 0")
        if self.learn_facets_users < 0:
            raise InvalidInput("clarify.learn_facets_users must be >= 0")
        for facet in self.facets:
            if not isinstance(facet, dict) or not str(facet.get("name", "")).strip():
                raise InvalidInput(f"clarify.facets: each facet is an object with a name, not {facet!r}")


@dataclass(frozen=True)
class RetrievalConfig:
    enabled: bool = True
    """Use past events as references in answers (Dual-Modality Retrieval)."""
    image_embedder: str = "auto"
    """Image vectors for retrieval: "instance" (a small CNN trained to tell drawn look-alike objects apart,
    `ilearn.models.instance`), "foreground" (colour and shape statistics of the object,
    `ForegroundImageEmbedder`), "efficientnet" (pooled ImageNet features), "fused" (instance and efficientnet side by
    side, one weighted cosine, `FusedImageEmbedder`; benchmarks/fused_embedder.py), "stub" (a model-free colour grid for
    tests), or one registered in `ilearn.plugins`; "auto": stub for the tiny and stub model backends, fused
    for the others.

    Why fused by default: the instance CNN alone, at the shipped reuse threshold, reuses another object's answer
    for 44.5 / 34.5 / 27.4% of new real pictures (data/real icons-dev / icons-check / kinds; benchmarks/
    fused_embedder.py), and on icons-dev the robot's memory then made the tuned model worse (R3+retrieval 0% of
    taught facts against R3's 11.1%); fused keeps false reuse at 1.4 / 3.2 / 0.7% there and gives up a few points
    of fixed bottle views (89.2% against 94.4%, one view taught). `ilearn experiment pharmacy` (seed 0) with
    fused: R2 100% of 14 taught facts, R3 100% of 18 (instance: 100 / 83.3). docs/real-images.md.

    The instance CNN, measured on the pharmacy look-alikes, which the CNN never saw (benchmarks/one_shot.py descriptors, one
    view taught per bottle, 6 new views each, held-out seeds 4-7): nearest neighbour right 97.2% (calibration
    seeds 8-15: 97.6%) vs foreground 80% and efficientnet 34%; about 55 ms an image on one loaded thread (the
    average over four views of the image; foreground 46 ms). Its errors are mostly the pair that differs by
    corner shape only (round/square). It was trained on drawn objects: on photos of your own things, measure
    (ilearn experiment objects) before you rely on it. Changing it rebuilds the index."""
    fused_weight: float = 0.7
    """With image_embedder "fused": the weight of the instance CNN's cosine in the image cosine, the rest going to
    the frozen EfficientNet-Lite0 features (`ilearn.models.embedders.FusedImageEmbedder`).

    Measured (benchmarks/calibration_sim.py, one picture taught per object, 10 draws; with `calibrate`): 0.7 fixes
    90.3% of new views of the held-out bottles at 0.4% false reuse (the CNN alone: 94.0% at 0.5%) and keeps false
    reuse at 1.3 / 1.6 / 0.4% on the real pictures of data/real icons-dev / icons-check / kinds (the CNN alone:
    4.6 / 3.9 / 3.8%; 0.5: under 1% but 68% of bottle views fixed at the shipped threshold)."""
    image_weight: float = 0.8
    """Weight of image similarity (cosine of the image embedder's vectors) in the fused score.

    Measured (benchmarks/retrieval.py calibrate, 24 rendered pill bottles one attribute apart, 6 views each,
    17 questions in 6 intents): question cosine same intent p50 0.78 vs other intent p95/p99 0.52/0.57; recall
    at <= 2% false matches is flat for image weights 0.1-0.8; above 0.85 questions of another intent start to
    match. An event asked with another intent scores up to 0.8 + 0.2 * 0.57 = 0.914 for the identical image: it
    is a reference, but `reuse_min_text_sim` keeps its answer from being reused outright. benchmarks/one_shot.py
    (one question, so the text term is constant) cannot tell weights apart; it sets the thresholds."""
    text_weight: float = 0.2
    """Weight of question-text similarity (all-MiniLM-L6-v2 cosine) in the fused score (see image_weight)."""
    text_embedder: str = "auto"
    """Question vectors for retrieval and rephrase detection: "minilm" (all-MiniLM-L6-v2), "hashing" (a
    model-free bag of words for tests), or one registered in `ilearn.plugins`; "auto": hashing for the tiny and
    stub model backends, minilm for the others."""
    index: str = "faiss"
    """Vector index backend: "faiss" (exact below `hnsw_min_size`, HNSW above), "partitioned" (one such index
    per robot for its shared events and per robot and user for the others: a user's query reads only their
    own partitions, whatever the size of the rest; see `ilearn.memory.partitioned`) or "exact" (plain numpy,
    for tests and small deployments)."""
    memory: str = "dual"
    """Retrieval memory backend: "dual" (Dual-Modality Retrieval over the vector index) or "stub" (same question,
    no vectors; for tests)."""
    threshold: float = 0.84
    """Fused score at or above which a past event counts as a match (a reference in the model's context).

    Same question: image cosine >= 0.80. Measured on the pharmacy look-alikes (benchmarks/one_shot.py memory
    --reuse-threshold 0.87, instance embedder, one taught view per bottle, held-out seeds 4-7): 98.3% of new
    views get a reference. Also the level at which corroboration and quarantine compare answers."""
    top_k: int = 3
    """Most references put in the model's context."""
    reuse_threshold: float = 0.87
    """Fused score at or above which the top reference's corrected answer is given as the answer outright
    (subject to `reuse_min_text_sim` and `reuse_margin`).

    Must exceed `threshold`. Same question: image cosine >= 0.8375. Chosen by benchmarks/one_shot.py memory
    --max-false 0.01 (pharmacy scenario, 12 look-alike bottles each taught once with one view, 6 new views
    each, weights 0.8/0.2, instance embedder): the lowest threshold that reuses a wrong answer for at most 1%
    of new views on calibration seeds 8-15 (n=576: 92.9% fixed at 0.9%; half the 2% goal, since held-out
    seeds may be harder). On
    held-out seeds 4-7 (n=288 per case) it fixes 94.4% at 1.7% false reuse (same user, and trusted teacher),
    95.5% at 1.7% for another user taught by two users, 0% for another user taught by one (not corroborated);
    another question about the same bottle never gets the taught name (`reuse_min_text_sim`). At the lowest
    threshold with <= 2% on the calibration seeds (0.815): 96.9% fixed but 2.8% false held-out. Open set: when
    the asked bottle was never taught, a look-alike's name is reused for 9.7% of its new views
    (benchmarks/one_shot.py descriptors --reuse-threshold 0.87). The
    image-alone 8-view CNN of the first release: 83.7% at 1.7% (reuse 0.92)."""
    reuse_margin: float = 0.0
    """Margin by which the top match's fused score must beat the best visible match with a DIFFERENT
    (normalised) answer before its answer is reused outright (a ratio test; `ilearn.memory.retrieval.reusable`).

    Two look-alikes that both match well make neither decisive. Off (0) by default, by measurement with the
    foreground descriptor (benchmarks/one_shot.py memory --embedder foreground --reuse-margin 0.008, i.e. an image-cosine margin of 0.01 at weights
    0.8/0.2): it lets calibration pick a lower threshold (0.918), which gives 38.2% fixed but 4.2% false reuse
    on held-out seeds (vs 33.3% / 2.4% without): the margin calibrated on seeds 0-3 does not carry over. Nor
    with the instance CNN (16 views, image alone; --reuse-margin 0.02, calibrated on seeds 8-15): threshold
    0.611, 93.4% fixed but 4.5% false reuse held-out."""
    reuse_defers_to_model: bool = True
    """With a fine-tuned version serving, an answer the memory would give outright is checked against the model's
    own (the model answers too): when the model's answer is one that a reference about the same question carries,
    the model's stands. The tuned model was trained on those events; a look-alike's reference scoring highest
    (or a wrong answer a careless user let stand) must not overrule it, so that memory and tuned model together
    do no worse than the tuned model alone. Off: the reused answer always wins (and no generation is spent)."""
    prompt_references: str = "untuned"
    """Where references below the reuse threshold go into the model's prompt: "untuned" (only while the base model
    serves: a fine-tuned version was trained without references in its prompt, and one that already knows the
    taught facts was pulled to a wrong reference's answer: R3+retrieval below R3 on real pictures), "always" or
    "never". Answers reused outright are not affected."""
    reuse_min_text_sim: float = 0.6
    """Question similarity (all-MiniLM-L6-v2 cosine) below which the top match's answer is never reused
    outright, however alike the images (it still goes into the model's context as a reference).

    An answer to another question is not an answer to this one: "what is it for?" must not get the name taught
    for "what is this called?" about the same bottle. Measured (benchmarks/retrieval.py calibrate, 17
    questions in 6 intents): another intent's question p99 0.57; the assistant retrieves with the precise
    question of the intent it recognised, so the same intent usually scores 1.0. Without this floor the image
    weight alone would have to keep other intents out (0.8 x 1 + 0.2 x 0.57 = 0.914 for an identical image)."""
    guess_threshold: float | None = 0.76
    """Fused score of the best same-question match from which, when no answer is decisive, a past answer is offered
    as a guess, worded as one ("I'm not sure, but ..."; `ilearn.memory.retrieval.tentative`) instead of the model's
    answer; None: never. Which past answer: the nearest events' most alike as the memory's own events weigh the
    fused embedder's parts (`DualModalityMemory.guess_weight`). Only matches >= `threshold` are references.

    The model's answer stands when it already says the guess's answer, or a reference (>= `threshold`) about the
    same question carries it, or a nearby event about it does within `guess_margin`. Same question: image cosine
    >= 0.70. Measured (`python benchmarks/guesses.py`: the objects scenario's teach/test
    splits of seeds 0-3, the pharmacy's bottles with one view taught), in % of new pictures of taught objects,
    right / wrong guesses: icons-dev 53.9 / 37.5, kinds 42.2 / 36.7, details 31.9 / 52.6, bottles 99.0 / 1.0 (the
    base model names none of the real ones). The cost is the open set: a never-taught object gets a taught name
    as a guess for 84 / 63 / 78 / 42% of its pictures (a worded guess where the model would answer wrongly too).
    A guess is not a reuse: it is never given at `reuse_threshold`'s confidence, and experiments count it apart
    (a round's `first_answer_sources`)."""
    guess_precision: float | None = None
    """With a share p: the gate of a guess is calibrated on the memory's own events instead of `guess_threshold`.
    Each event is named after its nearest other event about the same question (leave-one-out, at the weight
    `guess_weight` chose); from the most alike down, a right name gains 1 - p and a wrong one loses p, and a guess
    is offered from the similarity where the total is highest (`ilearn.memory.retrieval.leave_one_out_gate`).
    Events whose answer no other event shares count as wrong (a never-taught object is named after another one),
    so the open set is in the count. Until the memory holds enough events (`GUESS_MIN_QUERIES`) or with another
    embedder, `guess_threshold` gates. Off by default, by measurement: it offers fewer, more often right guesses,
    and the base model it replaces names no real object, so fewer guesses answer fewer questions right. icons-dev's
    R2 (`ilearn experiment objects`, seed 0, 96 a round): the fixed gate 30.4% of 56 taught facts (guesses 15 of
    49 right), p = 0.25 23.2% (11 of 24), p = 0.5 3.6% (no guess: with one picture of an object per question,
    leave-one-out reads nearly every event as a never-taught object). `python benchmarks/guesses.py` compares the
    two gates with two or three pictures of each object in memory."""
    tuned_guess_precision: float | None = 0.2
    """`guess_precision` for the turns a tuned version answers (and for its gate's choice of guesses,
    `ilearn.learning.guesses`); None: the fixed `guess_threshold`, whatever `guess_precision` says. A guess that overrules a version trained on
    the taught events must have been right at least this share of the time among the memory's own events
    (leave-one-out), where one that replaces the base weights, which name no taught object, may be offered sooner.
    Measured on five sets (`ilearn experiment pharmacy|objects`, seed 0, both tuned versions, every "+retrieval"
    round scored again on the same versions and memory, docs/real-images.md "Which gate for a tuned version's
    guesses"): 0.2 keeps memory + tuned model at least as good as each part on 9 of 10 (details' vision-trained
    version 35 against R2's 39 of 96); the fixed `guess_threshold` also on 9 (icons-check's frozen-vision one 22
    against its own 26 of 71: right names overruled by guesses at similarities 0.52-0.67); 0.5 on 6 (the pharmacy's
    two and details' two fall below R2: the memory's leave-one-out names, one view of each object in a young memory,
    look worse than the guesses are). Neither alone is the rule the project asks for: with `tuned_gate_known_only`
    (the stricter gate judges only guesses from events the version knows) share 0.2 holds on all ten. The base
    weights keep `guess_precision` (off: `guess_threshold`)."""
    tuned_gate_known_only: bool = True
    """A tuned version's gate (`tuned_guess_precision`) judges only guesses from events the version knows: asked
    the event's own question about the event's own picture, it gives the event's answer. A guess from an event it
    does not know (an object it did not learn, or one taught after it was trained) is judged by the base weights'
    gate instead, as R2's memory would be: the version has no better evidence about that object than the base model.
    The version is asked once per event a turn would guess from (`ilearn.learning.guesses.choose_guess`; kept per
    version and event). Measured on details (`ilearn experiment objects --objects data/real/details`, seed 0): the
    vision-trained version named the pyramids' own picture "cafe terrace at night", so the tuned gate (0.61) kept
    the memory's right guess (0.46) off four times and memory + tuned model fell to 35 against R2's 39 of 96; with
    this rule 39 (docs/real-images.md "A tuned version's gate for what it knows"). It also protects only answers
    the version learnt: where the version's answer is carried by no candidate about the same question ("nope", a
    base-model sentence), the base weights' gate judges the guess, even from an event the version knows (knowing a
    training row's own picture is no evidence about a new view: details' vision-trained version, once the
    pyramids' event was trained, said "nope" to their second view; 35 against R2's 39 without this, 39 with it;
    docs/real-images.md "Held out: only new views of facts that stay taught"). Off: the tuned gate judges every
    guess."""
    guess_margin: float = 0.0
    """How much more alike (image similarity, as the guess is chosen: `ilearn.memory.retrieval.guess_similarity`)
    the guess's event must be than the nearest event about the same question that carries the model's own answer,
    for the guess to replace that answer; within it the model decides. 0 by measurement: a tuned model's answer
    that a nearly-as-alike event carried stood at 0.05, and on icons-dev (a weak tuned model, 19% of taught facts)
    that cost R3+retrieval 5 interactions R2 had answered right (27.9% of 68 taught facts, below R2 on R2's facts);
    at 0 R3+retrieval answers 30.9%, R2's facts as often as R2. The pharmacy's tuned model does not need it once it
    trains only on shared events (`ilearn experiment`, seed 0). A model answer no nearby event carries is replaced
    whatever the margin; a reference (>= `threshold`) that carries it keeps it while `guess_references_stand`."""
    guess_references_stand: bool = True
    """A model answer that a reference (a match >= `threshold`, by fused score) carries stands against the guess
    whatever `guess_margin` says. Off: only `guess_margin` decides, on the guess's own similarity (which weighs the
    image parts as the memory's events chose), for references too."""
    calibrate: bool = False
    """Calibrate the reuse threshold from this deployment's own feedback (`ilearn.memory.calibration`): each
    answer the memory gave outright (or could have: the top match of an answer the model gave) and the user's
    reaction to it is a labelled pair (score, right); only (score, right, time) is kept, in calibration.sqlite
    under home. Until `calibration_min_pairs` pairs exist the threshold is `reuse_threshold`; then the lowest
    score (>= `calibration_floor`) above which the 95% Wilson upper bound of false reuse is <= `max_false_reuse`;
    raised at once when the pairs above it show a higher false-reuse rate (95% Wilson lower bound above it), to
    where the observed share is within it. Off: `reuse_threshold` always.

    Off by default for now: the experiment runners score rounds with simulated users whose reactions would feed
    the calibration (scoring must never change the deployment), and `ilearn experiment pharmacy` has not been
    rerun with it on. benchmarks/calibration_sim.py: on real pictures with the instance CNN it cuts false reuse
    from 31.7% to 3.3% (icons-check) and 23.0% to 4.5% (kinds); the bottles keep 93.7% fixed at 0.4% false."""
    calibration_min_pairs: int = 30
    """Labelled pairs needed before the reuse threshold may move down from `reuse_threshold` (with no rejection
    the Wilson bound reaches 2% only with about 190 pairs at or above a threshold)."""
    max_false_reuse: float = 0.02
    """The false-reuse rate the calibrated threshold keeps to (95% Wilson upper bound on the feedback pairs)."""
    calibration_floor: float = 0.84
    """The lowest reuse threshold calibration may choose; in force: at least `threshold` (nothing below it is
    retrieved) and at most `reuse_threshold`."""
    calibration_min_rejections: int = 2
    """Rejected answers from memory needed at or above the threshold before it is raised (one user's single
    rejection, a liar's or a slip, must not stop everyone's answers from memory)."""
    sharing: str = "corroboration"
    """How an answer reaches other users: corroboration (by N distinct users), trusted (teachers share at once), private."""
    corroboration: int = 2
    """Distinct users who must agree before an answer is used for everyone (sharing=corroboration)."""
    accepted_is_voice: bool = True
    """Under sharing="trusted": the model's own answer that a trusted user only accepted in words ("Thanks!",
    `ilearn.memory.trust.ACCEPTED_KEY`) is one voice rather than shared at once; an answer the memory gave from
    another user's shared event and the user accepted is shared at once (taught words confirmed on a new view).
    Off: every answer a trusted user accepts is shared at once. On the pharmacy it keeps a careless caretaker's
    nonsense out of memory and training (docs/real-images.md)."""
    min_age_s: float = 0.0
    """Seconds since a user id was first seen before it counts as a voice for sharing (`ilearn.memory.trust`).
    0 (default): every id counts at once. A deployment where anyone can make up user ids should raise it (e.g.
    86400), so that fresh ids teach only themselves until they are that old (docs/privacy.md, threat model)."""
    hnsw_min_size: int = 5_000
    """Index size from which HNSW is used instead of exact search (one matrix-vector product).

    Measured (benchmarks/retrieval.py index, 1 thread, fused 1664-d, p50): exact 0.15 ms at 2k, 0.93 ms at 5k,
    1.98 ms at 10k (6-12 ms while other jobs run), 22.8 ms at 100k; HNSW 0.15 / 0.23 / 0.37 / 0.88 ms, recall@10
    1.0; building the graph at the switch takes about 1 s for 5k vectors."""
    hnsw_m: int = 32
    """HNSW graph degree (FAISS M).

    32: on the worst-case data (independent objects: a query's top-10 is partly the maximum of random noise)
    M 16 / efSearch 64 without re-ranking reached recall@10 0.86 at 100k (1280-d); M 32 with sq8 codes and
    re-ranking 40 (100k, 1664-d, --data views): efSearch 64 / 128 / 256 recall 0.990 / 0.991 / 0.994 (an
    earlier tuning run of the same settings gave 0.915 / 0.952 / 0.971). Build 100k x 1664-d: 107 s, 1 thread."""
    ef_construction: int = 80
    """HNSW build-time beam width (80: 100k fused events build in under 2 minutes on one thread)."""
    ef_search: int = 128
    """HNSW query-time beam width (raised in proportion for filtered searches, up to 1024).

    128 (100k fused 1664-d, look-alike families): p50 0.84 ms, CPU p99 1.15 ms, recall@10 1.0 (64: 0.44 ms,
    1.0; 256: 1.60 ms); worst-case data (see hnsw_m): 1.39 ms, recall 0.991 (0.952 in an earlier run)."""
    exact_filter_fraction: float = 0.2
    """A filter keeping less than this share of the index is searched by scanning only the kept rows' 8-bit
    codes and re-ranking exactly (HNSW recall falls under restrictive filters); wider filters use HNSW.

    Measured at 100k fused 1664-d (p50, recall@10): 1%: scan 0.33 ms, 1.0 vs filtered HNSW 5.7 ms, 0.78;
    10%: scan 3.3 ms, 1.0 vs HNSW 5.9 ms, 0.969; 20%: scan 6.5 ms vs HNSW 4.0 ms, 0.997; 30%: 9.5 vs 2.9 ms."""
    index_storage: str = "sq8"
    """What the HNSW graph stores and compares while searching: "sq8" (8-bit codes), "fp16" or "flat" (float32).

    Candidates are always re-ranked on the float32 vectors, so this only changes which candidates are found."""
    index_rerank: int = 40
    """Candidates found by HNSW (or by the filtered code scan) that are re-ranked with exact inner products
    (40: recall@10 1.0 after the 10% code scan; re-ranking 40 rows of 1664 floats: 0.008 ms p50)."""
    max_dead_fraction: float = 0.25
    """Removed vectors are tombstones until they exceed this share of the index; then it is compacted."""
    candidates: int = 64
    """Nearest events examined per search (own/shared pool and robot-wide pool each) before scope and threshold."""
    save_every: int = 20
    """Write the index file after this many changes (it is also written on close; the store stays the truth)."""

    def __post_init__(self) -> None:
        if self.reuse_threshold < self.threshold:
            raise InvalidInput("retrieval.reuse_threshold must be >= retrieval.threshold")
        if self.reuse_margin < 0:
            raise InvalidInput("retrieval.reuse_margin must be >= 0")
        if not 0.0 <= self.fused_weight <= 1.0:
            raise InvalidInput(f"retrieval.fused_weight must lie in [0, 1], not {self.fused_weight}")
        if self.prompt_references not in {"untuned", "always", "never"}:
            raise InvalidInput("retrieval.prompt_references must be untuned, always or never, "
                               f"not {self.prompt_references!r}")
        if not 0.0 <= self.calibration_floor <= 1.0:
            raise InvalidInput("retrieval.calibration_floor must lie in [0, 1]")
        if self.calibration_min_pairs < 1 or self.calibration_min_rejections < 1 or not 0.0 < self.max_false_reuse < 1:
            raise InvalidInput("retrieval.calibration_min_pairs and calibration_min_rejections must be >= 1, "
                               "max_false_reuse in (0, 1)")
        if not self.guess_margin >= 0:
            raise InvalidInput(f"retrieval.guess_margin must be >= 0, not {self.guess_margin!r}")
        for name in ("guess_precision", "tuned_guess_precision"):
            share = getattr(self, name)
            if share is not None and not 0.0 < share < 1.0:
                raise InvalidInput(f"retrieval.{name} must be a share in (0, 1) (or null: the fixed "
                                   f"guess_threshold), not {share!r}")
        if self.guess_threshold is not None and not -1.0 <= self.guess_threshold <= 1.0:
            raise InvalidInput("retrieval.guess_threshold must be a fused score in [-1, 1] (or null: no guesses), "
                               f"not {self.guess_threshold!r}")
        if not -1.0 <= self.reuse_min_text_sim <= 1.0:
            raise InvalidInput("retrieval.reuse_min_text_sim must be a cosine, in [-1, 1]")
        if self.candidates < self.top_k:
            raise InvalidInput("retrieval.candidates must be >= retrieval.top_k")
        if self.hnsw_m < 2 or self.ef_construction < 1 or self.ef_search < 1 or self.save_every < 1:
            raise InvalidInput("retrieval.hnsw_m >= 2, ef_construction, ef_search and save_every >= 1 required")
        if self.index_storage not in {"sq8", "fp16", "flat"} or self.index_rerank < 1:
            raise InvalidInput("retrieval.index_storage must be sq8, fp16 or flat; index_rerank >= 1")
        if not 0.0 <= self.exact_filter_fraction <= 1.0 or not 0.0 < self.max_dead_fraction <= 1.0:
            raise InvalidInput("retrieval.exact_filter_fraction must be in [0, 1], max_dead_fraction in (0, 1]")
        for kind, name in (("image_embedder", self.image_embedder), ("text_embedder", self.text_embedder)):
            if name != "auto":
                plugins.check(kind, name, f"retrieval.{kind}")
        plugins.check("index", self.index, "retrieval.index")
        plugins.check("memory", self.memory, "retrieval.memory")
        if self.sharing not in {"corroboration", "trusted", "private"}:
            raise InvalidInput(f"retrieval.sharing must be corroboration, trusted or private, not {self.sharing!r}")
        if self.corroboration < 1:
            raise InvalidInput("retrieval.corroboration must be >= 1")
        if not self.min_age_s >= 0:  # NaN too
            raise InvalidInput(f"retrieval.min_age_s must be >= 0 seconds, not {self.min_age_s!r}")
        if self.top_k < 1:
            raise InvalidInput("retrieval.top_k must be >= 1")
        if self.image_weight < 0 or self.text_weight < 0 or self.image_weight + self.text_weight <= 0:
            raise InvalidInput("retrieval weights must be >= 0 and not both 0")


@dataclass(frozen=True)
class FeedbackConfig:
    method: str = "lexical"
    """Feedback decoder: lexical (rules), model (the VLM judges the reaction, ReSpect) or hybrid (rules, then the
    model). Default lexical by measurement (benchmarks/feedback.py): the 135M `small` judge is near chance."""
    min_confidence: float = 0.5
    """Below this confidence a decoded label is treated as neutral."""
    calibrate: bool = True
    """Model decoder: subtract the label words' scores on a content-free reaction (contextual calibration)."""
    lexical_confidence: float = 0.75
    """Hybrid decoder: lexical rules firing with at least this confidence decide; the model decides the rest."""
    rephrase_overlap: float = 0.6
    """Share of content words a question shares with the previous one from which it counts as a rephrasing."""
    rephrase_similarity: float = 0.55
    """With a text embedder: cosine to the previous question from which a question counts as a rephrasing."""

    def __post_init__(self) -> None:
        plugins.check("decoder", self.method, "feedback.method")
        for name in ("min_confidence", "lexical_confidence", "rephrase_overlap", "rephrase_similarity"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidInput(f"feedback.{name} must be within [0, 1]")


@dataclass(frozen=True)
class SessionConfig:
    idle_timeout_s: float = 1800.0
    """Open sessions idle for longer are closed and distilled."""
    close_on_new_image: bool = True
    """A user turn with a new image after an answered question closes the open exchange."""


PROMPT_STYLES = ("none", "tag", "instructions")
"""How a profile reaches the model (`ilearn.users.fit.PROMPT_STYLES`, the one definition; tests check they agree)."""


@dataclass(frozen=True)
class PersonalConfig:
    threshold: float | None = None
    """Least cosine similarity between a photo and the closest view of one of the user's own things to name it
    (`ilearn.users.concepts.ConceptBook`); None: the image embedder's own (its `concept_threshold`: 0.8 for
    "fused" and "instance", 0.95 for the model-free "stub")."""
    margin: float = 0.02
    """How far the user's closest thing must lead their next one for a photo to be named (two look-alikes)."""
    prompt: str = "none"
    """How the profile reaches the model: none (only wording rules fit the answer), tag (a few-token tag before the
    question, for a model tuned to read it: `ilearn.users.tuning`) or instructions (the long prompt of a prompting
    baseline, or a large `openai` backend). A version trained user-aware (`learn.user_aware`) is sent the tag
    unless this says instructions."""

    def __post_init__(self) -> None:
        if self.threshold is not None and not -1.0 <= self.threshold <= 1.0:
            raise InvalidInput(f"personal.threshold must be within [-1, 1], not {self.threshold}")
        if self.margin < 0:
            raise InvalidInput(f"personal.margin must be >= 0, not {self.margin}")
        if self.prompt not in PROMPT_STYLES:
            raise InvalidInput(f"personal.prompt must be one of {list(PROMPT_STYLES)}, not {self.prompt!r}")


@dataclass(frozen=True)
class LearnConfig:
    recipe: str = "sft"
    """Training recipe: sft (filtered fine-tuning), dpo, kto, reinforce."""
    trainable: tuple[str, ...] = ("projector", "language")
    """Parts trained: any of vision, projector, language."""
    lora: tuple[str, ...] = ("language",)
    """Trainable parts that get LoRA adapters; the other trainable parts are trained in full."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."""
    epochs: float = 3.0
    """Passes over the dataset."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: the epochs decide)."""
    learning_rate: float = 2e-4
    """Optimizer learning rate."""
    learning_rate_vision: float = 0.0
    """Learning rate of the vision encoder's parameters (0: learning_rate); a pretrained encoder wants a lower one."""
    learning_rate_projector: float = 0.0
    """Learning rate of the projector's parameters (0: learning_rate)."""
    learning_rate_instance: float = 0.0
    """Learning rate of the projector's instance path, where a model has one (`small`: the instance vector's
    offset to the image tokens; 0: learning_rate_projector). It starts at zero, so it can learn fast while the
    aligned projector keeps a low rate (the general skills live there)."""
    augment: bool = False
    """Show each event image as a new random view every time it is trained on (rotation, zoom, shift, light,
    tint, occlusion; see ilearn.learning.augment); replayed general examples are never augmented."""
    event_repeats: int = 1
    """How many times each event example appears per epoch (balances a few events against `replay`)."""
    batch_size: int = 8
    """Examples per step (per training process)."""
    processes: int = 1
    """Training processes, data-parallel through Hugging Face Accelerate (`ilearn.learning.distributed`; one per GPU
    on GPUs): `batch_size` is per process, so N processes of batch b take the steps one process of batch N * b takes."""
    accelerate_config: str = ""
    """An Accelerate config file for the training processes (made by `accelerate config`), e.g. DeepSpeed ZeRO
    (docs/fleet.md); empty: plain DDP (gloo on CPU, NCCL on GPUs)."""
    beta: float = 0.1
    """DPO / KTO: strength of the pull towards the reference model."""
    kto_undesirable_ratio: float = 1.0
    """KTO: the undesirable (rejected) rows' summed weight over the desirable rows' summed weight. 1: the two
    sides balanced, as the KTO paper and TRL advise; below 1 the rejected answers count for less (every row of the
    smaller side keeps weight 1 where it can)."""
    kto_sft_weight: float = 0.0
    """KTO: weight of an SFT term (the desirable answers' mean token negative log-likelihood) added to KTO's loss,
    as `dpo_sft_weight` for dpo; 0: KTO alone. KTO's loss saturates once a desirable answer is a margin above the
    reference's likelihood: on the pharmacy's round 3 (`benchmarks/r3.py --recipe kto`) KTO alone learnt 13-17% of
    the taught facts, with the term at 1 it learns 57-67% in 224 steps and 95.8% in 600 (the general set best kept
    with `kto_undesirable_ratio` 0.01: 90 against the base's 94; docs/reactions.md)."""
    dpo_sft_weight: float = 0.0
    """DPO: weight of an SFT term (the chosen answer's negative log-likelihood) added to the preference loss (TRL's
    loss_type ["sigmoid", "sft"], as RPO / MPO do); 0: DPO alone. A DPO stage trained from the base weights must
    keep what SFT taught with it (`ilearn experiment personal`: DPO alone from the base weights lost the facts and
    the fitted wording); one that starts from the SFT version (`start_from`) need not."""
    start_from: str = ""
    """A model version (its id) to train on top of, rather than the base weights: its weights are the starting
    point and DPO / KTO's reference, as User-VLM trains DPO after SFT. The new version holds both (one adapter of
    rank lora_r plus the start version's, the full parts' latest tensors: it loads and publishes like any other)
    and counts the start version's events as its own, so a forget of them retires it too. Empty: the base."""
    reward_positive: float = 1.0
    """reinforce: reward of an answer the user received well (ReSpect's remap)."""
    reward_negative: float = -0.1
    """reinforce: reward of an answer the user rejected (ReSpect's remap)."""
    reward_neutral: float = 0.0
    """reinforce: reward of an answer with neutral feedback (ReSpect's remap)."""
    seed: int = 0
    """Seed of data order and new weights."""
    auto_after_events: int = 0
    """Train in the background once this many new events accumulated (0: only on demand)."""
    heldout_fraction: float = 0.2
    """Share of the events kept out of training to measure learning in the gate."""
    general_limit: int = 200
    """Questions of the general set (easy-vqa test for the default model) the gate asks each model."""
    replay: int = 64
    """General examples (easy-vqa *train* questions) mixed into training so the model keeps what it knew, in
    every recipe's format (`ilearn.learning.update.replay_rows`); 0 turns replay off. The gate's general set is
    the easy-vqa *test* split, so replay does not leak into it."""
    distill: float = 0.0
    """sft, dpo and kto: weight of a distillation term that keeps the model's answer distribution on the replayed general
    examples at the base model's (KL(base || model) per answer token; `ilearn.learning.distill`); 0: off."""
    distill_image: float = 0.0
    """sft, dpo and kto: weight of a term that keeps the image tokens of the replayed general examples (the projector's output,
    the instance offset included) at the base model's (squared error relative to the base tokens' squared norm;
    `ilearn.learning.distill`); 0: off."""
    user_aware: bool = False
    """sft and dpo: train the version to fit its answers to the user, as User-VLM does: every training row once per
    profile of `ilearn.users.tuning.ARCHETYPES` (archetypes, never a user's own profile), the profile as a few-token
    tag before the question and the answer worded for it as the target (`ilearn.users.tuning.tuning_rows`; dpo adds
    the profile bias set's train pairs). The assistant then sends such a version the user's tag and shows its
    answers as they are (`personal.prompt` need not say "tag")."""
    learning_margin: float = 0.0
    """The candidate must beat the active model on held-out events by more than this."""
    forgetting_margin: float = 0.01
    """Largest allowed drop on the general set."""
    bias_margin: float = 0.01
    """Largest allowed drop on the bias set."""
    specificity_margin: float = 0.1
    """Largest allowed rise in false naming: the share of held-out negatives (another object asked the same
    question, the same object asked another facet, a picture of no object) answered with a taught answer that is
    wrong there (`ilearn.learning.gate.negatives_from_events`)."""
    candidates: tuple[dict[str, Any], ...] = ({"trainable": ("vision", "projector", "language")},)
    """Other settings to train beside these, each a change to them (e.g. {"trainable": ["vision", "projector",
    "language"]} or {"max_steps": 400}): `learn` trains every candidate on the same events, the gate judges each,
    and the one it accepts that answers the most held-out events right is promoted (`ilearn.learning.select`).
    By default the vision encoder trained too, which doubled what the model learnt on real pictures but learnt
    less on the pharmacy's drawn bottles (issue 18): the deployment's own held-out events decide. () trains only
    these settings (half the time)."""

    def __post_init__(self) -> None:
        # from JSON or the command line: lists become tuples, so that candidate settings compare alike
        object.__setattr__(self, "candidates", tuple(
            {k: tuple(v) if isinstance(v, list) else v for k, v in c.items()} if isinstance(c, dict) else c
            for c in self.candidates))
        for changes in self.candidates:
            if not isinstance(changes, dict) or not changes:
                raise InvalidInput(f"learn.candidates: each is an object of learn settings to change, not {changes!r}")
            unknown = set(changes) - {f.name for f in fields(self)} | ({"candidates"} & set(changes))
            if unknown:
                raise InvalidInput(f"learn.candidates: unknown or nested setting(s) {sorted(unknown)}")
            replace(self, candidates=(), **changes)  # each candidate must be valid settings itself
        parts = {"vision", "projector", "language"}
        bad = (set(self.trainable) | set(self.lora)) - parts
        if bad:
            raise InvalidInput(f"learn.trainable / learn.lora have unknown parts {sorted(bad)}")
        if not self.trainable:
            raise InvalidInput("learn.trainable must name at least one part")
        plugins.check("recipe", self.recipe, "learn.recipe")
        if self.replay < 0 or self.distill < 0 or self.distill_image < 0:
            raise InvalidInput("learn.replay, learn.distill and learn.distill_image must be >= 0")
        if self.event_repeats < 1:
            raise InvalidInput("learn.event_repeats must be >= 1")
        if self.processes < 1:
            raise InvalidInput("learn.processes must be >= 1")
        if min(self.learning_rate_vision, self.learning_rate_projector, self.learning_rate_instance) < 0:
            raise InvalidInput("learn.learning_rate_vision / _projector / _instance must be >= 0 (0: learning_rate)")
        if self.epochs <= 0 or self.batch_size < 1 or self.learning_rate <= 0 or self.lora_r < 1 or self.max_steps < 0:
            raise InvalidInput("learn.epochs, batch_size, learning_rate and lora_r must be positive, max_steps >= 0")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise InvalidInput("learn.heldout_fraction must be within (0, 1)")
        if self.user_aware and self.recipe not in ("sft", "dpo"):
            raise InvalidInput(f"learn.user_aware trains the sft or dpo recipe, not {self.recipe!r}")
        if self.dpo_sft_weight < 0:
            raise InvalidInput("learn.dpo_sft_weight must be >= 0")
        if self.kto_sft_weight < 0:
            raise InvalidInput("learn.kto_sft_weight must be >= 0")
        if self.kto_undesirable_ratio <= 0:
            raise InvalidInput("learn.kto_undesirable_ratio must be > 0")
        for name in ("learning_margin", "forgetting_margin", "bias_margin", "specificity_margin"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"learn.{name} must be >= 0")

    def rewards(self) -> dict[Label, float]:
        """ReSpect's remap of decoded feedback to reinforce rewards, read from `reward_positive`, `reward_negative`
        and `reward_neutral`: the one place the remap is defined (event rows and label rows both use it)."""
        return {Label.POSITIVE: self.reward_positive, Label.NEGATIVE: self.reward_negative,
                Label.NEUTRAL: self.reward_neutral}


@dataclass(frozen=True)
class Config:
    home: str = "ilearn-data"
    """Folder of the deployment: SQLite store, vector index, images, model versions."""
    robot_id: str = "default"
    """Which robot this assistant is."""
    store: str = ""
    """Where the events live, as a URL: "sqlite:///relative/path.db" or "sqlite:////absolute/path.db" (empty:
    sqlite:///<home>/ilearn.db), or "postgresql://user@host/db?schema=name" for a store that several processes
    share (docs/fleet.md). The scheme names a store backend in `ilearn.plugins` (kind "store")."""
    model: ModelConfig = field(default_factory=ModelConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    clarify: ClarifyConfig = field(default_factory=ClarifyConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    learn: LearnConfig = field(default_factory=LearnConfig)
    personal: PersonalConfig = field(default_factory=PersonalConfig)

    def __post_init__(self) -> None:
        check_store_url(self.store)

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def store_url(self) -> str:
        """`store`, or the SQLite file in `home` when it is empty."""
        return self.store or f"sqlite:///{self.home_path / DB_NAME}"

    def embedder(self, kind: str) -> str:
        """The registered name of the retrieval embedder of `kind` ("image_embedder" or "text_embedder"),
        with "auto" resolved for the model backend (see `RetrievalConfig.image_embedder`)."""
        name = getattr(self.retrieval, kind)
        if name != "auto":
            return name
        stub = self.model.backend in STUB_MODELS
        return {"image_embedder": "stub" if stub else "fused",
                "text_embedder": "hashing" if stub else "minilm"}[kind]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        return _build(cls, data, "")

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def override(self, **sections: dict[str, Any] | Any) -> Config:
        """A copy with some fields changed: `cfg.override(model={"backend": "tiny"}, home="x")`."""
        changes: dict[str, Any] = {}
        for name, value in sections.items():
            current = getattr(self, name)
            changes[name] = replace(current, **value) if is_dataclass(current) and isinstance(value, dict) else value
        return replace(self, **changes)


_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://(.*)$")


def store_scheme(url: str) -> str:
    """The scheme of a store URL ("sqlite" for "sqlite:///x.db"); InvalidInput when it is not a URL."""
    match = _URL.match(url)
    if match is None:
        raise InvalidInput(f"store must be a URL such as sqlite:///path/ilearn.db, not {url!r}")
    return match.group(1)


def check_store_url(url: str) -> None:
    """Refuse a store URL that no backend can open (empty means the SQLite file in the home folder)."""
    if not url:
        return
    scheme = store_scheme(url)
    plugins.check("store", scheme, "store")


def _build(cls, data: dict[str, Any], where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise InvalidInput(f"unknown setting(s) {sorted(where + k for k in unknown)}")
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name) if name in known else None
        if is_dataclass(default) and isinstance(value, dict):
            kwargs[name] = _build(type(default), value, f"{where}{name}.")
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
