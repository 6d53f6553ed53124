"""Answers that fit their user: the reply's wording adapted to the profile, its facts unchanged.

Two parts, both cheap:

- `fit_answer(text, profile)`: rules applied to the model's answer. "short" keeps the first sentence and drops
  hedges; a child, a newcomer or a user who asked for plain language gets short sentences and every hard word it
  knows glossed in place ("an analgesic (a pain medicine)"); an expert gets the answer as the model gave it.
  The rules only cut a leading hedge ("I think"), keep the first sentence, split sentences and add glosses beside
  words, so every other word of the answer's first sentence is still there: the facts of that sentence do not
  change with the profile (tests/users/test_fit.py checks it for profiles that differ only in age group,
  expertise or length, and for users who stated a protected attribute). What a later sentence said is dropped
  for "short" (VQA answers put the answer first).
- `profile_tag(profile)`: the profile in a few tokens ("[user: child; short]") for a model tuned or instructed to
  read it, against `instruction_prompt(profile)`, the long instruction prompt a prompting baseline sends
  (User-VLM 360's cost argument: `python -m ilearn.users.measure` counts both per answer).

Neither reads a protected attribute: profiles have no such field (`ilearn.users.profiles`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from ilearn.errors import InvalidInput
from ilearn.models.base import Message
from ilearn.users.profiles import Profile

logger = logging.getLogger(__name__)

PROMPT_STYLES = ("none", "tag", "instructions")
"""How a profile reaches the model: not at all (the default: only `fit_answer` adapts the wording), as a compact
tag in the question, or as a long instruction prompt (the prompting baseline)."""

GLOSSARY = {
    "analgesic": "a pain medicine", "antipyretic": "a fever medicine", "antihistamine": "an allergy medicine",
    "anti-inflammatory": "it calms swelling", "ibuprofen": "a pain medicine", "paracetamol": "a pain medicine",
    "acetaminophen": "a pain medicine", "aspirin": "a pain medicine", "dosage": "how much to take",
    "dose": "how much to take", "mg": "milligrams", "oral": "taken by mouth", "topical": "put on the skin",
    "tablet": "a pill", "capsule": "a pill", "ceramic": "baked clay", "porcelain": "fine baked clay",
    "stainless": "does not rust", "cylindrical": "round like a tube", "rectangular": "box-shaped",
    "spherical": "round like a ball", "transparent": "see-through", "opaque": "not see-through",
    "approximately": "about", "container": "a box or jar", "beverage": "a drink",
}
"""Hard words and their plain glosses, added beside the word (never instead of it)."""
_HEDGE = re.compile(r"^(?:(?:well|so|hmm|ok|okay)[,!.]?\s+)?(?:i think(?: that)?|it (?:seems|looks) like|it seems "
                    r"(?:that|to be)|i believe(?: that)?|probably|perhaps|maybe)\s*,?\s*", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
_MAX_WORDS = 12


def wants_simple(profile: Profile) -> bool:
    """Short sentences and glosses: a child, a newcomer, or a user who reads the language with effort."""
    return profile.age_group == "child" or profile.expertise == "newcomer" or "plain language" in profile.accessibility


def wants_short(profile: Profile) -> bool:
    return profile.answer_length == "short"


def rewords(profile: Profile) -> bool:
    """Whether `fit_answer` may change an answer's words for `profile`; when not, it gives the answer as it is
    (stripped), so its words can be shown while the model writes them (a streamed turn)."""
    return not profile.empty and (wants_short(profile) or wants_simple(profile))


def fit_answer(text: str, profile: Profile) -> str:
    """`text` worded for `profile` (module docstring); unchanged for an empty profile or an expert's."""
    answer = text.strip()
    if not answer or profile.empty:
        return text
    if wants_short(profile) or wants_simple(profile):
        answer = _HEDGE.sub("", answer, count=1)
        answer = answer[:1].upper() + answer[1:]
    if wants_short(profile):
        answer = _SENTENCE.split(answer)[0]
    if wants_simple(profile):
        answer = " ".join(_short_sentences(s) for s in _SENTENCE.split(answer))
        answer = _gloss(answer)
    return answer


def _short_sentences(sentence: str) -> str:
    """A long sentence cut at its commas and semicolons into sentences of at most about `_MAX_WORDS` words."""
    if len(sentence.split()) <= _MAX_WORDS:
        return sentence
    parts = [p.strip() for p in re.split(r"[;,]\s+(?:and\s+|but\s+|which\s+)?", sentence) if p.strip()]
    out = []
    for part in parts:
        part = part[:1].upper() + part[1:]
        out.append(part if part.endswith((".", "!", "?")) else part + ".")
    return " ".join(out)


def _gloss(text: str) -> str:
    """Each glossary word, the first time it appears, followed by its plain gloss in brackets."""
    done: set[str] = set()

    def add(m: re.Match[str]) -> str:
        word = m.group(0)
        key = word.lower()
        if key in done or m.string[m.end():m.end() + 2] == " (":
            return word
        done.add(key)
        return f"{word} ({GLOSSARY[key]})"

    pattern = r"\b(?:" + "|".join(re.escape(w) for w in sorted(GLOSSARY, key=len, reverse=True)) + r")\b"
    return re.sub(pattern, add, text, flags=re.IGNORECASE)


def profile_tag(profile: Profile) -> str:
    """The profile in a few tokens for the model ("" when nothing in it changes an answer)."""
    parts = [p for p in (profile.age_group, profile.expertise, profile.answer_length,
                         profile.language, *profile.accessibility) if p]
    return f"[user: {'; '.join(parts)}]" if parts else ""


def tagged(question: str, profile: Profile) -> str:
    """The question as the model reads it with the "tag" prompt style: `profile_tag` first, when there is one."""
    tag = profile_tag(profile)
    return f"{tag} {question}" if tag else question


def prompt_messages(messages: Sequence[Message], profile: Profile, style: str) -> list[Message]:
    """The chat the model answers with the profile in it as `style` (one of PROMPT_STYLES) says: "tag" puts
    `profile_tag` before the question, "instructions" puts `instruction_prompt` first as a system message, "none"
    (or an empty profile) leaves the chat as it is."""
    if style not in PROMPT_STYLES:
        raise InvalidInput(f"the prompt style must be one of {list(PROMPT_STYLES)}, not {style!r}")
    messages = list(messages)
    if style == "tag":
        last = messages[-1]
        return [*messages[:-1], Message(last.role, tagged(last.content, profile), image=last.image)]
    if style == "instructions" and not profile.empty:
        return [Message("system", instruction_prompt(profile)), *messages]
    return messages


def instruction_prompt(profile: Profile) -> str:
    """The long instruction prompt of a prompting baseline: the profile spelt out as rules for the model."""
    rules = ["You are a helpful robot assistant talking with one particular user. Answer the question about the "
             "image correctly; never change a fact to suit the user, and never guess anything about the user "
             "that they did not say."]
    if profile.age_group == "child":
        rules.append("The user is a child under 13: use short, simple words a child knows, short sentences, no "
                     "jargon, and a warm, encouraging tone; explain any hard word.")
    elif profile.age_group == "senior":
        rules.append("The user is an older adult: be patient and clear, avoid slang and abbreviations, and explain "
                     "any technical term.")
    elif profile.age_group == "teen":
        rules.append("The user is a teenager: be clear and direct, and do not talk down to them.")
    if profile.expertise == "newcomer":
        rules.append("The user is new to technology: avoid technical terms, explain step by step, and check that "
                     "each step is clear before the next.")
    elif profile.expertise == "expert":
        job = f" ({profile.occupation})" if profile.occupation else ""
        rules.append(f"The user is a domain expert{job}: use precise technical terms, skip basic explanations and "
                     f"give exact names, doses and units where they matter.")
    if profile.answer_length == "short":
        rules.append("The user wants short answers: answer in one sentence of at most fifteen words, with no "
                     "preamble and no follow-up offer.")
    elif profile.answer_length == "detailed":
        rules.append("The user wants detailed answers: give the answer first, then the useful details in a few "
                     "sentences.")
    if profile.language:
        rules.append(f"Answer in {profile.language}.")
    if "plain language" in profile.accessibility:
        rules.append("The user reads the language with effort: use common words and short sentences.")
    if "low vision" in profile.accessibility:
        rules.append("The user does not see well: describe colours, sizes and positions in words rather than "
                     "pointing at the image.")
    return " ".join(rules)


__all__ = ["GLOSSARY", "PROMPT_STYLES", "fit_answer", "instruction_prompt", "profile_tag", "prompt_messages",
           "tagged", "wants_short", "wants_simple"]
