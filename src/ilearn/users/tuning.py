"""User-aware tuning rows: the profile as a few-token tag in the prompt, the answer fitted to it as the target.

User-VLM 360 tunes its model on answers written for each user so that it fits answers without long instructions.
Here a row of the `sft` dataset (`ilearn.learning.datasets.build_sft`: an image, a precise question, the answer a
user taught) becomes one row per profile, each with

- the question prefixed by `fit.profile_tag(profile)` ("[user: child] What is the dose of this?"), exactly as the
  assistant sends it with ``personal.prompt = "tag"`` (`fit.prompt_messages`), and
- the answer fitted to that profile as the target: `fitted(question, answer, profile)`, by default the wording
  rules the assistant shows (`fit.fit_answer`); an experiment can pass profile-specific reference answers
  (`ilearn.users.references`), as `ilearn experiment personal` does.

The model so tuned reads the tag instead of an instruction prompt (`python -m ilearn.users.measure prompt` counts
the tokens). `preference_rows` turns the same rows into DPO pairs (User-VLM's third stage): the fitted answer is
chosen, the answer fitted to another profile (the tag must matter) and the fitted answer with another row's fact
(a profile must never change a fact) rejected.

Tags name no protected attribute (profiles have no such field), and a profile never changes the fact a row holds.

A version trained on these rows is registered with `USER_AWARE` true in its metrics: it words its answers for the
tag itself, so the assistant sends it the tag whatever ``personal.prompt`` says and shows its answers as they are
instead of passing them through the wording rules again (which would, e.g., gloss "dose" a second time).

`ilearn learn` trains such a version with ``learn.user_aware`` (`tuning_rows` on the shared events' sft rows, for
the `ARCHETYPES`): no user's own profile is read, so training learns nothing private about anyone.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ilearn.errors import InvalidInput
from ilearn.users.fit import fit_answer, profile_tag, tagged
from ilearn.users.profiles import Profile

logger = logging.getLogger(__name__)

USER_AWARE = "user_aware"
"""The key, in a model version's metrics, that says it was trained on user-aware rows (it fits answers itself)."""

ARCHETYPES: tuple[Profile, ...] = (
    Profile(), Profile(age_group="child"), Profile(age_group="senior", expertise="newcomer"),
    Profile(expertise="expert"), Profile(accessibility=("plain language",)), Profile(answer_length="short"))
"""The profiles `ilearn learn` tunes for with ``learn.user_aware``: no profile (the plain answer), then one per way
the wording rules change an answer (`fit.fit_answer`). They are archetypes, not users: no one's profile is read."""

Fitted = Callable[[str, str, Profile], str]
"""(question, answer, profile) -> the answer worded for that profile, facts unchanged."""


def rules(question: str, answer: str, profile: Profile) -> str:
    """The default `Fitted`: the assistant's wording rules (`fit.fit_answer`)."""
    return fit_answer(answer, profile)


def _texts(row: dict) -> tuple[str, str]:
    """(question, answer) of an sft row (`messages`: the user turn, then the assistant's)."""
    messages = row.get("messages")
    if not messages or len(messages) < 2 or messages[-1]["role"] != "assistant":
        raise InvalidInput("a user-aware row needs an sft row: messages ending with the assistant's answer")
    question = next(c["text"] for c in messages[-2]["content"] if c.get("type") == "text")
    answer = next(c["text"] for c in messages[-1]["content"] if c.get("type") == "text")
    return question, answer


def _with_texts(row: dict, question: str, answer: str) -> dict:
    out = copy.copy(row)
    messages = copy.deepcopy(row["messages"])
    for item in messages[-2]["content"]:
        if item.get("type") == "text":
            item["text"] = question
    messages[-1]["content"] = [{"type": "text", "text": answer}]
    out["messages"] = messages
    return out


def user_aware_rows(rows: Sequence[dict], profiles: Sequence[Profile], fitted: Fitted = rules) -> list[dict]:
    """For every sft row and every profile, the row with the profile's tag before the question and the answer
    fitted to the profile as the target (module docstring); images and `event_id` are kept. Profiles with the
    same tag give one row."""
    if not profiles:
        raise InvalidInput("user-aware rows need at least one profile")
    unique = list({profile_tag(p): p for p in profiles}.values())
    out = []
    for row in rows:
        question, answer = _texts(row)
        for profile in unique:
            out.append(_with_texts(row, tagged(question, profile), fitted(question, answer, profile)))
    return out


def preference_rows(rows: Sequence[dict], profiles: Sequence[Profile], fitted: Fitted = rules) -> list[dict]:
    """DPO rows (`prompt`, `chosen`, `rejected`, `images`, `event_id`) from sft rows: per row and profile, the
    tagged question with the fitted answer chosen against (a) the answer fitted to the next profile, when its words
    differ, and (b) the fitted answer of the next row whose answer differs (another fact: never for a profile)."""
    if not profiles:
        raise InvalidInput("preference rows need at least one profile")
    unique = list({profile_tag(p): p for p in profiles}.values())
    texts = [_texts(r) for r in rows]
    out: list[dict[str, Any]] = []
    for i, (row, (question, answer)) in enumerate(zip(rows, texts, strict=True)):
        other = next((texts[(i + k) % len(rows)] for k in range(1, len(rows))
                      if texts[(i + k) % len(rows)][1].strip().lower() != answer.strip().lower()), None)
        for j, profile in enumerate(unique):
            chosen = fitted(question, answer, profile)
            rejected = [fitted(question, answer, unique[(j + 1) % len(unique)])]
            if other is not None:
                rejected.append(fitted(other[0], other[1], profile))
            for wrong in dict.fromkeys(r for r in rejected if r != chosen):
                out.append(_pair(row, tagged(question, profile), chosen, wrong))
    return out


def tuning_rows(recipe: str, rows: Sequence[dict], profiles: Sequence[Profile] = ARCHETYPES,
                fitted: Fitted = rules) -> list[dict]:
    """The user-aware rows of `recipe` from sft `rows`: "sft" trains the fitted answers (`user_aware_rows`), "dpo"
    the preference pairs (`preference_rows`) and the profile bias set's train pairs (User-VLM's third stage)."""
    if recipe == "sft":
        return user_aware_rows(rows, profiles, fitted)
    if recipe == "dpo":
        from ilearn.users.bias import bias_rows

        return [*preference_rows(rows, profiles, fitted), *bias_rows("train")]
    raise InvalidInput(f"user-aware tuning trains the sft or dpo recipe, not {recipe!r}")


def _pair(row: dict, question: str, chosen: str, rejected: str) -> dict:
    from ilearn.learning.datasets import completion_messages, prompt_messages

    pair = {"prompt": prompt_messages(question, bool(row.get("images"))), "chosen": completion_messages(chosen),
            "rejected": completion_messages(rejected), "images": list(row.get("images", []))}
    for key in ("event_id", "augment"):
        if key in row:
            pair[key] = row[key]
    return pair


__all__ = ["ARCHETYPES", "USER_AWARE", "Fitted", "preference_rows", "rules", "tuning_rows", "user_aware_rows"]
