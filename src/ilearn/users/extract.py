"""What a user says about themselves and their things, read by rules (no model): profile facts ("I'm a nurse",
"please keep it short", "I'm 8") and personal-concept requests ("this is my mug, it's called Bobby", "actually
it's Rex", "forget my mug", "what do you know about me?").

`read_profile(text)` returns the profile fields the words set (None: a field the user asked to forget) and
whether the words said nothing else (`Said.only_profile`: the turn is then a statement about the user, not a
request or a reaction). `read_request(text)` returns a `PersonalRequest` or None. Both keep what the user
said about a protected attribute (gender, ethnicity, religion...) out: no rule reads one.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from ilearn.users.profiles import Profile

logger = logging.getLogger(__name__)

_I_AM = r"\bi(?:'m| am|m)"
_NUMBERS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())} | {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
OCCUPATIONS = frozenset(
    "nurse doctor physician surgeon pharmacist dentist paramedic midwife vet veterinarian chemist biologist physicist "
    "scientist researcher engineer developer programmer technician electrician mechanic radiologist botanist "
    "optician therapist professor".split())
"""Occupations that make a user an expert (answers may be technical)."""
LANGUAGES = frozenset(
    "english spanish french german italian portuguese dutch polish russian ukrainian arabic chinese mandarin "
    "cantonese japanese korean hindi urdu bengali turkish greek swedish norwegian danish finnish czech romanian "
    "hungarian hebrew persian farsi vietnamese thai indonesian malay tagalog swahili catalan".split())
_NOT_NAMES = frozenset(
    "a an the it me him her them this that my your not when if back later again maybe please now just so and "
    "called named i".split())
_NAME = r"(?P<name>[^\W\d_][\w'-]{0,30}(?: (?-i:[A-Z])[\w'-]{0,30})?)"
_KIND = r"(?P<kind>[a-z][a-z-]*(?: [a-z][a-z-]*){0,2}?)"
_NOT_KINDS = frozenset("question point problem turn answer idea guess time first second last fault name age job "
                       "language profile opinion choice".split())
_FIELDS = {"name": ("name",), "age": ("age_group",), "age group": ("age_group",),
           "job": ("occupation", "expertise"), "occupation": ("occupation", "expertise"),
           "profession": ("occupation", "expertise"), "work": ("occupation", "expertise"),
           "expertise": ("expertise",), "language": ("language",), "accessibility needs": ("accessibility",),
           "accessibility": ("accessibility",), "needs": ("accessibility",), "answer length": ("answer_length",),
           "preferences": ("answer_length", "language", "accessibility"),
           "profile": tuple(Profile().to_dict()), "details": tuple(Profile().to_dict()),
           "personal details": tuple(Profile().to_dict())}
_FILLER = frozenset("please ok okay so and also oh hi hello hey by the way btw just well thanks thank you yes "
                    "i am i'm im".split())


def clean(text: str) -> str:
    """The words with typographic apostrophes made plain, spaces single and end punctuation dropped."""
    text = " ".join(text.replace("\u2019", "'").replace("\u2018", "'").split())
    return text.strip(" .!?;,")


# ---------------------------------------------------------------------------------------------- profile facts
@dataclass
class Said:
    """The profile fields some words set (None: forget that field), and whether they said nothing else."""

    update: dict[str, Any] = field(default_factory=dict)
    only_profile: bool = False


def _age_group(age: int) -> str | None:
    if age <= 0 or age > 120:
        return None
    return "child" if age < 13 else "teen" if age < 18 else "adult" if age < 65 else "senior"


def _number(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    parts = word.replace("-", " ").split()
    if parts and all(p in _NUMBERS for p in parts):
        return sum(_NUMBERS[p] for p in parts)
    return None


_NUMBER_WORDS = "|".join(sorted(_NUMBERS, key=len, reverse=True))
_RULES: list[tuple[re.Pattern[str], Any]] = []


def _rule(pattern: str):
    def register(fn):
        _RULES.append((re.compile(pattern, re.IGNORECASE), fn))
        return fn
    return register


@_rule(rf"\b(?:my name is|call me|{_I_AM[2:]} called) {_NAME}")
def _name(m: re.Match[str]) -> dict[str, Any]:
    name = m.group("name").split(" ")
    name = [w for w in name if w.lower() not in _NOT_NAMES][:2]
    if not name or m.group("name").split(" ")[0].lower() in _NOT_NAMES:
        return {}
    return {"name": " ".join(w[:1].upper() + w[1:] for w in name)}


@_rule(rf"{_I_AM}\s+(?:only |just )?(?P<n>\d{{1,3}}|(?:{_NUMBER_WORDS})(?:[- ](?:{_NUMBER_WORDS}))?)"
       rf"(?:\s*(?:years?|yrs?)(?:\s+old)?|\s*yo)?(?=\s*(?:$|[,.!;]|and\b|but\b|so\b))")
def _age(m: re.Match[str]) -> dict[str, Any]:
    age = _number(m.group("n").lower())
    group = _age_group(age) if age is not None else None
    return {"age_group": group} if group else {}


@_rule(rf"{_I_AM}\s+(?:(?:a|an|just a|only a)\s+(?:little\s+)?(?:kid|child)|a little (?:boy|girl)|in (?:the )?"
       rf"(?:first|second|third|fourth|fifth|sixth|1st|2nd|3rd|4th|5th|6th) grade)\b")
def _child(m: re.Match[str]) -> dict[str, Any]:
    return {"age_group": "child"}


@_rule(rf"{_I_AM}\s+(?:a\s+)?(?:teenager|teen)\b")
def _teen(m: re.Match[str]) -> dict[str, Any]:
    return {"age_group": "teen"}


@_rule(rf"{_I_AM}\s+(?:(?:quite |very )?old|elderly|retired|a senior|a pensioner|an old (?:man|woman|lady|person))\b")
def _senior(m: re.Match[str]) -> dict[str, Any]:
    return {"age_group": "senior"}


@_rule(rf"(?:{_I_AM}\s+(?:a|an)\s+(?:(?:retired|trained|qualified|registered|senior|junior|hospital|school)\s+)?"
       rf"|\bi work as (?:a|an)\s+)(?P<job>[a-z]+)\b")
def _job(m: re.Match[str]) -> dict[str, Any]:
    job = m.group("job").lower()
    if job in OCCUPATIONS:
        return {"occupation": job, "expertise": "expert"}
    if job in ("expert", "professional", "specialist"):
        return {"expertise": "expert"}
    if job in ("beginner", "novice", "newbie", "newcomer"):
        return {"expertise": "newcomer"}
    return {}


@_rule(rf"{_I_AM}\s+not\s+(?:a|an)\s+(?P<job>[a-z]+)\b")
def _not_job(m: re.Match[str]) -> dict[str, Any]:
    job = m.group("job").lower()
    if job in OCCUPATIONS:
        return {"occupation": None, "expertise": None}
    if job in ("kid", "child"):
        return {"age_group": None}
    if job in ("beginner", "novice", "expert"):
        return {"expertise": None}
    return {}


@_rule(rf"(?:{_I_AM}\s+(?:new to|not (?:very |that |so )?(?:good|great) with|bad with)\s+"
       rf"(?:this|these|technology|tech|computers|robots|phones|gadgets|machines)|{_I_AM}\s+not\s+(?:very\s+)?"
       rf"(?:technical|tech-savvy|techy)|\bi don'?t know (?:much |anything )?about (?:technology|computers|tech))")
def _newcomer(m: re.Match[str]) -> dict[str, Any]:
    return {"expertise": "newcomer"}


@_rule(r"\b(?:(?:answer|speak|reply|talk|respond|write)(?: to me)?(?: only)? in|i (?:only )?speak|my (?:first |native "
       r"|mother )?(?:language|tongue) is) (?P<lang>[a-z]+)\b")
def _language(m: re.Match[str]) -> dict[str, Any]:
    lang = m.group("lang").lower()
    return {"language": lang.capitalize()} if lang in LANGUAGES else {}


@_rule(r"\bmy english is (?:not (?:very |that |so )?good|bad|poor|weak|limited|basic)|\bi don'?t (?:speak|read) "
       r"(?:english|it) (?:very |that |so )?well|\b(?:simple|easy|plain) (?:english|words|language)")
def _plain(m: re.Match[str]) -> dict[str, Any]:
    return {"accessibility": ["plain language"]}


@_rule(rf"\bi (?:can'?t|cannot|don'?t) see (?:very |that |so )?well|\blow vision|\bvisually impaired|\bpartially "
       rf"sighted|{_I_AM}\s+(?:nearly |almost |partially )?blind\b")
def _vision(m: re.Match[str]) -> dict[str, Any]:
    return {"accessibility": ["low vision"]}


@_rule(rf"\bhard of hearing|{_I_AM}\s+(?:partially )?deaf\b|\bi (?:can'?t|cannot|don'?t) hear (?:very |that |so )?well")
def _hearing(m: re.Match[str]) -> dict[str, Any]:
    return {"accessibility": ["hearing"]}


@_rule(r"\bdyslexi[ac]\b|\bdyslexia\b")
def _dyslexia(m: re.Match[str]) -> dict[str, Any]:
    return {"accessibility": ["dyslexia"]}


@_rule(r"\bcolou?r[- ]?blind(?:ness)?\b")
def _colour(m: re.Match[str]) -> dict[str, Any]:
    return {"accessibility": ["colour blindness"]}


@_rule(r"\b(?:keep (?:it|them|your answers?|the answers?|answers?|things) (?:short|brief)|be (?:brief|short|concise)"
       r"|short(?:er)? answers?|(?:answer|reply) (?:briefly|shortly|in (?:a )?few words)|(?:you talk|that'?s|it'?s|"
       r"answers are) too long|less detail|fewer words|just the (?:name|answer)|keep it simple)\b")
def _short(m: re.Match[str]) -> dict[str, Any]:
    return {"answer_length": "short"}


@_rule(r"\b(?:(?:more|in|with) details?|(?:give me |i want |i'?d like )?(?:longer|detailed|fuller) (?:answers?|"
       r"explanations?)|explain (?:more|things|everything)(?: in detail)?|you can (?:say|tell me) more)\b")
def _detailed(m: re.Match[str]) -> dict[str, Any]:
    return {"answer_length": "detailed"}


@_rule(r"\bnormal (?:length|answers?)\b")
def _normal(m: re.Match[str]) -> dict[str, Any]:
    return {"answer_length": "normal"}


@_rule(rf"^(?:please )?forget (?:about )?(?:my (?P<what>{'|'.join(sorted(_FIELDS, key=len, reverse=True))})|"
       rf"(?P<all>what i told you about (?:me|myself)))$")
def _forget_fields(m: re.Match[str]) -> dict[str, Any]:
    names = _FIELDS[m.group("what").lower()] if m.group("what") else tuple(Profile().to_dict())
    return dict.fromkeys(names)


def read_profile(text: str) -> Said:
    """The profile fields `text` sets or clears, and whether it says nothing else (see the module docstring)."""
    words = clean(text)
    said = Said()
    spans: list[tuple[int, int]] = []
    for pattern, fn in _RULES:
        for m in pattern.finditer(words):
            update = fn(m)
            if update:
                spans.append(m.span())
                for key, value in update.items():
                    if key == "accessibility" and value and isinstance(said.update.get(key), list):
                        said.update[key] = said.update[key] + value
                    else:
                        said.update[key] = value
    if said.update:
        rest = list(words)
        for start, end in spans:
            rest[start:end] = " " * (end - start)
        leftover = re.findall(r"[a-z']+", "".join(rest).lower())
        said.only_profile = all(w in _FILLER for w in leftover)
    return said


# ---------------------------------------------------------------------------------------------- personal concepts
@dataclass(frozen=True)
class PersonalRequest:
    """A request about the user's own things or profile.

    action: "teach" (kind, name; needs a photo), "rename" (name; the concept is `target`'s, `kind`'s, or the
    one the last reply spoke of when both are None), "forget" (the concept `target` or of `kind`), "show" (what
    the assistant knows about the user)."""

    action: str
    kind: str | None = None
    name: str | None = None
    target: str | None = None
    contextual: bool = False
    """The words only make sense right after a reply that spoke of one of the user's things ("actually it's Rex")."""


def _kind(kind: str | None) -> str | None:
    if kind is None:
        return None
    kind = kind.strip().lower()
    return None if not kind or kind.split()[0] in _NOT_KINDS or kind in _FIELDS else kind


def _name_of(name: str | None) -> str | None:
    if name is None:
        return None
    words = [w for w in name.split() if w]
    if not words or words[0].lower() in _NOT_NAMES:
        return None
    return " ".join(w[:1].upper() + w[1:] for w in words)


_IS = r"(?:it'?s|its|it is|he'?s|he is|she'?s|she is|they'?re|they are|that'?s|that is)"
_CAP_NAME = r"(?P<name>(?-i:[A-Z])[\w'-]{0,30})"
_TEACH = [re.compile(p, re.IGNORECASE) for p in (
    rf"^(?:this|that|here) is my {_KIND}[,;:]?\s+(?:(?:{_IS}|who'?s|who is|which is)\s+)?(?:called|named) {_NAME}$",
    rf"^(?:this|that) is my {_KIND}[,;:]?\s+{_CAP_NAME}$",
    rf"^(?:this|that|here) is {_NAME},? my {_KIND}$",
    rf"^meet {_NAME},? my {_KIND}$",
    rf"^(?:this|that) is my {_KIND}$",
    rf"^(?:these|those) are my {_KIND}$",
)]
_CALLED = re.compile(rf"^my {_KIND} is (?:now )?(?:called|named) {_NAME}$", re.IGNORECASE)
_RENAME = [re.compile(p, re.IGNORECASE) for p in (
    rf"^(?:please )?rename (?:my {_KIND}|{_NAME.replace('name', 'target')}) (?:to|as) {_NAME}$",
    rf"^(?:please )?call my {_KIND} {_NAME}(?: from now on| instead)?$",
)]
_RENAME_HERE = [re.compile(p, re.IGNORECASE) for p in (
    rf"^(?:no[,.!]?\s+)?actually[,]?\s+{_IS}\s+(?:called\s+|named\s+)?{_NAME}$",
    rf"^(?:no[,.!]?\s+)?{_IS} (?:called|named) {_NAME}$",
    rf"^no[,.!]?\s+{_IS}\s+{_NAME}$",
)]
_FORGET = re.compile(rf"^(?:please )?(?:forget|delete|remove|erase) (?:about )?(?:my {_KIND}|{_CAP_NAME})$",
                     re.IGNORECASE)
_SHOW = re.compile(r"^(?:what do you (?:know|remember) about me|what have i told you(?: about (?:me|myself))?|"
                   r"(?:show|tell) me (?:my profile|what you know about me)|what are my things|"
                   r"what (?:things )?of mine do you know)$", re.IGNORECASE)


def read_request(text: str, *, has_image: bool = False) -> PersonalRequest | None:
    """The personal request `text` makes, or None (see `PersonalRequest`). `has_image`: the turn (or its session)
    shows a photo, which "my mug is called Bobby" then teaches instead of renaming."""
    words = clean(text)
    if _SHOW.match(words):
        return PersonalRequest("show")
    for i, pattern in enumerate(_TEACH):
        m = pattern.match(words)
        if m and (kind := _kind(m.group("kind"))) is not None:
            name = _name_of(m.groupdict().get("name"))
            if i < 4 and name is None:
                continue
            return PersonalRequest("teach", kind=kind, name=name)
    m = _CALLED.match(words)
    if m and (kind := _kind(m.group("kind"))) is not None and (name := _name_of(m.group("name"))) is not None:
        return PersonalRequest("teach" if has_image else "rename", kind=kind, name=name)
    for pattern in _RENAME:
        m = pattern.match(words)
        if m and (name := _name_of(m.group("name"))) is not None:
            groups = m.groupdict()
            return PersonalRequest("rename", kind=_kind(groups.get("kind")), name=name,
                                   target=_name_of(groups.get("target")))
    for pattern in _RENAME_HERE:
        m = pattern.match(words)
        if m and (name := _name_of(m.group("name"))) is not None:
            return PersonalRequest("rename", name=name, contextual=True)
    m = _FORGET.match(words)
    if m and not read_profile(words).update:
        kind, target = _kind(m.group("kind")), _name_of(m.group("name"))
        if kind is not None or target is not None:
            return PersonalRequest("forget", kind=kind, target=target)
    return None


__all__ = ["LANGUAGES", "OCCUPATIONS", "PersonalRequest", "Said", "clean", "read_profile", "read_request"]
