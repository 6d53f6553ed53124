"""The user-aware stages of a turn: what the user says about themselves and their things, and their things
recognised on photos. `Assistant` runs them (`ilearn.assistant`):

- `PersonalMemory.statement`, before the feedback stage: a personal request ("this is my mug, it's called
  Bobby", "actually it's Rex", "forget my mug", "what do you know about me?") or a statement about the user
  alone ("I'm a nurse", "please keep it short") is handled here and answered at once; the profile facts of any
  other turn ("I'm 8, what is this?") are kept and the turn goes on;
- `PersonalMemory.recognise`, a request stage: "what is this?" on a photo of one of the user's things is
  answered with its name ("That's Bobby, your mug.").

These replies are of kind REACTION and their user turns carry a neutral feedback, so distillation
(`ilearn.learning.construct`) makes no event of them: a personal name never becomes a shared answer or a
training row, and renaming or deleting a thing leaves nothing behind in what is learnt.
"""

from __future__ import annotations

import logging
import re

from ilearn.errors import InvalidInput
from ilearn.memory.store import EventStore
from ilearn.models.base import ImageEmbedder, Message
from ilearn.sessions import session_image_ref
from ilearn.turn import TurnState, looks_like_question
from ilearn.types import Feedback, FeedbackSource, Label, Role, TurnKind
from ilearn.users.concepts import Concept, ConceptBook
from ilearn.users.extract import PersonalRequest, clean, read_profile, read_request
from ilearn.users.fit import PROMPT_STYLES, fit_answer, prompt_messages
from ilearn.users.profiles import Profile, ProfileBook

logger = logging.getLogger(__name__)

_IDENTITY = re.compile(
    r"^(?:what(?:'s| is) (?:this|that|it)(?: called| one)?|who(?:'s| is) (?:this|that|it)|whose (?:\w+ )?is (?:this|"
    r"that|it)|which one is (?:this|that|it)|what(?:'s| is) (?:its|his|her|this one's) name|do you (?:know|recognise|"
    r"recognize) (?:this|that|it|him|her|what this is|who this is|whose this is)|is (?:this|that|it) my \w+(?: \w+)?"
    r"|what do you see|what have we got here)$", re.IGNORECASE)
_PERSONAL_REPLY = re.compile(
    r"^(?:That's (?:.+, )?your [^.]+\.|Nice to meet .+|Got it: .+|Done: I have forgotten .+|Noted: .+|You told me: .+"
    r"|Your things: .+|You haven't told me .+|I don't know (?:a|that) .+ of yours\.|Please show me a photo of your .+"
    r"|You're welcome\.|Sorry, my mistake\. .+)$", re.DOTALL)
"""The replies of this module (a reaction to one of them is answered here too, never judged as feedback)."""
_NEGATIVE = re.compile(r"^(?:no\b|nope\b|wrong\b|that'?s (?:not|wrong)|it'?s not|not (?:mine|it|right)|incorrect)",
                       re.IGNORECASE)
ABOUT_USER = Feedback(Label.NEUTRAL, 1.0, None, FeedbackSource.IMPLICIT, "about the user, not a reaction")
"""The feedback a personal turn carries, so that distillation reads it as no judgement of the previous answer."""


class PersonalMemory:
    """Profiles and personal concepts, and the two turn stages that use them (see the module docstring)."""

    def __init__(self, store: EventStore, embedder: ImageEmbedder, *, threshold: float | None = None,
                 margin: float = 0.02, prompt: str = "none") -> None:
        """`threshold`, `margin`: when a photo shows one of the user's things (`ConceptBook`); `prompt`: how the
        profile reaches the model, one of `fit.PROMPT_STYLES` ("none": only the wording rules adapt answers)."""
        if prompt not in PROMPT_STYLES:
            raise InvalidInput(f"prompt must be one of {list(PROMPT_STYLES)}, not {prompt!r}")
        self.store = store
        self.profiles = ProfileBook(store)
        self.concepts = ConceptBook(store, embedder, threshold=threshold, margin=margin)
        self.prompt = prompt

    # ------------------------------------------------------------------ answers that fit the user
    def prompted(self, messages: list[Message], profile: Profile, *, tuned: bool = False) -> list[Message]:
        """The chat the model answers, with the profile as `prompt` says (`fit.prompt_messages`); a model `tuned`
        user-aware (`ilearn.users.tuning`) gets the tag it was trained to read unless instructions were asked."""
        style = "tag" if tuned and self.prompt == "none" else self.prompt
        return prompt_messages(messages, profile, style)

    @staticmethod
    def fit(text: str, profile: Profile) -> str:
        """An answer worded for its user (`fit.fit_answer`): same facts, fitted wording."""
        return fit_answer(text, profile)

    # ------------------------------------------------------------------ the stages
    def statement(self, state: TurnState) -> bool:
        """A personal request or a statement about the user alone: handled, `state.reply` set, True. Profile facts
        of other turns are kept (False: the turn goes on)."""
        user = state.session.user_id
        ask = read_request(state.request.text, has_image=state.image is not None)
        if ask is not None:
            text = self._handle(state, ask)
            if text is not None:
                self._answer(state, text)
                return True
        said = read_profile(state.request.text)
        if said.update:
            before = self.profiles.get(user)
            profile = self.profiles.update(user, said.update)
            if said.only_profile:
                self._answer(state, _noted(before, profile))
                return True
        last = state.last_reply
        words = clean(state.request.text)
        if last is not None and _PERSONAL_REPLY.match(last.text) and not looks_like_question(words) \
                and len(words.split()) <= 5:
            self._answer(state, self._after(state))  # "thanks" / "no" after one of these replies
            return True
        return False

    def recognise(self, state: TurnState) -> bool:
        """A request stage: "what is this?" on a photo of one of the user's own things gets its name."""
        if state.image is None or not _IDENTITY.match(clean(state.request.text)):
            return False
        seen = self.concepts.recognise(state.session.user_id, state.image)
        if seen is None:
            return False
        state.reply = state.say(f"That's {seen.concept.label()}.", TurnKind.REACTION)
        return True

    # ------------------------------------------------------------------ what the user can ask
    def show(self, user_id: str) -> str:
        """What the assistant knows about the user, in words (their profile and their things)."""
        profile, concepts = self.profiles.get(user_id), self.concepts.list(user_id)
        if profile.empty and not concepts:
            return "You haven't told me anything about yourself yet."
        parts = []
        if not profile.empty:
            parts.append(f"You told me: {profile.summary()}.")
        if concepts:
            parts.append("Your things: " + "; ".join(c.label() for c in concepts) + ".")
        return " ".join(parts) + " Say \"forget my ...\" to remove any of it."

    def _handle(self, state: TurnState, ask: PersonalRequest) -> str | None:
        user = state.session.user_id
        if ask.action == "show":
            return self.show(user)
        if ask.action == "teach":
            return self._teach(state, ask)
        concept = self._target(state, ask)
        if concept is None:
            return None if ask.contextual else f"I don't know {_thing(ask)} of yours."
        if ask.action == "rename":
            renamed = self.concepts.rename(user, concept.id, ask.name or "")
            return f"Got it: your {renamed.kind} is called {renamed.name} now."
        self.concepts.forget(user, concept.id)
        return f"Done: I have forgotten {concept.label()}."

    def _after(self, state: TurnState) -> str:
        """The reply to a reaction to a personal reply: thanks, or how to put right what it got wrong."""
        if not _NEGATIVE.match(clean(state.request.text)):
            return "You're welcome."
        concept = self._recent(state)
        if concept is not None:
            return (f"Sorry, my mistake. Say \"actually it's ...\" to rename {concept.label()}, or \"forget my "
                    f"{concept.kind}\" if I should not know it.")
        return "Sorry, my mistake. Tell me what to change, e.g. \"forget my name\"."

    def _recent(self, state: TurnState) -> Concept | None:
        """The user's thing the dialogue spoke of since its last ordinary answer ("actually it's Rex" renames it)."""
        for turn in reversed(state.history[-8:]):
            if turn.role != Role.ASSISTANT:
                continue
            if turn.kind == TurnKind.ANSWER:
                return None
            concept = self.concepts.mentioned(state.session.user_id, turn.text)
            if concept is not None:
                return concept
        return None

    def _teach(self, state: TurnState, ask: PersonalRequest) -> str:
        request = state.request
        if request.image is not None:
            self.store.put_image(request.image_bytes, request.image_ref)
            ref = request.image_ref
        else:
            ref = session_image_ref(state.session)
        if state.image is None or ref is None:
            return f"Please show me a photo of your {ask.kind} as you tell me, so that I can recognise it."
        concept = self.concepts.teach(state.session.user_id, ask.kind or "thing", ask.name, state.image, ref)
        if concept.name:
            return (f"Nice to meet {concept.name}, your {concept.kind}! I'll recognise it on your photos, "
                    f"and only you will hear its name.")
        return f"Got it: this is {concept.label()}. I'll recognise it on your photos."

    def _target(self, state: TurnState, ask: PersonalRequest) -> Concept | None:
        user = state.session.user_id
        if ask.contextual:
            return self._recent(state)
        return self.concepts.find(user, name=ask.target, kind=ask.kind)

    @staticmethod
    def _answer(state: TurnState, text: str) -> None:
        state.user_turn.kind = TurnKind.REACTION
        state.user_turn.feedback = ABOUT_USER
        state.reply = state.say(text, TurnKind.REACTION)


def _thing(ask: PersonalRequest) -> str:
    return f"a thing called {ask.target}" if ask.target else f"a {ask.kind}" if ask.kind else "that thing"


def _noted(before: Profile, after: Profile) -> str:
    """The reply to a statement about the user: what changed, in words they can correct."""
    old, new = before.to_dict(), after.to_dict()
    gone = [k.replace("_", " ") for k in new if old[k] not in (None, []) and new[k] in (None, [])]
    shown = after.summary()
    if gone and not shown:
        return "Done: I have forgotten what you told me about yourself."
    if gone:
        return f"Done: I have forgotten your {' and '.join(gone)}. I still know: {shown}."
    return f"Noted: {shown}. Tell me if I got anything wrong."


__all__ = ["ABOUT_USER", "PersonalMemory"]
