"""Who may teach whom: the rules that decide which answers are shared (docs/privacy.md).

An event is private to its teacher until the retrieval memory *shares* it (scope SHARED, with the reason in
its provenance under `SCOPE_KEY`). Shared events are what other users retrieve and the only events the shared
model trains on (`ilearn.learning.update.learn`). Among the events that match one another (the same object and
question, above the retrieval threshold), answers compete:

- each answer is backed by the distinct users who taught it, counted as *voices*: an account younger than
  `TrustPolicy.min_age_s` is no voice, and against the answer that is already shared only accounts first seen
  before that answer was taught are voices (user ids made up to attack a shared answer count for nothing);
- the answer with the most voices is shared when it has at least `corroboration` of them and more than any
  other answer (a tie keeps the shared answer: who came first decides nothing else);
- under sharing="trusted", an answer taught by a trusted user is shared at once; two trusted users who
  disagree share neither answer until a reviewer decides (the one already shared stays). Teaching means the
  answer's words are the user's (a correction, a description, an event added by hand) or the user confirmed it
  deliberately (an explicit rating); with `TrustPolicy.accepted_is_voice` (on by default) the model's own answer
  that a trusted user only accepted in words (`ACCEPTED_KEY`: "Thanks!") is one voice like any other user's, so
  it is shared once `corroboration` voices back it. In the pharmacy experiment a careless caretaker's "Thanks!" to the
  base model's "This uses the formula for calculating the area of a circle..." became a shared reference and a
  training row, and 6 of the tuned model's 49 wrong answers (docs/real-images.md). An answer the memory gave from
  another user's shared event carries no `ACCEPTED_KEY` (`ilearn.learning.construct`): accepting it confirms taught
  words on a new view, with the user's authority.

What contradicts a shared answer is quarantined for review (`ilearn events review`), unless its answer now has
more voices than the shared one (an honest majority is never locked out).

A *description* (`DESCRIPTION_KEY`: how a user described the panel they meant) has many right answers: matching
descriptions never dispute one another or an answer, and none goes to review. Each is shared when its user is
trusted (sharing="trusted") or when `corroboration` voices described matching panels alike (`description_winners`).

A *rejection* (an event with no answer, only the model's answers its user turned down: the negatives KTO and
REINFORCE learn from, `ilearn.learning.construct`) is never retrieved; it is shared, and so trained on, when
(`shared_rejections`) its user is trusted (sharing="trusted"), when the answer shared among the matching events
is none of the answers it turned down (the memory's corroborated answer agrees that they are wrong), or when the
voices of `corroboration` distinct users turned down the same answer on matching events (then all their
rejections of it are shared). The memory applies these rules to
every event it admits, on the live path and on recovery alike; `ADMITTED_KEY` in an event's provenance says it
was admitted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ilearn.errors import InvalidInput, NotFound
from ilearn.memory.store import EventStore
from ilearn.types import Event, Scope, answer_key

SCOPE_KEY = "scope"
"""Provenance key: why the memory shared an event ("corroborated", "trusted" or "reviewed"). An event shared by
its creator (scope SHARED without this key) is never unshared by the rules."""
ADMITTED_KEY = "admitted"
"""Provenance key: the memory's rules were applied to the event (its value: the time they were)."""
DESCRIPTION_KEY = "description"
"""Provenance key: the event's answer is a user's own description (a pick on a board: `ilearn.dialogue.choice`),
one of many right ones, so descriptions never compete (`description_winners`)."""
ACCEPTED_KEY = "accepted"
"""Provenance key: the event's answer is the model's own answer, which its user accepted (the value: the reaction's
turn id) rather than taught; a trusted user's acceptance is a voice, not authority (`Voices.teaches`)."""
SHARING = ("corroboration", "trusted", "private")


@dataclass(frozen=True)
class TrustPolicy:
    """The settings of the trust rules (module docstring)."""

    sharing: str = "corroboration"
    """corroboration (N distinct users), trusted (also: trusted users share at once), private (never shared)."""
    corroboration: int = 2
    """Voices an answer needs before it is shared."""
    min_age_s: float = 0.0
    """Seconds since an account was first seen before it counts as a voice. 0 (default): every account counts,
    so a deployment whose user ids anyone can make up should raise it (e.g. 86400): fresh ids then teach only
    themselves until they are that old."""
    accepted_is_voice: bool = True
    """A trusted user's acceptance of the model's own answer (`ACCEPTED_KEY`) is one voice, not authority
    (`RetrievalConfig.accepted_is_voice`; off: trusted users share whatever they accept at once)."""

    def __post_init__(self) -> None:
        if self.sharing not in SHARING:
            raise InvalidInput(f"sharing must be one of {SHARING}, not {self.sharing!r}")
        if self.corroboration < 1:
            raise InvalidInput("corroboration must be >= 1")
        if self.min_age_s < 0:
            raise InvalidInput("min_age_s must be >= 0")


@dataclass
class Answer:
    """One answer among matching events: its events and the users who taught it."""

    key: str
    events: list[Event] = field(default_factory=list)

    @property
    def users(self) -> set[str]:
        return {e.user_id for e in self.events}

    @property
    def first(self) -> float:
        """When it was first taught."""
        return min(e.created for e in self.events)

    @property
    def shared(self) -> bool:
        return any(e.scope == Scope.SHARED for e in self.events)


def group(events: Iterable[Event]) -> dict[str, Answer]:
    """Events by answer (`answer_key`), in order of first appearance."""
    answers: dict[str, Answer] = {}
    for e in events:
        answers.setdefault(answer_key(e.answer), Answer(answer_key(e.answer))).events.append(e)
    return answers


class Voices:
    """Counts voices for one decision; reads each user's first-seen time and trust once."""

    def __init__(self, store: EventStore, policy: TrustPolicy, now: float | None = None) -> None:
        self.store, self.policy = store, policy
        self.now = time.time() if now is None else now
        self._since: dict[str, float] = {}
        self._trusted: dict[str, bool] = {}

    def since(self, user_id: str) -> float:
        """When the account was first seen (infinity for an unknown one: no voice)."""
        if user_id not in self._since:
            try:
                self._since[user_id] = self.store.user_since(user_id)
            except NotFound:
                self._since[user_id] = float("inf")
        return self._since[user_id]

    def trusted(self, user_id: str) -> bool:
        """Whether the user teaches with authority (sharing="trusted" only)."""
        if self.policy.sharing != "trusted":
            return False
        if user_id not in self._trusted:
            try:
                self._trusted[user_id] = bool(self.store.is_trusted(user_id))
            except NotFound:
                self._trusted[user_id] = False
        return self._trusted[user_id]

    def count(self, answer: Answer, against: Answer | None = None) -> int:
        """Distinct users backing `answer` who are voices (against the shared `against`: only older accounts)."""
        age = self.policy.min_age_s
        users = [u for u in answer.users if age <= 0 or self.now - self.since(u) >= age]
        if against is not None and against.key != answer.key:
            users = [u for u in users if self.since(u) < against.first]
        return len(users)

    def teaches(self, event: Event) -> bool:
        """Whether `event` carries a trusted user's authority: a trusted user taught its answer (not only
        accepted the model's: `ACCEPTED_KEY`)."""
        accepted = self.policy.accepted_is_voice and ACCEPTED_KEY in event.provenance
        return not accepted and self.trusted(event.user_id)

    def taught_by_trusted(self, answer: Answer) -> bool:
        return any(self.teaches(e) for e in answer.events)


def standing(answers: dict[str, Answer]) -> Answer | None:
    """The answer already shared among them (most shared events; ties: the earliest), or None."""
    shared = [a for a in answers.values() if a.shared]
    if not shared:
        return None
    return max(shared, key=lambda a: (sum(e.scope == Scope.SHARED for e in a.events), -a.first))


def winner(answers: dict[str, Answer], voices: Voices) -> str | None:
    """The key of the answer to share among competing `answers` (module docstring), or None."""
    if voices.policy.sharing == "private" or not answers:
        return None
    st = standing(answers)
    taught = [a.key for a in answers.values() if voices.taught_by_trusted(a)]
    if len(taught) == 1:
        return taught[0]
    if taught:  # trusted teachers disagree: the shared one stays until a reviewer decides
        return st.key if st is not None and st.key in taught else None
    counts = {k: voices.count(a, st) for k, a in answers.items()}
    best = max(answers, key=lambda k: (counts[k], st is not None and k == st.key))
    rival = max((c for k, c in counts.items() if k != best), default=0)
    if counts[best] >= voices.policy.corroboration and (counts[best] > rival or (st is not None and best == st.key)):
        return best
    return None


def outvotes(challenger: Answer, answers: dict[str, Answer], voices: Voices) -> bool:
    """Whether `challenger` (its quarantined events included) has more voices than the answer shared among
    `answers` and at least `corroboration`: an honest majority that takes over without review."""
    st = standing(answers) or next((a for k, a in answers.items() if k == winner(answers, voices)), None)
    if st is None or voices.taught_by_trusted(st) or voices.taught_by_trusted(challenger):
        return False
    mine = voices.count(challenger, st)
    return mine >= voices.policy.corroboration and mine > voices.count(st)


def is_description(event: Event) -> bool:
    """Whether the event's answer is a user's own description (`DESCRIPTION_KEY`)."""
    return DESCRIPTION_KEY in event.provenance


def description_winners(descriptions: Iterable[Event], voices: Voices) -> dict[str, str]:
    """Which of matching `descriptions` to share, by id, with why: each trusted user's ("trusted"), and every one
    of a wording that `corroboration` voices gave ("corroborated"). Descriptions never compete."""
    if voices.policy.sharing == "private":
        return {}
    out: dict[str, str] = {}
    for answer in group(descriptions).values():
        if voices.count(answer) >= voices.policy.corroboration:
            out.update({e.id: "corroborated" for e in answer.events})
        out.update({e.id: "trusted" for e in answer.events if voices.trusted(e.user_id)})
    return out


def rejected_keys(event: Event) -> set[str]:
    """The answers `event` turned down, as `answer_key`s."""
    return {answer_key(r) for r in event.rejected if r.strip()}


def shared_rejections(event: Event, others: Iterable[Event], answers: dict[str, Answer],
                      voices: Voices) -> dict[str, tuple[Event, str]]:
    """The rejections to share, by id, with why ("trusted" or "corroborated"): `event` and, when voices
    corroborate it, the `others` (other users' rejections matching it) that turned down the same answer.
    `answers` are the answered events matching `event` (`group`). See the module docstring."""
    if voices.policy.sharing == "private" or not rejected_keys(event):
        return {}
    if voices.trusted(event.user_id):
        return {event.id: (event, "trusted")}
    out: dict[str, tuple[Event, str]] = {}
    st = standing(answers)
    if st is not None and st.key not in rejected_keys(event):
        out[event.id] = (event, "corroborated")
    backing = [event, *(e for e in others if e.user_id != event.user_id)]
    for key in rejected_keys(event):
        backers = Answer(key, [e for e in backing if key in rejected_keys(e)])
        if voices.count(backers) >= voices.policy.corroboration:
            out.update({e.id: (e, "corroborated") for e in backers.events if e.scope != Scope.SHARED})
    return out


__all__ = ["ACCEPTED_KEY", "ADMITTED_KEY", "DESCRIPTION_KEY", "SCOPE_KEY", "Answer", "TrustPolicy", "Voices",
           "description_winners", "group", "is_description", "outvotes", "rejected_keys", "shared_rejections",
           "standing", "winner"]
