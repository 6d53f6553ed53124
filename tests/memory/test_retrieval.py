from __future__ import annotations

import pytest
from memory_helpers import make_event, make_image

from ilearn.config import RetrievalConfig
from ilearn.errors import InvalidInput, NotFound
from ilearn.memory.retrieval import DualModalityMemory, format_references
from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder
from ilearn.types import Event, EventStatus, Scope, answer_key

PILLS = make_image((200, 40, 40), mark=4)
MUG = make_image((40, 40, 200), mark=20)
Q = "what is this?"


def memory(mem_store, tmp_path, **cfg) -> DualModalityMemory:
    config = RetrievalConfig(**{"image_weight": 0.7, "text_weight": 0.3, "threshold": 0.8, **cfg})
    return DualModalityMemory(mem_store, StubImageEmbedder(), HashingTextEmbedder(), config, tmp_path)


def answers(matches) -> list[str]:
    return [m.event.answer for m in matches]


def test_own_event_found_and_private_to_its_user(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    mem.add(make_event(mem_store, PILLS, "ibuprofen", "alice"), PILLS)
    hits = mem.search(PILLS, Q, "alice")
    assert answers(hits) == ["ibuprofen"]
    assert hits[0].image_sim == pytest.approx(1.0, abs=1e-4) and hits[0].text_sim == pytest.approx(1.0, abs=1e-4)
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert mem.search(PILLS, Q, "bob") == []  # private
    assert mem.search(MUG, Q, "alice") == []  # another object is below the threshold


def test_shared_scope_visible_to_all(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    mem.add(make_event(mem_store, PILLS, "ibuprofen", "alice", scope=Scope.SHARED), PILLS)
    assert answers(mem.search(PILLS, Q, "bob")) == ["ibuprofen"]


def test_corroboration_by_two_users_makes_it_visible(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    mem.add(make_event(mem_store, PILLS, "Ibuprofen.", "alice"), PILLS)
    assert mem.search(PILLS, Q, "carol") == []
    mem.add(make_event(mem_store, PILLS, "ibuprofen", "bob"), PILLS)
    assert sorted(answers(mem.search(PILLS, Q, "carol"))) == ["Ibuprofen.", "ibuprofen"]


def test_single_malicious_user_cannot_teach_others(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    for i in range(5):  # one user repeating a lie is still one user
        mem.add(make_event(mem_store, PILLS, "candy", "mallory", question=f"what is this? {i}" if i else Q), PILLS)
    assert mem.search(PILLS, Q, "carol") == []
    assert "candy" in answers(mem.search(PILLS, Q, "mallory"))


def test_trusted_policy_shares_at_once(mem_store, tmp_path):
    mem_store.ensure_user("teacher", trusted=True)
    mem_store.ensure_user("student")
    mem = memory(mem_store, tmp_path, sharing="trusted")
    mem.add(make_event(mem_store, PILLS, "ibuprofen", "teacher"), PILLS)
    mem.add(make_event(mem_store, MUG, "mug", "student"), MUG)
    assert answers(mem.search(PILLS, Q, "carol")) == ["ibuprofen"]
    assert mem.search(MUG, Q, "carol") == []  # untrusted, uncorroborated


def test_private_policy_ignores_corroboration(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, sharing="private")
    mem.add(make_event(mem_store, PILLS, "ibuprofen", "alice"), PILLS)
    mem.add(make_event(mem_store, PILLS, "ibuprofen", "bob"), PILLS)
    assert mem.search(PILLS, Q, "carol") == []


def test_supersede_retires_the_wrong_event(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    wrong = mem.add(make_event(mem_store, PILLS, "aspirin", "alice"), PILLS)
    fixed = mem.supersede(wrong.id, make_event(mem_store, PILLS, "ibuprofen", "alice", rejected=["aspirin"]), PILLS)
    assert fixed.status == EventStatus.ACTIVE and fixed.supersedes == wrong.id
    assert answers(mem.search(PILLS, Q, "alice")) == ["ibuprofen"]  # fixed at once, old never returned
    assert mem_store.get_event(wrong.id).status == EventStatus.SUPERSEDED
    with pytest.raises(NotFound):
        mem.supersede("evt_unknown", make_event(mem_store, PILLS, "x", "alice"))


def test_user_cannot_supersede_another_users_event(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    theirs = mem.add(make_event(mem_store, PILLS, "ibuprofen", "alice"), PILLS)
    mem.supersede(theirs.id, make_event(mem_store, PILLS, "candy", "mallory"), PILLS)
    assert mem_store.get_event(theirs.id).status == EventStatus.ACTIVE
    assert answers(mem.search(PILLS, Q, "alice")) == ["ibuprofen"]


def test_conflicting_correction_is_quarantined_then_resolved(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    mem.add(make_event(mem_store, PILLS, "ibuprofen", "alice"), PILLS)
    mem.add(make_event(mem_store, PILLS, "ibuprofen", "bob"), PILLS)
    bad = mem.add(make_event(mem_store, PILLS, "candy", "mallory", rejected=["ibuprofen"]), PILLS)
    assert bad.status == EventStatus.QUARANTINED
    assert mem_store.get_event(bad.id).status == EventStatus.QUARANTINED
    assert "candy" not in answers(mem.search(PILLS, Q, "carol", k=10))
    assert "candy" not in answers(mem.search(PILLS, Q, "mallory", k=10))  # never returned while quarantined
    kept = mem.resolve(bad.id, keep=True)
    assert kept.status == EventStatus.ACTIVE and "candy" in answers(mem.search(PILLS, Q, "mallory", k=10))
    with pytest.raises(InvalidInput):
        mem.resolve(bad.id, keep=False)  # no longer quarantined


def test_rejected_quarantine_is_retired(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, corroboration=1)
    mem.add(make_event(mem_store, PILLS, "ibuprofen", "alice"), PILLS)
    bad = mem.add(make_event(mem_store, PILLS, "candy", "mallory"), PILLS)
    assert bad.status == EventStatus.QUARANTINED
    assert mem.resolve(bad.id, keep=False).status == EventStatus.DELETED
    assert mem_store.get_event(bad.id).status == EventStatus.DELETED


def test_forget_user_removes_events_and_vectors(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    ev = mem.add(make_event(mem_store, PILLS, "ibuprofen", "alice"), PILLS)
    mem.add(make_event(mem_store, MUG, "mug", "bob"), MUG)
    assert mem.forget_user("alice") == [ev.id]
    assert ev.id not in mem.index and len(mem.index) == 1
    assert mem.search(PILLS, Q, "alice") == []
    assert DualModalityMemory(mem_store, StubImageEmbedder(), HashingTextEmbedder(), mem.config, tmp_path).index.keys() \
        == mem.index.keys()


def test_persisted_index_reloads_and_repairs(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    a = mem.add(make_event(mem_store, PILLS, "ibuprofen", "alice"), PILLS)
    mem.save()
    # an event written to the mem_store while the index file was not updated: stale -> updated
    late = make_event(mem_store, MUG, "mug", "alice")
    mem_store.add_events([late])
    images = StubImageEmbedder()
    again = DualModalityMemory(mem_store, images, HashingTextEmbedder(), mem.config, tmp_path, load=False)
    assert again.ensure_fresh() == "updated"
    assert set(again.index.keys()) == {a.id, late.id}
    assert images.calls == 1  # only the new image was embedded: PILLS came from the cache
    assert answers(again.search(MUG, Q, "alice")) == ["mug"]
    assert again.ensure_fresh() == "loaded"
    # a corrupt file is rebuilt from the mem_store
    (tmp_path / "index" / "events.faiss").write_bytes(b"garbage")
    assert again.ensure_fresh() == "rebuilt" and set(again.index.keys()) == {a.id, late.id}
    # other weights: the file is rebuilt rather than mixed
    other = DualModalityMemory(mem_store, StubImageEmbedder(), HashingTextEmbedder(),
                            RetrievalConfig(image_weight=0.5, text_weight=0.5), tmp_path, load=False)
    assert other.ensure_fresh() == "rebuilt"
    (tmp_path / "index" / "events.json").unlink()
    assert other.ensure_fresh() == "built"


def test_bad_events_are_refused_without_side_effects(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    with pytest.raises(InvalidInput):
        mem.add(Event(image=None, question=" ", answer="x", user_id="alice"))
    assert len(mem.index) == 0


def test_format_references_numbers_without_ids(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    mem.add(make_event(mem_store, PILLS, "ibuprofen", "alice", rejected=["aspirin"]), PILLS)
    text = format_references(mem.search(PILLS, Q, "alice"))
    assert text == ("Reference [1]: asked 'what is this?' about a similar image; correct answer: 'ibuprofen'; "
                    "wrong answers before: 'aspirin'")
    assert "evt_" not in text
    assert answer_key("The Ibuprofen!") == answer_key("ibuprofen")


def test_answer_key_keeps_every_script():
    """Answers in other scripts are compared by their own letters: two different ones never share a key (an
    empty key would make any two of them corroborate or supersede each other)."""
    assert answer_key("アスピリン") != answer_key("イブプロフェン")
    assert answer_key("Ибупрофен!") == answer_key("ибупрофен") != answer_key("аспирин")
    assert answer_key("Straße") == answer_key("STRASSE") and answer_key("the_pill") == "pill"


def test_reusable_needs_threshold_and_margin_over_another_answer(mem_store):
    from ilearn.memory.retrieval import Match, reusable

    def m(answer: str, score: float) -> Match:
        return Match(make_event(mem_store, PILLS, answer, "alice"), score, score, 1.0)

    assert reusable([], 0.9, 0.02) is None
    assert reusable([m("ibuprofen", 0.89)], 0.9, 0.02) is None  # below the reuse threshold
    assert reusable([m("ibuprofen", 0.95)], 0.9, 0.02).event.answer == "ibuprofen"  # no rival
    assert reusable([m("ibuprofen", 0.95), m("Naproxen", 0.94)], 0.9, 0.02) is None  # a look-alike too close
    assert reusable([m("ibuprofen", 0.95), m("The Ibuprofen", 0.949), m("naproxen", 0.92)], 0.9, 0.02) is not None
    assert reusable([m("ibuprofen", 0.95), m("naproxen", 0.94)], 0.9, 0.0) is not None  # margin off
    other_question = Match(make_event(mem_store, PILLS, "ibuprofen", "alice"), 0.97, 1.0, 0.5)
    assert reusable([other_question], 0.9, 0.0, min_text_sim=0.6) is None  # asked something else
    assert reusable([other_question], 0.9, 0.0).event.answer == "ibuprofen"  # floor off by default
    with pytest.raises(InvalidInput):
        RetrievalConfig(reuse_margin=-0.1)
    with pytest.raises(InvalidInput, match="cosine"):
        RetrievalConfig(reuse_min_text_sim=1.5)


def test_scope_filters_are_prepared_once_and_follow_every_change(mem_store, tmp_path, monkeypatch):
    mem = memory(mem_store, tmp_path)
    mem.add(make_event(mem_store, PILLS, "ibuprofen", "alice"), PILLS)
    built = []
    make_filter = mem.index.make_filter
    monkeypatch.setattr(mem.index, "make_filter", lambda ids: built.append(1) or make_filter(ids))
    assert answers(mem.search(PILLS, Q, "alice")) == ["ibuprofen"]
    n = len(built)
    assert answers(mem.search(MUG, Q, "alice")) == [] and len(built) == n  # reused
    mem.add(make_event(mem_store, MUG, "mug", "alice"), MUG)  # a change: alice's filter must include it
    assert answers(mem.search(MUG, Q, "alice")) == ["mug"] and len(built) > n
    assert mem.search(MUG, Q, "bob") == []
    mem.forget_user("alice")
    assert mem.search(MUG, Q, "alice") == [] and mem.search(PILLS, Q, "alice") == []
