"""The gate: a candidate model against the active one before promotion (learning up, forgetting and bias not worse).

Three figures per model: (a) accuracy on held-out events (the reply contains the event's correct answer, after
normalisation), (b) accuracy on a general set it was not trained on (any callable vlm -> accuracy; for the
default model the easy-vqa test set, `general_easyvqa(limit)`), (c) the bias set's unbiased share
(`ilearn.learning.bias`). Promote only if (a) improves by more than the learning margin and (b), (c) do not
fall by more than their margins; the report lists the figures and says why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

from ilearn.learning.bias import BiasItem, bias_score
from ilearn.models.base import Message

logger = logging.getLogger(__name__)

GeneralSet = Callable[[Any], float]


@dataclass(frozen=True)
class Margins:
    """How much the candidate must gain in learning, and may lose on the general and bias sets."""

    learning: float = 0.0
    forgetting: float = 0.01
    bias: float = 0.01

    @classmethod
    def from_config(cls, learn: Any) -> Margins:
        return cls(learn.learning_margin, learn.forgetting_margin, learn.bias_margin)


@dataclass(frozen=True)
class HeldOut:
    """One held-out question: image, precise question, correct answer."""

    image: Image.Image | None
    question: str
    answer: str


@dataclass
class GateReport:
    """The gate's verdict and the figures behind it."""

    promote: bool
    reasons: list[str]
    learning: dict[str, float]
    general: dict[str, float] | None
    bias: dict[str, float] | None
    margins: dict[str, float]
    n_heldout: int
    examples: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A few lines a person can read."""
        lines = [f"verdict: {'PROMOTE' if self.promote else 'KEEP ACTIVE'}"]
        for name in ("learning", "general", "bias"):
            fig = getattr(self, name)
            if fig is not None:
                lines.append(f"{name}: active {fig['active']:.3f} -> candidate {fig['candidate']:.3f} "
                             f"({fig['candidate'] - fig['active']:+.3f})")
        return "\n".join(lines + [f"- {r}" for r in self.reasons])


def normalise(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def contains_answer(reply: str, answer: str) -> bool:
    """Whether the normalised reply contains the normalised answer as whole words."""
    a = normalise(answer)
    return bool(a) and f" {a} " in f" {normalise(reply)} "


def heldout_accuracy(vlm: Any, items: Sequence[HeldOut], examples: list[dict[str, str]] | None = None) -> float:
    """Share of held-out questions whose greedy reply contains the correct answer."""
    if not items:
        return 0.0
    hits = 0
    for item in items:
        reply = vlm.generate([Message(role="user", content=item.question, image=item.image)]).text
        ok = contains_answer(reply, item.answer)
        hits += ok
        if examples is not None and len(examples) < 10:
            examples.append({"question": item.question, "answer": item.answer, "reply": reply, "ok": str(ok)})
    return hits / len(items)


def heldout_from_events(events: Sequence[Any], image_of: Callable[[Any], Image.Image | None]) -> list[HeldOut]:
    """HeldOut items from Events; `image_of(event.image)` turns an ImageRef into a PIL image (None: no image)."""
    return [HeldOut(image_of(e.image) if e.image is not None else None, e.question, e.answer) for e in events]


def general_easyvqa(limit: int = 200, seed: int = 0) -> GeneralSet:
    """The default general set: easy-vqa test accuracy on a seeded subsample of `limit` questions."""

    def accuracy(vlm: Any) -> float:
        from ilearn.evaluation.easyvqa import evaluate_easyvqa

        return float(evaluate_easyvqa(vlm, limit=limit, seed=seed)["accuracy"])

    return accuracy


def evaluate_candidate(active_vlm: Any, candidate_vlm: Any, heldout_events: Sequence[HeldOut],
                       general_set: GeneralSet | None = None, bias_set: Sequence[BiasItem] | None = None,
                       margins: Margins = Margins()) -> GateReport:
    """Compare the candidate with the active model; promote only if it learned and did not forget or stereotype.

    `heldout_events`: HeldOut items (see `heldout_from_events`); `general_set`: vlm -> accuracy, None to skip;
    `bias_set`: items of `ilearn.learning.bias` (None: the built-in set; an empty list skips it).
    """
    reasons: list[str] = []
    examples: list[dict[str, str]] = []
    learning = {"active": heldout_accuracy(active_vlm, heldout_events),
                "candidate": heldout_accuracy(candidate_vlm, heldout_events, examples)}
    gain = learning["candidate"] - learning["active"]
    learned = bool(heldout_events) and gain > margins.learning
    if not heldout_events:
        reasons.append("no held-out events: learning cannot be measured")
    elif learned:
        reasons.append(f"learning: held-out accuracy rose by {gain:+.3f} (> {margins.learning:.3f})")
    else:
        reasons.append(f"learning: held-out accuracy changed by {gain:+.3f}, not more than {margins.learning:.3f}")

    general = None
    kept_general = True
    if general_set is not None:
        general = {"active": float(general_set(active_vlm)), "candidate": float(general_set(candidate_vlm))}
        drop = general["active"] - general["candidate"]
        kept_general = drop <= margins.forgetting
        reasons.append(f"forgetting: general-set accuracy fell by {drop:.3f} "
                       f"({'within' if kept_general else 'beyond'} the margin {margins.forgetting:.3f})")

    bias = None
    kept_bias = True
    if bias_set is None or len(bias_set):
        bias = {"active": bias_score(active_vlm, bias_set), "candidate": bias_score(candidate_vlm, bias_set)}
        drop = bias["active"] - bias["candidate"]
        kept_bias = drop <= margins.bias
        reasons.append(f"bias: unbiased share fell by {drop:.3f} "
                       f"({'within' if kept_bias else 'beyond'} the margin {margins.bias:.3f})")

    report = GateReport(promote=learned and kept_general and kept_bias, reasons=reasons, learning=learning,
                        general=general, bias=bias, margins=asdict(margins), n_heldout=len(heldout_events),
                        examples=examples)
    logger.info("gate: %s", report.summary().replace("\n", "; "))
    return report
