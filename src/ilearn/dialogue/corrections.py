"""Answers in reactions: words of any script, answer normalisation and comparison, and the corrected answer a user
gives ("no, that's the ibuprofen" -> "ibuprofen"; `extract_correction`), by patterns."""

from __future__ import annotations

import re
import unicodedata

# A word: letters, digits and combining marks of any script (Cyrillic, CJK, Arabic, Hebrew, Devanagari...),
# optionally with an English clitic ("it's").
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_STOP = frozenset(
    "a an the is are was were be it its it's this that these those what which who whom how why where when "
    "of on in at to for with by from and or do does did can could would should will please me my i you your "
    "there here there's what's one thing object item some any kind sort tell say about".split()
)


def clean_text(text: str) -> str:
    """NFC-composed text (a decomposed "é" becomes one letter) with typographic apostrophes made plain."""
    return unicodedata.normalize("NFC", text).replace("\u2019", "'").replace("\u2018", "'")


def words_of(text: str) -> list[str]:
    # combining marks (Hebrew points, Arabic harakat, Indic vowel signs) are not \w: drop them before splitting
    text = "".join(ch for ch in clean_text(text).lower() if not unicodedata.category(ch).startswith("M"))
    return _WORD.findall(text)


def content_words(text: str) -> set[str]:
    return {w for w in words_of(text) if w not in _STOP and len(w) > 1}


def overlap(a: str, b: str) -> float:
    """Share of the smaller set of content words that the two texts have in common (0..1)."""
    wa, wb = content_words(a), content_words(b)
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
    text = clean_text(text).strip().strip("\"'`“”‘’«»「」『』").strip()
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
FOREIGN_NO = r"(?:нет|ні|nein|non|não|nao|لا|לא|いいえ|いや|아니요|아니오|아니|不是|不对|不對)"
_FOREIGN_INTRO = r"(?:это|то|das\s+ist|es\s+ist|c'est|es|è|é|是|هذا|هذه|إنه|إنها|זה|זאת)"
_SEP = r"\s*[,，、。.!！،]\s*"
_COPULA = re.compile(r"(?<=\S)(?:です|でした|だよ|だ|입니다|이에요|예요|이야)$")
_CORRECTION_PATTERNS: tuple[re.Pattern[str], ...] = (
    # "Нет, это B" / "No, es B" / "不对，是B" (the intro is needed after a plain "no")
    re.compile(r"^\W*(?:" + FOREIGN_NO + r"|no)" + _SEP + _FOREIGN_INTRO + r"\s*" + _SPAN, re.I),
    # "いいえ、Bです" / "Нет, B"
    re.compile(r"^\W*" + FOREIGN_NO + _SEP + _SPAN, re.I),
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
    "ha hah heh hehe haha hahaha lol lmao worries problem prob kidding way idea clue doubt complaints wonder sure true healthy sad "
    "nice great awesome interesting lame warmer guess crazy insane amazing lot wild weird hilarious cute adorable "
    "beautiful gorgeous impressive incredible unbelievable fun sweet neat hard tough rough scary boring pointless "
    "absurd annoying frustrating question bad best tragedy shame bummer pity curious wondering joking saying asking "
    "kidding".split())
# Words of a clause, not of a name: a span with one of them is a sentence ("they would not", "fine he deserved it").
_CLAUSE = frozenset(
    "is are was were am be been being have has had do does did don't doesn't didn't will would can could should "
    "won't wouldn't can't isn't aren't wasn't going gonna think know mean meant said say deserved get got "
    "not forget mind gotta wanna go goes went gone come came need needs want wants feel felt seem seems sound sounds "
    "love hate hope wish try tried called like".split())
# Pro-forms and time adverbs: a span with one of them points back at something ("before then"), it names nothing.
_DEICTIC = frozenset("then there anyway anymore yet either too already though that those these them".split())


# A span made only of these words names what the user wants to know ("wrong. name?", "wrong. name of this?"), not
# an answer.
_FACET_ONLY = frozenset("name names called dose dosage use uses used purpose for the its it what how much of this "
                        "thing one object item".split())


def valid_answer(span: str) -> bool:
    words = words_of(span)
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
    text = clean_text(reaction).strip()
    for pattern in _CORRECTION_PATTERNS:
        for match in pattern.finditer(text):
            span = normalise_answer(match.group("ans"))
            if valid_answer(span) and not (wrong_answer and answers_match(span, wrong_answer)):
                return span
    return None


# ---------------------------------------------------------------------------------------------
