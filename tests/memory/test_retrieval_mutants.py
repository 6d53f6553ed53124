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


# ---------------------------------------------------------------- the guess rule's choices, against plain loops
def loo_weight_by_loops(first, second, same_question, labels, default):
    """`leave_one_out_weight` written out event by event: for each weight, the events named right after their
    nearest other event about the same question (among those whose label another such event shares), then the mean
    gap between the nearest same-label and the nearest other-label event (0 where there is no other label), in
    standard deviations of that weight's similarities; the most named, then the widest gap, then nearest the
    default, the first weight on a tie of all three."""
    import numpy as np

    from ilearn.memory.retrieval import GUESS_MIN_QUERIES, GUESS_WEIGHTS
    from ilearn.types import answer_key

    keys = [answer_key(a) for a in labels]
    n = len(keys)
    others = [[j for j in range(n) if j != i and same_question[i][j]] for i in range(n)]
    usable = [i for i in range(n) if any(keys[j] == keys[i] for j in others[i])]
    if len(usable) < GUESS_MIN_QUERIES:
        return None
    best_key, chosen = None, None
    for w in GUESS_WEIGHTS:
        sims = [[w * first[i][j] + (1.0 - w) * second[i][j] for j in range(n)] for i in range(n)]
        spread = float(np.std([sims[i][j] for i in range(n) for j in others[i]])) or 1.0
        right, gaps = 0, []
        for i in usable:
            nearest = max(others[i], key=lambda j: sims[i][j])  # the first of equals, as argmax
            right += keys[nearest] == keys[i]
            own = max(sims[i][j] for j in others[i] if keys[j] == keys[i])
            other = [sims[i][j] for j in others[i] if keys[j] != keys[i]]
            gaps.append(own - max(other) if other else 0.0)
        key = (right, round(sum(gaps) / len(gaps) / spread, 6))
        if best_key is None or key > best_key or (key == best_key and abs(w - default) < abs(chosen - default)):
            best_key, chosen = key, w
    return chosen


def loo_gate_by_loops(sims, same_question, labels, precision):
    """`leave_one_out_gate` written out: each event with another about the same question named after the nearest
    one; from the most alike down, +(1 - precision) for a right name, -precision for a wrong one; the similarity
    where the running total is highest when it is above zero, else inf; None with too few events named."""
    from ilearn.memory.retrieval import GUESS_MIN_QUERIES
    from ilearn.types import answer_key

    keys = [answer_key(a) for a in labels]
    n = len(keys)
    named = []
    for i in range(n):
        others = [j for j in range(n) if j != i and same_question[i][j]]
        if others:
            nearest = max(others, key=lambda j: sims[i][j])
            named.append((sims[i][nearest], keys[nearest] == keys[i]))
    if len(named) < GUESS_MIN_QUERIES:
        return None
    named.sort(key=lambda x: -x[0])  # stable: equal similarities keep the events' order
    total, best, at = 0.0, None, None
    for sim, right in named:
        total += (1.0 - precision) if right else -precision
        if best is None or total > best:
            best, at = total, sim
    return float(at) if best > 0 else float("inf")


def random_events(seed: int, n: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = [str(x) for x in rng.integers(0, max(2, n // 3), n)]
    first, second = (rng.uniform(-0.2, 1.0, (n, n)) for _ in range(2))
    first, second = (first + first.T) / 2, (second + second.T) / 2
    same = rng.uniform(size=(n, n)) < 0.8
    same = same & same.T
    return first, second, same, labels


@pytest.mark.parametrize("seed", range(40))
def test_the_guess_weight_is_the_one_the_events_name_best_by(seed):
    first, second, same, labels = random_events(seed, 4 + seed % 9)
    default = (0.0, 0.35, 0.7, 1.0)[seed % 4]
    from ilearn.memory.retrieval import leave_one_out_weight

    assert leave_one_out_weight(first, second, same, labels, default) == loo_weight_by_loops(first, second, same,
                                                                                              labels, default)


@pytest.mark.parametrize("seed", range(40))
def test_the_guess_gate_is_where_the_names_were_right_often_enough(seed):
    first, _, same, labels = random_events(seed, 3 + seed % 10)
    precision = (0.3, 0.5, 0.61, 0.8)[seed % 4]
    from ilearn.memory.retrieval import leave_one_out_gate

    assert leave_one_out_gate(first, same, labels, precision) == pytest.approx(loo_gate_by_loops(first, same, labels,
                                                                                                 precision))


def test_the_guess_rule_edges():
    """The boundaries the random draws rarely reach: exactly the fewest events, weights that name nothing right,
    a default halfway between two equal weights, a gate where nothing gains."""
    import numpy as np

    from ilearn.memory.retrieval import GUESS_MIN_QUERIES, leave_one_out_gate, leave_one_out_weight

    assert GUESS_MIN_QUERIES == 3
    everyone = np.ones((4, 4), dtype=bool)
    # three events share a label (each is usable), the fourth not: exactly the fewest, a weight is chosen
    labels = ["a", "a", "a", "b"]
    flat = np.full((4, 4), 0.5)
    assert leave_one_out_weight(flat, flat, everyone, labels, 0.7) == 0.7
    # every event's nearest is another label under every weight: nothing named right, the widest gap still decides
    labels = ["a", "b", "a", "b"]
    first = np.array([[1, .9, .2, .1], [.9, 1, .1, .2], [.2, .1, 1, .8], [.1, .2, .8, 1]])
    second = np.array([[1, .4, .3, .4], [.4, 1, .4, .3], [.3, .4, 1, .4], [.4, .3, .4, 1]])
    chosen = leave_one_out_weight(first, second, everyone, labels, 0.7)
    assert chosen == loo_weight_by_loops(first, second, everyone, labels, 0.7) != 0.7
    # equal keys under every weight: the one nearest the default; of two equally near, the first
    assert leave_one_out_weight(flat, flat, everyone, ["a", "a", "a", "a"], 0.45) == 0.4
    # at precision 1 a right name gains nothing and a wrong one loses: never guess
    sims = np.array([[1, .9, .1], [.9, 1, .1], [.1, .1, 1]])
    assert leave_one_out_gate(sims, np.ones((3, 3), dtype=bool), ["a", "a", "b"], 1.0) == float("inf")
    assert leave_one_out_gate(sims, np.ones((3, 3), dtype=bool), ["a", "a", "b"], 0.5) == pytest.approx(0.9)
    assert leave_one_out_gate(sims[:2, :2], np.ones((2, 2), dtype=bool), ["a", "a"], 0.5) is None
    # equal similarities keep the events' order (a stable sort): one right name, then wrong ones
    labels = ["a", "a"] + [str(i) for i in range(38)]
    sims = np.full((40, 40), 0.5)
    order_kept = leave_one_out_gate(sims, np.ones((40, 40), dtype=bool), labels, 0.5)
    assert order_kept == loo_gate_by_loops(sims, np.ones((40, 40), dtype=bool), labels, 0.5) == pytest.approx(0.5)


def test_the_guess_rule_reads_the_first_active_answered_events_and_their_questions(mem_store, tmp_path, monkeypatch):
    """What the guess rule is chosen on: the store's first `GUESS_EVENTS` ACTIVE events (events in review take no
    place), which events ask the same question (an event named only after one about its own question), at which
    weight the parts are mixed; parts that agree everywhere keep the embedder's own weight."""
    import numpy as np
    from test_retrieval import _Noise

    from ilearn.memory import retrieval
    from ilearn.models.embedders import FusedImageEmbedder

    monkeypatch.setattr(retrieval, "GUESS_EVENTS", 6)
    fused = FusedImageEmbedder(weight=0.7, first=_Noise(), second=StubImageEmbedder())
    mem = memory(mem_store, tmp_path, image_embedder=fused, guess_precision=0.5)
    assert mem._calibrate_guesses(0.7)[1:] == (None, None)  # no events: nothing to choose on
    colours = [(200, 40, 40), (40, 40, 200), (40, 180, 40)]
    for i in range(3):  # in review: stored first (the store lists by time, then id), never read
        view = make_image(colours[i], mark=30 - i)
        teach(mem, mem_store, view, f"held {i}", "zed", status=EventStatus.QUARANTINED, id=f"evt_a{i}")
    taught = []
    for i in range(8):  # the last two come after the first six ACTIVE ones
        view = make_image(colours[i % 3], mark=2 + 2 * i)
        taught.append(teach(mem, mem_store, view, f"object {i % 3}", "alice", id=f"evt_b{i}",
                            question=Q if i % 3 != 2 else "what is it used for?"))
    generation, weight, (sims, same, answers) = mem._calibrate_guesses(0.7)
    assert answers == [e.answer for e in taught[:6]]
    questions = [e.question for e in taught[:6]]
    assert same.tolist() == [[a == b for b in questions] for a in questions]
    vecs = mem.index.get_vectors([e.id for e in taught[:6]])
    first, second = mem._image_parts(vecs, vecs)
    assert weight == retrieval.leave_one_out_weight(first, second, same, answers, 0.7)
    assert np.allclose(sims, weight * first + (1.0 - weight) * second)
    # parts that agree everywhere: every weight names the same, the embedder's own weight is kept
    agree = memory(mem_store, tmp_path / "agree", image_embedder=FusedImageEmbedder(
        weight=0.7, first=StubImageEmbedder(), second=StubImageEmbedder()), guess_precision=0.5)
    _, kept, (sims, _, _) = agree._calibrate_guesses(0.7)
    assert kept == 0.7 and agree.guess_weight() == 0.7
    agreeing = agree.index.get_vectors([e.id for e in taught[:6]])
    first, second = agree._image_parts(agreeing, agreeing)
    assert np.allclose(sims, 0.7 * first + 0.3 * second)
    # without the question in the vectors, every event may be named after any other
    blind = memory(mem_store, tmp_path / "blind", image_embedder=fused, image_weight=1.0, text_weight=0.0,
                   guess_precision=0.5)
    _, _, (_, same, _) = blind._calibrate_guesses(0.7)
    assert same.dtype == bool and same.shape == (6, 6) and same.all()


# ---------------------------------------------------------------- guesses against the model's answer
def test_a_guess_overrules_the_answer_only_where_no_match_as_close_carries_it(mem_store):
    """`guess_overrules`, each clause alone: the guess's own answer, a reference about the same question (its text
    floor inclusive), a nearby event within the margin, and the weight the guess is judged at."""
    from ilearn.memory.retrieval import guess_overrules, guess_similarity

    def m(answer: str, image_sim: float, text_sim: float = 1.0, parts=None) -> Match:
        return Match(make_event(mem_store, PILLS, answer, "alice"), image_sim, image_sim, text_sim, parts)

    guess = m("ibuprofen", 0.8)
    assert not guess_overrules("Ibuprofen.", guess, [], [])  # the answer is the guess's
    assert guess_overrules("aspirin", guess, [], [])  # nothing carries the answer
    reference = m("aspirin", 0.9, text_sim=0.6)
    assert not guess_overrules("aspirin", guess, [reference], [])
    assert not guess_overrules("aspirin", guess, [reference], [], min_text_sim=0.6)  # the floor is inclusive
    assert guess_overrules("aspirin", guess, [reference], [], min_text_sim=0.61)  # another question's reference
    assert guess_overrules("aspirin", guess, [reference], [], references_stand=False)
    # a nearby event carrying the answer stands when it is as close as the guess, less the margin
    assert not guess_overrules("aspirin", guess, [], [m("aspirin", 0.8)])
    assert guess_overrules("aspirin", guess, [], [m("aspirin", 0.79)])
    assert not guess_overrules("aspirin", guess, [], [m("aspirin", 0.75)], margin=0.05)
    assert guess_overrules("aspirin", guess, [], [m("aspirin", 0.75)], margin=0.04)
    assert guess_overrules("aspirin", guess, [], [m("aspirin", 0.9, text_sim=0.5)], min_text_sim=0.6)
    assert not guess_overrules("aspirin", guess, [], [m("aspirin", 0.9, text_sim=0.6)], min_text_sim=0.6)
    assert guess_overrules("aspirin", guess, [], [m("ibuprofen", 0.95), m("naproxen", 0.95)])  # others' answers
    # judged at the memory's weight: the guess is near by its first part, the support by its second
    weighed_guess = m("ibuprofen", 0.8, parts=(0.9, 0.5))
    support = m("aspirin", 0.7, parts=(0.4, 0.95))
    assert guess_similarity(weighed_guess, 0.1) == pytest.approx(0.54)
    assert guess_similarity(support, 0.1) == pytest.approx(0.895)
    assert guess_similarity(support, None) == 0.7 and guess_similarity(guess, 0.1) == 0.8  # no weight or no parts
    assert not guess_overrules("aspirin", weighed_guess, [], [support], weight=0.1)
    assert guess_overrules("aspirin", weighed_guess, [], [support], weight=0.9)
    assert guess_overrules("aspirin", weighed_guess, [], [support])  # no weight: the image cosines, 0.7 < 0.8
    # both sides at the weight: by their image cosines alone the support (0.9) would stand against the guess (0.5)
    far_guess, even_support = m("ibuprofen", 0.5, parts=(0.9, 0.5)), m("aspirin", 0.9, parts=(0.6, 0.6))
    assert guess_overrules("aspirin", far_guess, [], [even_support], weight=0.9)  # 0.6 < 0.86
    assert not guess_overrules("aspirin", far_guess, [], [even_support])
    # with no floor given, a reference about any question stands
    assert not guess_overrules("aspirin", guess, [m("aspirin", 0.9, text_sim=-0.5)], [])


def test_carrying_keeps_the_matches_that_answer_the_same_question_with_the_answer(mem_store):
    from ilearn.memory.retrieval import carrying

    def m(answer: str, text_sim: float) -> Match:
        return Match(make_event(mem_store, PILLS, answer, "alice"), 0.9, 0.9, text_sim)

    same, other, wrong = m("Aspirin", 0.6), m("aspirin", 0.59), m("ibuprofen", 0.9)
    assert carrying("aspirin", [same, other, wrong], 0.6) == [same]
    unlike = m("aspirin", -0.5)
    assert carrying("aspirin", [same, other, wrong, unlike]) == [same, other, unlike]  # no floor: any question
    assert carrying("naproxen", [same, other, wrong]) == []
