"""The general set: how well a model still answers questions it was never taught (forgetting).

`evaluate_easyvqa` asks a model easy-vqa questions (`ilearn.data.easyvqa`) and scores its greedy replies;
`general_easyvqa` makes that the gate's default general set (`ilearn.learning.gate`). The evaluation floor
(experiments, benchmarks, ``python -m ilearn.evaluation.easyvqa``) measures with the same function.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from PIL import Image
from tqdm import tqdm

from ilearn.data.easyvqa import answer_vocabulary, kind_of, load_split, sample, vocabulary_answer
from ilearn.models.base import Message, VisionLanguageModel

logger = logging.getLogger(__name__)

GeneralSet = Callable[[VisionLanguageModel], float]
"""vlm -> accuracy on questions outside what the model was taught."""


def evaluate_easyvqa(vlm: VisionLanguageModel, limit: int | None = None, blind: bool = False, seed: int = 0,
                     batch_size: int = 16, split: str = "test") -> dict:
    """Accuracy of `vlm` on easy-vqa questions answered by greedy generation (at most 4 new tokens); a reply is
    right when its answer word (`vocabulary_answer`) is the truth. `limit`: a seeded subsample of that many
    questions (same limit and seed, same questions); `blind`: every image replaced by a blank white one.

    Returns {"accuracy", "n", "by_kind": {kind: accuracy}, "blind", "seed", "limit", "seconds", "examples"}.
    """
    items = sample(load_split(split), limit, seed)
    vocabulary = set(answer_vocabulary())
    blank = Image.new("RGB", (64, 64), (255, 255, 255))
    batch_fn = getattr(vlm, "generate_batch", None)
    correct: dict[str, list[int]] = {}
    examples = []
    start = time.perf_counter()
    for i in tqdm(range(0, len(items), batch_size), desc="easy-vqa" + (" (blind)" if blind else "")):
        chunk = items[i: i + batch_size]
        convs = []
        for item in chunk:
            image = blank if blind else Image.open(item.image_path).convert("RGB")
            convs.append([Message(role="user", content=item.question, image=image)])
        if batch_fn is not None:
            replies = [g.text for g in batch_fn(convs, max_new_tokens=4)]
        else:
            replies = [vlm.generate(c, max_new_tokens=4).text for c in convs]
        for item, reply in zip(chunk, replies, strict=True):
            ok = int(vocabulary_answer(reply, vocabulary) == item.answer)
            correct.setdefault(kind_of(item.answer), []).append(ok)
            if len(examples) < 10:
                examples.append({"question": item.question, "answer": item.answer, "reply": reply})
    every = [x for v in correct.values() for x in v]
    return {
        "accuracy": sum(every) / max(len(every), 1), "n": len(every),
        "by_kind": {k: round(sum(v) / len(v), 4) for k, v in sorted(correct.items())},
        "blind": blind, "seed": seed, "limit": limit, "seconds": round(time.perf_counter() - start, 1),
        "examples": examples,
    }


def general_easyvqa(limit: int = 200, seed: int = 0) -> GeneralSet:
    """The default general set: easy-vqa test accuracy on a seeded subsample of `limit` questions."""

    def accuracy(vlm: VisionLanguageModel) -> float:
        return float(evaluate_easyvqa(vlm, limit=limit, seed=seed)["accuracy"])

    return accuracy
