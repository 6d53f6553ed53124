"""Issue 18, item 2, end to end: the users' reactions to answers from memory move the reuse threshold
(tiny model, model-free embedders, lexical feedback)."""

from __future__ import annotations

from ilearn.assistant import Assistant
from ilearn.config import Config
from test_retrieval_loop import bottle, teach

QUESTION = "What is this medicine called?"


def make(tmp_path, **retrieval) -> Assistant:
    retrieval = {"calibrate": True, "guess_threshold": None, **retrieval}  # the model answers below reuse
    return Assistant.from_config(Config(home=str(tmp_path / "home")).override(
        model={"backend": "tiny"}, feedback={"method": "lexical"}, retrieval=retrieval))


def test_accepted_answers_from_memory_lower_the_threshold(tmp_path):
    # a cautious start: only a near-identical picture is answered from memory; with 0 rejections the 95%
    # upper bound of false reuse falls to 0.3 at 9 pairs
    assistant = make(tmp_path, reuse_threshold=0.999, calibration_min_pairs=5, max_false_reuse=0.3)
    teach(assistant, "ana", "ibuprofen", bottle())
    same = assistant.respond("ana", QUESTION, image=bottle())
    assert same.text.lower() == "ibuprofen"  # reused outright ...
    assistant.respond("ana", "Yes, thanks.", session_id=same.session_id)  # ... and accepted
    new_photo = bottle(shift=3, light=10)
    for _ in range(8):  # a new photo scores below 0.999: the model answers, the user gives the stored answer
        r = assistant.respond("ana", QUESTION, image=new_photo)
        assert r.text.lower() != "ibuprofen" and r.references[0].answer == "ibuprofen"
        assistant.respond("ana", "No, that's ibuprofen.", session_id=r.session_id)
    pairs = assistant.memory.calibrator.pairs()
    assert len(pairs) == 9 and all(ok for _, ok in pairs)
    score = r.references[0].score
    assert assistant.memory.reuse_threshold() <= score < 0.999
    again = assistant.respond("ana", QUESTION, image=new_photo)
    assert again.text.lower() == "ibuprofen"  # now answered from memory
    assistant.close()
    reopened = make(tmp_path, reuse_threshold=0.999, calibration_min_pairs=5, max_false_reuse=0.3)
    assert reopened.memory.reuse_threshold() <= score  # the pairs live beside the store


def test_rejected_answers_from_memory_raise_the_threshold(tmp_path):
    assistant = make(tmp_path)
    teach(assistant, "ana", "ibuprofen", bottle())
    default = assistant.config.retrieval.reuse_threshold
    assert assistant.memory.reuse_threshold() == default
    photo = bottle(shift=3, light=10)
    for _ in range(2):  # one rejection alone does not move it; two do
        assert assistant.memory.reuse_threshold() == default
        r = assistant.respond("ana", QUESTION, image=photo)
        assert r.text.lower() == "ibuprofen"
        assistant.respond("ana", "No, that's aspirin.", session_id=r.session_id)
        assert assistant.memory.calibrator.pairs()[-1][1] is False
    assert assistant.memory.reuse_threshold() > r.references[0].score
    again = assistant.respond("ana", QUESTION, image=photo)
    assert again.text.lower() != "ibuprofen"  # no longer given outright


def test_calibration_off_keeps_the_setting(tmp_path):
    assistant = make(tmp_path, calibrate=False)
    teach(assistant, "ana", "ibuprofen", bottle())
    for _ in range(2):
        r = assistant.respond("ana", QUESTION, image=bottle(shift=3, light=10))
        assistant.respond("ana", "No, that's aspirin.", session_id=r.session_id)
    assert assistant.memory.reuse_threshold() == assistant.config.retrieval.reuse_threshold
