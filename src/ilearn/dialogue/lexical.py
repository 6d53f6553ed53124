"""The lexical feedback decoder: rules over the reaction text (thanks / "no, it's X" / frustration / a rephrased
question / a topic change), no model; a learned check (`ilearn.dialogue.reaction_check`) may veto a label.
`decode_exchange` is the `decode` every decoder shares (the follow-up rule)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from ilearn.dialogue.corrections import (
    FOREIGN_NO,
    answers_match,
    clean_text,
    content_words,
    extract_correction,
    normalise_answer,
    overlap,
    valid_answer,
    words_of,
)
from ilearn.dialogue.exchange import Exchange, exchange_from_turns, make_feedback
from ilearn.dialogue.reaction_check import ReactionClassifier, default_classifier
from ilearn.errors import InvalidInput
from ilearn.models.base import TextEmbedder
from ilearn.types import Feedback, Label, Turn


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
        if bare.rationale == "no marker" and valid_answer(span) and not answers_match(span, ex.answer):
            return make_feedback(Label.NEGATIVE, 0.8, span, "answer given after being asked")
    return None



def _rx(*phrases: str) -> re.Pattern[str]:
    return re.compile(r"(?:" + "|".join(phrases) + r")", re.I)


# "n't" written without its apostrophe ("dont", "isnt"): the words, so that "development" or "meant" is no negation.
_NT = r"(?:do|does|did|is|are|was|were|can|could|would|should|wo|have|has|had|ai|must|might|need)n"
# After "that's not" / "not a": a judgement of the topic ("that's not a good way to play", "not a big deal"), unless
# it is about the answer ("not a good answer").
_NOT_OPINION = (r"(?!\s+(?:(?:a|an|the)\s+)?(?:(?:very|so|that|too|to|really|particularly|super)\s+(?!right\b|correct\b|"
                r"true\b|it\b)\w+|good|great|bad|nice|fun|easy|hard|fair|smart|wise|healthy|safe|normal|cool|big\s+deal|"
                r"best|worst|huge|bad\s+thing)\b"
                r"(?!\s+(?:answer|guess|reply)))")
# Words of frustration ("useless", "terrible"): about the answer, unless the reply opens by agreeing ("yeah that
# would be terrible" judges the topic).
_NEG_EVAL = re.compile(r"\b(?:useless|stupid|rubbish|garbage|terrible|awful|hopeless|pathetic|ridiculous)\b", re.I)
_AGREE_START = re.compile(r"^\W*(?:(?:oh+|ah+|ha(?:ha)*h?|lol|well)\W+)*(?:yes|yeah|yea|yep|yup|ya|true|exactly|"
                          r"totally|definitely|i\s+agree|agreed)\b", re.I)
# "what?" at the end: confusion at the answer ("sorry, what?", "it's a what?"), unless it asks for examples ("like
# what?", "such as what?") or for the rest of the answer after a preposition ("waiting for what?", "since what?").
_WHAT_ALONE = "".join(rf"(?<!\b{w} )" for w in ("like", "such as", "since", "about", "for", "with", "from", "than",
                                                "after", "before", "until", "of", "to", "at", "on", "by", "in")) \
    + r"\bwhat\?+!*$"
_NEG_STRONG = _rx(
    r"\bwrong\b", r"\bincorrect\b", r"\bnot\s+(?:quite\s+)?(?:right|correct|true|it|that)\b",
    r"\b(?:isn'?t|is\s+not|wasn'?t|ain'?t)\s+(?:right|correct|it|true|a|an|the|what)\b",
    r"\bthat'?s\s+not\b" + _NOT_OPINION, r"\bit'?s\s+not\b" + _NOT_OPINION, r"\bmistake[n]?\b", r"\byou'?re\s+wrong\b",
    r"^\W*(?:no+|nope|nah|negative)\b(?!\s*(?:thanks|thank|problem|worries|need|doubt|one\b|body\b|matter\b))",
    r"^\W*" + FOREIGN_NO + r"(?=[\s,，、。.!！،])",
    r"\bfor\s+nothing\b", r"\bnot\s+(?:what\s+i|helpful|useful)\b", r"\bmakes?\s+no\s+sense\b",
    r"\bnonsense\b", r"\bnot\s+even\s+close\b", _WHAT_ALONE, r"\bare\s+you\s+(?:even|blind|kidding|serious|sure)\b",
    r"\b(?:useless|stupid|rubbish|garbage|terrible|awful|hopeless|pathetic|ridiculous|bad)\s+(?:answer|guess|reply|job)\b",
    r"\bugh+\b",
    r"\bcome\s+on\b", r"\bseriously\b", r"\btry\s+again\b", r"\bagain\?", r"\bi\s+(?:said|asked|meant)\b",
    r"\bmy\s+question\s+was\b", r"\blet\s+me\s+rephrase\b", r"\bdoesn'?t\s+look\s+like\b", r"\bnot\s+an?\b" + _NOT_OPINION,
    r"\bthat'?s\s+(?:a|an)\s+\w+,?\s+not\b", r"\bno\s+it'?s\b", r"\bactually,?\s+(?:it|that)'?s\b",
    r"\bnot\s+\w+\s+but\b", r"\bdid\s*n'?t\s+(?:ask|help|answer)\b", r"\bdon'?t\s+think\s+so\b",
    r"\bhow\s+(?:do|did|could)\s+you\s+(?:get|miss)\b", r"\bwhy\s+would\s+you\b", r"\bsigh\b", r"\bfacepalm\b",
    r"\bnot\s+(?:really|quite)\b", r"^\W*not\s+(?!bad\b|too\s+bad\b|to\s+bad\b|(?:me|us)\b|(?:too\s+|so\s+|very\s+|that\s+)?(?:much|many|sure|long)\b|a\s+lot\b)"
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
    r"^\W*(?:(?:oh+|ah+|ha(?:ha)*h?|lol|well|ok|okay)\W+)*(?:yes|yep|yeah|yea|yup|ya|aye|indeed|sure|absolutely|"
    r"exactly|precisely|true)\b", r"^\W*(?:oh\W+)?totally(?:\W*$|\s+(?:agree|true|right)\b)", r"\bexactly\b",
    r"\bi\s+(?:really\s+|totally\s+|do\s+)?(?:loved?|liked?|support(?:ed)?)\s+(?:that|it|this|those|them|yours|the)\b",
    r"\b(?:that'?s|thats|that\s+is)\s+(?:so\s+|really\s+|pretty\s+|very\s+|super\s+)?(?:deep|profound|insightful|wise)\b",
    r"\b(?:dope|rad|legit)\b", r"^\W*(?:(?:that'?s|thats|that\s+is|it'?s|its)\s+)?not\s+(?:too\s+|to\s+|so\s+|that\s+)?bad\b",
    r"\bperfect\b", r"\bgreat\b", r"\bawesome\b", r"\bexcellent\b", r"\bgood\s+(?:job|one|answer|work)\b",
    r"\bwell\s+done\b", r"\bnice\b", r"\bspot\s+on\b", r"\bthat(?:'?s|\s+is)\s+(?:it|the\s+one|true|right)\b",
    r"\bgot\s+it\b", r"\bglad\s+to\s+hear\b", r"^\W*(?:oh\W+)?(?:that'?s|thats|that\s+is)\s+(?:so\s+|really\s+|pretty\s+)?fun\b",
    r"\bmakes\s+(?:(?:so\s+)?much\s+|a\s+lot\s+)?(?:more\s+)?sense\b", r"\bhelpful\b", r"\bbrilliant\b", r"\bcool\b", r"\bappreciate", r"\byou\s+got\s+it\b",
    r"\bbingo\b", r"\bnailed\s+it\b", r"\bthat\s+helps\b", r"\bi\s+knew\s+it\b", r"\bconfirmed\b", r"\bbang\s+on\b",
    r"\bthat\s+matches\b", r"\bagreed\b", r"\bgood\b(?!\s*(?:bye|night|morning|afternoon|evening|luck)\b)", r"\bspot-on\b", r"\byes\b",
    r"\bsame\s+(?:here|thing)\b", r"^\W*(?:oh\s+|yeah\s+)?same\b", r"\bme\s+(?:too|neither|either)\b", r"\bi\s+agree\b",
    r"^\W*mine\s+(?:too|as\s+well)\b",
    r"\bi\s+thought\s+(?:the\s+same|so)\b", r"\bfair\s+enough\b", r"\bgood\s+point\b", r"\bgotcha\b",
    r"\bi'?ve\s+heard\b", r"\bof\s+course\b", r"\bduh\b", r"\bsweet\b", r"\bneat\b", r"^\W*oh\s+(?:yeah|yes|right)\b",
    r"\bthat\s+counts\b", r"\bsounds\s+(?:(?:so|really|super|pretty)\s+)?(?:good|fun|great|cool|awesome|interesting|amazing|nice|neat|"
    r"fantastic|wonderful|delicious)\b", r"\bthat'?s\s+what\s+i'?m\s+talking\s+about\b", r"\bwhat\s+i\s+thought\b",
    r"\bheck\s+(?:yeah|yes|ya)\b", r"\bi\s+feel\s+(?:ya|you)\b", r"\bcongrat(?:s|ulations)\b", r"\bthere\s+you\s+go\b",
    r"\bsame\s+story\b", r"\b(?:ye+s{2,}|ya+s{2,}|ya{2,}s+)\b", r"\bsounds?\W+like\W+(?:a\W+)?(?:paradise|heaven|a\s+plan|a\s+dream|fun)\b",
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
    (re.compile(_LEAD + r"(?:" + _NO + r"\W+)*(?:no\s+(?:idea|clue)|(?:i'?ve\s+|i\s+have\s+)?never\s+(?:even\s+)?heard\s+"
                r"(?:of\s+)?(?:it|that|them|this|those|him|her)?|i\s+(?:haven'?t|havent|have\s+not|don'?t|dont|do\s+not)\s+"
                r"(?:even\s+)?(?:heard\s+of|know)\s+(?:it|that|them|this|those|him|her))\b\W*", re.I),
     Label.NEUTRAL, 0.6, "does not know"),
    # a "no" that explains one's own question ("Why?" -> "no, just curious")
    (re.compile(_LEAD + r"(?:" + _NO + r"\W+)+(?:i'?m\s+|i\s+was\s+)?just\s+(?:curious|wondering|asking)\b\W*", re.I),
     Label.NEUTRAL, 0.6, "explains a question"),
    # dismay at bad news ("No! A tragedy.")
    (re.compile(_LEAD + r"(?:" + _NO + r"\W+)+(?:what\s+a|such\s+a|a|that'?s\s+a)\s+(?:tragedy|shame|bummer|pity)\b\W*", re.I),
     Label.NEUTRAL, 0.6, "sympathy"),
    (re.compile(_LEAD + r"(?:oh\s+no\b|(?:that'?s|thats|that\s+is|how|so|what\s+a|sounds)\s+(?:(?:so|really|too|pretty|"
                r"kinda|super)\s+)?(?:awful|terrible|horrible|sad|unfortunate|a\s+shame|too\s+bad|rough|tough|scary|"
                r"a\s+bummer|not\s+(?:good|healthy|fun|great|nice|easy|fair|funny|"
                r"(?:as|so|that|very|too)\s+(?!right\b|correct\b|true\b|it\b|bad\b)\w+))|(?:not|no)\s+good|"
                r"poor\s+(?:thing|you|guy|girl)|sorry\s+to\s+hear(?:\s+that)?|that\s+sucks)(?!\s+(?:answer|guess))\b\W*",
                re.I), Label.NEUTRAL, 0.6, "sympathy"),
)
# An answer that complains ("I'm really bad at history", "the music's kinda lame"): a groan back is sympathy, not
# frustration with the answer (the robot's answers never complain, so there "ugh" stays a rejection).
_UGH = re.compile(_LEAD + r"ugh+\b", re.I)
_COMPLAINT = re.compile(r"\b(?:bad|worse|worst|hate|hated|lame|sucks?|sucked|tired|sick|awful|terrible|horrible|"
                        r"boring|stressful|exhausting|annoying|painful|draining|dragging|struggling)\b", re.I)
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
# A question that opens with "no" / "not" as a determiner ("No cannibalism at the BBQ?", "Not the Bible?!"): surprise
# or a question of its own, never a rejection that names a correction ("No, is it X?" and "no it's X?" excluded).
_NO_QUESTION = re.compile(r"^\W*(?:no|not)\s+(?!(?:it|that|this|its|thats|i|i'?m|im|we|you|he|she|they|there)\b|"
                          r"(?:it|that|we|you|they|there)'\w+)[^,?.!]{1,60}\?+\W*$",
                          re.I)
# An answer that offers or suggests ("leave it open if you want", "unless you want to go", "want to switch?"): a "no"
# with more to say declines the offer, it does not judge the answer.
_OFFER = re.compile(r"\b(?:if\s+you\s+(?:want|like|wish|prefer)|unless\s+you\s+(?:want|would)|would\s+you\s+like|"
                    r"do\s+you\s+want|(?:wanna|want\s+to)\b[^.!?]*\?|let'?s|shall\s+we|should\s+we)\b", re.I)
# Approval of what the answer named, after a "no" that answered something else ("No, I haven't, sounds neat",
# "Nope! sounds interesting though"); approval of the attempt ("good guess though") is a rejection's politeness.
_TOPIC_APPROVAL = re.compile(r"\b(?:(?:sounds?|looks?|seems?)\s+(?:\w+\s+)?(?:good|fun|great|cool|awesome|interesting|"
                             r"neat|nice|amazing|delicious|exciting)|(?:that|it|this)\s+would\s+be\s+(?:\w+\s+)?"
                             r"(?:good|fun|great|cool|awesome|nice|amazing|interesting))\b(?!\s+(?:guess|try|attempt))",
                             re.I)
# The approval word may be said twice ("nice nice") and be followed by a clause of one's own without a comma
# ("awesome I might go", "sweet I'll try it"), but not by a hedge about the answer ("cool I guess").
_APPROVAL_WORD = r"(?:cool|nice|great|awesome|neat|sweet|amazing|good|fun|exciting)"
_APPROVAL_LEAD = re.compile(r"^\W*(?:(?:oh+|ah+|ha(?:ha)*h?|lol|wow)\W+)?(?:(?:that'?s|thats|that\s+is|sounds|so)\s+)?"
                            r"(?:(?:so|really|way|pretty|super|very)\s+)?" + _APPROVAL_WORD + r"(?:\s+" + _APPROVAL_WORD
                            + r")?(?:\s+(?:man|dude|bro))?(?:\s*[,.!;]+|\s+(?:so|and|what|how|where|"
                            r"when|why|who|which|did|do|does|are|is|have|has|"
                            r"i(?!\s+(?:guess|suppose|think|mean|dunno)\b)|i'?m|im|i'?ll|ill|i'?d|we|we'?ll|my)\b)", re.I)
# An answer that asks the listener back ("... What about you?", "wbu"): a reply stating its own liking ("I like the
# smell of soaps") answers that question, it does not approve the answer.
_ASKS_BACK = re.compile(r"\b(?:(?:what|how)\s+about\s+(?:you|u)|wbu|hbu|and\s+(?:you|u)\W*$|(?:you|u)\?\W*$)", re.I)
_OWN_LIKING = re.compile(r"^\W*(?:(?:oh+|ah+|well|ha(?:ha)*h?|lol)\W+)*i\s+(?:really\s+|also\s+|just\s+)?"
                         r"(?:liked?|loved?|enjoy(?:ed)?|prefer(?:red)?)\b", re.I)
# An answer that asks what / where / who the thing the listener named is ("Mesa Verde? where is that?", "what's
# that?", "who is he?"): a statement telling it answers that question, it corrects nothing.
_ASKS_WHAT_THAT = re.compile(r"\b(?:what|where|who)(?:'?s|\s+is|\s+are|\s+was|\s+were)\s+(?:that|those|he|she|they)\b"
                             r"[^.!?]*\?", re.I)
# Explicit agreement: the learned check leaves a positive label resting on it to the rules, and a reply that opens
# with it is not undone by a reservation with a "not" in it ("I agree, it may not go far"; "I agree, though not a
# cure"), unless it says what is wrong or names a correction.
_AGREE_EXPLICIT = re.compile(r"\bi\s+(?:totally\s+|completely\s+|fully\s+|definitely\s+)?agree\b", re.I)
_AGREE_OPENING = re.compile(r"^\W*(?:(?:oh+|well|yeah|yes|yep|ya|haha|lol)\W+)*i\s+(?:totally\s+|completely\s+|fully\s+|"
                            r"definitely\s+)?agree\b(?!\s+to\s+disagree)", re.I)
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
                or fb.rationale == "agreement worded with a negation" or _UNAMBIGUOUS.search(ex.reaction)
                or fb.label == Label.POSITIVE and _AGREE_EXPLICIT.search(ex.reaction)):
            return fb
        p = self.check.probs(ex.reaction)[fb.label.value]
        if p < self.veto:
            return make_feedback(Label.NEUTRAL, 0.5, None, f"{fb.rationale}, but the learned check gives it {p:.2f}")
        return fb

    def rules(self, ex: Exchange) -> Feedback:
        """Label one exchange by the rules alone."""
        text = clean_text(ex.reaction).strip()
        for pattern, label, confidence, why in _OPENINGS:
            match = pattern.match(text)
            if match:
                rest = text[match.end():].strip()
                fb = self.rules(replace(ex, reaction=rest)) if rest else None
                if fb is None or fb.label == Label.NEUTRAL:
                    if _NO_KIDDING.match(text) and _OPINION.search(ex.answer):
                        return make_feedback(Label.POSITIVE, 0.7, None, "agrees with an opinion")
                    return make_feedback(label, confidence, None, why)
                return fb
        return self._judge_text(ex, text)

    def _judge_text(self, ex: Exchange, text: str) -> Feedback:
        low = text.lower()
        if (_ECHO.match(low) and len(words_of(low)) <= 4 or _NO_QUESTION.match(low)) and not _WRONGNESS.search(low):
            return make_feedback(Label.NEUTRAL, 0.6, None, "surprise")  # "No?", "Not even yogurt?", "Really?"
        if _POS_DOUBLE.search(low):
            counter = _BUT_COUNTER.search(text)
            span = extract_correction(text[counter.end():], ex.answer) if counter else None
            if span:
                return make_feedback(Label.NEGATIVE, 0.8, span, "counter-statement after agreement")
            return make_feedback(Label.POSITIVE, 0.85, None, "agreement worded with a negation")
        if _ASKS_BACK.search(ex.answer) and _OWN_LIKING.match(low) and not _WRONGNESS.search(low):
            return make_feedback(Label.NEUTRAL, 0.6, None, "answers the answer's question")
        # a "no" that says nothing is wrong ...
        unjudging = bool(re.match(r"^\W*" + _NO + r"\b", low)) and not _WRONGNESS.search(low)
        if unjudging and _APOLOGY.search(ex.answer):
            return make_feedback(Label.NEUTRAL, 0.6, None, "reassurance")  # "sorry, my bad" -> "nah, not at all"
        # ... and names no correction may answer something other than the answer
        plain_no = unjudging and extract_correction(text, ex.answer) is None
        if plain_no and _TOPIC_APPROVAL.search(low):
            return make_feedback(Label.POSITIVE, 0.7, None, "approves after a 'no' to something else")
        if plain_no and _OFFER.search(ex.answer) and len(words_of(low)) >= 3:
            return make_feedback(Label.NEUTRAL, 0.6, None, "declines an offer")  # "leave it open if you want" -> "nah, ..."
        if plain_no and _EXPERIENCE_QUESTION.search(ex.answer) and _OWN_NEGATION.search(low):
            return make_feedback(Label.NEUTRAL, 0.6, None, "answers the answer's question")  # "Have you seen it?" -> "no I haven't"
        if (plain_no and _NEGATIVE_POLARITY.search(_HEDGED_ANSWER.sub("", ex.answer))
                and _NEGATIVE_POLARITY.search(re.sub(r"^\W*(?:" + _NO + r"\b\W*)+", "", low))):
            return make_feedback(Label.POSITIVE, 0.8, None, "agrees with a negative statement")
        if _UGH.match(low) and _COMPLAINT.search(ex.answer) and not _WRONGNESS.search(low):
            return make_feedback(Label.NEUTRAL, 0.6, None, "sympathy")  # "IB is the worst" -> "UGH! what history?"
        closing = bool(_CLOSING.search(low))
        neg = bool(_NEG_STRONG.search(low)) or bool(_NEG_EVAL.search(low) and not _AGREE_START.match(low))
        if neg and closing and re.match(r"^\W*no,?\s+thank", low) and not re.search(r"wrong|incorrect|not\s+right", low):
            neg = False  # "no thanks, that's all": declining more help, not rejecting the answer
        pos = bool(_POS.search(low)) and not _POS_NEGATED.search(low)
        is_question = text.endswith("?") or bool(_QUESTION_START.match(low))
        hedge = bool(_HEDGE.search(low))
        if _AGREE_OPENING.match(low) and not _WRONGNESS.search(low) and extract_correction(text, ex.answer) is None:
            return make_feedback(Label.POSITIVE, 0.85, None, "explicit agreement")
        if neg:
            return make_feedback(Label.NEGATIVE, 0.9, extract_correction(text, ex.answer), "negative marker")
        if _PARTIAL.match(low):
            return make_feedback(Label.NEGATIVE, 0.8, extract_correction(text, ex.answer), "partial acceptance")
        if pos:
            counter = _BUT_COUNTER.search(text)
            span = extract_correction(text[counter.end():], ex.answer) if counter else None
            if span and not (content_words(span) <= content_words(ex.answer)):
                return make_feedback(Label.NEGATIVE, 0.8, span, "counter-statement after a positive word")
        # a statement naming something ("it's X", "the label says X"): a correction, or a confirmation
        span = extract_correction(text, "") if _STATEMENT.search(low) and not closing else None
        if span is not None:
            if answers_match(span, ex.answer) or content_words(span) <= content_words(ex.answer):
                return make_feedback(Label.POSITIVE, 0.8, None, "restates the answer")
            if not pos and _ASKS_WHAT_THAT.search(ex.answer):
                return make_feedback(Label.NEUTRAL, 0.6, None, "answers the answer's question")
            if not pos:
                return make_feedback(Label.NEGATIVE, 0.8, span, "counter-statement")
        first = _FIRST_SENTENCE.split(text.strip(), maxsplit=1)[0].lower()
        # an approval that opens the reply and then moves on ("That's cool, what do you play?"): the approval decides,
        # a hedge or question after it does not undo it
        approval = pos and bool(_APPROVAL_LEAD.match(low))
        leads = approval or (pos and not first.rstrip().endswith("?") and bool(_POS.search(first)))
        if approval or pos and not hedge and (_FOLLOW_UP.match(low) or not is_question or leads):
            return make_feedback(Label.POSITIVE, 0.9 if not is_question else 0.8, None, "positive marker")
        if is_question and not pos:
            rephrased, sim = self._is_rephrasing(ex, text)
            if rephrased:
                return make_feedback(Label.NEGATIVE, 0.75, None, f"rephrasing (similarity {sim:.2f})")
        if closing:
            return make_feedback(Label.NEUTRAL, 0.6, None, "closing")
        if pos and hedge:
            return make_feedback(Label.NEUTRAL, 0.5, None, "hedged positive")
        if is_question or ex.new_image:
            return make_feedback(Label.NEUTRAL, 0.6, None, "topic change")
        return make_feedback(Label.NEUTRAL, 0.5, None, "no marker")

