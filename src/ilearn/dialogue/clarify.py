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

import logging
import re
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

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


DEFAULT_FACETS: tuple[Facet, ...] = (
    Facet("name", ("name", "called", "brand", "which medicine", "which one", "what medicine", "identify", "label"),
          "What is this called?", "its name"),
    Facet("use", ("use", "used", "for what", "what for", "purpose", "treat", "good for", "help with", "does it do",
                  "does this do", "does that do", "is it for", "is this for", "is that for", "it's for"),
          "What is this used for?", "what it is used for"),
    Facet("dose", ("dose", "dosage", "how much", "how many", "how often", "take", "mg", "tablets", "pills a day"),
          "What is the dose of this?", "the dose"),
)

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
    """Rules: facet cues make a request clear; a vague deictic request with an image is ambiguous."""

    def __init__(self, facets: tuple[Facet, ...] = DEFAULT_FACETS):
        self.facets = facets

    def assess(self, request: str, image_given: bool) -> Decision:
        facet = find_facet(request, self.facets)
        if facet is not None:
            return Decision(False, reason=f"names the facet {facet.name!r}")
        words = re.findall(r"[a-z']+", normalise_request(request))
        if words and any(w in _DEICTIC for w in words) and all(w in _VAGUE_WORDS for w in words):
            return self._ask("points at the object and names nothing to know about it")
        return Decision(False, reason="specific request")

    def _ask(self, reason: str) -> Decision:
        options = [f.option for f in self.facets]
        listed = ", ".join(options[:-1]) + f", or {options[-1]}" if len(options) > 1 else options[0]
        return Decision(True, question=f"Do you want to know {listed}?", options=options, reason=reason)

    def resolve(self, request: str, reply: str) -> str | None:
        """The precise question after the user's reply to a clarification; None when the reply names no facet."""
        facet = find_facet(reply, self.facets)
        return facet.question if facet is not None else None

    def precise(self, request: str) -> str:
        """The canonical precise question of a clear request that names a facet ("what is this medicine
        called?" -> "What is this called?"), so that events and queries about the same facet share one
        question text for retrieval and training; other requests are kept as they are."""
        facet = find_facet(request, self.facets)
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
        "Is it unclear whether the user wants the object's name, its use, or its dose?"
    )
    READINGS = ("Yes, it is unclear.", "No, it is clear.")

    def __init__(self, vlm: VisionLanguageModel, facets: tuple[Facet, ...] = DEFAULT_FACETS, margin: float = 0.0):
        super().__init__(facets)
        self.vlm = vlm
        self.margin = margin

    def assess(self, request: str, image_given: bool) -> Decision:
        facet = find_facet(request, self.facets)
        if facet is not None:
            return Decision(False, reason=f"names the facet {facet.name!r}")
        messages = [Message("user", self.PROMPT.format(request=request.strip()))]
        yes, no = self.vlm.score(messages, list(self.READINGS))
        if yes - no > self.margin:
            return self._ask(f"model margin {yes - no:.2f}")
        return Decision(False, reason=f"model margin {yes - no:.2f}")


class NeverClarifier(LexicalClarifier):
    """Never asks (clarification off); still maps requests that name a facet to their precise question."""

    def assess(self, request: str, image_given: bool) -> Decision:
        return Decision(False, reason="clarification disabled")


def lexical_clarifier(vlm: VisionLanguageModel | None = None) -> Clarifier:
    """Clarifier "lexical" (the model is not used)."""
    return LexicalClarifier()


def model_clarifier(vlm: VisionLanguageModel | None = None) -> Clarifier:
    """Clarifier "model": the VLM decides requests that name no facet."""
    if vlm is None:
        raise InvalidInput("the model clarifier needs a vision-language model")
    return ModelClarifier(vlm)


def never_clarifier(vlm: VisionLanguageModel | None = None) -> Clarifier:
    """Clarifier "never" (clarification off; the model is not used)."""
    return NeverClarifier()


def make_clarifier(method: str, vlm: VisionLanguageModel | None = None) -> Clarifier:
    """The clarifier registered as `method` in `ilearn.plugins` (ClarifyConfig.method)."""
    from ilearn import plugins

    return plugins.create("clarifier", method, vlm)
