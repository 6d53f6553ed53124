"""Profile-specific reference answers: for a question and a profile, the answer that user should get, facts unchanged.

User-VLM 360 scores user-aware answers by ROUGE-1 against references written for each user; no such set exists for
iLearn's scenarios, so this module writes one, deterministically, from the facts of a question:

- each profile falls in one *style* (`style`, first match wins): ``child`` (age group child), ``newcomer`` (new to
  technology, or a senior), ``plain`` (reads the language with effort), ``short`` (asked for short answers),
  ``expert`` (expertise expert) or ``general`` (anyone else, an empty profile included);
- each intent (the fact asked for: ``use``, ``dose``, ``name``) has one template per style (`TEMPLATES`), written
  by hand after the User-VLM examples and the fitting rules (`ilearn.users.fit`): a child hears that a grown-up
  gives medicine, a newcomer gets a plain full sentence and an invitation to ask again, a plain-language reader
  short common words, a short answer the fact alone, an expert the fact as a label ("Dose: 400 mg every 6
  hours."), everyone else the fact in a plain sentence;
- for the child, newcomer and plain styles every word of the fact that the fitting glossary knows
  (`fit.GLOSSARY`, e.g. "mg") gets its gloss in brackets beside it, never instead of it.

The fact itself is in every reference, word for word once bracketed glosses are removed (`facts_kept`; tests check
it for every intent, style and pharmacy fact). What changes with the profile is the wording around it, which is
what ROUGE-1 against these references rewards.
"""

from __future__ import annotations

import logging
import re

from ilearn.errors import InvalidInput
from ilearn.text import contains_answer
from ilearn.users.fit import GLOSSARY
from ilearn.users.profiles import Profile

logger = logging.getLogger(__name__)

STYLES = ("child", "newcomer", "plain", "short", "expert", "general")
TEMPLATES: dict[str, dict[str, str]] = {
    "use": {
        "child": "This medicine helps with {fact}. Only take it when a grown-up gives it to you.",
        "newcomer": "This medicine is used for {fact}. You can ask me again at any time.",
        "plain": "It is for {fact}.",
        "short": "For {fact}.",
        "expert": "Indication: {fact}.",
        "general": "It is used for {fact}.",
    },
    "dose": {
        "child": "A grown-up gives you the dose: {fact}.",
        "newcomer": "The dose of this medicine is {fact}. You can ask me again at any time.",
        "plain": "Take {fact}.",
        "short": "{fact}.",
        "expert": "Dose: {fact}.",
        "general": "The dose is {fact}.",
    },
    "name": {
        "child": "This medicine is called {fact}. Only take it when a grown-up gives it to you.",
        "newcomer": "This medicine is called {fact}. You can ask me again at any time.",
        "plain": "It is {fact}.",
        "short": "{fact}.",
        "expert": "{fact}.",
        "general": "This is {fact}.",
    },
}
"""One template per intent and style; `{fact}` is the fact (glossed for child, newcomer and plain)."""
_GLOSSED = ("child", "newcomer", "plain")
_BRACKETS = re.compile(r"\s*\([^)]*\)")


def style(profile: Profile) -> str:
    """The reference style of a profile (module docstring; the first that applies)."""
    if profile.age_group == "child":
        return "child"
    if profile.expertise == "newcomer" or profile.age_group == "senior":
        return "newcomer"
    if "plain language" in profile.accessibility:
        return "plain"
    if profile.answer_length == "short":
        return "short"
    if profile.expertise == "expert":
        return "expert"
    return "general"


def gloss(fact: str) -> str:
    """`fact` with each glossary word followed by its gloss in brackets ("400 mg (milligrams) every 6 hours")."""
    pattern = r"\b(?:" + "|".join(re.escape(w) for w in sorted(GLOSSARY, key=len, reverse=True)) + r")\b"
    return re.sub(pattern, lambda m: f"{m.group(0)} ({GLOSSARY[m.group(0).lower()]})", fact, flags=re.IGNORECASE)


def reference_answer(intent: str, fact: str, profile: Profile) -> str:
    """The answer `profile` should get to the question for `intent` whose answer is `fact` (module docstring)."""
    if intent not in TEMPLATES:
        raise InvalidInput(f"no reference templates for intent {intent!r}; known: {sorted(TEMPLATES)}")
    if not fact.strip():
        raise InvalidInput("a reference needs a fact")
    kind = style(profile)
    text = TEMPLATES[intent][kind].format(fact=gloss(fact) if kind in _GLOSSED else fact)
    return text[:1].upper() + text[1:]


def facts_kept(answer: str, fact: str) -> bool:
    """Whether `answer` states `fact` (normalised containment once bracketed glosses are removed)."""
    return contains_answer(_BRACKETS.sub("", answer), fact)


__all__ = ["STYLES", "TEMPLATES", "facts_kept", "gloss", "reference_answer", "style"]
