"""Retrieval memory behaviour that mutation testing found untested (docs/mutation-testing.md).

Each test states a behaviour of `ilearn.memory.retrieval`: which events a search may find when other events
crowd its candidate pool, which answers quarantine, who may retire whose event, what a rebuilt index holds,
and when the index file is written. Scores come from the model-free test embedders: the same image and
question score 1.0; the same image with "what is this thing?" scores about 0.95 against "what is this?".
"""

from __future__ import annotations

import pytest
from memory_helpers import make_event, make_image

from ilearn.config import RetrievalConfig
from ilearn.errors import InvalidInput, NotFound
from ilearn.memory.retrieval import (
    SCOPE_FILTERS,
    DualModalityMemory,
    Match,
    format_references,
    recorded_settings,
    reusable,
)
from ilearn.memory.trust import ADMITTED_KEY, SCOPE_KEY
from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder
from ilearn.types import Event, EventStatus, Scope

PILLS = make_image((200, 40, 40), mark=4)
MUG = make_image((40, 40, 200), mark=20)
Q = "what is this?"
NEAR_Q = "what is this thing?"  # same image: a match, but below an event asked with Q itself


def memory(store, home, *, image_embedder=None, text_embedder=None, **cfg) -> DualModalityMemory:
    config = RetrievalConfig(**{"image_weight": 0.7, "text_weight": 0.3, "threshold": 0.8, **cfg})
    return DualModalityMemory(store, image_embedder or StubImageEmbedder(), text_embedder or HashingTextEmbedder(),
                              config, home)


def teach(mem, store, image, answer, user, **kwargs) -> Event:
    return mem.add(make_event(store, image, answer, user, **kwargs), image)


def answers(matches) -> list[str]:
    return [m.event.answer for m in matches]


# ---------------------------------------------------------------- the candidate pool
def test_own_event_is_found_when_other_users_events_fill_the_pool(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, candidates=1, top_k=1)
    teach(mem, mem_store, PILLS, "aspirin", "bob")  # scores above alice's own event for this query
    teach(mem, mem_store, PILLS, "ibuprofen", "alice", question=NEAR_Q)
    assert answers(mem.search(PILLS, Q, "alice")) == ["ibuprofen"]
    assert answers(mem.search(PILLS, Q, "bob")) == ["aspirin"]
    assert mem.search(PILLS, Q, "carol") == []


def test_shared_event_is_found_when_private_events_fill_the_pool(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, candidates=1, top_k=1)
    teach(mem, mem_store, PILLS, "aspirin", "bob")
    teach(mem, mem_store, PILLS, "ibuprofen", "alice", question=NEAR_Q, scope=Scope.SHARED)
    assert answers(mem.search(PILLS, Q, "carol")) == ["ibuprofen"]


def test_each_robot_searches_its_own_events(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, candidates=2, top_k=2)
    teach(mem, mem_store, PILLS, "candy", "bob", robot_id="kitchen")  # the best score, on another robot
    teach(mem, mem_store, PILLS, "ibuprofen", "alice", question=NEAR_Q, robot_id="pharmacy")
    teach(mem, mem_store, PILLS, "ibuprofen", "cy", question=NEAR_Q, robot_id="pharmacy")
    assert answers(mem.search(PILLS, Q, "carol", robot_id="pharmacy")) == ["ibuprofen", "ibuprofen"]
    assert mem.search(PILLS, Q, "carol", robot_id="kitchen") == []  # bob alone: not corroborated
    assert answers(mem.search(PILLS, Q, "alice", robot_id="kitchen")) == ["ibuprofen"]  # own events everywhere


def test_another_robots_events_never_crowd_out_the_neighbours_that_corroborate(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, candidates=2, top_k=2)
    for _ in range(3):  # the best scores for bob's question, all on another robot
        teach(mem, mem_store, PILLS, "candy", "kurt", robot_id="kitchen")
    teach(mem, mem_store, PILLS, "ibuprofen", "alice", question=NEAR_Q, robot_id="pharmacy")
    teach(mem, mem_store, PILLS, "ibuprofen", "bob", robot_id="pharmacy")  # corroborates alice: both shared
    assert answers(mem.search(PILLS, Q, "carol", robot_id="pharmacy")) == ["ibuprofen", "ibuprofen"]


def test_removing_one_event_keeps_the_users_other_events_findable(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, candidates=1, top_k=1)
    teach(mem, mem_store, PILLS, "aspirin", "bob")
    teach(mem, mem_store, PILLS, "ibuprofen", "alice", question=NEAR_Q)
    mug = teach(mem, mem_store, MUG, "mug", "alice")
    assert mem.remove([mug.id]) == 1
    assert mem.search(MUG, Q, "alice") == []
    assert answers(mem.search(PILLS, Q, "alice")) == ["ibuprofen"]


def test_events_deleted_from_the_store_behind_the_memorys_back_are_skipped(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    teach(mem, mem_store, PILLS, "aspirin", "bob")  # the best match, deleted below
    teach(mem, mem_store, PILLS, "ibuprofen", "alice", question=NEAR_Q)
    teach(mem, mem_store, PILLS, "ibuprofen", "cy", question=NEAR_Q)
    mem_store.delete_user("bob")  # the store only: the index still holds bob's vector
    hits = mem.search(PILLS, Q, "carol")
    assert answers(hits) == ["ibuprofen", "ibuprofen"]  # the matches after the missing one are kept
    for hit in hits:  # each with its own vector, not bob's
        assert hit.text_sim < 0.99 and hit.score == pytest.approx(0.7 * hit.image_sim + 0.3 * hit.text_sim, abs=1e-4)


def test_matches_after_an_event_deleted_behind_the_memorys_back_are_kept(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    use = "what is this used for?"  # matches the query (text 0.75), but another question (< 0.8): no dispute
    teach(mem, mem_store, PILLS, "for pain", "alice", question=use)
    teach(mem, mem_store, PILLS, "for pain", "cy", question=use)
    teach(mem, mem_store, PILLS, "aspirin", "bob", scope=Scope.SHARED)  # the best match for carol, deleted below
    mem_store.delete_user("bob")
    assert answers(mem.search(PILLS, Q, "carol", k=10)) == ["for pain", "for pain"]


def test_the_scope_filters_kept_are_the_latest_users(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    users = [f"user{i}" for i in range(SCOPE_FILTERS + 1)]
    for user in users:
        mem.search(PILLS, Q, user)
    assert [user for _, user, _ in mem._filters] == users[1:]  # the oldest dropped


# ---------------------------------------------------------------- scores and order
def test_matches_come_best_first_and_k_can_exceed_top_k(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, top_k=1)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice", question=NEAR_Q)
    teach(mem, mem_store, PILLS, "aspirin", "alice")
    teach(mem, mem_store, PILLS, "naproxen", "alice", question="what is this thing called here?")
    hits = mem.search(PILLS, Q, "alice", k=3)
    assert answers(hits) == ["aspirin", "ibuprofen", "naproxen"]
    assert hits[0].score > hits[1].score > hits[2].score
    assert answers(mem.search(PILLS, Q, "alice")) == ["aspirin"]  # top_k when k is not given


def test_a_match_exactly_at_the_threshold_counts(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, threshold=1.0, reuse_threshold=1.0, calibration_floor=1.0)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    assert answers(mem.search(PILLS, Q, "alice")) == ["ibuprofen"]  # identical image and question: 1.0
    assert mem.search(PILLS, NEAR_Q, "alice") == []


@pytest.mark.parametrize(("image_weight", "text_weight", "image_sim", "text_sim"),
                         [(1.0, 0.0, 1.0, 0.0), (0.0, 1.0, 0.0, 1.0)])
def test_a_modality_with_zero_weight_reports_zero_similarity(mem_store, tmp_path, image_weight, text_weight,
                                                             image_sim, text_sim):
    mem = memory(mem_store, tmp_path, image_weight=image_weight, text_weight=text_weight)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    (hit,) = mem.search(PILLS, Q, "alice")
    assert hit.image_sim == pytest.approx(image_sim, abs=1e-4) and hit.text_sim == pytest.approx(text_sim, abs=1e-4)
    assert hit.score == pytest.approx(1.0, abs=1e-4)


def test_a_query_image_is_embedded_once_for_repeated_searches(mem_store, tmp_path):
    images = StubImageEmbedder()
    mem = memory(mem_store, tmp_path, image_embedder=images)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    before = images.calls
    for _ in range(3):
        assert answers(mem.search(PILLS, Q, "alice")) == ["ibuprofen"]
    assert images.calls == before + 1


def test_the_query_image_cache_keeps_the_64_latest_images(mem_store, tmp_path):
    images = StubImageEmbedder()
    mem = memory(mem_store, tmp_path, image_embedder=images)
    shown = [make_image((i, 255 - i, 7 * i % 256)) for i in range(65)]
    for image in shown:
        mem.search(image, Q, "alice")
    assert images.calls == 65
    for image, embedded in ((shown[64], 0), (shown[1], 0), (shown[0], 1)):  # 1..64 kept; 0 dropped, the oldest
        before = images.calls
        mem.search(image, Q, "alice")
        assert images.calls - before == embedded


def test_images_given_with_events_or_cached_are_never_read_back_from_the_store(mem_store, tmp_path, monkeypatch):
    reads = []
    read = mem_store.get_image_bytes
    monkeypatch.setattr(mem_store, "get_image_bytes", lambda sha256: reads.append(sha256) or read(sha256))
    mem = memory(mem_store, tmp_path)
    wrong = teach(mem, mem_store, PILLS, "aspirin", "alice")
    mem.supersede(wrong.id, make_event(mem_store, MUG, "mug", "alice"), MUG)
    fresh = memory(mem_store, tmp_path / "elsewhere")  # built from the store's cached vectors
    assert answers(fresh.search(MUG, Q, "alice")) == ["mug"]
    assert reads == []


def test_closing_twice_is_harmless(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    mem.close()
    mem.close()
    memory(mem_store, tmp_path).close()  # the home folder was given back


def test_search_refuses_a_question_that_is_not_text(mem_store, tmp_path):
    with pytest.raises(InvalidInput, match="^the question must be text$"):
        memory(mem_store, tmp_path).search(PILLS, None, "alice")


def test_add_refuses_an_event_without_an_answer(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    refused = r"^an event needs a question and an answer \(or, a rejection, the answers turned down\)$"
    with pytest.raises(InvalidInput, match=refused):
        mem.add(make_event(mem_store, PILLS, " ", "alice"), PILLS)
    assert len(mem.index) == 0


# ---------------------------------------------------------------- reuse and references
def test_reuse_boundaries_are_inclusive_and_the_margin_is_off_by_default(mem_store):
    def m(answer: str, score: float, text_sim: float = 1.0) -> Match:
        return Match(make_event(mem_store, PILLS, answer, "alice"), score, score, text_sim)

    assert reusable([m("ibuprofen", 0.875)], 0.875) is not None  # score == reuse_threshold
    assert reusable([m("ibuprofen", 0.95, text_sim=0.5)], 0.9, min_text_sim=0.5) is not None  # text == floor
    assert reusable([m("ibuprofen", 0.75), m("naproxen", 0.5)], 0.5, 0.25) is not None  # beats it by the margin
    assert reusable([m("ibuprofen", 0.95), m("naproxen", 0.94)], 0.9) is not None  # no margin unless asked


def test_references_list_every_match_and_every_wrong_answer(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, top_k=2)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice", rejected=["aspirin", "candy"])
    teach(mem, mem_store, PILLS, "naproxen", "alice", question=NEAR_Q)
    assert format_references(mem.search(PILLS, Q, "alice")) == (
        "Reference [1]: asked 'what is this?' about a similar image; correct answer: 'ibuprofen'; "
        "wrong answers before: 'aspirin', 'candy'\n"
        "Reference [2]: asked 'what is this thing?' about a similar image; correct answer: 'naproxen'")


# ---------------------------------------------------------------- quarantine
def test_agreeing_with_a_corroborated_answer_is_not_a_conflict(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    teach(mem, mem_store, PILLS, "ibuprofen", "bob")
    assert teach(mem, mem_store, PILLS, "Ibuprofen.", "carol").status == EventStatus.ACTIVE


def test_an_uncorroborated_other_answer_is_not_a_conflict(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    teach(mem, mem_store, PILLS, "aspirin", "alice")
    assert teach(mem, mem_store, PILLS, "ibuprofen", "bob").status == EventStatus.ACTIVE


def test_a_user_may_change_her_own_answer_that_one_other_user_shares(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    teach(mem, mem_store, PILLS, "ibuprofen", "bob")
    # against "ibuprofen" only bob counts (one user): alice's own earlier event is not a second voice
    assert teach(mem, mem_store, PILLS, "naproxen", "alice").status == EventStatus.ACTIVE


def test_a_reviewer_who_keeps_a_disputing_answer_makes_it_the_shared_one(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    teach(mem, mem_store, PILLS, "ibuprofen", "bob")
    held = teach(mem, mem_store, PILLS, "naproxen", "carol")
    assert held.status == EventStatus.QUARANTINED
    kept = mem.resolve(held.id, keep=True)
    assert (kept.status, kept.scope) == (EventStatus.ACTIVE, Scope.SHARED)
    assert kept.provenance[SCOPE_KEY] == "reviewed" and ADMITTED_KEY in kept.provenance
    for other in mem_store.list_events(status=EventStatus.ACTIVE):
        if other.answer == "ibuprofen":  # unshared, with no reason left to share it again
            assert other.scope == Scope.PRIVATE and SCOPE_KEY not in other.provenance
    assert answers(mem.search(PILLS, Q, "zoe", k=10)) == ["naproxen"]  # ibuprofen is no longer shared
    assert teach(mem, mem_store, PILLS, "naproxen", "dan").status == EventStatus.ACTIVE  # agrees with it


def test_a_trusted_teacher_contradicting_a_corroborated_answer_goes_to_review(mem_store, tmp_path):
    mem_store.ensure_user("teacher", trusted=True)
    for sharing in ("corroboration", "trusted"):
        mem = memory(mem_store, tmp_path / sharing, sharing=sharing)
        teach(mem, mem_store, PILLS, "ibuprofen", "alice", robot_id=sharing)
        teach(mem, mem_store, PILLS, "ibuprofen", "bob", robot_id=sharing)
        assert teach(mem, mem_store, PILLS, "naproxen", "teacher", robot_id=sharing).status == EventStatus.QUARANTINED
        assert answers(mem.search(PILLS, Q, "zoe", robot_id=sharing)) == ["ibuprofen", "ibuprofen"]


def test_trust_shares_a_teachers_answer_at_once_only_under_trusted_sharing(mem_store, tmp_path):
    mem_store.ensure_user("teacher", trusted=True)
    for sharing, seen in (("corroboration", []), ("trusted", ["naproxen"])):
        mem = memory(mem_store, tmp_path / sharing, sharing=sharing)
        teach(mem, mem_store, PILLS, "naproxen", "teacher", robot_id=sharing)
        assert answers(mem.search(PILLS, Q, "zoe", robot_id=sharing)) == seen


def test_an_unknown_user_is_not_trusted(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, sharing="trusted")
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    teach(mem, mem_store, PILLS, "ibuprofen", "bob")
    assert teach(mem, mem_store, PILLS, "candy", "stranger").status == EventStatus.QUARANTINED


def test_resolving_an_event_that_is_not_quarantined_says_so(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    ok = teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    with pytest.raises(InvalidInput, match="not quarantined"):
        mem.resolve(ok.id, keep=True)


# ---------------------------------------------------------------- supersede
def test_a_trusted_user_retires_another_users_event_only_under_trusted_sharing(mem_store, tmp_path):
    mem_store.ensure_user("teacher", trusted=True)
    for sharing, expected in (("corroboration", EventStatus.ACTIVE), ("trusted", EventStatus.SUPERSEDED)):
        mem = memory(mem_store, tmp_path / sharing, sharing=sharing)
        wrong = teach(mem, mem_store, PILLS, "aspirin", "alice", robot_id=sharing)
        mem.supersede(wrong.id, make_event(mem_store, PILLS, "ibuprofen", "teacher", robot_id=sharing), PILLS)
        assert mem_store.get_event(wrong.id).status == expected


def test_an_untrusted_user_cannot_retire_another_users_event_under_trusted_sharing(mem_store, tmp_path):
    mem_store.ensure_user("student")
    mem = memory(mem_store, tmp_path, sharing="trusted")
    theirs = teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    mem.supersede(theirs.id, make_event(mem_store, PILLS, "candy", "student"), PILLS)
    assert mem_store.get_event(theirs.id).status == EventStatus.ACTIVE


def test_superseding_an_unknown_event_keeps_the_new_one(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    event = teach(mem, mem_store, PILLS, "ibuprofen", "alice", supersedes="evt_gone")
    assert event.status == EventStatus.ACTIVE
    assert answers(mem.search(PILLS, Q, "alice")) == ["ibuprofen"]


# ---------------------------------------------------------------- the index file
def test_a_rebuilt_index_holds_only_active_events(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, corroboration=1)
    wrong = teach(mem, mem_store, PILLS, "aspirin", "alice")
    mem.supersede(wrong.id, make_event(mem_store, PILLS, "ibuprofen", "alice"), PILLS)
    assert teach(mem, mem_store, PILLS, "candy", "mallory").status == EventStatus.QUARANTINED
    fresh = memory(mem_store, tmp_path / "elsewhere", corroboration=1)  # no index file there: built from the store
    assert len(fresh.index) == 1
    assert answers(fresh.search(PILLS, Q, "alice", k=10)) == ["ibuprofen"]
    assert answers(fresh.search(PILLS, Q, "mallory", k=10)) == ["ibuprofen"]  # corroborated by one; no candy


def test_a_rebuilt_index_reuses_the_cached_vectors(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    teach(mem, mem_store, MUG, "mug", "bob", question="and this one?")
    images, texts = StubImageEmbedder(), HashingTextEmbedder()
    fresh = memory(mem_store, tmp_path / "elsewhere", image_embedder=images, text_embedder=texts)
    assert len(fresh.index) == 2
    assert images.calls == 0 and texts.calls == 0  # every image and question vector came from the store
    assert answers(fresh.search(MUG, "and this one?", "bob")) == ["mug"]


def test_the_index_file_is_rebuilt_when_the_text_embedder_changes(mem_store, tmp_path):
    class Plain:  # no `name`: its class name identifies it
        dim = 384

        def embed_texts(self, texts):
            return HashingTextEmbedder().embed_texts(texts)

    class OtherPlain(Plain):
        pass

    renamed = HashingTextEmbedder()
    renamed.name = "hashing-text-v2"  # same class, another name: other vectors
    first = memory(mem_store, tmp_path)
    teach(first, mem_store, PILLS, "ibuprofen", "alice")
    first.close()
    for embedder, action in ((HashingTextEmbedder(), "loaded"), (renamed, "rebuilt"), (Plain(), "rebuilt"),
                             (Plain(), "loaded"), (OtherPlain(), "rebuilt")):
        mem = DualModalityMemory(mem_store, StubImageEmbedder(), embedder, first.config, tmp_path, load=False)
        assert mem.ensure_fresh() == action, type(embedder).__name__
        assert answers(mem.search(PILLS, Q, "alice")) == ["ibuprofen"]


def test_the_index_file_is_written_every_save_every_changes(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, save_every=3)
    on_disk = lambda: set(mem.index_type.load(mem.path).keys())  # noqa: E731
    first = [teach(mem, mem_store, image, answer, "alice")
             for image, answer in ((PILLS, "ibuprofen"), (MUG, "mug"))]
    assert on_disk() == set()  # two changes: not yet
    third = teach(mem, mem_store, make_image((40, 200, 40)), "lime", "alice")
    assert on_disk() == {e.id for e in [*first, third]}
    teach(mem, mem_store, make_image((200, 200, 40)), "lemon", "alice")
    assert len(on_disk()) == 3  # one change since: not yet
    mem.close()
    assert len(on_disk()) == 4


def test_closing_an_unchanged_memory_writes_no_file(mem_store, tmp_path):
    mem = DualModalityMemory(mem_store, StubImageEmbedder(), HashingTextEmbedder(), RetrievalConfig(), tmp_path,
                             load=False)
    mem.close()
    assert not (tmp_path / "index").exists()


def test_a_memory_created_without_loading_accepts_events_at_once(mem_store, tmp_path):
    mem = DualModalityMemory(mem_store, StubImageEmbedder(), HashingTextEmbedder(),
                             RetrievalConfig(image_weight=0.7, text_weight=0.3, threshold=0.8), tmp_path, load=False)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice", scope=Scope.SHARED)
    assert answers(mem.search(PILLS, Q, "bob")) == ["ibuprofen"]


def test_a_memory_without_a_home_folder_keeps_its_index_in_memory(mem_store, tmp_path):
    mem = memory(mem_store, None, save_every=1)
    assert mem.path is None and mem.ensure_fresh() == "built"  # nothing to load: built from the store
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    mem.save()
    mem.close()
    assert answers(mem.search(PILLS, Q, "alice")) == ["ibuprofen"]
    assert not (tmp_path / "index").exists()


# ---------------------------------------------------------------- reuse calibration
def test_reactions_to_answers_become_calibration_pairs_kept_in_the_home_folder(mem_store, tmp_path):
    from ilearn.types import Feedback, Label

    mem = memory(mem_store, tmp_path, calibrate=True)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    hits = mem.search(PILLS, Q, "alice")
    mem.note_answer("turn-1", hits, reused=True)  # given outright, and the user goes on: right
    mem.note_answer("turn-2", hits, reused=False)  # the model answered itself and was told it was right
    mem.note_answer("turn-3", [], reused=False)  # no match: nothing to judge
    assert mem.record_reuse_outcome("turn-1", "ibuprofen", Feedback(Label.NEUTRAL)) is True
    assert mem.record_reuse_outcome("turn-2", "It is ibuprofen.", Feedback(Label.POSITIVE)) is True
    assert mem.record_reuse_outcome("turn-3", "mug", Feedback(Label.POSITIVE)) is None
    assert mem.record_reuse_outcome("turn-1", "ibuprofen", Feedback(Label.NEGATIVE)) is None  # judged once
    score = hits[0].score
    assert mem.calibrator.pairs() == [(pytest.approx(score), True)] * 2
    mem.calibrator.close()
    assert memory(mem_store, tmp_path, calibrate=True).calibrator.pairs() == [(pytest.approx(score), True)] * 2


# ---------------------------------------------------------------- voices held in review, and who may retire what
def test_only_this_robots_held_answers_for_this_object_count_as_voices(mem_store, tmp_path):
    for user in ("carol", "dan", "erin", "fay", "gus", "hal", "ivy"):  # accounts older than the shared answer
        mem_store.ensure_user(user)
    mem = memory(mem_store, tmp_path)
    for robot in ("a", "b"):
        teach(mem, mem_store, PILLS, "ibuprofen", "alice", robot_id=robot)
        teach(mem, mem_store, PILLS, "ibuprofen", "bob", robot_id=robot)
    teach(mem, mem_store, MUG, "mug", "alice", robot_id="a")
    teach(mem, mem_store, MUG, "mug", "bob", robot_id="a")
    held = [teach(mem, mem_store, PILLS, "naproxen", "carol", robot_id="b"),  # another robot
            teach(mem, mem_store, MUG, "naproxen", "dan", robot_id="a"),  # another object
            teach(mem, mem_store, PILLS, "aspirin", "erin", robot_id="a")]  # another answer
    rejected = teach(mem, mem_store, PILLS, "naproxen", "fay", robot_id="a")
    mem.resolve(rejected.id, keep=False)  # a reviewer turned it down: no voice any more
    assert all(e.status == EventStatus.QUARANTINED for e in held)
    # each would make naproxen 2 or more voices against ibuprofen's 2 on robot a if it counted
    assert teach(mem, mem_store, PILLS, "naproxen", "gus", robot_id="a").status == EventStatus.QUARANTINED
    assert teach(mem, mem_store, PILLS, "naproxen", "hal", robot_id="a").status == EventStatus.QUARANTINED
    assert teach(mem, mem_store, PILLS, "naproxen", "ivy", robot_id="a").status == EventStatus.ACTIVE  # 3 vs 2


def test_another_question_about_the_same_object_is_no_dispute(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    teach(mem, mem_store, PILLS, "ibuprofen", "bob")
    use = teach(mem, mem_store, PILLS, "for pain", "carol", question="what is this used for?")  # a match, text 0.75
    assert use.status == EventStatus.ACTIVE and use.scope == Scope.PRIVATE


def test_a_trusted_teacher_cannot_retire_a_trusted_answer_on_another_photo(mem_store, tmp_path):
    mem_store.ensure_user("teacher1", trusted=True)
    mem_store.ensure_user("teacher2", trusted=True)
    mem = memory(mem_store, tmp_path, sharing="trusted")
    right = teach(mem, mem_store, PILLS, "ibuprofen", "teacher1")
    other = teach(mem, mem_store, MUG, "aspirin", "teacher2", supersedes=right.id)  # not a neighbour: no shared
    assert other.status == EventStatus.QUARANTINED
    assert mem_store.get_event(right.id).status == EventStatus.ACTIVE


def test_a_trusted_teacher_corrects_her_own_answer_at_once(mem_store, tmp_path):
    mem_store.ensure_user("teacher", trusted=True)
    mem = memory(mem_store, tmp_path, sharing="trusted")
    wrong = teach(mem, mem_store, PILLS, "aspirin", "teacher")
    fixed = teach(mem, mem_store, PILLS, "ibuprofen", "teacher", supersedes=wrong.id)
    assert fixed.status == EventStatus.ACTIVE and fixed.scope == Scope.SHARED
    assert fixed.provenance[SCOPE_KEY] == "trusted"
    assert mem_store.get_event(wrong.id).status == EventStatus.SUPERSEDED


def test_why_an_event_goes_to_review_is_logged(mem_store, tmp_path, caplog):
    mem_store.ensure_user("teacher1", trusted=True)
    mem_store.ensure_user("teacher2", trusted=True)
    mem = memory(mem_store, tmp_path, sharing="trusted")
    first = teach(mem, mem_store, MUG, "mug", "teacher1")
    plain = teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    teach(mem, mem_store, PILLS, "ibuprofen", "bob")
    with caplog.at_level("WARNING", logger="ilearn.memory.retrieval"):
        teach(mem, mem_store, MUG, "cup", "teacher2", supersedes=first.id)
        teach(mem, mem_store, PILLS, "aspirin", "teacher2", supersedes=plain.id)
        teach(mem, mem_store, PILLS, "aspirin", "teacher2")
        teach(mem, mem_store, PILLS, "candy", "carol")
    said = caplog.text
    assert "trusted teacher2 would retire teacher1's trusted answer 'mug'" in said
    assert "trusted teacher2 would retire alice's shared answer 'ibuprofen'" in said
    assert "trusted teacher2's answer 'aspirin' contradicts the shared 'ibuprofen'" in said
    assert "answer 'candy' from carol contradicts 'ibuprofen', shared with the voices of 2 other user(s)" in said


def test_why_an_answer_is_shared_is_recorded(mem_store, tmp_path):
    mem_store.ensure_user("teacher", trusted=True)
    mem = memory(mem_store, tmp_path, sharing="trusted")
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    teach(mem, mem_store, PILLS, "ibuprofen", "bob")
    taught = teach(mem, mem_store, MUG, "mug", "teacher")
    reasons = {e.user_id: e.provenance.get(SCOPE_KEY) for e in mem_store.list_events(status=EventStatus.ACTIVE)}
    assert reasons == {"alice": "corroborated", "bob": "corroborated", "teacher": "trusted"}
    assert taught.scope == Scope.SHARED


# ---------------------------------------------------------------- the review queue
def test_the_review_queue_lists_this_robots_disputes_with_the_shared_answers_only(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    mem_store.add_events([make_event(mem_store, PILLS, "", "yan", status=EventStatus.QUARANTINED, robot_id="a",
                                     rejected=["aspirin"])])  # a turned-down answer with no correction: no dispute
    teach(mem, mem_store, PILLS, "candy", "zed", robot_id="a")  # first and alone: private, never shared
    for robot in ("a", "b"):
        teach(mem, mem_store, PILLS, "ibuprofen", "alice", robot_id=robot)
        teach(mem, mem_store, PILLS, "ibuprofen", "bob", robot_id=robot)
    held = {robot: teach(mem, mem_store, PILLS, "naproxen", user, robot_id=robot)
            for robot, user in (("a", "carol"), ("b", "dan"))}
    for robot in ("a", "b"):
        (entry, disputed), = mem.review_queue(robot)
        assert entry.id == held[robot].id
        assert sorted(o.user_id for o in disputed) == ["alice", "bob"]  # not zed's private candy
        assert {o.robot_id for o in disputed} == {robot}


# ---------------------------------------------------------------- forget
def test_forgetting_a_voice_unshares_what_it_corroborated_and_leaves_no_id_behind(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    kept = teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    gone = teach(mem, mem_store, PILLS, "ibuprofen", "bob")
    assert answers(mem.search(PILLS, Q, "carol", k=10)) == ["ibuprofen", "ibuprofen"]
    assert mem.forget_user("bob") == [gone.id]
    assert mem.search(PILLS, Q, "carol", k=10) == []  # alice alone: private again
    assert mem_store.get_event(kept.id).scope == Scope.PRIVATE
    assert SCOPE_KEY not in mem_store.get_event(kept.id).provenance  # no reason left to share it
    tables = (mem._meta, *mem._by_user.values(), *mem._by_robot.values(), *mem._shared.values())
    assert not any(gone.id in t for t in tables) and "bob" not in mem._by_user
    assert not any(kept.id in ids for ids in mem._shared.values())  # unshared in the scope tables too
    assert answers(mem.search(PILLS, Q, "alice")) == ["ibuprofen"]


def test_forgetting_an_unknown_user_changes_nothing(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    with pytest.raises(NotFound):
        mem.forget_user("nobody")
    assert answers(mem.search(PILLS, Q, "alice")) == ["ibuprofen"]


def test_the_recorded_settings_name_the_embedders_and_weights(mem_store, tmp_path):
    mem = memory(mem_store, tmp_path, image_weight=0.6, text_weight=0.4, save_every=1)
    teach(mem, mem_store, PILLS, "ibuprofen", "alice")
    mem.close()
    assert recorded_settings(tmp_path) == {"image_embedder": "stub", "text_embedder": "hashing",
                                           "image_weight": 0.6, "text_weight": 0.4}
