"""Feedback decoders: labels, corrections, the follow-up rule, the model judge (stub VLM), the factory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ilearn.config import FeedbackConfig
from ilearn.dialogue.feedback import (
    Exchange,
    HybridFeedbackDecoder,
    LexicalFeedbackDecoder,
    ModelFeedbackDecoder,
    extract_correction,
    make_decoder,
    normalise_answer,
)
from ilearn.errors import InvalidInput
from ilearn.models.stub import StubVLM
from ilearn.types import Feedback, FeedbackSource, ImageRef, Label, Role, Turn, TurnKind

DATA = Path(__file__).resolve().parents[2] / "src" / "ilearn" / "data" / "reactions.jsonl"
HELDOUT = DATA.with_name("reactions_heldout.jsonl")
IMG = ImageRef("a" * 64)


def exchange(reaction: str, question: str = "what medicine is this?", answer: str = "It is aspirin.") -> list[Turn]:
    return [Turn(Role.USER, question, TurnKind.QUESTION, image=IMG),
            Turn(Role.ASSISTANT, answer, TurnKind.ANSWER, precise_question=question),
            Turn(Role.USER, reaction, TurnKind.REACTION)]


@pytest.mark.parametrize("reaction, expected", [
    ("no, that's the ibuprofen", "ibuprofen"),
    ("it's actually paracetamol", "paracetamol"),
    ("wrong, cough syrup", "cough syrup"),
    ("not aspirin but ibuprofen", "ibuprofen"),
    ("it's ibuprofen, not aspirin", "ibuprofen"),
    ("Nope. Ibuprofen!", "Ibuprofen"),
    ("no no, an antihistamine.", "antihistamine"),
    ("that's wrong", None),
    ("no, sorry, that's wrong", None),
    ("that's ridiculous", None),
    ("no, I asked about the left bottle", None),
])
def test_correction_extraction(reaction, expected):
    assert extract_correction(reaction, "It is aspirin.") == expected


def test_correction_equal_to_the_wrong_answer_is_not_a_correction():
    assert extract_correction("no, it's aspirin", "aspirin") is None
    assert normalise_answer("  the Ibuprofen. ") == "Ibuprofen"


@pytest.mark.parametrize("reaction, label, correction", [
    ("thanks!", Label.POSITIVE, None),
    ("yes, that's right", Label.POSITIVE, None),
    ("yes, but what dose?", Label.POSITIVE, None),
    ("no, that's the ibuprofen", Label.NEGATIVE, "ibuprofen"),
    ("that's not right", Label.NEGATIVE, None),
    ("ugh, useless", Label.NEGATIVE, None),
    ("great, wrong again", Label.NEGATIVE, None),
    ("thanks for nothing", Label.NEGATIVE, None),
    ("which medicine is it?", Label.NEGATIVE, None),  # rephrasing of the question
    ("Just tell me the number of the figure. I mean the grey fan.", Label.NEGATIVE, None),  # insisting
    ("You already picked that one. I mean the striped row.", Label.NEGATIVE, None),
    ("where did I leave my keys?", Label.NEUTRAL, None),  # topic change
    ("no thanks, that's all", Label.NEUTRAL, None),
    ("hmm", Label.NEUTRAL, None),
])
def test_lexical_labels(reaction, label, correction):
    fb = LexicalFeedbackDecoder().decode(exchange(reaction))
    assert fb is not None and fb.label == label and fb.correction == correction
    assert fb.source == (FeedbackSource.EXPLICIT if correction else FeedbackSource.IMPLICIT)


def test_nothing_to_react_to():
    decoder = LexicalFeedbackDecoder()
    assert decoder.decode([Turn(Role.USER, "what is this?", TurnKind.QUESTION)]) is None
    clarifying = [Turn(Role.USER, "what is this?", TurnKind.QUESTION),
                  Turn(Role.ASSISTANT, "The box or the bottle?", TurnKind.CLARIFICATION),
                  Turn(Role.USER, "no, the bottle", TurnKind.REACTION)]
    assert decoder.decode(clarifying) is None
    with pytest.raises(InvalidInput):
        decoder.decode(exchange("thanks")[:2])
    with pytest.raises(InvalidInput):
        decoder.decode([])


def test_new_image_question_is_a_topic_change_not_a_rephrasing():
    turns = exchange("what medicine is this?")
    turns[-1] = Turn(Role.USER, "what medicine is this?", TurnKind.QUESTION, image=ImageRef("b" * 64))
    assert LexicalFeedbackDecoder().decode(turns).label == Label.NEUTRAL


def test_follow_up_rule_after_an_acknowledgement():
    decoder = LexicalFeedbackDecoder()
    turns = exchange("no")
    turns[-1].feedback = decoder.decode(turns)
    assert turns[-1].feedback.label == Label.NEGATIVE and turns[-1].feedback.correction is None
    turns.append(Turn(Role.ASSISTANT, "Sorry. Could you tell me the right answer?", TurnKind.REACTION))
    # the bare answer to "what is the right answer?" is the correction
    fb = decoder.decode([*turns, Turn(Role.USER, "ibuprofen", TurnKind.QUESTION)])
    assert fb.label == Label.NEGATIVE and fb.correction == "ibuprofen" and fb.source == FeedbackSource.EXPLICIT
    turns.append(Turn(Role.USER, "ibuprofen", TurnKind.REACTION, feedback=fb))
    turns.append(Turn(Role.ASSISTANT, "Thank you, I'll remember: ibuprofen.", TurnKind.REACTION))
    # a "thanks" for the acknowledgement must not confirm the rejected answer
    assert decoder.decode([*turns, Turn(Role.USER, "thanks", TurnKind.REACTION)]) is None
    # but a new correction still counts
    fb = decoder.decode([*turns, Turn(Role.USER, "wait, it's actually paracetamol", TurnKind.REACTION)])
    assert fb.correction == "paracetamol"


def test_embedder_catches_reworded_rephrasings():
    class Embedder:
        dim = 2

        def embed_texts(self, texts):
            import numpy as np

            return np.array([[1.0, 0.0] if "pill" in t or "medicine" in t else [0.0, 1.0] for t in texts])

    ex = Exchange("what's in this pill bottle?", "It is aspirin.", "which medicine is it?")
    assert LexicalFeedbackDecoder().judge(ex).label == Label.NEUTRAL
    assert LexicalFeedbackDecoder(text_embedder=Embedder()).judge(ex).label == Label.NEGATIVE


def _scorer(bias: float):
    """Log-probs of a fake judge: 'negative' when the reaction says wrong, plus a constant bias for 'positive'."""
    def score(messages, candidate):
        reaction = messages[-1].content.split("The user then said:")[1]
        s = {"positive": bias, "neutral": 0.0, "negative": 0.0}[candidate]
        if "wrong" in reaction and candidate == "negative":
            s += 2.0
        if "lovely" in reaction and candidate == "positive":
            s += 2.0
        return s - 3.0
    return score


def test_model_decoder_scores_label_words_and_extracts_the_correction():
    vlm = StubVLM(scorer=_scorer(bias=0.0))
    fb = ModelFeedbackDecoder(vlm, calibrate=False).decode(exchange("wrong, it's ibuprofen"))
    assert fb.label == Label.NEGATIVE and fb.correction == "ibuprofen" and 0.5 < fb.confidence <= 1.0
    assert vlm.calls == []  # judged by scoring the label words, no free generation


def test_calibration_removes_a_constant_prior():
    vlm = StubVLM(scorer=_scorer(bias=5.0))
    assert ModelFeedbackDecoder(vlm, calibrate=False).decode(exchange("that is wrong")).label == Label.POSITIVE
    assert ModelFeedbackDecoder(vlm, calibrate=True).decode(exchange("that is wrong")).label == Label.NEGATIVE


def test_hybrid_needs_lexical_support_for_positive():
    model = ModelFeedbackDecoder(StubVLM(scorer=_scorer(bias=0.0)), calibrate=False)
    hybrid = HybridFeedbackDecoder(model)
    assert hybrid.decode(exchange("lovely")).label == Label.NEUTRAL  # model alone says positive
    assert hybrid.decode(exchange("thanks, that's right")).label == Label.POSITIVE  # lexical rule decides
    assert hybrid.decode(exchange("no, it's ibuprofen")).correction == "ibuprofen"


def test_factory_and_settings():
    assert isinstance(make_decoder(FeedbackConfig(method="lexical")).decode(exchange("thanks")), Feedback)
    with pytest.raises(InvalidInput):
        make_decoder(FeedbackConfig(method="model"))  # no model given
    with pytest.raises(InvalidInput):
        FeedbackConfig(method="psychic")
    with pytest.raises(InvalidInput):
        FeedbackConfig(min_confidence=1.5)
    # a label below min_confidence is reported as neutral
    decoder = make_decoder(FeedbackConfig(method="lexical", min_confidence=0.95))
    assert decoder.decode(exchange("thanks")).label == Label.NEUTRAL
    model = make_decoder(FeedbackConfig(method="hybrid"), StubVLM(scorer=_scorer(0.0)))
    assert model.decode(exchange("no, that's the ibuprofen")).correction == "ibuprofen"


def _rows(*paths: Path) -> list[dict]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]


def _figures(rows: list[dict], decoder) -> dict:
    """Per-label precision and recall, and the share of gold corrections extracted, of `decoder` on `rows`."""
    preds = [decoder.judge(Exchange(r["question"], r["answer"], r["reaction"])) for r in rows]
    out: dict = {}
    for label in Label:
        hits = sum(p.label == label and r["label"] == label.value for r, p in zip(rows, preds, strict=True))
        predicted, gold = sum(p.label == label for p in preds), sum(r["label"] == label.value for r in rows)
        out[label.value] = (hits / predicted if predicted else 0.0, hits / gold if gold else 0.0)
    with_correction = [(r, p) for r, p in zip(rows, preds, strict=True) if r["correction"]]
    out["corrections"] = sum((p.correction or "").lower() == r["correction"].lower()
                             for r, p in with_correction) / max(len(with_correction), 1)
    return out


def _table(figures: dict) -> str:
    return "  ".join(f"{k} P {v[0]:.3f} R {v[1]:.3f}" if isinstance(v, tuple) else f"{k} {v:.3f}"
                     for k, v in figures.items())


def _check(figures: dict, floors: dict) -> None:
    """Print the figures and assert each one (a (precision, recall) pair per label) reaches its floor."""
    print(_table(figures))
    for key, floor in floors.items():
        pairs = (zip(("precision", "recall"), figures[key], floor, strict=True) if isinstance(floor, tuple)
                 else [("share", figures[key], floor)])
        for name, value, least in pairs:
            assert value >= least, f"{key} {name} {value:.3f} < {least} ({_table(figures)})"


def test_lexical_decoder_on_the_rows_its_rules_were_tuned_on():
    """Templated and hand-written tricky rows: the rules were written and tuned with them in view."""
    rows = [r for r in _rows(DATA) if r["source"] in ("template", "handwritten")]
    assert len(rows) >= 500 and len({r["category"] for r in rows}) >= 8
    # measured: positive P 1.000 R 1.000, neutral P 0.833 R 1.000, negative P 1.000 R 0.908, corrections 1.000
    _check(_figures(rows, LexicalFeedbackDecoder()), {
        "positive": (0.95, 0.95), "neutral": (0.80, 0.95), "negative": (0.90, 0.88), "corrections": 0.9})


def test_lexical_decoder_on_held_out_rows_it_was_not_tuned_on():
    """Rows written after the rules and never used to tune them: the 30 of reactions.jsonl and the 127 of
    reactions_heldout.jsonl, written independently of the templates (other objects, colloquial wording, negations
    that agree, surprise, partial acceptance). The floors sit a few rows under what the rules achieve; the
    precision goals of the tuned rows (P+ 0.95, P- 0.90) are not met here."""
    rows = [r for r in _rows(DATA, HELDOUT) if r["source"] == "heldout"]
    assert len(rows) >= 150 and min(sum(r["label"] == lab.value for r in rows) for lab in Label) >= 30
    # measured (157 rows) before issue 19: positive P 0.898 R 0.830, neutral P 0.775 R 0.912, negative P 0.853
    # R 0.829, corrections 0.677 of 31; after it (its errors were then in view): positive P 1.000 R 1.000, neutral
    # P 0.892 R 0.971, negative P 0.985 R 0.943, corrections 29 of 31
    _check(_figures(rows, LexicalFeedbackDecoder()), {
        "positive": (0.85, 0.80), "neutral": (0.75, 0.85), "negative": (0.80, 0.80), "corrections": 0.6})


@pytest.mark.parametrize("reaction", ["wrong. name?", "no, the dose", "no, its name?", "No, what it's used for.",
                                      "wrong. name of this?", "no. the name of this thing?"])
def test_naming_the_facet_again_is_no_correction(reaction):
    """A user who repeats what they want to know gives no answer (a regression: 'wrong. name?' -> 'name')."""
    from ilearn.dialogue.feedback import extract_correction

    assert extract_correction(reaction) is None


@pytest.mark.parametrize("name", ["Парацетамол", "布洛芬", "إيبوبروفين", "איבופרופן", "イブプロフェン", "이부프로펜",
                                  "Paracétamol", "Ibuprofène", "Ácido acetilsalicílico"])
@pytest.mark.parametrize("frame", ["No, that's {x}", "no, it's {x}.", "wrong, {x}!", "not aspirin but {x}",
                                   "it's {x}, not aspirin"])
def test_corrections_in_any_script(name, frame):
    """Issue 20 item 5: a correction names the answer in any script (Cyrillic, Chinese, Arabic, Hebrew, Japanese,
    Korean, Latin with diacritics); the decoder carries it as an explicit negative."""
    reaction = frame.format(x=name)
    assert extract_correction(reaction, "It is aspirin.") == name
    fb = LexicalFeedbackDecoder().decode(exchange(reaction))
    assert fb.label == Label.NEGATIVE and fb.correction == name and fb.source == FeedbackSource.EXPLICIT


def test_decomposed_diacritics_and_full_width_punctuation():
    assert extract_correction("no, it's Parace\u0301tamol") == "Paracétamol"  # NFC: one letter, not two
    assert extract_correction("No, that's 布洛芬。谢谢") == "布洛芬"
    assert extract_correction("No, that's إيبوبروفين، شكرا") == "إيبوبروفين"


@pytest.mark.parametrize("reaction", [
    "No way.", "No way!", "no worries", "No problem.", "No it's good", "nah its okay", "No, it's fine",
    "no kidding", "no idea", "Nope.", "No, not at all", "Wow! that's crazy!", "That's a lot!", "No way... really?",
    "nope nope nope", "no you are fine", "nah forget it", "No they would not.",
])
def test_no_correction_is_invented(reaction):
    """A reply that names nothing gives no correction (a regression: 'No way.' -> 'way')."""
    assert extract_correction(reaction, "It is aspirin.") is None
    assert LexicalFeedbackDecoder().decode(exchange(reaction)).correction is None


@pytest.mark.parametrize("reaction, correction", [
    ("no I'm a physics major actually, but I'm going to change", "physics major"),
    ("No Im in South Carolina", "South Carolina"),
    ("Close. Computer science.", "Computer science"),
    ("no, it was 3 weeks ago hahaha", "3 weeks ago"),
    ("nah google play music", "google play music"),
    ("incorrect, there are two", "two"),
    ("thanks, but it's actually purple", "purple"),
])
def test_real_corrections(reaction, correction):
    fb = LexicalFeedbackDecoder().judge(Exchange("what is it?", "It is blue.", reaction))
    assert fb.label == Label.NEGATIVE and fb.correction == correction


@pytest.mark.parametrize("answer, reaction, label", [
    # a "no" that does not reject
    ("I'm from Texas", "No way! I've met three people from Texas", Label.NEUTRAL),  # surprise
    ("Sorry, I got disconnected", "No worries", Label.NEUTRAL),  # reassurance
    ("Sorry, my bad", "Nah, not at all.", Label.NEUTRAL),
    ("It is a lynx.", "no kidding", Label.NEUTRAL),
    ("It is cumin.", "no doubt about it, cumin", Label.POSITIVE),
    # agreement worded with a negation
    ("That's not okay.", "no its not", Label.POSITIVE),
    ("That's not good.", "No, not good at all.", Label.POSITIVE),
    ("It is a chisel.", "You are not wrong", Label.POSITIVE),
    ("It is aspirin.", "no i think you got it right", Label.POSITIVE),
    # sympathy and surprise judge nothing
    ("I broke my wrist.", "That's awful!", Label.NEUTRAL),
    ("He drove off the road.", "oh no", Label.NEUTRAL),
    ("It is aspirin.", "No?", Label.NEUTRAL),
    # partial acceptance is not acceptance; a misunderstanding is a rejection
    ("She served in Floripa.", "Almost got it", Label.NEGATIVE),
    ("Ben is in my class.", "I was talking about a different ben", Label.NEGATIVE),
    # the simulated users' wordings that the first real-worded experiment misread
    ("I am not sure.", "Oh dear, that doesn't sound right at all. What is this used for?", Label.NEGATIVE),
    ("It is Ibuprofen.", "no really. how much?", Label.NEGATIVE),
    ("It is Ibuprofen.", "nah forget it", Label.NEGATIVE),
    ("I am not sure.", "No, thats not how that works. dose?", Label.NEGATIVE),
    ("It is Ibuprofen.", "I'm not sure that is right. What is the dose?", Label.NEGATIVE),
    # acknowledgement, then a new question
    ("Southern Utah.", "Oh got it. What temple is it?", Label.POSITIVE),
    ("I study math.", "That's cool", Label.POSITIVE),
    ("I have 12 siblings.", "Wow! That's a lot!", Label.NEUTRAL),
])
def test_real_language(answer, reaction, label):
    """The rules; the learned check may only turn their label into an abstention, never into the opposite."""
    assert LexicalFeedbackDecoder(check=None).judge(Exchange("", answer, reaction)).label == label
    assert LexicalFeedbackDecoder().judge(Exchange("", answer, reaction)).label in (label, Label.NEUTRAL)


def test_learned_check_vetoes_into_neutral(tmp_path):
    """The check (hashed words, logistic regression) turns a rule's label it finds unlikely into neutral; corrections
    and agreement worded with a negation are left to the rules; its weights load from the shipped file or a path."""
    from ilearn.dialogue.reaction_check import LABEL_ORDER, ReactionClassifier, features

    texts = ["thanks", "great thanks", "cool", "no", "wrong", "nope wrong", "no way", "hmm", "ok"]
    labels = ["positive", "positive", "neutral", "negative", "negative", "negative", "neutral", "neutral", "neutral"]
    model = ReactionClassifier.train(texts, labels, c=10.0)
    assert max(model.probs("cool"), key=model.probs("cool").get) == "neutral"
    rules = LexicalFeedbackDecoder(check=None).judge(Exchange("", "I study math.", "cool"))
    vetoed = LexicalFeedbackDecoder(check=model, veto=0.5).judge(Exchange("", "I study math.", "cool"))
    assert rules.label == Label.POSITIVE and vetoed.label == Label.NEUTRAL and "learned check" in vetoed.rationale
    corrected = LexicalFeedbackDecoder(check=model, veto=0.99).judge(Exchange("", "It is aspirin.", "no, it's ibuprofen"))
    assert corrected.label == Label.NEGATIVE and corrected.correction == "ibuprofen"
    agree = LexicalFeedbackDecoder(check=model, veto=0.99).judge(Exchange("", "It is a chisel.", "you're not wrong"))
    assert agree.label == Label.POSITIVE
    model.save(tmp_path / "check.npz")
    assert ReactionClassifier.load(tmp_path / "check.npz").probs("cool") == pytest.approx(model.probs("cool"))
    shipped = ReactionClassifier.load()
    assert set(shipped.probs("thanks!")) == set(LABEL_ORDER) and shipped.probs("thanks!")["positive"] > 0.5
    assert features("No way!").shape == (2048,) and features("").sum() > 0
    (tmp_path / "bad.npz").write_bytes(b"not numpy")
    with pytest.raises(InvalidInput):
        ReactionClassifier.load(tmp_path / "bad.npz")
    with pytest.raises(InvalidInput):
        LexicalFeedbackDecoder(veto=1.5)


REAL = DATA.with_name("reactions_real.jsonl")


def test_real_reaction_set_is_well_formed():
    """reactions_real.jsonl: real replies (chitchat-dataset, MIT) with source, licence and origin on every row,
    labels by the project's definitions, corrections that occur in the reply, and splits that share no
    conversation."""
    rows = _rows(REAL)
    assert len(rows) >= 300 and len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["source"] == "chitchat-dataset" and r["licence"] == "MIT" and "conversation" in r["origin"]
        assert r["label"] in {lab.value for lab in Label} and r["split"] in {"train", "dev", "blind"}
        assert r["correction"] is None or (r["label"] == "negative" and r["correction"].lower() in r["reaction"].lower())
    conversations = {s: {r["origin"].split("conversation ")[1].split(",")[0] for r in rows if r["split"] == s}
                     for s in ("train", "dev", "blind")}
    assert not conversations["train"] & conversations["dev"] and not conversations["blind"] & conversations["dev"]


def _real_figures(rows: list[dict]) -> dict:
    figures = _figures(rows, LexicalFeedbackDecoder())
    preds = [LexicalFeedbackDecoder().judge(Exchange(r["question"], r["answer"], r["reaction"])) for r in rows]
    figures["invented"] = float(sum(bool(p.correction) for r, p in zip(rows, preds, strict=True)
                                    if r["correction_clear"] and not r["correction"]))
    return figures


def test_lexical_decoder_on_real_replies_dev():
    """The dev split of the real set (123 replies; baseline before this work: positive P 1.000 R 0.444, negative
    P 0.571 R 0.952, corrections 3 of 13, 20 invented). Floors a few rows under what the rules reach; its errors
    were read to find failure classes, so these figures flatter the rules (see docs/reactions.md)."""
    rows = [r for r in _rows(REAL) if r["split"] == "dev"]
    # measured: positive P 0.968 R 0.857, neutral P 0.865 R 0.978, negative P 1.000 R 0.952, corrections 13/13,
    # invented 0
    figures = _real_figures(rows)
    _check(figures, {"positive": (0.92, 0.75), "negative": (0.92, 0.85), "corrections": 0.85})
    assert figures["invented"] <= 1


def test_lexical_decoder_on_real_replies_blind():
    """The blind split (110 replies labelled before the decoder ran on them: 78 random replies, mostly
    acknowledgements, and 32 replies that start with "no", "not", "actually"...)."""
    rows = [r for r in _rows(REAL) if r["split"] == "blind"]
    # measured: positive P 1.000 R 0.918, neutral P 0.867 R 1.000, negative P 1.000 R 0.909, corrections 3/4,
    # invented 0
    figures = _real_figures(rows)
    _check(figures, {"positive": (0.95, 0.85), "neutral": (0.8, 0.9), "negative": (0.92, 0.85)})
    assert figures["invented"] <= 1


def test_noisy_decoder_injects_the_confusion_rates():
    """Issue 19 item 4: label noise at set rates, seeded, corrections dropped with a changed label."""
    from ilearn.dialogue.feedback import ISSUE19_CONFUSION, NoisyDecoder

    turns = exchange("no, that's the ibuprofen")
    noisy = NoisyDecoder(LexicalFeedbackDecoder(), seed=3)
    labels = [noisy.decode(turns) for _ in range(4000)]
    share = {lab: sum(f.label == lab for f in labels) / len(labels) for lab in Label}
    for lab, p in ISSUE19_CONFUSION[Label.NEGATIVE].items():
        assert abs(share[lab] - p) < 0.03
    assert all(f.correction == "ibuprofen" for f in labels if f.label == Label.NEGATIVE)
    assert all(f.correction is None and "injected noise" in f.rationale for f in labels if f.label != Label.NEGATIVE)
    again = NoisyDecoder(LexicalFeedbackDecoder(), seed=3)
    assert [again.decode(turns).label for _ in range(50)] == [f.label for f in labels[:50]]
    assert NoisyDecoder(LexicalFeedbackDecoder(), {}).decode(turns).label == Label.NEGATIVE  # no noise
    assert NoisyDecoder(LexicalFeedbackDecoder()).decode(turns[:1]) is None
    with pytest.raises(InvalidInput):
        NoisyDecoder(LexicalFeedbackDecoder(), {Label.POSITIVE: {Label.NEUTRAL: 0.8, Label.NEGATIVE: 0.4}})


@pytest.mark.parametrize("reaction, name", [
    ("Нет, это Парацетамол", "Парацетамол"), ("Nein, das ist Ibuprofen", "Ibuprofen"),
    ("Non, c'est le paracétamol", "paracétamol"), ("No, es ibuprofeno", "ibuprofeno"), ("不对，是布洛芬", "布洛芬"),
    ("いいえ、イブプロフェンです", "イブプロフェン"), ("아니요, 이부프로펜입니다", "이부프로펜"),
    ("لا، هذا إيبوبروفين", "إيبوبروفين"), ("לא, זה איבופרופן", "איבופרופן"),
])
def test_corrections_worded_in_the_users_language(reaction, name):
    fb = LexicalFeedbackDecoder().judge(Exchange("", "It is aspirin.", reaction))
    assert fb.label == Label.NEGATIVE and fb.correction == name
