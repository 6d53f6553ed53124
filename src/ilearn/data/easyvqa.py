"""The easy-vqa questions (package ``easy-vqa``, extra ``eval``): loading, seeded sampling, the answer vocabulary.

The one loader of the data set that the learning floor (replayed training rows, the gate's general set:
`ilearn.learning.general`) and the evaluation floor (scenarios' general questions, the easy-vqa command line)
share. Nothing here runs a model.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass

from ilearn.errors import InvalidInput, require_package

logger = logging.getLogger(__name__)

YES_NO = {"yes", "no"}
SHAPES = {"circle", "rectangle", "triangle"}


@dataclass(frozen=True)
class VQAItem:
    """One easy-vqa question about one image."""

    question: str
    answer: str
    image_id: int
    image_path: str


def load_split(split: str = "test") -> list[VQAItem]:
    """All questions of an easy-vqa split ("train" or "test"), in the package's order."""
    if split not in {"train", "test"}:
        raise InvalidInput(f"split must be train or test, not {split!r}")
    require_package("easy_vqa", extra="eval")
    import easy_vqa

    qs, answers, ids = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    return [VQAItem(q, a, i, paths[i]) for q, a, i in zip(qs, answers, ids, strict=True)]


def answer_vocabulary() -> list[str]:
    """The 13 easy-vqa answers."""
    require_package("easy_vqa", extra="eval")
    import easy_vqa

    return list(easy_vqa.get_answers())


def vocabulary_answer(reply: str, vocabulary: set[str]) -> str:
    """The one answer word a reply gives: its lower-case first word without punctuation if that is in
    `vocabulary`, else the first vocabulary word in the reply, else the first word ("" for no word).

    Not a text normaliser: it picks a single word of a closed answer set, as easy-vqa scores a reply by exact
    match."""
    words = re.findall(r"[a-z]+", reply.lower())
    if not words:
        return ""
    if words[0] in vocabulary:
        return words[0]
    return next((w for w in words if w in vocabulary), words[0])


def kind_of(answer: str) -> str:
    """Question kind by its answer: yes/no, shape or colour."""
    return "yes/no" if answer in YES_NO else "shape" if answer in SHAPES else "colour"


def sample(items: list[VQAItem], limit: int | None, seed: int) -> list[VQAItem]:
    """A seeded random subsample of `limit` items (all items, in order, when limit is None)."""
    if limit is None or limit >= len(items):
        return items
    if limit < 1:
        raise InvalidInput("limit must be >= 1")
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), limit))]
