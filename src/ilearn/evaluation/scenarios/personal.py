"""The ``personal`` scenario (issue 24): simulated users with profiles, each owning a look-alike of another's thing.

The world is the pharmacy's twelve look-alike bottles (`ilearn.data.bottles`, drawn with PIL; pairs differ by one
cap, band, shape or size). Each simulated user (`PersonalUser`) belongs to one profile group of `GROUPS` (a child,
an elderly newcomer, a pharmacist, a plain-language reader, someone who wants short answers, someone who says
nothing about themselves), introduces themselves in words the profile extractor reads ("I'm 8 years old."), and
owns one bottle as their pills, with a name ("This is my bottle, it's called Bobby"). Users are dealt bottles in
order, so look-alikes belong to different users; each user's `lookalike` is the other user's bottle that shares
the most attributes with theirs.

Each bottle has teach views (the owner teaches the name on the first; caretakers teach its use and dose on all)
and held-out test views (new photos, for scoring only), drawn as the pharmacy scenario draws them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ilearn.data.bottles import BOTTLES, BottleSpec
from ilearn.errors import InvalidInput
from ilearn.evaluation.scenarios.base import FactScenario, Item
from ilearn.evaluation.scenarios.pharmacy import pharmacy_scenario
from ilearn.users.profiles import Profile

logger = logging.getLogger(__name__)

GROUPS: dict[str, tuple[str, Profile]] = {
    "child": ("I'm 8 years old.", Profile(age_group="child")),
    "elderly newcomer": ("I'm 78 years old and I'm new to technology.",
                         Profile(age_group="senior", expertise="newcomer")),
    "expert": ("I'm a pharmacist.", Profile(occupation="pharmacist", expertise="expert")),
    "plain language": ("My English is not very good.", Profile(accessibility=("plain language",))),
    "short answers": ("Please keep it short.", Profile(answer_length="short")),
    "no profile": ("", Profile()),
}
"""Profile group -> (what its users say about themselves, the profile that should come of it)."""
NAMES = ("Bobby", "Rex", "Daisy", "Milo", "Luna", "Coco", "Max", "Bella", "Oscar", "Ruby", "Teddy", "Willow")
INTENTS = ("use", "dose")
"""The facts users ask about their pills (their name is the user's own: "what is this?")."""


@dataclass(frozen=True)
class PersonalUser:
    """One simulated user: id, profile group, what they say about themselves, their bottle and its name."""

    id: str
    group: str
    intro: str
    profile: Profile
    item: str
    """The id of the bottle they own."""
    name: str
    """What they call it."""
    lookalike: str = ""
    """The id of another user's bottle that looks most like theirs."""


@dataclass
class PersonalScenario:
    """Users and the bottles they own (module docstring)."""

    name: str
    seed: int
    bottles: FactScenario
    users: list[PersonalUser] = field(default_factory=list)
    general: list = field(default_factory=list)

    def item(self, item_id: str) -> Item:
        return self.bottles.item(item_id)

    def owner(self, item_id: str) -> PersonalUser | None:
        """The user who owns the bottle, if any."""
        return next((u for u in self.users if u.item == item_id), None)


def _likeness(a: BottleSpec, b: BottleSpec) -> int:
    return sum(a.attributes.get(k) == v for k, v in b.attributes.items())


def personal_scenario(seed: int = 0, users_per_group: int = 2, n_teach: int = 2, n_test: int = 2,
                      groups: tuple[str, ...] | None = None) -> PersonalScenario:
    """`users_per_group` users in each of `groups` (default: all of `GROUPS`), at most one per bottle."""
    groups = tuple(groups or GROUPS)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise InvalidInput(f"unknown profile group(s) {unknown}; choose among {list(GROUPS)}")
    n_users = users_per_group * len(groups)
    if users_per_group < 1 or n_users > len(BOTTLES):
        raise InvalidInput(f"users_per_group must give between 1 and {len(BOTTLES)} users (one bottle each)")
    bottles = pharmacy_scenario(seed=seed, n_teach=n_teach, n_test=n_test)
    specs = list(BOTTLES)  # in order: neighbours are look-alikes, so they go to users of different groups
    owned = specs[:n_users]
    users = []
    for i, spec in enumerate(owned):
        group = groups[i % len(groups)]
        intro, profile = GROUPS[group]
        others = [s for s in owned if s.id != spec.id]
        lookalike = max(others, key=lambda s: _likeness(spec, s)).id if others else ""
        users.append(PersonalUser(f"u{i:02d}-{group.replace(' ', '-')}", group, intro, profile, spec.id,
                                  NAMES[i % len(NAMES)], lookalike))
    return PersonalScenario("personal", seed, bottles, users)


__all__ = ["GROUPS", "INTENTS", "NAMES", "PersonalScenario", "PersonalUser", "personal_scenario"]
