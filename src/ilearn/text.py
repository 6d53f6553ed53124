"""The answer judge: whether a reply holds a reference answer, and the text normalisation it compares with.

`contains_answer` is the one judge of the package: the gate scores held-out events and negatives with it
(`ilearn.learning.gate`), the experiments score answers and the simulated users react with it
(`ilearn.evaluation.metrics`, `ilearn.evaluation.users`), and distillation links a rejected answer to the
event it came from (`ilearn.learning.construct`).

The other text normalisers of the package differ from `normalise_text` on purpose, each for its own job:

- `ilearn.types.answer_key`: when two short answers are the same answer (words of letters and digits, the
  articles a / an / the dropped); memory groups and corroborates events by it.
- `ilearn.dialogue.feedback.normalise_answer`: cuts an answer out of a user's words (articles, filler words,
  quotes and end punctuation stripped) and keeps its case, since the span becomes the stored answer.
- `ilearn.dialogue.clarify.normalise_request`: keeps question marks and apostrophes, which are cues of a vague
  request ("what's this?").
- `ilearn.data.easyvqa.vocabulary_answer`: picks the one word of easy-vqa's closed answer set a reply gives.
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)


def normalise_text(text: str) -> str:
    """Lower case, punctuation to spaces (keeping decimal points and hyphens inside words), single spaces; a unit
    glued to its number is split off ("400mg" -> "400 mg")."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)
    text = re.sub(r"[^\w.\s-]|(?<!\w)-|-(?!\w)", " ", text)
    text = re.sub(r"(\d)(mg|g|ml)\b", r"\1 \2", text)  # "400mg" -> "400 mg"
    return " ".join(text.split())


_LOOP = re.compile(r"(?:^| )((?:\S+ ){1,4}?)\1{2,}")


def looping(text: str) -> bool:
    """Whether a reply is caught in a loop: a run of one to four words said three times in a row ("used to be used
    to be used to be"). Such a reply is no answer, whoever accepted it."""
    return bool(_LOOP.search(normalise_text(text) + " "))


def contains_answer(reply: str, reference: str) -> bool:
    """Whether the normalised reference occurs in the normalised reply as whole words (never for an empty
    reference)."""
    ref = normalise_text(reference)
    return bool(ref) and f" {ref} " in f" {normalise_text(reply)} "
