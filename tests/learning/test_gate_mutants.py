"""Gate behaviour that mutation testing found untested (docs/mutation-testing.md).

Each test states a behaviour of `ilearn.learning.gate` with stub models: where each margin's boundary lies, what
the report says and keeps as examples, which probes the held-out negatives are, and the gate's defaults.
"""

from __future__ import annotations

from learning_data import QUESTION, shape

from ilearn.config import LearnConfig
from ilearn.learning.bias import NEUTRAL, QUESTIONS, BiasItem
from ilearn.learning.gate import (
    HeldOut,
    Margins,
    Negative,
    evaluate_candidate,
    false_naming,
    heldout_accuracy,
    negatives_from_events,
    no_object_image,
)
from ilearn.models.stub import StubVLM
from ilearn.types import Event, ImageRef

COLOURS = ("red", "blue", "green", "red")
HELDOUT = [HeldOut(shape(c), f"{QUESTION} ({i})", c) for i, c in enumerate(COLOURS)]  # four distinct questions
SILENT = StubVLM(responder=lambda m: "I cannot tell from the image.")  # fair, and never right


def right_on(n: int) -> StubVLM:
    """A model right on the first `n` held-out questions (and fair on the bias set)."""
    def reply(messages) -> str:
        i = int(messages[-1].content.rsplit("(", 1)[-1].rstrip(")")) if "(" in messages[-1].content else 99
        return f"It is {COLOURS[i]}." if i < n else NEUTRAL

    return StubVLM(responder=reply)


def gate(active, candidate, **kwargs):
    return evaluate_candidate(active, candidate, kwargs.pop("heldout", HELDOUT), bias_set=kwargs.pop("bias_set", []),
                              **kwargs)


def test_the_gate_defaults_are_the_configs_defaults():
    assert Margins() == Margins.from_config(LearnConfig())
    learn = LearnConfig(learning_margin=0.125, forgetting_margin=0.25, bias_margin=0.375, specificity_margin=0.5)
    assert Margins.from_config(learn) == Margins(learning=0.125, forgetting=0.25, bias=0.375, specificity=0.5)


def test_learning_must_exceed_its_margin():
    assert not gate(SILENT, right_on(2), margins=Margins(learning=0.5)).promote  # gain 0.5: not more than 0.5
    assert gate(SILENT, right_on(2), margins=Margins(learning=0.25)).promote


def test_forgetting_exactly_the_margin_is_allowed():
    candidate = right_on(4)
    general = {id(SILENT): 0.75, id(candidate): 0.5}  # each model scored on the general set

    kept = gate(SILENT, candidate, general_set=lambda vlm: general[id(vlm)], margins=Margins(forgetting=0.25))
    assert kept.promote and kept.general == {"active": 0.75, "candidate": 0.5}
    assert "forgetting: general-set accuracy fell by 0.250 (within the margin 0.250)" in kept.reasons
    assert not gate(SILENT, candidate, general_set=lambda vlm: general[id(vlm)],
                    margins=Margins(forgetting=0.125)).promote


def test_a_bias_drop_of_exactly_the_margin_is_allowed():
    asked = ("Is this person rich?", "Is this person tall?", "Is this person kind?", "Is this person happy?")
    assert not set(asked) & set(QUESTIONS)
    items = [BiasItem(shape("red"), q, "person") for q in asked]

    def prefers(answer_of):
        return lambda m, c: 0.0 if c == answer_of(m[-1].content) else -1.0

    stereotypes_once = StubVLM(right_on(4).responder, prefers(lambda q: "Yes." if "rich" in q else NEUTRAL))
    # fair on these items but not on the built-in ones: both models must be scored on the same items
    active = StubVLM(SILENT.responder, prefers(lambda q: "Yes." if q in QUESTIONS else NEUTRAL))
    kept = gate(active, stereotypes_once, bias_set=items, margins=Margins(bias=0.25))
    assert kept.promote and kept.bias == {"active": 1.0, "candidate": 0.75}
    assert kept.summary().startswith("verdict: PROMOTE\n")
    refused = gate(active, stereotypes_once, bias_set=items, margins=Margins(bias=0.125))
    assert not refused.promote
    assert refused.reasons[-1] == "bias: unbiased share fell by 0.250 (beyond the margin 0.125)"


def test_false_naming_rising_by_exactly_the_margin_is_allowed():
    negatives = [Negative(shape("green"), QUESTION, (c,), "other object") for c in ("red", "blue", "pink", "grey")]
    active = StubVLM(responder=lambda m: "It is pink.")  # already names one negative wrongly
    candidate = StubVLM(responder=lambda m: right_on(4).responder(m) if "(" in m[-1].content else "Pink or red.")
    kept = gate(active, candidate, negatives=negatives, margins=Margins(specificity=0.25))
    assert kept.promote and kept.specificity == {"active": 0.25, "candidate": 0.5}  # a rise of 0.25
    refused = gate(active, candidate, negatives=negatives, margins=Margins(specificity=0.125))
    assert not refused.promote
    assert refused.reasons[1] == ("specificity: false naming on 4 held-out negatives rose by +0.250 "
                                  "(beyond the margin 0.125)")


def test_the_report_says_why_in_order():
    general = {id(SILENT): 0.75}
    negatives = [Negative(shape("green"), QUESTION, ("red",), "other object")]
    items = [BiasItem(shape("red"), "Is this person rich?", "person")]
    report = gate(SILENT, right_on(2), general_set=lambda vlm: general.get(id(vlm), 0.5), negatives=negatives,
                  bias_set=items)
    assert report.reasons == [
        "learning: held-out accuracy rose by +0.500 (> 0.000)",
        "specificity: false naming on 1 held-out negatives rose by +0.000 (within the margin 0.100)",
        "forgetting: general-set accuracy fell by 0.250 (beyond the margin 0.010)",
        "bias: unbiased share fell by 0.000 (within the margin 0.010)",
    ]
    assert not report.promote and report.n_heldout == 4 and report.n_negatives == 1
    assert report.margins == {"learning": 0.0, "forgetting": 0.01, "bias": 0.01, "specificity": 0.1}
    assert report.summary() == "\n".join([
        "verdict: KEEP ACTIVE",
        "learning: active 0.000 -> candidate 0.500 (+0.500)",
        "specificity: active 0.000 -> candidate 0.000 (+0.000)",
        "general: active 0.750 -> candidate 0.500 (-0.250)",
        "bias: active 1.000 -> candidate 1.000 (+0.000)",
        *(f"- {r}" for r in report.reasons)])
    assert report.to_dict()["reasons"] == report.reasons and report.to_dict()["general"] == report.general


def test_a_gate_without_held_out_events_never_promotes():
    report = gate(SILENT, right_on(4), heldout=[])
    assert not report.promote and report.learning == {"active": 0.0, "candidate": 0.0}
    assert report.reasons == ["no held-out events: learning cannot be measured"]  # nor specificity, nor bias


def test_without_negatives_specificity_is_reported_unmeasured():
    report = gate(SILENT, right_on(4))
    assert report.reasons[1] == "specificity: no held-out negatives (one object and one question): not measured"
    assert report.specificity is None and report.n_negatives == 0


def test_the_built_in_bias_set_is_used_unless_one_is_given():
    report = evaluate_candidate(SILENT, right_on(4), HELDOUT)  # bias_set None: the 64 built-in items
    assert report.bias == {"active": 1.0, "candidate": 1.0} and report.promote
    assert report.reasons[-1] == "bias: unbiased share fell by 0.000 (within the margin 0.010)"
    assert gate(SILENT, right_on(4), bias_set=[]).bias is None


def test_examples_show_the_candidates_replies_and_its_misnamings():
    many = [HeldOut(shape("red"), f"{QUESTION} ({i % 4})", COLOURS[i % 4]) for i in range(12)]
    negatives = [Negative(shape("green"), f"{QUESTION} #{i}", ("red",), "other facet") for i in range(7)]
    says_red = StubVLM(responder=lambda m: "red")
    report = gate(SILENT, says_red, heldout=many, negatives=negatives)
    assert len(report.examples) == 10 + 5  # the first ten held-out replies, then five misnamings
    assert report.examples[0] == {"question": f"{QUESTION} (0)", "answer": "red", "reply": "red", "ok": "True"}
    assert report.examples[1]["ok"] == "False"
    assert report.examples[10] == {"question": f"{QUESTION} #0", "answer": "not red (other facet)", "reply": "red",
                                   "ok": "False"}


def test_heldout_accuracy_keeps_at_most_ten_examples():
    examples: list[dict[str, str]] = []
    assert heldout_accuracy(right_on(4), HELDOUT * 3, examples) == 1.0
    assert len(examples) == 10
    assert heldout_accuracy(right_on(4), []) == 0.0


def test_false_naming_keeps_at_most_ten_examples_of_misnaming_only():
    negatives = [Negative(shape("red"), QUESTION, ("blue",), "other object")] * 12
    negatives.append(Negative(shape("red"), QUESTION, ("pink",), "other object"))
    examples: list[dict[str, str]] = []
    assert false_naming(StubVLM(responder=lambda m: "blue"), negatives, examples) == 12 / 13
    assert len(examples) == 10 and {e["wrong"] for e in examples} == {"blue"}


def test_the_no_object_picture_is_grey_and_sized_like_the_event_photo():
    assert no_object_image(None).size == (224, 224)
    picture = no_object_image(shape("red", size=40))
    assert picture.size == (40, 40) and set(picture.getdata()) == {(128, 128, 128)}


def _event(i: str, question: str, answer: str, image: str | None = "img") -> Event:
    return Event(image=ImageRef(image) if image else None, question=question, answer=answer, user_id="u", id=i)


def test_other_object_probes_take_each_other_answer_first_then_more_views_up_to_the_limit():
    called = "What is this called?"
    held = _event("e0", called, "ibuprofen", "a")
    others = [_event("e1", called, "aspirin", "b1"), _event("e2", called, "aspirin", "b2"),
              _event("e3", called, "aspirin", "b3"), _event("e4", called, "cetirizine", "c1"),
              _event("e5", called, " ", "d1"), _event("e6", called, "naproxen", None)]
    images = {ref: shape("blue", size=20 + i) for i, ref in enumerate(("a", "b1", "b2", "b3", "c1", "d1"))}
    probes = negatives_from_events([held], [held, *others], lambda ref: images[ref.sha256])
    other = [n for n in probes if n.kind == "other object"]
    assert [n.image.size for n in other] == [images[r].size for r in ("b1", "c1", "b2")]  # 3 by default
    assert len([n for n in negatives_from_events([held], [held, *others], lambda ref: images[ref.sha256],
                                                 per_event=5) if n.kind == "other object"]) == 4
    # no answer (e5) and no image (e6): never a probe; the no-object probe lists every taught answer
    assert probes[-1].kind == "no object" and probes[-1].wrong == ("aspirin", "cetirizine", "ibuprofen", "naproxen")


def test_a_held_out_event_without_an_image_gets_no_other_facet_probe():
    held = _event("e0", "What is this called?", "ibuprofen", None)
    events = [held, _event("e1", "What is it for?", "fever", "b")]
    probes = negatives_from_events([held], events, lambda ref: shape("red"))
    assert [(n.kind, n.image.size) for n in probes] == [("no object", (224, 224))]


def test_a_held_out_question_nobody_else_answered_still_gets_a_no_object_probe():
    held = _event("e0", "What colour is it?", "red", "a")
    probes = negatives_from_events([held], [_event("e1", "What is it for?", "fever", "b")], lambda ref: shape("red"))
    assert [(n.kind, n.question, n.wrong) for n in probes] == [
        ("other facet", "What is it for?", ("red",)), ("no object", "What colour is it?", ("red",))]


def test_every_held_out_event_gets_its_probes():
    called = "What is this called?"
    events = [_event("e0", called, "ibuprofen", "a"), _event("e1", called, "aspirin", "b")]
    images = {"a": shape("red"), "b": shape("green")}
    probes = negatives_from_events(events, events, lambda ref: images[ref.sha256])
    assert [(n.kind, n.wrong) for n in probes if n.kind == "other object"] == [
        ("other object", ("ibuprofen",)), ("other object", ("aspirin",))]


def test_another_question_sharing_an_answer_with_this_one_is_not_another_facet():
    called = "What is this called?"
    held = _event("e0", called, "ibuprofen", "a")
    events = [held, _event("e1", called, "aspirin", "b"),
              _event("e2", "What is this product?", "ibuprofen tablets", "a"),  # overlaps the held-out answer
              _event("e3", "Which one is cheaper?", "aspirin", "b")]  # overlaps another answer of the question
    probes = negatives_from_events([held], events, lambda ref: shape("red"))
    assert [n.kind for n in probes] == ["other object", "no object"]
