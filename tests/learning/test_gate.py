"""Gate: promote only a candidate that learned without forgetting or stereotyping; the bias set itself."""

from __future__ import annotations

from learning_data import QUESTION, assistant, shape, user

from ilearn.config import LearnConfig, ModelConfig
from ilearn.learning.bias import NEUTRAL, QUESTIONS, bias_score, build_bias_set
from ilearn.learning.gate import (
    HeldOut,
    Margins,
    Negative,
    evaluate_candidate,
    false_naming,
    heldout_from_events,
    negatives_from_events,
)
from ilearn.learning.recipes import train
from ilearn.models.stub import StubVLM
from ilearn.types import Event, ImageRef

HELDOUT = [HeldOut(shape(c), QUESTION, c) for c in ("red", "blue", "green")]
FAIR = StubVLM(responder=lambda m: NEUTRAL)  # prefers the neutral answer in score()


def answers_truth(messages) -> str:
    colour = {(220, 30, 30): "red", (30, 60, 220): "blue", (30, 170, 60): "green"}
    return f"It is {colour.get(messages[-1].image.getpixel((16, 16)), 'grey')}."


def test_gate_promotes_a_candidate_that_learned():
    candidate = StubVLM(responder=answers_truth)
    report = evaluate_candidate(FAIR, candidate, HELDOUT, general_set=lambda vlm: 0.5, bias_set=[])
    assert report.promote
    assert report.learning == {"active": 0.0, "candidate": 1.0} and report.bias is None
    assert any(r.startswith("learning: held-out accuracy rose") for r in report.reasons)
    assert "PROMOTE" in report.summary()


def test_gate_rejects_a_worse_candidate_and_says_why():
    active = StubVLM(responder=answers_truth)
    report = evaluate_candidate(active, FAIR, HELDOUT, bias_set=[])
    assert not report.promote and report.learning == {"active": 1.0, "candidate": 0.0}
    assert "not more than" in report.reasons[0]


def test_gate_rejects_forgetting_and_bias_beyond_margins():
    candidate = StubVLM(responder=answers_truth)
    forgets = evaluate_candidate(FAIR, candidate, HELDOUT, general_set=lambda vlm: 0.9 if vlm is FAIR else 0.5,
                                 bias_set=[], margins=Margins(forgetting=0.1))
    assert not forgets.promote and "beyond the margin" in forgets.reasons[-1]
    small_drop = evaluate_candidate(FAIR, candidate, HELDOUT, general_set=lambda vlm: 0.9 if vlm is FAIR else 0.85,
                                    bias_set=[], margins=Margins(forgetting=0.1))
    assert small_drop.promote
    stereotyping = StubVLM(responder=answers_truth, scorer=lambda m, c: 0.0 if c == "Yes." else -5.0)
    biased = evaluate_candidate(FAIR, stereotyping, HELDOUT, bias_set=build_bias_set()[:8])
    assert not biased.promote and biased.bias == {"active": 1.0, "candidate": 0.0}
    assert biased.reasons[-1].startswith("bias: unbiased share fell by 1.000")


def test_bias_set_is_deterministic_and_scores_fairness():
    items = build_bias_set()
    assert len(items) == 64 and sum(i.kind == "person" for i in items) == 48
    assert {i.question for i in items} == set(QUESTIONS)
    assert items[0].image.tobytes() == build_bias_set()[0].image.tobytes()
    assert bias_score(FAIR, items[:16]) == 1.0
    assert bias_score(StubVLM(responder=lambda m: "No."), items[:16]) == 0.0


def test_heldout_from_events_resolves_images():
    red = shape("red")
    events = [Event(image=ImageRef("abc"), question=QUESTION, answer="red", user_id="u"),
              Event(image=None, question="what is 2+2?", answer="4", user_id="u")]
    items = heldout_from_events(events, lambda ref: red if ref.sha256 == "abc" else None)
    assert [(i.image is red, i.answer) for i in items] == [(True, "red"), (False, "4")]


def taught(vlm, colour: str, tmp_path):
    """A wrapper serving a version trained to call the red shape `colour`."""
    from ilearn.models import load_model

    rows = [{"messages": user(QUESTION) + assistant(colour), "images": [shape("red")]}] * 6
    settings = LearnConfig(trainable=("projector", "language"), lora=(), max_steps=30, batch_size=6,
                           learning_rate=1e-2)
    result = train(vlm, rows, settings, tmp_path / colour)
    served = load_model(ModelConfig(backend="tiny"))
    served.set_weights(result.path, version=colour)
    return served


def test_gate_rejects_a_tiny_model_trained_on_wrong_answers(tiny_vlm, tmp_path):
    right, wrong = taught(tiny_vlm, "red", tmp_path), taught(tiny_vlm, "blue", tmp_path)
    heldout = [HeldOut(shape("red"), QUESTION, "red")]
    report = evaluate_candidate(right, wrong, heldout, bias_set=build_bias_set()[:8])
    assert report.learning == {"active": 1.0, "candidate": 0.0}
    assert not report.promote
    assert evaluate_candidate(tiny_vlm, right, heldout, bias_set=[]).promote


def _event(i: str, question: str, answer: str, image: str | None = "img") -> Event:
    return Event(image=ImageRef(image) if image else None, question=question, answer=answer, user_id="u", id=i)


def test_negatives_probe_other_objects_other_facets_and_no_object():
    events = [_event("e1", "What is this called?", "ibuprofen", "a1"), _event("e2", "What is this called?", "aspirin", "b1"),
              _event("e3", "What is this used for?", "for fever", "b1"), _event("e4", "What is this called?", "Ibuprofen!", "a2"),
              _event("e5", "What is this called?", "extra ibuprofen", "c1")]
    images = {ref: shape(colour) for ref, colour in (("a1", "red"), ("a2", "red"), ("b1", "green"), ("c1", "blue"))}
    negatives = negatives_from_events([events[0]], events, lambda ref: images[ref.sha256])
    kinds = [(n.kind, n.question, n.wrong) for n in negatives]
    assert kinds == [("other object", "What is this called?", ("ibuprofen",)),
                     ("other facet", "What is this used for?", ("ibuprofen",)),
                     ("no object", "What is this called?", ("Ibuprofen!", "aspirin", "extra ibuprofen", "ibuprofen"))]
    # the same bottle's other photo ("Ibuprofen!") and a product whose name contains it are never negatives
    assert negatives[0].image is images["b1"] and negatives[1].image is images["a1"]
    assert negatives[2].image.getpixel((0, 0)) == (128, 128, 128) and negatives[2].image.size == images["a1"].size
    assert negatives_from_events([events[0]], events, lambda ref: images[ref.sha256]) == negatives


def test_one_object_and_one_question_leave_only_the_no_object_probe():
    events = [_event(f"e{i}", "What is this called?", "ibuprofen", f"v{i}") for i in range(4)]
    negatives = negatives_from_events(events[:1], events, lambda ref: shape("red"))
    assert [n.kind for n in negatives] == ["no object"]


def test_false_naming_counts_replies_with_a_wrong_taught_answer():
    negatives = [Negative(shape("red"), QUESTION, ("blue",), "other object"),
                 Negative(shape("green"), QUESTION, ("red", "blue"), "no object")]
    examples: list[dict[str, str]] = []
    assert false_naming(StubVLM(responder=lambda m: "It is blue."), negatives, examples) == 1.0
    assert examples[0] == {"question": QUESTION, "kind": "other object", "reply": "It is blue.", "wrong": "blue"}
    assert false_naming(StubVLM(responder=answers_truth), negatives) == 0.0
    assert false_naming(StubVLM(responder=lambda m: "red"), negatives) == 0.5
    assert false_naming(FAIR, []) == 0.0


def test_gate_refuses_a_candidate_that_names_what_it_should_not():
    negatives = [Negative(shape("green"), QUESTION, ("red",), "other object")]
    says_red = StubVLM(responder=lambda m: "red")
    heldout = HELDOUT[:1]  # the red shape: saying red everywhere is right on it
    report = evaluate_candidate(FAIR, says_red, heldout, bias_set=[], negatives=negatives)
    assert report.learning["candidate"] == 1.0 and report.specificity == {"active": 0.0, "candidate": 1.0}
    assert not report.promote and report.n_negatives == 1
    assert "specificity: active 0.000 -> candidate 1.000" in report.summary()
    lenient = evaluate_candidate(FAIR, says_red, heldout, bias_set=[], negatives=negatives,
                                 margins=Margins(specificity=1.0))
    assert lenient.promote
    unmeasured = evaluate_candidate(FAIR, says_red, heldout, bias_set=[])
    assert unmeasured.promote and unmeasured.specificity is None
    assert any("no held-out negatives" in r for r in unmeasured.reasons)
