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

Where the parts live: the exchange a decoder judges and the protocol in `ilearn.dialogue.exchange`, answer
normalisation and correction patterns in `ilearn.dialogue.corrections`, the lexical rules in
`ilearn.dialogue.lexical`; this module holds the model and hybrid decoders, the wrappers and the factory, and
names the public parts of all four.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ilearn.dialogue.corrections import answers_match, extract_correction, normalise_answer, overlap
from ilearn.dialogue.exchange import LABELS, Exchange, FeedbackDecoder, exchange_from_turns, make_feedback
from ilearn.dialogue.lexical import LexicalFeedbackDecoder, decode_exchange
from ilearn.errors import InvalidInput
from ilearn.models.base import Message, TextEmbedder, VisionLanguageModel
from ilearn.types import Feedback, FeedbackSource, Label, Turn

if TYPE_CHECKING:
    from ilearn.config import FeedbackConfig

logger = logging.getLogger(__name__)


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
        return make_feedback(label, probs[label], correction, "model judge " + ", ".join(
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
            return make_feedback(Label.NEUTRAL, 0.5, None, "model positive without lexical support")
        if mod.label == Label.NEGATIVE and mod.correction is None and lex.correction:
            return make_feedback(Label.NEGATIVE, mod.confidence, lex.correction, mod.rationale)
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


__all__ = ["DEFAULT_VERBALIZER", "ISSUE19_CONFUSION", "JUDGE_SYSTEM", "JUDGE_TEMPLATE", "LABELS", "Exchange",
           "FeedbackDecoder", "HybridFeedbackDecoder", "LexicalFeedbackDecoder", "ModelFeedbackDecoder", "NoisyDecoder",
           "ThresholdedDecoder", "answers_match", "decode_exchange", "exchange_from_turns", "extract_correction",
           "hybrid_decoder", "lexical_decoder", "make_decoder", "model_decoder", "normalise_answer", "overlap"]
