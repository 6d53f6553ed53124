"""Profiles: what a user said about themselves and how they want to be answered, private to that user.

A profile holds only what helps an answer fit its user (User-VLM 360's user-aware answers), in closed
vocabularies where it can: an age *group* (never the age), an expertise level and the occupation that gave it,
a language, accessibility needs, an answer length, and the name the user wants to be called. Protected
attributes (gender, ethnicity, religion, health beyond an accessibility need) are not fields: nothing the user
says about them is kept (`ilearn.users.extract`).

    book = ProfileBook(store)
    book.update("ana", {"occupation": "nurse", "expertise": "expert"})
    book.get("ana").summary()   # "your occupation: nurse; your expertise: expert"

Profiles live in the store as a user record (kind "profile"), so forgetting the user deletes them
(`EventStore.delete_user`); `ProfileBook.delete` clears one at the user's request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ilearn.errors import InvalidInput
from ilearn.memory.store import EventStore, UserRecord
from ilearn.types import now

logger = logging.getLogger(__name__)

KIND = "profile"
AGE_GROUPS = ("child", "teen", "adult", "senior")
EXPERTISE = ("newcomer", "general", "expert")
ANSWER_LENGTHS = ("short", "normal", "detailed")
ACCESSIBILITY = ("low vision", "hearing", "dyslexia", "colour blindness", "plain language")
"""Accessibility needs a profile can hold ("plain language": the user reads the answer's language with effort)."""
MAX_TEXT = 64


@dataclass(frozen=True)
class Profile:
    """What one user told about themselves (every field None / empty until they do)."""

    name: str | None = None
    """What the user wants to be called."""
    age_group: str | None = None
    """One of AGE_GROUPS; the age itself is never kept."""
    expertise: str | None = None
    """One of EXPERTISE: how technical answers may be."""
    occupation: str | None = None
    """What the user does ("nurse"), when they said so."""
    language: str | None = None
    """The language the user wants answers in ("Spanish")."""
    accessibility: tuple[str, ...] = ()
    """Needs from ACCESSIBILITY."""
    answer_length: str | None = None
    """One of ANSWER_LENGTHS."""

    def __post_init__(self) -> None:
        for name, allowed in (("age_group", AGE_GROUPS), ("expertise", EXPERTISE),
                              ("answer_length", ANSWER_LENGTHS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise InvalidInput(f"{name} must be one of {list(allowed)} or null, not {value!r}")
        for name in ("name", "occupation", "language"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT):
                raise InvalidInput(f"{name} must be a non-empty text of at most {MAX_TEXT} characters, or null")
        if isinstance(self.accessibility, str) or not all(a in ACCESSIBILITY for a in self.accessibility):
            raise InvalidInput(f"accessibility must be a list of {list(ACCESSIBILITY)}, not {self.accessibility!r}")
        object.__setattr__(self, "accessibility", tuple(dict.fromkeys(self.accessibility)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """A profile from its fields (InvalidInput naming an unknown field or a bad value)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"unknown profile field(s) {unknown}; the fields are {sorted(known)}")
        values = dict(data)
        if "accessibility" in values:
            values["accessibility"] = tuple(values["accessibility"] or ())
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The fields, JSON-ready."""
        out = asdict(self)
        out["accessibility"] = list(self.accessibility)
        return out

    def merged(self, update: Mapping[str, Any]) -> Profile:
        """This profile with `update`'s fields set (None clears one; accessibility needs are added, and a
        need prefixed with '-' is removed)."""
        values = dict(update)
        if "accessibility" in values and values["accessibility"] is not None:
            needs = list(self.accessibility)
            for need in values["accessibility"]:
                if need.startswith("-"):
                    needs = [n for n in needs if n != need[1:]]
                elif need not in needs:
                    needs.append(need)
            values["accessibility"] = tuple(needs)
        elif "accessibility" in values:
            values["accessibility"] = ()
        return Profile.from_dict({**self.to_dict(), **values})

    @property
    def empty(self) -> bool:
        return self == Profile()

    def summary(self) -> str:
        """What the profile holds, in words the user reads back ("" when empty)."""
        parts = []
        if self.name:
            parts.append(f"your name: {self.name}")
        if self.age_group:
            parts.append(f"your age group: {self.age_group}")
        if self.occupation:
            parts.append(f"your occupation: {self.occupation}")
        if self.expertise:
            parts.append(f"your expertise: {self.expertise}")
        if self.language:
            parts.append(f"answers in {self.language}")
        if self.accessibility:
            parts.append(f"accessibility: {', '.join(self.accessibility)}")
        if self.answer_length:
            parts.append(f"{self.answer_length} answers")
        return "; ".join(parts)


class ProfileBook:
    """Profiles in the store, one record per user (kind "profile")."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def get(self, user_id: str) -> Profile:
        """The user's profile (empty for a user who told nothing, or an unknown one)."""
        records = self.store.list_user_records(user_id, KIND)
        return Profile.from_dict(records[0].data) if records else Profile()

    def put(self, user_id: str, profile: Profile) -> Profile:
        """Replace the user's profile (an empty one deletes the record)."""
        if profile.empty:
            self.delete(user_id)
            return profile
        self.store.put_user_record(UserRecord(user_id, KIND, KIND, profile.to_dict(), updated=now()))
        logger.debug("profile of a user updated")  # never the values: logs are not forgotten with the user
        return profile

    def update(self, user_id: str, update: Mapping[str, Any]) -> Profile:
        """Set some fields (`Profile.merged`) in one transaction; returns the new profile."""
        with self.store.transaction():
            return self.put(user_id, self.get(user_id).merged(update))

    def delete(self, user_id: str) -> bool:
        """Forget the user's profile (their other data stays); False when there was none."""
        return self.store.delete_user_record(user_id, KIND, KIND)


__all__ = ["ACCESSIBILITY", "AGE_GROUPS", "ANSWER_LENGTHS", "EXPERTISE", "Profile", "ProfileBook"]
