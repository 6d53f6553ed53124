"""Simulated-user personas and their phrasing templates (used by `ilearn.evaluation.users`).

A persona fixes how a simulated user talks and reacts:

- ``style``: the wording (plain, casual, formal, terse, chatty);
- ``ambiguity``: the probability that the first request is vague ("what is this?") rather than precise
  ("what is this medicine called?");
- ``patience``: the most utterances the user spends on one task before giving up;
- ``feedback``: ``explicit`` (corrects: "No, that's X."), ``implicit`` (reacts only: rephrases, "hmm, not
  what I meant", thanks) or ``none`` (a non-committal "I see." or silence);
- ``unreliable``: the probability of misleading feedback: an explicit user names a wrong answer as the
  correction, an implicit user thanks the assistant for a wrong answer;
- ``polite``: says thanks when satisfied;
- ``real_wording``: the probability that a reaction (or a vague first request) is worded as real people word it
  rather than by the style's template: drawn from `REAL_WORDING`, replies paraphrased from real human dialogue (chitchat-dataset, MIT; each
  row of src/ilearn/data/user_wording.jsonl names the reply it paraphrases), such as "No way!" (neutral
  surprise), "no i think you got it right" (agreement that starts with "no"), "Close. {x}." (a correction).
  The built-in personas use it with probability 0.2-0.7, so experiments exercise the decoder the way real
  users would; a persona made by hand keeps the templates unless it sets it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from importlib import resources

from ilearn.errors import InvalidInput

STYLES = ("plain", "casual", "formal", "terse", "chatty")
FEEDBACK_STYLES = ("explicit", "implicit", "none")


@dataclass(frozen=True)
class Persona:
    """How one simulated user talks and reacts (see the module docstring)."""

    name: str
    style: str = "plain"
    ambiguity: float = 0.5
    patience: int = 4
    feedback: str = "explicit"
    unreliable: float = 0.0
    polite: bool = True
    real_wording: float = 0.0

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise InvalidInput(f"persona style must be one of {STYLES}, not {self.style!r}")
        if self.feedback not in FEEDBACK_STYLES:
            raise InvalidInput(f"persona feedback must be one of {FEEDBACK_STYLES}, not {self.feedback!r}")
        if not all(0.0 <= v <= 1.0 for v in (self.ambiguity, self.unreliable, self.real_wording)):
            raise InvalidInput("persona ambiguity, unreliable and real_wording must lie in [0, 1]")
        if self.patience < 1:
            raise InvalidInput("persona patience must be >= 1")


#: How often each style's built-in personas word a reaction as real people do (`Persona.real_wording`).
_REAL_BY_STYLE = {"plain": 0.5, "casual": 0.7, "formal": 0.2, "terse": 0.4, "chatty": 0.7}


def _p(name: str, style: str, ambiguity: float, patience: int, feedback: str, unreliable: float,
       polite: bool) -> Persona:
    return Persona(name, style, ambiguity, patience, feedback, unreliable, polite, _REAL_BY_STYLE[style])


#: 30 personas; four of them are unreliable (hugo, noah, umar: wrong corrections; dana: thanks wrong answers).
PERSONAS: tuple[Persona, ...] = (
    _p("ada", "plain", 0.8, 4, "explicit", 0.0, True),
    _p("ben", "casual", 0.9, 3, "implicit", 0.0, False),
    _p("chloe", "formal", 0.2, 5, "explicit", 0.0, True),
    _p("dev", "terse", 0.5, 2, "implicit", 0.0, False),
    _p("elena", "chatty", 0.7, 6, "explicit", 0.0, True),
    _p("farid", "plain", 0.1, 3, "none", 0.0, False),
    _p("grace", "formal", 0.9, 4, "implicit", 0.0, True),
    _p("hugo", "casual", 0.3, 3, "explicit", 0.2, False),
    _p("ines", "chatty", 0.6, 5, "implicit", 0.0, True),
    _p("jamal", "terse", 0.9, 2, "explicit", 0.0, False),
    _p("kim", "plain", 0.5, 4, "implicit", 0.0, True),
    _p("liam", "casual", 0.8, 3, "none", 0.0, True),
    _p("maya", "formal", 0.4, 6, "explicit", 0.0, True),
    _p("noah", "chatty", 1.0, 4, "explicit", 0.3, True),
    _p("olga", "terse", 0.2, 3, "implicit", 0.0, False),
    _p("pablo", "plain", 0.7, 2, "explicit", 0.0, False),
    _p("quinn", "casual", 0.6, 5, "implicit", 0.0, True),
    _p("rosa", "formal", 0.0, 4, "none", 0.0, True),
    _p("sami", "chatty", 0.4, 3, "implicit", 0.0, False),
    _p("tara", "terse", 0.7, 4, "explicit", 0.0, True),
    _p("umar", "plain", 0.3, 5, "explicit", 0.15, True),
    _p("vera", "casual", 1.0, 2, "implicit", 0.0, False),
    _p("wen", "formal", 0.6, 3, "explicit", 0.0, False),
    _p("xavier", "chatty", 0.2, 6, "none", 0.0, False),
    _p("yara", "terse", 1.0, 3, "implicit", 0.0, True),
    _p("zoe", "plain", 0.9, 5, "explicit", 0.0, True),
    _p("arjun", "casual", 0.5, 4, "explicit", 0.0, True),
    _p("bea", "formal", 0.8, 2, "implicit", 0.0, False),
    _p("carlos", "chatty", 0.9, 3, "explicit", 0.0, False),
    _p("dana", "plain", 0.6, 3, "implicit", 0.25, True),
)


def persona(name: str) -> Persona:
    """The built-in persona with this name."""
    for p in PERSONAS:
        if p.name == name:
            return p
    raise InvalidInput(f"no persona named {name!r}; known: {', '.join(p.name for p in PERSONAS)}")


def split_personas(seed: int = 0, n_test: int = 8) -> tuple[list[Persona], list[Persona]]:
    """(teach users, held-out test users): a seeded split of `PERSONAS`, so rounds are scored on new users."""
    if not 0 < n_test < len(PERSONAS):
        raise InvalidInput(f"n_test must be between 1 and {len(PERSONAS) - 1}")
    order = list(PERSONAS)
    random.Random(seed).shuffle(order)
    return order[n_test:], order[:n_test]


# ---- phrasing templates, by style ----------------------------------------------------------------

VAGUE: dict[str, tuple[str, ...]] = {
    "plain": ("What is this?", "What's this?", "Tell me about this."),
    "casual": ("what's this?", "hey, what's that?", "any idea about this one?"),
    "formal": ("Could you tell me about this, please?", "What is this, please?"),
    "terse": ("this?", "what's this"),
    "chatty": ("Oh, and what about this one here?", "Hmm, what is this one then?"),
}

#: Precise requests per intent; {noun} is the scenario's noun, {key} the fact key for other intents.
PRECISE: dict[str, dict[str, tuple[str, ...]]] = {
    "name": {
        "plain": ("What is this {noun} called?", "What is the name of this {noun}?"),
        "casual": ("what's this {noun} called?", "what's the name of this?"),
        "formal": ("Could you tell me the name of this {noun}, please?",),
        "terse": ("name?", "name of this?"),
        "chatty": ("I can never remember, what is this {noun} called again?",),
    },
    "use": {
        "plain": ("What is this {noun} used for?", "What is this used for?"),
        "casual": ("what's this used for?", "what do I use this for?"),
        "formal": ("Could you tell me what this {noun} is used for, please?",),
        "terse": ("use?", "used for?"),
        "chatty": ("I found this in the cupboard, what is it used for?",),
    },
    "dose": {
        "plain": ("What is the dose of this {noun}?", "How much of this should I take?"),
        "casual": ("how much of this do I take?", "what's the dose?"),
        "formal": ("What dose of this {noun} should I take, please?",),
        "terse": ("dose?", "how much?"),
        "chatty": ("My doctor mentioned this one, how much should I take of it?",),
    },
    "other": {
        "plain": ("What is the {key} of this {noun}?",),
        "casual": ("what's the {key} of this?",),
        "formal": ("Could you tell me the {key} of this {noun}, please?",),
        "terse": ("{key}?",),
        "chatty": ("I was wondering, what is the {key} of this {noun}?",),
    },
}

#: Replies to a clarifying question ("Do you want to know its name, what it is used for, or the dose?").
CLARIFY_REPLY: dict[str, dict[str, tuple[str, ...]]] = {
    "name": {"plain": ("Its name.",), "casual": ("the name",), "formal": ("The name, please.",),
             "terse": ("name",), "chatty": ("Oh, just what it's called.",)},
    "use": {"plain": ("What it is used for.",), "casual": ("what it's for",),
            "formal": ("What it is used for, please.",), "terse": ("use",),
            "chatty": ("What it's used for, I mean what it treats.",)},
    "dose": {"plain": ("The dose.",), "casual": ("how much to take",), "formal": ("The dose, please.",),
             "terse": ("dose",), "chatty": ("How much I should take of it.",)},
    "other": {"plain": ("The {key}.",), "casual": ("the {key}",), "formal": ("The {key}, please.",),
              "terse": ("{key}",), "chatty": ("I'd like to know the {key}.",)},
}

THANKS: dict[str, tuple[str, ...]] = {
    "plain": ("Thanks!", "Thank you."), "casual": ("cool, thanks", "great, cheers"),
    "formal": ("Thank you very much.",), "terse": ("thx",), "chatty": ("Oh lovely, thank you so much!",),
}
CONFIRM: dict[str, tuple[str, ...]] = {
    "plain": ("Yes, that's right.",), "casual": ("yep, spot on",), "formal": ("That is correct.",),
    "terse": ("right",), "chatty": ("Yes, that's exactly it!",),
}
#: Explicit corrections; {x} is the corrected answer.
CORRECTION: dict[str, tuple[str, ...]] = {
    "plain": ("No, that's {x}.", "No, it's {x}."), "casual": ("nope, it's {x}",),
    "formal": ("I'm afraid that is wrong; it is {x}.",), "terse": ("no, {x}",),
    "chatty": ("Hmm no, I'm quite sure it's {x}, actually.",),
}
#: Implicit negative reactions; {q} is a rephrased precise question (ReSpect's rephrase / frustration).
IMPLICIT_NEGATIVE: dict[str, tuple[str, ...]] = {
    "plain": ("Hmm, that's not what I asked. {q}", "That's not right. {q}"),
    "casual": ("uh, not really... {q}", "nah. {q}"),
    "formal": ("I'm not sure that is right. {q}",), "terse": ("wrong. {q}",),
    "chatty": ("Oh dear, that doesn't sound right at all. {q}",),
}
NEUTRAL: dict[str, tuple[str, ...]] = {
    "plain": ("I see.",), "casual": ("hm, ok",), "formal": ("I see, interesting.",), "terse": ("hm",),
    "chatty": ("Oh well, I'll see.",),
}
GIVE_UP: dict[str, tuple[str, ...]] = {
    "plain": ("Never mind, this is useless.",), "casual": ("forget it, useless",),
    "formal": ("That is not helpful; never mind.",), "terse": ("useless",),
    "chatty": ("Oh, forget it, this is hopeless!",),
}


# ---- real wording ------------------------------------------------------------------------------------

#: The categories of `REAL_WORDING` and what they replace: positive (THANKS / CONFIRM), negative_correction
#: (CORRECTION, {x}), negative_implicit (IMPLICIT_NEGATIVE, {q}), neutral (NEUTRAL), give_up (GIVE_UP), the
#: reference game's pick_next / pick_wrong ({d}), and vague (VAGUE: a first request that names no facet).
REAL_CATEGORIES = ("positive", "negative_correction", "negative_implicit", "neutral", "give_up", "pick_next",
                   "pick_wrong", "vague")


def load_real_wording() -> dict[str, tuple[str, ...]]:
    """The shipped real-wording pools by category (src/ilearn/data/user_wording.jsonl)."""
    text = resources.files("ilearn.data").joinpath("user_wording.jsonl").read_text(encoding="utf-8")
    pools: dict[str, list[str]] = {c: [] for c in REAL_CATEGORIES}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("category") not in pools or not row.get("text") or not row.get("origin"):
            raise InvalidInput(f"user_wording.jsonl line {n}: needs a known category, a text and an origin")
        pools[row["category"]].append(row["text"])
    return {c: tuple(v) for c, v in pools.items()}


REAL_WORDING: dict[str, tuple[str, ...]] = load_real_wording()


def with_real_wording(personas: tuple[Persona, ...] | list[Persona], share: float) -> list[Persona]:
    """The personas with `real_wording` set to `share` (0: templates only, as before; 1: real wording only)."""
    return [replace(p, real_wording=share) for p in personas]
