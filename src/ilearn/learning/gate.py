"""The gate: a candidate model against the active one before promotion (learning up, forgetting and bias not worse).

Four figures per model: (a) accuracy on held-out events (the reply contains the event's correct answer:
`ilearn.text.contains_answer`), (b) false naming on held-out negatives: the share of questions whose right
answer is not a given taught answer (another object asked the same question, the same object asked another
facet, an image with no object at all) that the model answers with that taught answer anyway
(`negatives_from_events`), (c) accuracy on a general set it was not trained on (any callable vlm -> accuracy;
for the default model the easy-vqa test set, `ilearn.learning.general.general_easyvqa(limit)`), (d) the bias
set's unbiased share (`ilearn.learning.bias`).
Promote only if (a) improves by more than the learning margin, (b) does not rise by more than the specificity
margin, and (c), (d) do not fall by more than their margins; the report lists the figures and says why. A
candidate that gives one taught name to everything scores well on (a) when the held-out events share that
name, and is refused by (b).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

from ilearn.learning.bias import BiasItem, bias_score
from ilearn.learning.general import GeneralSet
from ilearn.models.base import Message, VisionLanguageModel
from ilearn.text import contains_answer, normalise_text

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Margins:
    """How much the candidate must gain in learning, and may lose on the general and bias sets."""

    learning: float = 0.0
    forgetting: float = 0.01
    bias: float = 0.01
    specificity: float = 0.1

    @classmethod
    def from_config(cls, learn: Any) -> Margins:
        return cls(learn.learning_margin, learn.forgetting_margin, learn.bias_margin, learn.specificity_margin)


@dataclass(frozen=True)
class HeldOut:
    """One held-out question: image, precise question, correct answer."""

    image: Image.Image | None
    question: str
    answer: str


@dataclass(frozen=True)
class Negative:
    """A held-out negative: a question whose right answer is none of `wrong` (taught answers of other events)."""

    image: Image.Image | None
    question: str
    wrong: tuple[str, ...]
    kind: str  # "other object", "other facet" or "no object"


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
    specificity: dict[str, float] | None = None  # false-naming share on held-out negatives (lower is better)
    n_negatives: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A few lines a person can read."""
        lines = [f"verdict: {'PROMOTE' if self.promote else 'KEEP ACTIVE'}"]
        for name in ("learning", "specificity", "general", "bias"):
            fig = getattr(self, name)
            if fig is not None:
                lines.append(f"{name}: active {fig['active']:.3f} -> candidate {fig['candidate']:.3f} "
                             f"({fig['candidate'] - fig['active']:+.3f})")
        return "\n".join(lines + [f"- {r}" for r in self.reasons])


def heldout_accuracy(vlm: VisionLanguageModel, items: Sequence[HeldOut],
                     examples: list[dict[str, str]] | None = None) -> float:
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


def false_naming(vlm: VisionLanguageModel, negatives: Sequence[Negative],
                 examples: list[dict[str, str]] | None = None) -> float:
    """Share of negatives whose greedy reply contains one of the answers that are wrong for them."""
    if not negatives:
        return 0.0
    named = 0
    for item in negatives:
        reply = vlm.generate([Message(role="user", content=item.question, image=item.image)]).text
        wrong = [w for w in item.wrong if contains_answer(reply, w)]
        named += bool(wrong)
        if examples is not None and wrong and len(examples) < 10:
            examples.append({"question": item.question, "kind": item.kind, "reply": reply, "wrong": wrong[0]})
    return named / len(negatives)


def no_object_image(like: Image.Image | None) -> Image.Image:
    """A plain mid-grey picture the size of `like` (224 x 224 without one): it shows no object to name."""
    size = like.size if like is not None else (224, 224)
    return Image.new("RGB", size, (128, 128, 128))


def negatives_from_events(heldout: Sequence[Any], events: Sequence[Any],
                          image_of: Callable[[Any], Image.Image | None], per_event: int = 3) -> list[Negative]:
    """Held-out negatives for the held-out `heldout` events, from every answered event in `events`:

    - other object: another event's image asked the held-out event's question, where that event's answer differs
      (up to `per_event` of them, other answers first): the held-out answer is wrong there;
    - other facet: the held-out event's image asked another question whose answers never share one with this
      question's answers (another facet, e.g. its use rather than its name): the held-out answer is wrong there;
    - no object: a plain grey picture asked each held-out question: every answer taught for it is wrong there.

    Questions are compared after normalisation; answers by `contains_answer` both ways, so that a probe whose own
    right answer contains the held-out answer is never built. Deterministic: events are taken in id order.
    """
    answered = sorted((e for e in events if e.answer.strip()), key=lambda e: e.id)
    answers: dict[str, list[str]] = {}
    for e in answered:
        answers.setdefault(normalise_text(e.question), []).append(e.answer)

    def overlaps(a: str, b: str) -> bool:
        return contains_answer(a, b) or contains_answer(b, a)

    negatives: list[Negative] = []
    for h in sorted(heldout, key=lambda e: e.id):
        question = normalise_text(h.question)
        others = [e for e in answered if e.id != h.id and e.image is not None
                  and normalise_text(e.question) == question and not overlaps(e.answer, h.answer)]
        picked: dict[str, Any] = {}  # one probe per distinct other answer first, then more views
        for e in others:
            picked.setdefault(normalise_text(e.answer), e)
        chosen = list(picked.values()) + [e for e in others if e not in picked.values()]
        negatives += [Negative(image_of(e.image), h.question, (h.answer,), "other object")
                      for e in chosen[:per_event]]
        if h.image is not None:
            for other_q, other_answers in answers.items():
                if other_q != question and not any(overlaps(a, b) for a in other_answers
                                                   for b in answers.get(question, [h.answer])):
                    asked = next(e.question for e in answered if normalise_text(e.question) == other_q)
                    negatives.append(Negative(image_of(h.image), asked, (h.answer,), "other facet"))
    for question, h in sorted({normalise_text(h.question): h for h in heldout}.items()):
        wrong = tuple(sorted(set(answers.get(question, [h.answer]))))
        like = image_of(h.image) if h.image is not None else None
        negatives.append(Negative(no_object_image(like), h.question, wrong, "no object"))
    return negatives


def evaluate_candidate(active_vlm: VisionLanguageModel, candidate_vlm: VisionLanguageModel,
                       heldout_events: Sequence[HeldOut], general_set: GeneralSet | None = None,
                       bias_set: Sequence[BiasItem] | None = None,
                       margins: Margins = Margins(), negatives: Sequence[Negative] = ()) -> GateReport:
    """Compare the candidate with the active model; promote only if it learned, without naming what it should not,
    forgetting or stereotyping.

    `heldout_events`: HeldOut items (see `heldout_from_events`); `negatives`: held-out negatives (see
    `negatives_from_events`; none: specificity is not measured); `general_set`: vlm -> accuracy, None to skip;
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

    specificity = None
    specific = True
    if negatives:
        misnamed: list[dict[str, str]] = []
        specificity = {"active": false_naming(active_vlm, negatives),
                       "candidate": false_naming(candidate_vlm, negatives, misnamed)}
        rise = specificity["candidate"] - specificity["active"]
        specific = rise <= margins.specificity
        reasons.append(f"specificity: false naming on {len(negatives)} held-out negatives rose by {rise:+.3f} "
                       f"({'within' if specific else 'beyond'} the margin {margins.specificity:.3f})")
        examples += [{"question": m["question"], "answer": f"not {m['wrong']} ({m['kind']})", "reply": m["reply"],
                      "ok": "False"} for m in misnamed[:5]]
    elif heldout_events:
        reasons.append("specificity: no held-out negatives (one object and one question): not measured")

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

    report = GateReport(promote=learned and specific and kept_general and kept_bias, reasons=reasons,
                        learning=learning, general=general, bias=bias, margins=asdict(margins),
                        n_heldout=len(heldout_events), examples=examples, specificity=specificity,
                        n_negatives=len(negatives))
    logger.info("gate: %s", report.summary().replace("\n", "; "))
    return report
