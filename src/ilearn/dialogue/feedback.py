"""Decode the user's reaction to the assistant's previous answer (ReSpect's implicit feedback).

This is the only module that turns user words into feedback labels. Three backends share the
`FeedbackDecoder` protocol:

- `LexicalFeedbackDecoder`: rules over the reaction (thanks / "no, it's X" / frustration /
  rephrasing of the previous question / topic change), no model;
- `ModelFeedbackDecoder`: the VLM itself judges the reaction (ReSpect): a short judging prompt over
  the last answer and the user's reply, scored over the three label words (`vlm.score`), which is
  cheaper and steadier than free generation for a 135M model; optional contextual calibration;
- `HybridFeedbackDecoder`: lexical rules decide when they fire with high confidence, the model
  decides the rest, and a positive label needs the agreement of both.

Corrections ("no, that's the ibuprofen" -> "ibuprofen") are extracted from the reaction text by
patterns (`extract_correction`); a feedback carrying one has source EXPLICIT, else IMPLICIT.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ilearn.dialogue.reaction_check import ReactionClassifier, default_classifier
from ilearn.errors import InvalidInput
from ilearn.models.base import Message, TextEmbedder, VisionLanguageModel
from ilearn.types import Feedback, FeedbackSource, Label, Role, Turn, TurnKind

if TYPE_CHECKING:
    from ilearn.config import FeedbackConfig

logger = logging.getLogger(__name__)

LABELS: tuple[Label, ...] = (Label.POSITIVE, Label.NEUTRAL, Label.NEGATIVE)


@runtime_checkable
class FeedbackDecoder(Protocol):
    """Decode the user's newest turn as a reaction to the assistant's previous answer."""

    def decode(self, turns: Sequence[Turn]) -> Feedback | None:
        """`turns`: the session so far, the last one the user's new turn.

        Returns None when there is no previous assistant answer to react to (first turn, or the
        assistant's last turn was a clarifying question, whose reply is not feedback).
        """
        ...


@dataclass(frozen=True)
class Exchange:
    """What a reaction is about: the user's question, the assistant's answer, the user's reply."""

    question: str
    answer: str
    reaction: str
    new_image: bool = False  # the reaction brings a different image than the one answered about
    earlier: tuple[Feedback, ...] = ()  # feedback the user already gave on this answer (follow-up turns)
    follow_up: bool = False  # the assistant acknowledged a reaction in between ("Could you tell me the right answer?")


def exchange_from_turns(turns: Sequence[Turn]) -> Exchange | None:
    """The (question, answer, reaction) a decoder judges, or None when there is no answer to react to.

    The answer is the assistant's last ANSWER turn; assistant REACTION turns (acknowledgements) after it
    are skipped, which makes the exchange a follow-up; a CLARIFICATION in between means the user is
    replying to a clarifying question, which is not feedback.
    """
    if not turns:
        raise InvalidInput("no turns to decode feedback from")
    last = turns[-1]
    if last.role != Role.USER:
        raise InvalidInput("the last turn must be the user's reaction")
    answer_idx, follow_up, earlier = None, False, []
    for i in range(len(turns) - 2, -1, -1):
        t = turns[i]
        if t.role == Role.ASSISTANT:
            if t.kind == TurnKind.ANSWER:
                answer_idx = i
                break
            if t.kind != TurnKind.REACTION:
                return None
            follow_up = True
        elif t.feedback is not None:
            earlier.append(t.feedback)
    if answer_idx is None:
        return None
    answer = turns[answer_idx]
    question_turn = next((t for t in reversed(turns[:answer_idx]) if t.role == Role.USER
                          and t.kind == TurnKind.QUESTION), None)
    question = answer.precise_question or (question_turn.text if question_turn else "")
    shown = next((t.image for t in reversed(turns[: answer_idx + 1]) if t.image is not None), None)
    new_image = last.image is not None and shown is not None and last.image.sha256 != shown.sha256
    return Exchange(question=question, answer=answer.text, reaction=last.text, new_image=new_image,
                    earlier=tuple(reversed(earlier)), follow_up=follow_up)


def decode_exchange(judge: Callable[[Exchange], Feedback], turns: Sequence[Turn]) -> Feedback | None:
    """Shared `decode` of every backend: find the exchange, judge it, apply the follow-up rule.

    Follow-up rule: once the user has reacted to an answer and the assistant acknowledged it, a later
    turn only counts as new feedback on that answer when it gives a correction ("it's X"); after a
    negative without correction (the assistant asked for the right answer), a short statement with no
    other marker ("ibuprofen") is taken as the correction. Anything else returns None, so a "thanks"
    for the acknowledgement never turns a rejected answer into a confirmed one.
    """
    ex = exchange_from_turns(turns)
    if ex is None:
        return None
    fb = judge(ex)
    if not ex.follow_up:
        return fb
    if fb.label == Label.NEGATIVE and fb.correction:
        return fb
    asked = any(e.label == Label.NEGATIVE and not e.correction for e in ex.earlier) and not any(
        e.correction for e in ex.earlier)
    if asked:
        bare = LexicalFeedbackDecoder().judge(ex)
        span = normalise_answer(ex.reaction)
        if bare.rationale == "no marker" and _valid_answer(span) and not answers_match(span, ex.answer):
            return _feedback(Label.NEGATIVE, 0.8, span, "answer given after being asked")
    return None


# ---------------------------------------------------------------------------------------------
# text helpers
# ---------------------------------------------------------------------------------------------

# A word: letters, digits and combining marks of any script (Cyrillic, CJK, Arabic, Hebrew, Devanagari...),
# optionally with an English clitic ("it's").
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_STOP = frozenset(
    "a an the is are was were be it its it's this that these those what which who whom how why where when "
    "of on in at to for with by from and or do does did can could would should will please me my i you your "
    "there here there's what's one thing object item some any kind sort tell say about".split()
)


def _clean(text: str) -> str:
    """NFC-composed text (a decomposed "é" becomes one letter) with typographic apostrophes made plain."""
    return unicodedata.normalize("NFC", text).replace("\u2019", "'").replace("\u2018", "'")


def _words(text: str) -> list[str]:
    # combining marks (Hebrew points, Arabic harakat, Indic vowel signs) are not \w: drop them before splitting
    text = "".join(ch for ch in _clean(text).lower() if not unicodedata.category(ch).startswith("M"))
    return _WORD.findall(text)


def _content(text: str) -> set[str]:
    return {w for w in _words(text) if w not in _STOP and len(w) > 1}


def overlap(a: str, b: str) -> float:
    """Share of the smaller set of content words that the two texts have in common (0..1)."""
    wa, wb = _content(a), _content(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / min(len(wa), len(wb))


_ARTICLE = re.compile(r"^(?:a|an|the|some|just|simply|called|named|more\s+of|kind\s+of|sort\s+of|more\s+like|"
                      r"(?:in|at|from|on)(?:\s+the)?|le|la|les|un|une|der|die|das|ein|eine|el|los|las|il|lo|gli|"
                      r"uno|una|my|your|our|his|her|their)\s+", re.I)
_TRAIL = re.compile(
    r"\s+(?:actually|though|obviously|clearly|of course|you know|mate|silly|dummy|instead|really|lol|xd|"
    r"ha(?:ha)+h?|a?ha+|he(?:he)+|please|for sure|i think|i guess|i believe|here|there|and you|what about you|"
    r"how about you|hbu|you\?)$", re.I)
_NOT_ANSWER_START = frozenset(
    "not no i i'm im you you're we what what's why how where who which can could please try look again wrong "
    "incorrect it it's that that's this is was are do does did just still also even so very too quite "
    "they they're he he's she she's me going but nope nah never yes yeah yep ok okay oh haha lol "
    "wow really seriously because then if when there here nothing someone everyone everything its thats whats "
    "theres ive dont didnt cant wont isnt clearly obviously definitely actually simply certainly surely "
    "totally".split()
)
_NOT_ANSWER = frozenset({
    "wrong", "incorrect", "right", "correct", "it", "that", "this", "true", "false", "mistaken", "bad",
    "nonsense", "terrible", "useless", "ok", "okay", "fine", "sure", "nothing", "all", "correct answer",
    "wrong answer", "a mistake", "not it", "the one", "good", "great", "perfect", "helpful", "enough", "real",
})


def normalise_answer(text: str) -> str:
    """Strip articles, filler words, quotes and punctuation from an answer span; keep its case (the span becomes
    the stored answer). Not the answer judge's normaliser (`ilearn.text.normalise_text`), which compares texts."""
    text = _clean(text).strip().strip("\"'`“”‘’«»「」『』").strip()
    text = re.sub(r"[\s.,;:!?)(\"'“”«»」』，。！？；、،؟]+$", "", text)
    text = re.sub(r"^[\s,;:\-\"'“”«»「『(，、]+", "", text)
    text = _COPULA.sub("", text)
    for _ in range(3):
        stripped = _TRAIL.sub("", _ARTICLE.sub("", text)).strip(" ,")
        if stripped == text:
            break
        text = stripped
    return text.strip("\"'`“”‘’«»「」『』 ")


def answers_match(a: str, b: str) -> bool:
    """Case- and article-insensitive equality of two short answers."""
    return normalise_answer(a).lower() == normalise_answer(b).lower()


_INTRO = (r"(?:it'?s|its|it\s+is|there\s+(?:are|is|were|was)|there'?s|that'?s|thats|that\s+is|this\s+is|they'?re|"
          r"they\s+are|those\s+are|"
          r"it\s+was|should\s+be|(?:the\s+)?(?:right|correct|real)\s+answer\s+is|the\s+answer\s+is|"
          r"i\s+think\s+it'?s|it'?s\s+called|that\s+one\s+is|you\s+mean|you\s+meant|answer\s*:|"
          r"(?:the\s+)?label\s+says|it\s+says|isn'?t\s+(?:that|it|this)|aren'?t\s+(?:they|those))")
# After a rejection, a person names what is right about themselves or someone: "no, I'm a physics major",
# "nope, she's in Helaman", "no I will be a sophomore" (the span must start with an article or a place word).
_PERSON_INTRO = (r"(?:i'?m|im|i\s+am|i\s+will\s+be|i'?ll\s+be|she'?s|he'?s|she\s+is|he\s+is|we'?re|we\s+are|"
                 r"they'?re|it'?s|its|it\s+was)\s+(?:actually\s+|just\s+|really\s+)?"
                 # what one studies, does or where one lives: "no, I'm going into sociology", "I'm majoring in art"
                 r"(?:(?:going\s+into|going\s+to\s+study|studying|majoring\s+in|minoring\s+in|doing|taking|"
                 r"working\s+(?:at|in|for|on)|living\s+in|moving\s+to|from)\s+|(?=(?:a|an|the|in|at|from|on)\s))")
_ADV = r"(?:(?:actually|really|obviously|clearly|definitely|in\s+fact|just|simply)\s+)?"
# A span ends at punctuation of any script (Latin, CJK full-width, Arabic), a dash, or a tail that is not part
# of a name ("but ...", "and you?", laughter).
_STOPS = r",.!?;:，。！？；：、،؛؟\n"
_SPAN = (r"(?P<ans>[^" + _STOPS + r"]+?)(?=\s*(?:$|[" + _STOPS + r"]|--|\s-\s|\s+(?:but|and\s+you|what\s+about|"
         r"how\s+about|ha(?:ha)+\w*|lol|because|so)\b))")
_REJECT = r"(?:no+|nope|nah|wrong|incorrect|not\s+quite|not\s+really|negative|close(?!\s+(?:by|to|up)\b)|almost|uh+|um+)"
# "No" and "that is" in other languages, for corrections worded wholly in the user's language ("Нет, это
# Парацетамол", "Nein, das ist Ibuprofen", "Non, c'est le paracétamol", "No, es ibuprofeno", "不对，是布洛芬",
# "いいえ、イブプロフェンです", "아니요, 이부프로펜입니다", "لا، هذا إيبوبروفين", "לא, זה איבופרופן").
_FOREIGN_NO = r"(?:нет|ні|nein|non|não|nao|لا|לא|いいえ|いや|아니요|아니오|아니|不是|不对|不對)"
_FOREIGN_INTRO = r"(?:это|то|das\s+ist|es\s+ist|c'est|es|è|é|是|هذا|هذه|إنه|إنها|זה|זאת)"
_SEP = r"\s*[,，、。.!！،]\s*"
_COPULA = re.compile(r"(?<=\S)(?:です|でした|だよ|だ|입니다|이에요|예요|이야)$")
_CORRECTION_PATTERNS: tuple[re.Pattern[str], ...] = (
    # "Нет, это B" / "No, es B" / "不对，是B" (the intro is needed after a plain "no")
    re.compile(r"^\W*(?:" + _FOREIGN_NO + r"|no)" + _SEP + _FOREIGN_INTRO + r"\s*" + _SPAN, re.I),
    # "いいえ、Bです" / "Нет, B"
    re.compile(r"^\W*" + _FOREIGN_NO + _SEP + _SPAN, re.I),
    # "not A but B", "not A, but rather B"
    re.compile(r"\bnot\s+[^" + _STOPS + r"]+?,?\s+but\s+(?:rather\s+|actually\s+)?(?:" + _INTRO + r"\s+)?" + _SPAN,
               re.I),
    # "it's B, not A"
    re.compile(r"\b" + _INTRO + r"\s+" + _ADV + r"(?P<ans>(?!not\b)[^" + _STOPS + r"]+?)\s*,?\s+(?:and\s+)?not\s+"
               r"(?:an?\s+|the\s+)?[^" + _STOPS + r"]+", re.I),
    # "... it's actually B", "that's the B", "the right answer is B"
    re.compile(r"\b" + _INTRO + r"\s+" + _ADV + _SPAN, re.I),
    # "no, I'm a B" / "nope, she's in B"
    re.compile(r"^\W*(?:" + _REJECT + r"\b[\s,.:;!\-\u2014]*)+(?:but\s+)?(?:actually[\s,]+)?" + _PERSON_INTRO + _SPAN,
               re.I),
    # "no, we say B" / "no he said B" / "nope, they call it B": what someone says is the right word
    re.compile(r"^\W*(?:" + _REJECT + r"\b[\s,.:;!\-\u2014]*)+(?:but\s+)?(?:i|we|they|he|she|people|everyone|you|"
               r"it)\s+(?:(?:usually|always|just|actually|all|only)\s+)?(?:say|says|said|call(?:s|ed)?\s+(?:it|them|"
               r"him|her|me|that)|(?:is|was)\s+called)\s+" + _SPAN, re.I),
    # "No, not on Netflix. Just season 3.": after a rejection, a later sentence that is only what is right
    re.compile(r"^\W*(?:" + _REJECT + r"\b[\s,.:;!\-\u2014]*)+[^.!?;]*[.!?;]+\s*(?:just|only)\s+" + _SPAN + r"\W*$",
               re.I),
    # "I was more like thinking B", "more like B"
    re.compile(r"\b(?:i\s+was\s+(?:more\s+)?(?:like\s+)?thinking(?:\s+(?:of|about|more\s+like|like))?|more\s+like)\s+"
               + _SPAN, re.I),
    # "actually B", "rather B", "instead, B"
    re.compile(r"\b(?:actually|rather|instead)\s*[,:]?\s+" + _SPAN, re.I),
    # "no, B" / "wrong: B" / "nope - B" / "no no, B" / "close. B"
    re.compile(r"^\W*(?:" + _REJECT + r"\b[\s,.:;!\-\u2014，。！]+)+(?:(?:just|only)\s+)?" + _SPAN, re.I),
    # "not A, B" at the start
    re.compile(r"^\W*not\s+(?:an?\s+|the\s+)?[^" + _STOPS + r"]+?\s*[,;:\u2014-]\s*(?:but\s+)?(?:" + _INTRO
               + r"\s+)?" + _SPAN, re.I),
    # "B, not A" at the start
    re.compile(r"^\W*(?P<ans>[^" + _STOPS + r"]+?)\s*,\s*not\s+(?:an?\s+|the\s+)?[^" + _STOPS + r"]+[.!]?$", re.I),
)


_EVALUATIVE = frozenset(
    "sorry ridiculous hopeless useless terrible awful nonsense rubbish garbage stupid answer answers wrong "
    "incorrect mistake mistaken asked meant again silly dumb pathetic bad worse worst joke thanks thank all "
    "enough everything bye good fine ok okay cool alright funny unfortunately unfortunate neither nope nah "
    "haha hahaha lol worries problem prob kidding way idea clue doubt complaints wonder sure true healthy sad "
    "nice great awesome interesting lame warmer guess crazy insane amazing lot wild weird hilarious cute adorable "
    "beautiful gorgeous impressive incredible unbelievable fun sweet neat hard tough rough scary boring pointless "
    "absurd annoying frustrating question bad best tragedy shame bummer pity curious wondering joking saying asking "
    "kidding".split())
# Words of a clause, not of a name: a span with one of them is a sentence ("they would not", "fine he deserved it").
_CLAUSE = frozenset(
    "is are was were am be been being have has had do does did don't doesn't didn't will would can could should "
    "won't wouldn't can't isn't aren't wasn't going gonna think know mean meant said say deserved get got "
    "not forget mind gotta wanna go goes went gone come came need needs want wants feel felt seem seems sound sounds "
    "love hate hope wish try tried called".split())
# Pro-forms and time adverbs: a span with one of them points back at something ("before then"), it names nothing.
_DEICTIC = frozenset("then there anyway anymore yet either too already though that those these them".split())


# A span made only of these words names what the user wants to know ("wrong. name?"), not an answer.
_FACET_ONLY = frozenset("name names called dose dosage use uses used purpose for the its it what how much".split())


def _valid_answer(span: str) -> bool:
    words = _words(span)
    if not words or len(words) > 6 or any(w in _EVALUATIVE or w in _CLAUSE or w in _DEICTIC for w in words):
        return False
    if all(w in _FACET_ONLY for w in words):
        return False
    if words[0] in _NOT_ANSWER_START or span.lower() in _NOT_ANSWER:
        return False
    return True


def extract_correction(reaction: str, wrong_answer: str = "") -> str | None:
    """The corrected answer a user gives in a reaction, normalised, or None when none is given.

    "no, that's the ibuprofen" -> "ibuprofen"; "it's actually X" / "wrong, X" / "not A but B" -> X / B; in any
    script ("No, that's Парацетамол" -> "Парацетамол"). A span equal to the wrong answer is not a correction,
    and neither is an idiom or a clause ("No way." / "no, it's fine" / "nope, they would not" -> None).
    """
    text = _clean(reaction).strip()
    for pattern in _CORRECTION_PATTERNS:
        for match in pattern.finditer(text):
            span = normalise_answer(match.group("ans"))
            if _valid_answer(span) and not (wrong_answer and answers_match(span, wrong_answer)):
                return span
    return None


# ---------------------------------------------------------------------------------------------
# lexical decoder
# ---------------------------------------------------------------------------------------------


def _rx(*phrases: str) -> re.Pattern[str]:
    return re.compile(r"(?:" + "|".join(phrases) + r")", re.I)


# "n't" written without its apostrophe ("dont", "isnt"): the words, so that "development" or "meant" is no negation.
_NT = r"(?:do|does|did|is|are|was|were|can|could|would|should|wo|have|has|had|ai|must|might|need)n"
# After "that's not" / "not a": a judgement of the topic ("that's not a good way to play", "not a big deal"), unless
# it is about the answer ("not a good answer").
_NOT_OPINION = (r"(?!\s+(?:(?:a|an|the)\s+)?(?:(?:very|so|that|too|really|particularly|super)\s+(?!right\b|correct\b|"
                r"true\b|it\b)\w+|good|great|bad|nice|fun|easy|hard|fair|smart|wise|healthy|safe|normal|cool|big\s+deal|"
                r"best|worst|huge|bad\s+thing)\b"
                r"(?!\s+(?:answer|guess|reply)))")
# Words of frustration ("useless", "terrible"): about the answer, unless the reply opens by agreeing ("yeah that
# would be terrible" judges the topic).
_NEG_EVAL = re.compile(r"\b(?:useless|stupid|rubbish|garbage|terrible|awful|hopeless|pathetic|ridiculous)\b", re.I)
_AGREE_START = re.compile(r"^\W*(?:(?:oh+|ah+|ha(?:ha)*h?|lol|well)\W+)*(?:yes|yeah|yea|yep|yup|ya|true|exactly|"
                          r"totally|definitely|i\s+agree|agreed)\b", re.I)
_NEG_STRONG = _rx(
    r"\bwrong\b", r"\bincorrect\b", r"\bnot\s+(?:quite\s+)?(?:right|correct|true|it|that)\b",
    r"\b(?:isn'?t|is\s+not|wasn'?t|ain'?t)\s+(?:right|correct|it|true|a|an|the|what)\b",
    r"\bthat'?s\s+not\b" + _NOT_OPINION, r"\bit'?s\s+not\b" + _NOT_OPINION, r"\bmistake[n]?\b", r"\byou'?re\s+wrong\b",
    r"^\W*(?:no+|nope|nah|negative)\b(?!\s*(?:thanks|thank|problem|worries|need|doubt|one\b|body\b|matter\b))",
    r"^\W*" + _FOREIGN_NO + r"(?=[\s,，、。.!！،])",
    r"\bfor\s+nothing\b", r"\bnot\s+(?:what\s+i|helpful|useful)\b", r"\bmakes?\s+no\s+sense\b",
    r"\bnonsense\b", r"\bnot\s+even\s+close\b", r"\bwhat\?+!*$", r"\bare\s+you\s+(?:even|blind|kidding|serious|sure)\b",
    r"\b(?:useless|stupid|rubbish|garbage|terrible|awful|hopeless|pathetic|ridiculous|bad)\s+(?:answer|guess|reply|job)\b",
    r"\bugh+\b",
    r"\bcome\s+on\b", r"\bseriously\b", r"\btry\s+again\b", r"\bagain\?", r"\bi\s+(?:said|asked|meant)\b",
    r"\bmy\s+question\s+was\b", r"\blet\s+me\s+rephrase\b", r"\bdoesn'?t\s+look\s+like\b", r"\bnot\s+an?\b" + _NOT_OPINION,
    r"\bthat'?s\s+(?:a|an)\s+\w+,?\s+not\b", r"\bno\s+it'?s\b", r"\bactually,?\s+(?:it|that)'?s\b",
    r"\bnot\s+\w+\s+but\b", r"\bdid\s*n'?t\s+(?:ask|help|answer)\b", r"\bdon'?t\s+think\s+so\b",
    r"\bhow\s+(?:do|did|could)\s+you\s+(?:get|miss)\b", r"\bwhy\s+would\s+you\b", r"\bsigh\b", r"\bfacepalm\b",
    r"\bnot\s+(?:really|quite)\b", r"^\W*not\s+(?!bad\b|too\s+bad\b|(?:too\s+|so\s+|very\s+|that\s+)?(?:much|many|sure|long)\b|a\s+lot\b)"
    r"(?:an?\s+|the\s+)?\w+", r"\bclose,?\s+but\b", r"\bno\W*$",
    r"\byeah,?\s+right\b", r"\bas\s+if\b", r"\bexcept\s+(?:it|that)'?s\b", r"\bdo\s+you\s+even\b",
    r"\b(?:count|check|look|try)\b.*\bagain\b", r"\bi\s+mean\b(?!\W*(?:maybe|probably|perhaps|yeah|yes|sure|honestly|i\s+guess|who\s+knows|"
    r"i\s+don'?t\s+know|it\s+depends|kind\s+of|sort\s+of|not\s+really)\b)", r"\bjust\s+(?:tell|give|answer)\b",
    r"\byou\s+already\b", r"\bdefinitely\s+not\b", r"\bway\s+off\b", r"\bnever\s+get\b", r"\.\.\.\s*not\W*$",
    r"\bmore\s+like\b", r"\bi\s+was\s+(?:more\s+like\s+|more\s+)?thinking\b", r"\bi\s+was\s+talking\s+about\b",
    r"\bdifferent\s+one\b", r"\b(?:doesn'?t|does\s+not|don'?t|didn'?t)\s+(?:sound|seem|look)\s+(?:right|correct)\b",
    r"\bnot\s+sure\s+(?:that|it|this)(?:'s|\s+is|\s+was)\s+(?:right|correct)\b", r"\bforget\s+it\b",
)
_POS = _rx(
    r"\bthanks?\b", r"\bthank\s+you\b", r"\bthx\b", r"\bty\b", r"\bcheers\b", r"\bcorrect\b", r"\bright\b",
    r"^\W*(?:(?:oh+|ah+|ha(?:ha)*h?|lol|well)\W+)*(?:yes|yep|yeah|yea|yup|ya|aye|indeed|sure|absolutely|exactly|"
    r"precisely|true)\b", r"\bexactly\b",
    r"\bi\s+(?:really\s+|totally\s+|do\s+)?(?:love|like|support)\s+(?:that|it|this|those|them|yours|the)\b",
    r"\b(?:dope|rad|legit)\b", r"^\W*not\s+(?:too\s+|so\s+|that\s+)?bad\b",
    r"\bperfect\b", r"\bgreat\b", r"\bawesome\b", r"\bexcellent\b", r"\bgood\s+(?:job|one|answer|work)\b",
    r"\bwell\s+done\b", r"\bnice\b", r"\bspot\s+on\b", r"\bthat'?s\s+(?:it|the\s+one|true|right)\b", r"\bgot\s+it\b",
    r"\bmakes\s+sense\b", r"\bhelpful\b", r"\bbrilliant\b", r"\bcool\b", r"\bappreciate", r"\byou\s+got\s+it\b",
    r"\bbingo\b", r"\bnailed\s+it\b", r"\bthat\s+helps\b", r"\bi\s+knew\s+it\b", r"\bconfirmed\b", r"\bbang\s+on\b",
    r"\bthat\s+matches\b", r"\bagreed\b", r"\bgood\b(?!\s*(?:bye|night|morning|afternoon|evening|luck)\b)", r"\bspot-on\b", r"\byes\b",
    r"\bsame\s+(?:here|thing)\b", r"^\W*(?:oh\s+|yeah\s+)?same\b", r"\bme\s+(?:too|neither|either)\b", r"\bi\s+agree\b",
    r"\bi\s+thought\s+(?:the\s+same|so)\b", r"\bfair\s+enough\b", r"\bgood\s+point\b", r"\bgotcha\b",
    r"\bi'?ve\s+heard\b", r"\bof\s+course\b", r"\bduh\b", r"\bsweet\b", r"\bneat\b", r"^\W*oh\s+(?:yeah|yes|right)\b",
    r"\bthat\s+counts\b", r"\bsounds\s+(?:good|fun|great|cool|awesome|interesting)\b", r"\bwhat\s+i\s+thought\b",
)
_POS_NEGATED = _rx(
    r"\bnot\s+(?:\w+\s+)?(?:right|correct|helpful|good|great|true|it)\b", r"\bisn'?t\s+(?:right|correct|true)\b",
    r"\bthanks\s+for\s+nothing\b", r"\bno\s+thanks?\b", r"\bno,?\s+thank\s+you\b", r"\bnot\s+exactly\b",
    r"\bhardly\b", r"\byeah,?\s+right\b", r"\bgreat,?\s+(?:another|wrong|just)\b", r"\bi\s+don'?t\s+think\b",
    r"\bnot\s+sure\b", r"\bnot\s+good\b", r"\bright\?\s*$", r"\balmost\b", r"\bnearly\b",
    r"\bbut\s+i\s+(?:was|wanted|meant|mean|kinda|kind\s+of|really|asked|need(?:ed)?|just)\b",
    r"(?:\w+n't|\b" + _NT + r"t)\s+(?:\w+\s+)?(?:right|correct|good|helpful|true)\b",
    r"\bright\s+(?:one|side|hand|there)\b", r"\ball\s+right\b",
)
_CLOSING = _rx(r"\bgood\s*bye\b", r"\bgood\s+night\b", r"\bno\s+thanks?\b", r"\bno,?\s+thank\s+you\b", r"\bthat'?s\s+all\b", r"\bnothing\s+else\b",
               r"\bbye\b", r"\bthat\s+will\s+be\s+all\b", r"\bthat'?s\s+enough\b", r"\bnever\s*mind\b")
_HEDGE = _rx(r"\bmaybe\b", r"\bperhaps\b", r"\bnot\s+sure\b", r"\bi\s+guess\b", r"\bhmm+\b", r"\bprobably\b",
             r"\bi\s+suppose\b", r"\bmight\b", r"\bkind\s+of\b", r"\bsort\s+of\b", r"\bi\s+don'?t\s+know\b",
             r"\bif\s+you\s+say\s+so\b", r"\bwhatever\b")
_QUESTION_START = re.compile(r"^\W*(?:what|which|who|where|when|why|how|is|are|can|could|does|do|did|and|"
                             r"what's|whats|tell|show|name|count|describe)\b", re.I)
_FOLLOW_UP = re.compile(r"^\W*(?:(?:oh+|ah+|ooh+|wow|ha(?:ha)*h?)\W+)?(?:yes|yep|yeah|ok|okay|right|correct|great|thanks?|thank\s+you|cool|good)\b"
                        r"[\s,.!-]+(?:(?:and|but|so|now)\b)?", re.I)


_STATEMENT = re.compile(r"(?:^|[.?!,;]\s*)(?:(?:uh+|um+|hmm+|hm+|erm|well|but|i\s+think|i\s+believe|clearly|"
                        r"(?:i'?m\s+)?(?:pretty\s+|quite\s+|fairly\s+|very\s+)?sure)[\s,]+)*"
                        r"(?:it'?s|its|it\s+is|that'?s|that\s+is|this\s+is|this\s+one\s+is|they'?re|actually|"
                        r"(?:the\s+)?label\s+says|it\s+says)\b", re.I)


_NO = r"(?:no+|nope|nah|naw)"
_LEAD = r"^\W*(?:(?:oh+|ah+|aw+|ha(?:ha)*h?|lol|wow|well)\W+)*"
# Openings that do not judge the answer, in the order they are tried. A reaction that starts with one is judged by
# what follows it; when nothing that follows carries a marker, the opening's own label holds. Real people say "no"
# without rejecting anything: surprise ("No way!"), reassurance ("no it's fine", "no worries"), agreement
# ("no doubt"), not knowing ("no idea"); and they sympathise ("oh no", "that's awful") without judging.
_OPENINGS: tuple[tuple[re.Pattern[str], Label, float, str], ...] = (
    (re.compile(_LEAD + r"(?:" + _NO + r"\W+)*no\s+(?:doubt|complaints)\b(?:\s+about\s+it)?\W*", re.I),
     Label.POSITIVE, 0.8, "agreement"),
    (re.compile(_LEAD + r"(?:" + _NO + r"\W+)*(?:no\s+(?:way|kidding|wonder|joke)|really\?|wow|whoa|woah|omg|"
                r"oh\s+my\s+(?:gosh|god|goodness|word))\b\W*", re.I),
     Label.NEUTRAL, 0.6, "surprise"),
    (re.compile(_LEAD + r"(?:" + _NO + r"\W+)*(?:no\s+(?:worries|problem|prob|biggie|offen[cs]e(?:\s+taken)?)|"
                r"not\s+a\s+(?:prob(?:lem)?|big\s+deal))\b\W*", re.I), Label.NEUTRAL, 0.6, "reassurance"),
    (re.compile(_LEAD + r"(?:" + _NO + r"\W+)+(?:no\s+)?(?:(?:it'?s|its|it\s+is|that'?s|thats|you'?re|youre|you\s+are|"
                r"ur|you|we'?re|i'?m|im)\s+)?(?:all\s+|totally\s+|really\s+|so\s+|perfectly\s+|completely\s+)?"
                r"(?:good|ok|okay|fine|alright|all\s+right|cool)\b(?!\s*(?:guess|try|attempt|effort)\b)\W*", re.I),
     Label.NEUTRAL, 0.6, "reassurance"),
    (re.compile(_LEAD + r"(?:" + _NO + r"\W+)+(?:i\s+(?:totally\s+)?(?:get\s+(?:it|that)|understand)|"
                r"don'?t\s+worry(?:\s+about\s+it)?|you(?:'?ll|\s+will)\s+be\s+(?:fine|ok|okay|alright|good)|"
                r"you\s+(?:can|could)\s+(?:totally\s+)?do\s+it|you'?ve\s+got\s+this|you\s+got\s+this)\b\W*", re.I),
     Label.NEUTRAL, 0.6, "reassurance"),
    # answering thanks ("yeah man anytime", "you're welcome"): not about an answer
    (re.compile(_LEAD + r"(?:(?:yeah|yes|yep|sure|of\s+course|no\s+problem)\W+)*(?:(?:man|dude|bro)\W+)?(?:any\s*time|"
                r"(?:you'?re|youre|you\s+are|ur)\s+(?:very\s+|so\s+|most\s+)?welcome|my\s+pleasure|"
                r"glad\s+(?:i\s+could|to)\s+help)\b\W*", re.I), Label.NEUTRAL, 0.6, "answers thanks"),
    (re.compile(_LEAD + r"(?:" + _NO + r"\W+)*no\s+(?:idea|clue)\b\W*", re.I), Label.NEUTRAL, 0.6, "does not know"),
    # a "no" that explains one's own question ("Why?" -> "no, just curious")
    (re.compile(_LEAD + r"(?:" + _NO + r"\W+)+(?:i'?m\s+|i\s+was\s+)?just\s+(?:curious|wondering|asking)\b\W*", re.I),
     Label.NEUTRAL, 0.6, "explains a question"),
    # dismay at bad news ("No! A tragedy.")
    (re.compile(_LEAD + r"(?:" + _NO + r"\W+)+(?:what\s+a|such\s+a|a|that'?s\s+a)\s+(?:tragedy|shame|bummer|pity)\b\W*", re.I),
     Label.NEUTRAL, 0.6, "sympathy"),
    (re.compile(_LEAD + r"(?:oh\s+no\b|(?:that'?s|thats|that\s+is|how|so|what\s+a|sounds)\s+(?:(?:so|really|too|pretty|"
                r"kinda|super)\s+)?(?:awful|terrible|horrible|sad|unfortunate|a\s+shame|too\s+bad|rough|tough|scary|"
                r"a\s+bummer|not\s+(?:good|healthy|fun|great|nice|too\s+bad|a\s+bad\s+thing|bad|easy|fair|funny|"
                r"(?:as|so|that|very|too)\s+(?!right\b|correct\b|true\b|it\b)\w+))|(?:not|no)\s+good|"
                r"poor\s+(?:thing|you|guy|girl)|sorry\s+to\s+hear(?:\s+that)?|that\s+sucks)(?!\s+(?:answer|guess))\b\W*",
                re.I), Label.NEUTRAL, 0.6, "sympathy"),
)
# "No kidding" / "no joke" agrees with an opinion ("That's impressive." -> "No kidding.") and is surprise at news
# ("It is a lynx." -> "no kidding"): an answer that evaluates (an evaluative word or an exclamation) is an opinion.
_NO_KIDDING = re.compile(_LEAD + r"no\s+(?:kidding|joke)\b", re.I)
_OPINION = re.compile(r"!|\b(?:good|great|bad|hard|difficult|easy|tough|rough|crazy|insane|impressive|amazing|awesome|"
                      r"terrible|awful|horrible|best|worst|boring|fun|funny|weird|strange|scary|expensive|cheap|"
                      r"ridiculous|annoying|stressful|exhausting|beautiful|cool|nice|lame|sad|hilarious|"
                      r"interesting|cute|gross|wild)\b", re.I)
# Agreement worded with a negation ("you're not wrong", "nothing wrong with that", "can't argue with that").
_POS_DOUBLE = _rx(
    r"\b(?:you'?re|you\s+are|that'?s|thats|it'?s)\s+not\s+wrong\b", r"^\W*not\s+wrong\b", r"\bnothing\s+wrong\s+with\b",
    r"\bcan'?t\s+argue\b", r"\bnot\s+a\s+doubt\b", r"\bcouldn'?t\s+agree\s+more\b", r"\bcan'?t\s+complain\b",
    r"^\W*(?:" + _NO + r"\W+)+(?:no\W+)*(?:i\s+think\s+)?(?:maybe\s+)?you(?:'?re|\s+are|\s+were|\s+got\s+it)\s+"
    r"(?:absolutely\s+|totally\s+|quite\s+|so\s+)?right\b",
    r"^\W*(?:" + _NO + r"\W+)+(?:me\s+(?:neither|either|nor)|same\s+here)\b",
    r"^\W*(?:" + _NO + r"\W+)+(?:that|it|this)\s+(?:(?:does|do|totally|definitely|really|actually)\s+)?makes?\s+"
    r"(?:a\s+lot\s+of\s+|total\s+|perfect\s+)?sense\b",
    r"^\W*(?:" + _NO + r"\W+)+(?:that'?s|thats|that\s+is)\s+(?:so\s+|very\s+)?(?:true|fair|a\s+(?:good|fair)\s+point)\b",
)
# A reply that starts with "no" agrees with an answer that was itself negative ("That's not good." -> "No, not
# good at all."; "high school doesn't count, right?" -> "nope, I wouldn't count that").
_NEGATIVE_POLARITY = re.compile(r"\b(?:not|never|nothing|neither|nor|none|nobody|cannot|bad|terrible|awful|horrible|"
                                r"dangerous|sad|worse|worst|boring)\b|\w+n't\b|\b(?:" + _NT + r")t\b", re.I)
_WRONGNESS = re.compile(r"\b(?:wrong|incorrect|mistaken?|not\s+(?:right|correct|true|it|that|what)|i\s+(?:meant?|said|asked|"
                        r"was\s+(?:asking|talking|thinking)))\b", re.I)
# An answer that apologises or voices a worry about the listener: a "no" to it reassures, it does not judge.
_APOLOGY = re.compile(r"\b(?:sorry|my\s+bad|apologi[sz]e|excuse\s+me|forgive\s+me|my\s+mistake|hope\s+you|"
                      r"(?:do\s+)?you\s+mind|i'?m\s+(?:boring|bothering|babbling)|don'?t\s+(?:hate|mind)|"
                      r"if\s+you\s+(?:don'?t|do\s+not))\b", re.I)
# An answer that asks about the listener's experience ("Have you ever seen X?"): "no, I haven't" answers that question,
# it does not judge the answer (a guess about the listener, "Are you a freshman?", is still judged).
_EXPERIENCE_QUESTION = re.compile(r"\b(?:have|did)\s+(?:you|u)\s+(?:ever\s+|already\s+|even\s+|yet\s+)?(?:seen|heard|tried|"
                                  r"been|watched|read|played|gone|visited|met|see|hear|try|watch|play|go|visit|meet)\b", re.I)
_OWN_NEGATION = re.compile(r"\b(?:i\s+(?:haven'?t|havent|have\s+not|didn'?t|didnt|did\s+not|never)|not\s+yet|never)\b", re.I)
# An answer that only hedges ("I am not sure.") states nothing a "no" could agree with.
_HEDGED_ANSWER = re.compile(r"\b(?:not\s+sure|don'?t\s+know|do\s+not\s+know|no\s+idea|can'?t\s+tell|cannot\s+tell)\b",
                            re.I)
# Words no bag-of-words check should overrule: the learned check leaves labels that rest on them alone.
_UNAMBIGUOUS = _rx(r"\bwrong\b", r"\bincorrect\b", r"\bnot\s+(?:right|correct|it)\b", r"\bforget\s+it\b",
                   r"\buseless\b", r"\bthank(?:s|\s+you)\b", r"\bcorrect\b", r"\bexactly\b",
                   r"\bthat'?s\s+(?:right|it|the\s+one)\b", r"\b(?:doesn'?t|don'?t)\s+(?:sound|seem|look)\s+right\b")
_PARTIAL = re.compile(r"^\W*(?:almost|close(?!\s+(?:by|to|up)\b)|nearly|not\s+quite|getting\s+warmer|warmer)\b", re.I)
_BUT_COUNTER = re.compile(r"\bbut\s+(?=(?:it'?s|its|it\s+is|that'?s|thats|this\s+is|they'?re|actually)\b)", re.I)
_ECHO = re.compile(r"^\W*(?:no+|not|really|wait)\b[^?.!]{0,25}\?+\W*$", re.I)
_APPROVAL_LEAD = re.compile(r"^\W*(?:(?:oh+|ah+|ha(?:ha)*h?|lol|wow)\W+)?(?:(?:that'?s|thats|that\s+is|sounds|so)\s+)?"
                            r"(?:(?:so|really|way|pretty|super|very)\s+)?(?:cool|nice|great|awesome|neat|sweet|amazing|"
                            r"good|fun|exciting)(?:\s+(?:man|dude|bro))?(?:\s*[,.!;]+|\s+(?:so|and|what|how|where|"
                            r"when|why|who|which|did|do|does|are|is|have|has)\b)", re.I)
_FIRST_SENTENCE = re.compile(r"(?<=[.!?])\s+|\s{2,}")


class LexicalFeedbackDecoder:
    """Rules over the reaction text; no model. Confidences: 0.9 explicit, 0.75 implicit, 0.5-0.6 weak.

    A learned check (`ilearn.dialogue.reaction_check`, hashed words, numpy) may veto a positive or negative label
    without a correction: when it gives that label a probability below `veto`, the decoder abstains (neutral).
    `check=None` keeps the rules alone.

    Rephrasings are questions close to the previous one: by shared content words, or, when a
    `text_embedder` is given, by the cosine of the two questions' embeddings (catches rewordings).
    """

    def __init__(self, *, rephrase_overlap: float = 0.6, rephrase_similarity: float = 0.55,
                 text_embedder: TextEmbedder | None = None, check: ReactionClassifier | None | str = "default",
                 veto: float = 0.2):
        if not 0.0 <= veto < 1.0:
            raise InvalidInput("veto must lie in [0, 1)")
        self.rephrase_overlap = rephrase_overlap
        self.rephrase_similarity = rephrase_similarity
        self.text_embedder = text_embedder
        self.check = default_classifier() if check == "default" else check
        self.veto = veto

    def decode(self, turns: Sequence[Turn]) -> Feedback | None:
        """See `FeedbackDecoder.decode`."""
        return decode_exchange(self.judge, turns)

    def _is_rephrasing(self, ex: Exchange, text: str) -> tuple[bool, float]:
        if not ex.question or ex.new_image:
            return False, 0.0
        sim = overlap(text, ex.question)
        if sim >= self.rephrase_overlap:
            return True, sim
        if self.text_embedder is not None:
            a, b = self.text_embedder.embed_texts([text, ex.question])
            cos = float((a * b).sum())
            return cos >= self.rephrase_similarity, cos
        return False, sim

    def judge(self, ex: Exchange) -> Feedback:
        """Label one exchange: the rules, then the learned check, which may turn their label into an abstention."""
        fb = self.rules(ex)
        # agreement worded with a negation ("you're not wrong") is beyond a bag of words: the rule's phrases decide
        if (self.check is None or fb.label == Label.NEUTRAL or fb.correction
                or fb.rationale == "agreement worded with a negation" or _UNAMBIGUOUS.search(ex.reaction)):
            return fb
        p = self.check.probs(ex.reaction)[fb.label.value]
        if p < self.veto:
            return _feedback(Label.NEUTRAL, 0.5, None, f"{fb.rationale}, but the learned check gives it {p:.2f}")
        return fb

    def rules(self, ex: Exchange) -> Feedback:
        """Label one exchange by the rules alone."""
        text = _clean(ex.reaction).strip()
        for pattern, label, confidence, why in _OPENINGS:
            match = pattern.match(text)
            if match:
                rest = text[match.end():].strip()
                fb = self.rules(replace(ex, reaction=rest)) if rest else None
                if fb is None or fb.label == Label.NEUTRAL:
                    if _NO_KIDDING.match(text) and _OPINION.search(ex.answer):
                        return _feedback(Label.POSITIVE, 0.7, None, "agrees with an opinion")
                    return _feedback(label, confidence, None, why)
                return fb
        return self._judge_text(ex, text)

    def _judge_text(self, ex: Exchange, text: str) -> Feedback:
        low = text.lower()
        if _ECHO.match(low) and len(_words(low)) <= 4 and not _WRONGNESS.search(low):
            return _feedback(Label.NEUTRAL, 0.6, None, "surprise")  # "No?", "Not even yogurt?", "Really?"
        if _POS_DOUBLE.search(low):
            counter = _BUT_COUNTER.search(text)
            span = extract_correction(text[counter.end():], ex.answer) if counter else None
            if span:
                return _feedback(Label.NEGATIVE, 0.8, span, "counter-statement after agreement")
            return _feedback(Label.POSITIVE, 0.85, None, "agreement worded with a negation")
        if re.match(r"^\W*" + _NO + r"\b", low) and _APOLOGY.search(ex.answer) and not _WRONGNESS.search(low):
            return _feedback(Label.NEUTRAL, 0.6, None, "reassurance")  # "sorry, my bad" -> "nah, not at all"
        if (re.match(r"^\W*" + _NO + r"\b", low) and _EXPERIENCE_QUESTION.search(ex.answer) and _OWN_NEGATION.search(low)
                and not _WRONGNESS.search(low) and extract_correction(text, ex.answer) is None):
            return _feedback(Label.NEUTRAL, 0.6, None, "answers the answer's question")  # "Have you seen it?" -> "no I haven't"
        if (re.match(r"^\W*" + _NO + r"\b", low) and _NEGATIVE_POLARITY.search(_HEDGED_ANSWER.sub("", ex.answer))
                and _NEGATIVE_POLARITY.search(re.sub(r"^\W*(?:" + _NO + r"\b\W*)+", "", low))
                and not _WRONGNESS.search(low) and extract_correction(text, ex.answer) is None):
            return _feedback(Label.POSITIVE, 0.8, None, "agrees with a negative statement")
        closing = bool(_CLOSING.search(low))
        neg = bool(_NEG_STRONG.search(low)) or bool(_NEG_EVAL.search(low) and not _AGREE_START.match(low))
        if neg and closing and re.match(r"^\W*no,?\s+thank", low) and not re.search(r"wrong|incorrect|not\s+right", low):
            neg = False  # "no thanks, that's all": declining more help, not rejecting the answer
        pos = bool(_POS.search(low)) and not _POS_NEGATED.search(low)
        is_question = text.endswith("?") or bool(_QUESTION_START.match(low))
        hedge = bool(_HEDGE.search(low))
        if neg:
            return _feedback(Label.NEGATIVE, 0.9, extract_correction(text, ex.answer), "negative marker")
        if _PARTIAL.match(low):
            return _feedback(Label.NEGATIVE, 0.8, extract_correction(text, ex.answer), "partial acceptance")
        if pos:
            counter = _BUT_COUNTER.search(text)
            span = extract_correction(text[counter.end():], ex.answer) if counter else None
            if span and not (_content(span) <= _content(ex.answer)):
                return _feedback(Label.NEGATIVE, 0.8, span, "counter-statement after a positive word")
        # a statement naming something ("it's X", "the label says X"): a correction, or a confirmation
        span = extract_correction(text, "") if _STATEMENT.search(low) and not closing else None
        if span is not None:
            if answers_match(span, ex.answer) or _content(span) <= _content(ex.answer):
                return _feedback(Label.POSITIVE, 0.8, None, "restates the answer")
            if not pos:
                return _feedback(Label.NEGATIVE, 0.8, span, "counter-statement")
        first = _FIRST_SENTENCE.split(text.strip(), maxsplit=1)[0].lower()
        # an approval that opens the reply and then moves on ("That's cool, what do you play?"): the approval decides,
        # a hedge or question after it does not undo it
        approval = pos and bool(_APPROVAL_LEAD.match(low))
        leads = approval or (pos and not first.rstrip().endswith("?") and bool(_POS.search(first)))
        if approval or pos and not hedge and (_FOLLOW_UP.match(low) or not is_question or leads):
            return _feedback(Label.POSITIVE, 0.9 if not is_question else 0.8, None, "positive marker")
        if is_question and not pos:
            rephrased, sim = self._is_rephrasing(ex, text)
            if rephrased:
                return _feedback(Label.NEGATIVE, 0.75, None, f"rephrasing (similarity {sim:.2f})")
        if closing:
            return _feedback(Label.NEUTRAL, 0.6, None, "closing")
        if pos and hedge:
            return _feedback(Label.NEUTRAL, 0.5, None, "hedged positive")
        if is_question or ex.new_image:
            return _feedback(Label.NEUTRAL, 0.6, None, "topic change")
        return _feedback(Label.NEUTRAL, 0.5, None, "no marker")


def _feedback(label: Label, confidence: float, correction: str | None, why: str) -> Feedback:
    source = FeedbackSource.EXPLICIT if correction else FeedbackSource.IMPLICIT
    return Feedback(label=label, confidence=confidence, correction=correction, source=source, rationale=why)


# ---------------------------------------------------------------------------------------------
# model decoder (ReSpect)
# ---------------------------------------------------------------------------------------------

JUDGE_SYSTEM = ("You read a short chat between a user and an assistant and say how the user reacted to the "
                "assistant's answer.")
JUDGE_TEMPLATE = ('The user asked: "{question}"\nThe assistant answered: "{answer}"\n'
                  'The user then said: "{reaction}"\n'
                  "Was the user's reaction to the answer positive, neutral or negative? Answer with one word.")
DEFAULT_VERBALIZER: dict[Label, str] = {Label.POSITIVE: "positive", Label.NEUTRAL: "neutral",
                                        Label.NEGATIVE: "negative"}


def _softmax(scores: Sequence[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


class ModelFeedbackDecoder:
    """ReSpect: the VLM judges the reaction; the label is the best-scored of three label words.

    With `calibrate`, the label words' log-probabilities on a content-free reaction ("N/A") are
    subtracted first (contextual calibration), which removes a small model's prior for one word.
    Corrections come from `extract_correction` on the reaction text.
    """

    def __init__(self, vlm: VisionLanguageModel, *, calibrate: bool = True,
                 verbalizer: dict[Label, str] | None = None, template: str = JUDGE_TEMPLATE):
        self.vlm = vlm
        self.calibrate = calibrate
        self.verbalizer = dict(verbalizer or DEFAULT_VERBALIZER)
        self.template = template

    def decode(self, turns: Sequence[Turn]) -> Feedback | None:
        """See `FeedbackDecoder.decode`."""
        return decode_exchange(self.judge, turns)

    def _scores(self, ex: Exchange) -> list[float]:
        prompt = self.template.format(question=_clip(ex.question), answer=_clip(ex.answer),
                                      reaction=_clip(ex.reaction))
        messages = [Message("system", JUDGE_SYSTEM), Message("user", prompt)]
        return list(self.vlm.score(messages, [self.verbalizer[lab] for lab in LABELS]))

    def label_probs(self, ex: Exchange) -> dict[Label, float]:
        """Probability of each label for one exchange (after calibration)."""
        scores = self._scores(ex)
        if self.calibrate:
            prior = self._scores(Exchange(question=ex.question, answer=ex.answer, reaction="N/A"))
            scores = [s - p for s, p in zip(scores, prior, strict=True)]
        return dict(zip(LABELS, _softmax(scores), strict=True))

    def judge(self, ex: Exchange) -> Feedback:
        """Label one exchange."""
        probs = self.label_probs(ex)
        label = max(probs, key=probs.__getitem__)
        correction = extract_correction(ex.reaction, ex.answer) if label == Label.NEGATIVE else None
        return _feedback(label, probs[label], correction, "model judge " + ", ".join(
            f"{k.value}={v:.2f}" for k, v in probs.items()))


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# hybrid
# ---------------------------------------------------------------------------------------------


class HybridFeedbackDecoder:
    """Lexical rules decide when they fire with confidence >= `lexical_confidence`; the model decides
    the rest, except that a positive needs both to agree (a false positive teaches the model its
    mistakes), otherwise the label falls back to neutral."""

    def __init__(self, model: ModelFeedbackDecoder, lexical: LexicalFeedbackDecoder | None = None,
                 *, lexical_confidence: float = 0.75):
        self.model = model
        self.lexical = lexical or LexicalFeedbackDecoder()
        self.lexical_confidence = lexical_confidence

    def decode(self, turns: Sequence[Turn]) -> Feedback | None:
        """See `FeedbackDecoder.decode`."""
        return decode_exchange(self.judge, turns)

    def judge(self, ex: Exchange) -> Feedback:
        """Label one exchange."""
        lex = self.lexical.judge(ex)
        if lex.confidence >= self.lexical_confidence:
            return lex
        mod = self.model.judge(ex)
        if mod.label == Label.POSITIVE and lex.label != Label.POSITIVE:
            return _feedback(Label.NEUTRAL, 0.5, None, "model positive without lexical support")
        if mod.label == Label.NEGATIVE and mod.correction is None and lex.correction:
            return _feedback(Label.NEGATIVE, mod.confidence, lex.correction, mod.rationale)
        return mod


# ---------------------------------------------------------------------------------------------
# factory
# ---------------------------------------------------------------------------------------------

# The decoders registered in `ilearn.plugins` (kind "decoder"), by FeedbackConfig.method.
def lexical_decoder(config: FeedbackConfig, vlm: VisionLanguageModel | None = None,
                    text_embedder: TextEmbedder | None = None) -> FeedbackDecoder:
    """Decoder "lexical": rules (the model is not used; `text_embedder` recognises reworded rephrasings)."""
    return LexicalFeedbackDecoder(rephrase_overlap=config.rephrase_overlap,
                                  rephrase_similarity=config.rephrase_similarity, text_embedder=text_embedder)


def model_decoder(config: FeedbackConfig, vlm: VisionLanguageModel | None = None,
                  text_embedder: TextEmbedder | None = None) -> FeedbackDecoder:
    """Decoder "model": the VLM judges the reaction (ReSpect)."""
    if vlm is None:
        raise InvalidInput("feedback.method=model needs a vision-language model")
    return ModelFeedbackDecoder(vlm, calibrate=config.calibrate)


def hybrid_decoder(config: FeedbackConfig, vlm: VisionLanguageModel | None = None,
                   text_embedder: TextEmbedder | None = None) -> FeedbackDecoder:
    """Decoder "hybrid": confident lexical rules decide, the VLM judges the rest."""
    if vlm is None:
        raise InvalidInput("feedback.method=hybrid needs a vision-language model")
    lexical = lexical_decoder(config, vlm, text_embedder)
    assert isinstance(lexical, LexicalFeedbackDecoder)
    return HybridFeedbackDecoder(ModelFeedbackDecoder(vlm, calibrate=config.calibrate), lexical,
                                 lexical_confidence=config.lexical_confidence)


class ThresholdedDecoder:
    """Wraps a decoder: a label decoded with confidence below `min_confidence` becomes neutral."""

    def __init__(self, inner: FeedbackDecoder, min_confidence: float):
        self.inner = inner
        self.min_confidence = min_confidence

    def decode(self, turns: Sequence[Turn]) -> Feedback | None:
        """See `FeedbackDecoder.decode`."""
        fb = self.inner.decode(turns)
        if fb is not None and fb.label != Label.NEUTRAL and fb.confidence < self.min_confidence:
            return Feedback(Label.NEUTRAL, fb.confidence, None, FeedbackSource.IMPLICIT,
                            f"below min_confidence: {fb.rationale}")
        return fb


#: Label noise measured on real replies (issue 19: the pre-issue rules on 228 real replies): the share of each true
#: label decoded as each other label, from the issue's recall figures (positive 0.467, neutral 0.687, negative
#: 0.824) with the misses split by the issue's precision figures. Use it with `NoisyDecoder` to see how a recipe
#: degrades when the decoder errs as it did on real people.
ISSUE19_CONFUSION: dict[Label, dict[Label, float]] = {
    Label.POSITIVE: {Label.NEUTRAL: 0.45, Label.NEGATIVE: 0.083},
    Label.NEUTRAL: {Label.POSITIVE: 0.03, Label.NEGATIVE: 0.283},
    Label.NEGATIVE: {Label.POSITIVE: 0.03, Label.NEUTRAL: 0.146},
}


class NoisyDecoder:
    """Wraps a decoder and replaces its label, with the probabilities of `confusion[label]`, by another label (a
    seeded `random.Random`): label noise injected on purpose, to measure how a learning recipe degrades when the
    decoder errs (issue 19, item 4). A label changed to negative carries no correction; one changed away from
    negative drops its correction. Where the wrapped decoder is nearly right (simulated users), the injected rates
    are the decoder's error rates."""

    def __init__(self, inner: FeedbackDecoder, confusion: dict[Label, dict[Label, float]] | None = None,
                 *, seed: int = 0):
        import random

        self.inner = inner
        self.confusion = confusion if confusion is not None else ISSUE19_CONFUSION
        for label, row in self.confusion.items():
            if any(p < 0 for p in row.values()) or sum(row.values()) > 1 or label in row:
                raise InvalidInput(f"confusion for {label.value}: probabilities of other labels, summing to <= 1")
        self.rng = random.Random(seed)
        self.flipped = 0

    def decode(self, turns: Sequence[Turn]) -> Feedback | None:
        """See `FeedbackDecoder.decode`."""
        fb = self.inner.decode(turns)
        if fb is None:
            return None
        draw, acc = self.rng.random(), 0.0
        for label, p in self.confusion.get(fb.label, {}).items():
            acc += p
            if draw < acc:
                self.flipped += 1
                return Feedback(label, fb.confidence, None, FeedbackSource.IMPLICIT,
                                f"injected noise ({fb.label.value} -> {label.value}): {fb.rationale}")
        return fb


def make_decoder(config: FeedbackConfig, vlm: VisionLanguageModel | None = None,
                 text_embedder: TextEmbedder | None = None) -> FeedbackDecoder:
    """The decoder that `config.method` names, with the `min_confidence` floor applied.

    `text_embedder` (optional, e.g. the retrieval memory's MiniLM) lets the lexical rules recognise
    reworded rephrasings of the previous question.
    """
    from ilearn import plugins

    decoder = plugins.create("decoder", config.method, config, vlm, text_embedder)
    return ThresholdedDecoder(decoder, config.min_confidence)
