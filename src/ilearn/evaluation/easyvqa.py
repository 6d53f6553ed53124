"""easy-vqa: loading and generation-based evaluation (the gate's "general set").

    python -m ilearn.evaluation.easyvqa [--limit N] [--blind] [--seed 0] [--backend small]
    python -m ilearn.evaluation.easyvqa --limit 100 --home HOME --version mdl_...   # a trained version

The model answers easy-vqa TEST questions (1,000 images, 9,673 questions, 13 answers) greedily; the reply is
normalised (lower-case first word without punctuation; if that is not one of the 13 answers, the first answer
word found in the reply) and compared with the truth. `--limit N` evaluates a seeded random subsample of N
questions (same N and seed -> same questions). `--blind` replaces every image by a blank white one.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ilearn.errors import InvalidInput, MissingDependency
from ilearn.models.base import Message, VisionLanguageModel

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
    try:
        import easy_vqa
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependency("package 'easy-vqa' is not installed: pip install 'ilearn[eval]'") from exc
    if split not in {"train", "test"}:
        raise InvalidInput(f"split must be train or test, not {split!r}")
    qs, answers, ids = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    return [VQAItem(q, a, i, paths[i]) for q, a, i in zip(qs, answers, ids, strict=True)]


def answer_vocabulary() -> list[str]:
    """The 13 easy-vqa answers."""
    import easy_vqa

    return list(easy_vqa.get_answers())


def normalise(reply: str, vocabulary: set[str]) -> str:
    """Lower-case first word without punctuation; else the first vocabulary word in the reply; else that word."""
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


def evaluate_easyvqa(vlm: VisionLanguageModel, limit: int | None = None, blind: bool = False, seed: int = 0,
                     batch_size: int = 16, split: str = "test") -> dict:
    """Accuracy of `vlm` on easy-vqa questions answered by greedy generation.

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
            ok = int(normalise(reply, vocabulary) == item.answer)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="seeded random subsample of N test questions")
    parser.add_argument("--blind", action="store_true", help="only the blank-image (blind) baseline")
    parser.add_argument("--both", action="store_true", help="with the images and blind")
    parser.add_argument("--seed", type=int, default=0, help="subsample seed")
    parser.add_argument("--backend", default="small", help="model backend (small, tiny, ...)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=16, help="questions answered per batch")
    parser.add_argument("--home", default=None, help="an assistant home whose model VERSION to evaluate")
    parser.add_argument("--version", default=None, help="a model version id of --home (e.g. mdl_...)")
    args = parser.parse_args(argv)
    if (args.home is None) != (args.version is None):
        parser.error("--home and --version go together")
    if args.home is not None:
        from ilearn.memory.sqlite import DB_NAME

        if not (Path(args.home) / DB_NAME).is_file():
            parser.error(f"--home {args.home} is not an assistant home (no {DB_NAME})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from ilearn.config import ModelConfig
    from ilearn.models import load_model

    vlm = load_model(ModelConfig(backend=args.backend, threads=args.threads))
    if args.version is not None:
        from ilearn.learning.registry import ModelRegistry
        from ilearn.memory.sqlite import open_store

        store = open_store(args.home)
        ModelRegistry(store, args.home).apply(vlm, args.version)
        store.close()
    modes = [False, True] if args.both else [args.blind]
    for blind in modes:
        result = evaluate_easyvqa(vlm, limit=args.limit, blind=blind, seed=args.seed, batch_size=args.batch_size)
        print(json.dumps(result, indent=1))  # noqa: T201 - entry point


if __name__ == "__main__":
    main()
