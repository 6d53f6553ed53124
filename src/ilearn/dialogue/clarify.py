"""Chain of Question: decide whether a request is ambiguous for the image, ask, and resolve the reply.

A request is ambiguous when it could mean several things the user may want to know about the object (its name,
its use, its dose ...), i.e. when it names no *facet* and points at the object only deictically ("what is this?",
"tell me about that"). Requests that name a facet ("what is the dose?") or carry their own content ("is the
cap red?") are clear.

Two deciders are available (`ClarifyConfig.method`):

- `lexical`: facet cues and a small grammar of vague deictic requests.
- `model`: the vision-language model compares, by log-probability, "the request is unclear" against "the request
  is clear" as its answer about the request; facet cues still decide requests that name a facet outright, so the
  model is asked only about requests without one.

Both are measured by `python benchmarks/clarify.py` on `src/ilearn/data/clarify.jsonl`.
"""

from __future__ import annotations

import inspect
import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ilearn.errors import InvalidInput
from ilearn.models.base import Message, VisionLanguageModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Facet:
    """One thing a user may want to know about an object."""

    name: str
    cues: tuple[str, ...]  # words that show the user asks about this facet
    question: str  # the precise question once the user chose this facet
    option: str  # how the clarifying question names it

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Facet:
        """A facet from settings: {"name", "cues", "question", "option"}; what it leaves out is `facet_for_key`'s
        (for "habitat": the cues "habitat" and "habitats", "What is the habitat of this?", "the habitat")."""
        if not isinstance(data, Mapping) or not str(data.get("name", "")).strip():
            raise InvalidInput(f"a clarify facet needs a name, e.g. {{\"name\": \"habitat\"}}, not {data!r}")
        unknown = set(data) - {"name", "cues", "question", "option"}
        if unknown:
            raise InvalidInput(f"clarify facet {data['name']!r}: unknown field(s) {sorted(unknown)}")
        name = str(data["name"]).strip()
        base = facet_for_key(name)
        cues = data.get("cues") or base.cues
        if isinstance(cues, str) or not all(isinstance(c, str) and c.strip() for c in cues):
            raise InvalidInput(f"clarify facet {name!r}: cues must be a list of words or phrases")
        return cls(name, tuple(normalise_request(c) for c in cues), str(data.get("question") or base.question),
                   str(data.get("option") or base.option))


PHARMACY_FACETS: tuple[Facet, ...] = (
    Facet("name", ("name", "called", "brand", "which medicine", "which one", "what medicine", "identify", "label"),
          "What is this called?", "its name"),
    Facet("use", ("use", "used", "for what", "what for", "purpose", "treat", "good for", "help with", "does it do",
                  "does this do", "does that do", "is it for", "is this for", "is that for", "it's for"),
          "What is this used for?", "what it is used for"),
    Facet("dose", ("dose", "dosage", "how much", "how many", "how often", "take", "mg", "tablets", "pills a day"),
          "What is the dose of this?", "the dose"),
)
"""The pharmacy's facets (iLearnRobot's study): what the pharmacy scenario passes and benchmarks/clarify.py
measures; `DEFAULT_FACETS` is the same set, for callers that pass no settings."""

DEFAULT_FACETS = PHARMACY_FACETS

GENERAL_FACETS: tuple[Facet, ...] = (
    Facet("name", ("name", "called", "what kind", "what type", "which kind", "which type", "which one", "identify",
                   "label"),
          "What is this called?", "its name"),
    PHARMACY_FACETS[1],
    Facet("colour", ("colour", "color", "colours", "colors", "coloured", "colored"), "What is the colour of this?",
          "its colour"),
)
"""The facets of a deployment whose settings name none (`clarify.facets` empty): its name, what it is used for,
its colour: things one may ask of any object (no dose)."""

_KNOWN_FACETS: dict[str, Facet] = {f.name: f for f in (*PHARMACY_FACETS, *GENERAL_FACETS[2:])}


def _key_words(key: str) -> str:
    """A facts key as words: "shelf_life" -> "shelf life"."""
    return " ".join(re.sub(r"[_\-]+", " ", key).lower().split())


def _key_question(words: str) -> str:
    return f"What is the {words} of this?"


def facet_for_key(key: str) -> Facet:
    """The facet that asks for the fact `key` of a facts file: a known one (name, use, dose, colour) or one whose
    cues are the key's words (and its plural) and whose question is "What is the <key> of this?", the question
    the scenarios ask for that fact (`ilearn.evaluation.scenarios.base.precise_question`)."""
    words = _key_words(key)
    if words in _KNOWN_FACETS:
        return _KNOWN_FACETS[words]
    cues = (words, words + "s") if " " not in words and not words.endswith("s") else (words,)
    return Facet(key, cues, _key_question(words), f"the {words}")


def facets_for_keys(keys: Iterable[str]) -> tuple[Facet, ...]:
    """The facets of a domain whose objects have the facts `keys` (e.g. the keys of the facts.json files), the
    name first, then in the order of `keys`."""
    out: dict[str, Facet] = {}
    for key in sorted(keys, key=lambda k: _key_words(k) != "name"):
        facet = facet_for_key(key)
        out.setdefault(facet.name, facet)
    return tuple(out.values())


def facets_from_settings(facets: Sequence[Mapping[str, Any]] | None) -> tuple[Facet, ...]:
    """`clarify.facets` as Facets; the general set when the settings name none."""
    if not facets:
        return GENERAL_FACETS
    out = tuple(f if isinstance(f, Facet) else Facet.from_dict(f) for f in facets)
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise InvalidInput(f"clarify.facets: duplicate facet names {names}")
    return out


def facet_settings(facets: Iterable[Facet]) -> tuple[dict[str, Any], ...]:
    """Facets as `clarify.facets` settings (what a scenario puts into its deployment's config)."""
    return tuple({"name": f.name, "cues": list(f.cues), "question": f.question, "option": f.option} for f in facets)


# A request is vague when every word in it is one of these: it points at the object and asks nothing specific.
_DEICTIC = frozenset("this that it these those one thing things object here there".split())
_VAGUE_WORDS = _DEICTIC | frozenset(
    """what whats what's is are was it's that's this's about tell me more explain know do you any idea info
    information details detail can could would say on with help again exactly over the a an and so ok okay hey hi
    um hmm robot excuse please pls now see look at i want to like some something anything on there's here's oh ah uh
    then well also just""".split()
)


def normalise_request(text: str) -> str:
    """Lower case, the punctuation ! . , ; : to spaces, single spaces, a question mark kept against its word.

    Unlike the answer judge's `ilearn.text.normalise_text`, it keeps question marks and apostrophes: they are
    cues of a vague request ("what's this?")."""
    text = text.lower().strip()
    text = re.sub(r"[!.,;:]+", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+\?", "?", text)


def find_facet(text: str, facets: tuple[Facet, ...] = DEFAULT_FACETS) -> Facet | None:
    """The facet a request or a reply names, or None; the earliest cue in the text wins."""
    low = f" {normalise_request(text)} "
    best: tuple[int, Facet] | None = None
    for facet in facets:
        for cue in facet.cues:
            m = re.search(rf"\b{re.escape(cue)}\b", low)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), facet)
    return best[1] if best else None


# Words that carry no content of a question: the vague words, question words and function words.
_FUNCTION_WORDS = _VAGUE_WORDS | frozenset(
    """who whom whose which where when why how does did doing done has have had of in for from to by its his her
    their they them he she we you your my our am be been being will shall should may might must there's than
    or but not no yes if as into onto off out up down very much many really""".split()
)


def content_words(text: str) -> tuple[str, ...]:
    """The words of a question that say what it asks ("where does this bird live?" -> ("bird", "live"))."""
    words = re.findall(r"[a-z][a-z']*", normalise_request(text))
    return tuple(dict.fromkeys(w for w in words if w not in _FUNCTION_WORDS and len(w) > 1))


def is_vague(text: str) -> bool:
    """A request that points at the object and names nothing to know about it ("what is this?")."""
    words = re.findall(r"[a-z']+", normalise_request(text))
    return bool(words) and any(w in _DEICTIC for w in words) and all(w in _VAGUE_WORDS for w in words)


_OF_THIS = re.compile(r"^what(?: is|'s) (?:the|its) (.+?) of (?:this|that|it)\??$")


def learn_facets(events: Iterable[Any], facets: Sequence[Facet], min_users: int) -> tuple[Facet, ...]:
    """Facets users keep asking about: a precise question (an event's question) that no facet of `facets` covers,
    asked by at least `min_users` distinct users, becomes a facet whose cues are its content words.

    Questions with the same content words are one question ("what is its habitat?", "What's the habitat of
    this?"); its precise question is the text most users asked. Vague requests and the fallback questions of
    unsettled clarifications ("what is this? (the blue one)") are not precise questions and teach nothing."""
    if min_users < 1:
        return ()
    users: dict[tuple[str, ...], set[str]] = {}
    texts: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for event in events:
        question = " ".join(str(getattr(event, "question", "") or "").split())
        if getattr(event, "status", None) == "deleted" or not question or question.endswith(")"):
            continue
        if is_vague(question) or find_facet(question, tuple(facets)) is not None:
            continue
        words = content_words(question)
        if not words:
            continue
        key = tuple(sorted(words))
        users.setdefault(key, set()).add(event.user_id)
        texts.setdefault(key, {}).setdefault(question, set()).add(event.user_id)
    known = {f.name for f in facets}
    out: list[Facet] = []
    for key in sorted(users, key=lambda k: (-len(users[k]), k)):
        if len(users[key]) < min_users:
            continue
        question = max(sorted(texts[key]), key=lambda q: len(texts[key][q]))
        name = " ".join(content_words(question))
        if name in known:
            continue
        known.add(name)
        text = normalise_request(question).rstrip("?")
        match = _OF_THIS.match(text)
        option = f"the {match.group(1)}" if match else text
        out.append(Facet(name, content_words(question), question, option))
    return tuple(out)


@dataclass
class Decision:
    ambiguous: bool
    question: str = ""  # the clarifying question to ask, when ambiguous
    options: list[str] = field(default_factory=list)
    reason: str = ""


@runtime_checkable
class Clarifier(Protocol):
    """Chain of Question: decides whether a request needs a clarifying question and turns replies into the
    precise question. Backends are registered in `ilearn.plugins` (kind "clarifier": lexical, model, never)."""

    def assess(self, request: str, image_given: bool) -> Decision:
        """Whether `request` is ambiguous for the image, with the clarifying question to ask when it is."""
        ...

    def resolve(self, request: str, reply: str) -> str | None:
        """The precise question after the user's reply to a clarification; None when the reply settles nothing."""
        ...

    def precise(self, request: str) -> str:
        """The canonical precise question of a clear request (the request itself when it has none)."""
        ...

    def fallback(self, request: str, reply: str) -> str:
        """The question to answer when the replies never settled the request."""
        ...


class LexicalClarifier:
    """Rules: facet cues make a request clear; a vague deictic request with an image is ambiguous when the domain
    has several facets (with one, the request means that facet: no question, its precise question).

    `facets` are the domain's (the settings', a scenario's); with a `store`, facets users keep asking about are
    added (`learn_facets`, `learn_users` distinct users), read again whenever the store's event count changed."""

    def __init__(self, facets: Sequence[Facet] = DEFAULT_FACETS, *, store: Any = None, learn_users: int = 0):
        self.configured: tuple[Facet, ...] = tuple(facets)
        if not self.configured:
            raise InvalidInput("a clarifier needs at least one facet")
        self.store = store if learn_users > 0 else None
        self.learn_users = learn_users
        self._learned: tuple[Facet, ...] = ()
        self._seen_events = -1
        self._lock = threading.Lock()

    @property
    def facets(self) -> tuple[Facet, ...]:
        """The configured facets, then those learned from the store's events."""
        if self.store is not None:
            self._refresh()
        return self.configured + self._learned

    def _refresh(self) -> None:
        with self._lock:
            try:
                count = self.store.count_events()
                if count != self._seen_events:
                    self._learned = learn_facets(self.store.iter_events(), self.configured, self.learn_users)
                    self._seen_events = count
                    if self._learned:
                        logger.debug("facets learned from users' questions: %s", [f.name for f in self._learned])
            except Exception:  # a closed or failing store must not stop the turn: keep what was learned
                logger.warning("could not read the store's events to learn facets", exc_info=True)

    def find(self, text: str, facets: tuple[Facet, ...] | None = None) -> Facet | None:
        """The facet `text` names: a configured facet's cue first, then a learned one's (a learned facet's cues
        are content words, such as "bird" in "where does this bird live?", that must not outbid "called").
        `facets`: `self.facets` as the caller read it (each read asks the store whether events changed)."""
        facets = self.facets if facets is None else facets
        return find_facet(text, self.configured) or find_facet(text, facets[len(self.configured):])

    def assess(self, request: str, image_given: bool) -> Decision:
        facets = self.facets
        facet = self.find(request, facets)
        if facet is not None:
            return Decision(False, reason=f"names the facet {facet.name!r}")
        if is_vague(request):
            if len(facets) == 1:
                return Decision(False, reason=f"the domain has one facet, {facets[0].name!r}")
            return self._ask(facets, "points at the object and names nothing to know about it")
        return Decision(False, reason="specific request")

    @staticmethod
    def _ask(facets: Sequence[Facet], reason: str) -> Decision:
        options = [f.option for f in facets]
        listed = ", ".join(options[:-1]) + f", or {options[-1]}" if len(options) > 1 else options[0]
        return Decision(True, question=f"Do you want to know {listed}?", options=options, reason=reason)

    def resolve(self, request: str, reply: str) -> str | None:
        """The precise question after the user's reply to a clarification; None when the reply names no facet."""
        facet = self.find(reply)
        return facet.question if facet is not None else None

    def precise(self, request: str) -> str:
        """The canonical precise question of a clear request that names a facet ("what is this medicine
        called?" -> "What is this called?"), so that events and queries about the same facet share one
        question text for retrieval and training; a vague request in a domain of one facet is that facet's
        question; other requests are kept as they are."""
        facets = self.facets
        facet = self.find(request, facets)
        if facet is None and len(facets) == 1 and is_vague(request):
            facet = facets[0]
        return facet.question if facet is not None else request

    @staticmethod
    def fallback(request: str, reply: str) -> str:
        """The question to answer when the user's replies never named a facet: the request with the reply."""
        reply = reply.strip().rstrip("?.! ")
        return f"{request.strip().rstrip('?')}? ({reply})" if reply else request


class ModelClarifier(LexicalClarifier):
    """The VLM decides requests that name no facet, comparing a vague and a specific reading by log-probability."""

    PROMPT = (
        "A user points a robot's camera at an object and says: \"{request}\"\n"
        "Is it unclear whether the user wants {options}?"
    )
    READINGS = ("Yes, it is unclear.", "No, it is clear.")

    def __init__(self, vlm: VisionLanguageModel, facets: Sequence[Facet] = DEFAULT_FACETS, margin: float = 0.0, *,
                 store: Any = None, learn_users: int = 0):
        super().__init__(facets, store=store, learn_users=learn_users)
        self.vlm = vlm
        self.margin = margin

    def assess(self, request: str, image_given: bool) -> Decision:
        facets = self.facets
        facet = self.find(request, facets)
        if facet is not None:
            return Decision(False, reason=f"names the facet {facet.name!r}")
        if len(facets) == 1:
            return Decision(False, reason=f"the domain has one facet, {facets[0].name!r}")
        names = [_model_option(f) for f in facets]
        options = ", ".join(names[:-1]) + f", or {names[-1]}"
        messages = [Message("user", self.PROMPT.format(request=request.strip(), options=options))]
        yes, no = self.vlm.score(messages, list(self.READINGS))
        if yes - no > self.margin:
            return self._ask(facets, f"model margin {yes - no:.2f}")
        return Decision(False, reason=f"model margin {yes - no:.2f}")


def _model_option(facet: Facet) -> str:
    """How the model's prompt names a facet: the pharmacy's as before ("the object's name, its use, or its dose")."""
    return {"name": "the object's name", "use": "its use", "dose": "its dose"}.get(facet.name, facet.option)


class NeverClarifier(LexicalClarifier):
    """Never asks (clarification off); still maps requests that name a facet to their precise question."""

    def assess(self, request: str, image_given: bool) -> Decision:
        return Decision(False, reason="clarification disabled")


def domain_facets(settings: Any = None) -> tuple[Facet, ...]:
    """The facets of a deployment: its settings' `clarify.facets` (a `ClarifyConfig`), the general set when they
    name none; `DEFAULT_FACETS` when no settings are given (callers that predate the settings)."""
    if settings is None:
        return DEFAULT_FACETS
    return facets_from_settings(getattr(settings, "facets", None))


def _options(settings: Any, store: Any) -> dict[str, Any]:
    users = int(getattr(settings, "learn_facets_users", 0) or 0) if settings is not None else 0
    return {"store": store, "learn_users": users}


def lexical_clarifier(vlm: VisionLanguageModel | None = None, *, settings: Any = None, store: Any = None) -> Clarifier:
    """Clarifier "lexical" (the model is not used); facets from `settings` (`ClarifyConfig`) and, with `store`,
    from the questions its users keep asking."""
    return LexicalClarifier(domain_facets(settings), **_options(settings, store))


def model_clarifier(vlm: VisionLanguageModel | None = None, *, settings: Any = None, store: Any = None) -> Clarifier:
    """Clarifier "model": the VLM decides requests that name no facet."""
    if vlm is None:
        raise InvalidInput("the model clarifier needs a vision-language model")
    return ModelClarifier(vlm, domain_facets(settings), **_options(settings, store))


def never_clarifier(vlm: VisionLanguageModel | None = None, *, settings: Any = None, store: Any = None) -> Clarifier:
    """Clarifier "never" (clarification off; the model is not used)."""
    return NeverClarifier(domain_facets(settings), **_options(settings, store))


def make_clarifier(method: str, vlm: VisionLanguageModel | None = None, *, settings: Any = None,
                   store: Any = None) -> Clarifier:
    """The clarifier registered as `method` in `ilearn.plugins` (ClarifyConfig.method), with the domain's facets
    from `settings` (a `ClarifyConfig`) and `store` (see `lexical_clarifier`)."""
    from ilearn import plugins

    factory = plugins.resolve("clarifier", method)
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a factory without a signature: called as documented, factory(vlm)
        parameters = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    options = {k: v for k, v in {"settings": settings, "store": store}.items()
               if v is not None and (takes_any or k in parameters)}
    return factory(vlm, **options)
