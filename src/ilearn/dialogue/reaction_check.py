"""A small learned check on the feedback rules: logistic regression over hashed words of the reaction.

The lexical rules (`ilearn.dialogue.feedback`) were written by people reading reactions; on real replies they
still fire where the words mislead (a "cool" that is not about the answer, a "no" that reassures). This check is
learned from labelled reactions instead: the project's set (src/ilearn/data/reactions.jsonl, templated rows
down-weighted) and the train split of the real set (reactions_real.jsonl, replies people wrote to each other);
never from the real set's dev and blind splits nor reactions_heldout.jsonl, which measure it. It sees only the
reaction's words (unigrams, bigrams and the first word, hashed into 2,048 buckets with CRC-32), so it runs in
numpy in well under a millisecond and needs no model.

The decoder uses it to abstain, never to decide: a positive or negative that the rules give becomes neutral
when the check gives that label a probability below the veto threshold (`LexicalFeedbackDecoder(veto=...)`).
Precision is what training needs (ReSpect); the measured effect is in docs/reactions.md.

The weights ship as src/ilearn/data/reaction_check.npz (about 25 KB), trained by
``PYTHONPATH=src .venv/bin/python scripts/make_reactions.py --train-check`` (needs scikit-learn).
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from ilearn.errors import InvalidInput

LABEL_ORDER = ("positive", "neutral", "negative")
DIM = 2048
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?|[?!]")


def features(text: str, dim: int = DIM) -> np.ndarray:
    """The L2-normalised hashed bag of the reaction's words, word pairs and first word."""
    words = _TOKEN.findall(text.lower().replace("\u2019", "'"))
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)] + ["^" + (words[0] if words else "")]
    vec = np.zeros(dim, dtype=np.float32)
    for gram in grams:
        vec[zlib.crc32(gram.encode("utf-8")) % dim] += 1.0
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm else vec


class ReactionClassifier:
    """Multinomial logistic regression over `features`: `probs(text)` -> {label: probability}."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray):
        if weights.ndim != 2 or weights.shape[0] != len(LABEL_ORDER) or bias.shape != (len(LABEL_ORDER),):
            raise InvalidInput(f"reaction check weights must be (3, dim) with a (3,) bias, not {weights.shape}")
        self.weights = weights.astype(np.float32)
        self.bias = bias.astype(np.float32)

    def probs(self, text: str) -> dict[str, float]:
        """The probability of each label for one reaction."""
        logits = self.weights @ features(text, self.weights.shape[1]) + self.bias
        exp = np.exp(logits - logits.max())
        return dict(zip(LABEL_ORDER, (exp / exp.sum()).tolist(), strict=True))

    def save(self, path: Path) -> None:
        """Write the weights as an .npz file."""
        np.savez_compressed(path, weights=self.weights, bias=self.bias)

    @classmethod
    def load(cls, path: Path | None = None) -> ReactionClassifier:
        """From an .npz file; by default the shipped src/ilearn/data/reaction_check.npz."""
        if path is None:
            with resources.as_file(resources.files("ilearn.data").joinpath("reaction_check.npz")) as shipped:
                return cls.load(shipped)
        try:
            with np.load(path) as data:
                return cls(data["weights"], data["bias"])
        except (OSError, KeyError, ValueError) as exc:
            raise InvalidInput(f"cannot read reaction check weights {path}: {exc}") from exc

    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[str], weights: Sequence[float] | None = None,
              *, c: float = 1.0) -> ReactionClassifier:
        """Fit on labelled reactions (scikit-learn, class-balanced; only at build time)."""
        from sklearn.linear_model import LogisticRegression

        if not texts or len(texts) != len(labels) or set(labels) - set(LABEL_ORDER):
            raise InvalidInput("train needs as many reactions as labels, each label one of " + ", ".join(LABEL_ORDER))
        x = np.stack([features(t) for t in texts])
        y = np.array([LABEL_ORDER.index(lab) for lab in labels])
        model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
        model.fit(x, y, sample_weight=None if weights is None else np.asarray(weights, dtype=np.float64))
        return cls(model.coef_, model.intercept_)


_DEFAULT: ReactionClassifier | None = None
_LOCK = threading.Lock()


def default_classifier() -> ReactionClassifier:
    """The shipped classifier, loaded once per process."""
    global _DEFAULT
    with _LOCK:
        if _DEFAULT is None:
            _DEFAULT = ReactionClassifier.load()
        return _DEFAULT
