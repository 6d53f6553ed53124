from __future__ import annotations

from dataclasses import replace

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


def test_tentative_offers_the_best_same_question_match_weighed_as_the_memory_says(mem_store):
    from ilearn.memory.retrieval import Match, tentative

    def m(answer: str, score: float, parts=None, text_sim: float = 1.0) -> Match:
        return Match(make_event(mem_store, PILLS, answer, "alice"), score, score, text_sim, parts)

    assert tentative([], 0.76) is None
    assert tentative([m("ibuprofen", 0.75)], 0.76) is None  # nothing close enough: no guess
    assert tentative([m("ibuprofen", 0.8), m("aspirin", 0.7)], 0.76).event.answer == "ibuprofen"
    other = m("ibuprofen", 0.9, text_sim=0.3)  # another question's answer is never a guess
    assert tentative([other, m("aspirin", 0.77)], 0.76, 0.6).event.answer == "aspirin"
    assert tentative([other, m("aspirin", 0.7)], 0.76, 0.6) is None
    # with the memory's weight: the gate is the best fused score, the choice the parts weighed so
    near_first = m("ibuprofen", 0.8, parts=(0.9, 0.5))
    near_second = m("aspirin", 0.7, parts=(0.4, 0.95))
    assert tentative([near_first, near_second], 0.76, weight=0.1).event.answer == "aspirin"
    assert tentative([near_first, near_second], 0.76, weight=0.9).event.answer == "ibuprofen"
    assert tentative([near_first, near_second], 0.76).event.answer == "ibuprofen"  # no weight: the fused order
    assert tentative([m("ibuprofen", 0.7, parts=(0.9, 0.9))], 0.76, weight=0.5) is None


def test_leave_one_out_weight_picks_the_part_that_tells_the_events_apart():
    import numpy as np

    from ilearn.memory.retrieval import leave_one_out_weight

    labels = ["a", "a", "b", "b", "c", "c"]
    same_label = np.array([[x == y for y in labels] for x in labels], dtype=float)
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.0, 1.0, (6, 6))
    noise = (noise + noise.T) / 2
    telling = 0.5 + 0.4 * same_label  # same object 0.9, another 0.5
    everyone = np.ones((6, 6), dtype=bool)
    assert leave_one_out_weight(noise, telling, everyone, labels, 0.7) <= 0.3  # the second part tells them apart
    assert leave_one_out_weight(telling, noise, everyone, labels, 0.7) >= 0.7  # the first does
    assert leave_one_out_weight(telling, telling, everyone, labels, 0.7) == 0.7  # a tie keeps the default
    assert leave_one_out_weight(telling, noise, everyone, ["a", "b", "c", "d", "e", "f"], 0.7) is None  # no pairs
    other_question = ~np.eye(6, dtype=bool) & (np.arange(6)[:, None] // 2 != np.arange(6)[None, :] // 2)
    assert leave_one_out_weight(telling, noise, other_question, labels, 0.7) is None  # pairs only across questions


def test_leave_one_out_gate_offers_guesses_where_names_were_right_more_often_than_not():
    import numpy as np

    from ilearn.memory.retrieval import leave_one_out_gate

    def pairs(sims_by_pair, labels):  # a similarity per pair of events (0, 1), (2, 3)...; the rest far apart
        n = len(labels)
        sims = np.full((n, n), -1.0)
        for k, s in enumerate(sims_by_pair):
            sims[2 * k, 2 * k + 1] = sims[2 * k + 1, 2 * k] = s
        return sims, np.ones((n, n), dtype=bool)

    # three pairs that name each other right (0.9, 0.8, 0.7), then two pairs of different objects (0.6, 0.5)
    labels = ["a", "a", "b", "b", "c", "c", "d", "e", "f", "g"]
    sims, everyone = pairs([0.9, 0.8, 0.7, 0.6, 0.5], labels)
    assert leave_one_out_gate(sims, everyone, labels, 0.5) == pytest.approx(0.7)  # the wrong tail is cut off
    # right and wrong interleaved: at 0.5 the gate stops where right ones still outweigh the wrong ones
    mixed = ["a", "a", "x", "y", "b", "b", "z", "w", "c", "c"]
    sims, everyone = pairs([0.9, 0.8, 0.7, 0.6, 0.5], mixed)
    assert leave_one_out_gate(sims, everyone, mixed, 0.5) == pytest.approx(0.9)
    assert leave_one_out_gate(sims, everyone, mixed, 0.3) == pytest.approx(0.5)  # a lower bar guesses further
    wrong = ["a", "b", "c", "d", "e", "f"]
    sims, everyone = pairs([0.9, 0.8, 0.7], wrong)
    assert leave_one_out_gate(sims, everyone, wrong, 0.5) == float("inf")  # never right: never guess
    assert leave_one_out_gate(sims[:2, :2], everyone[:2, :2], ["a", "a"], 0.5) is None  # too few to say
    other_question = np.zeros((6, 6), dtype=bool)
    assert leave_one_out_gate(sims, other_question, wrong, 0.5) is None  # no pairs about one question


class _Noise:
    """An image embedder that sees nothing of the object: every picture its own random direction."""

    name = "noise"
    dim = 16

    def embed_images(self, images):
        import hashlib

        import numpy as np

        rows = [np.random.default_rng(int(hashlib.sha256(im.tobytes()).hexdigest()[:8], 16)).normal(size=self.dim)
                for im in images]
        return np.stack(rows).astype(np.float32)


def test_the_guess_rule_depends_on_the_events_alone_not_on_when_it_was_last_chosen(mem_store, tmp_path):
    """A process that chose the rule while teaching and one that opens the taught memory afresh serve the same rule
    (the pharmacy's R3+retrieval once named 46 of R2's 48 facts in the first and 48 in the second)."""
    from ilearn.models.embedders import FusedImageEmbedder

    fused = FusedImageEmbedder(weight=0.7, first=_Noise(), second=StubImageEmbedder())
    config = RetrievalConfig(image_weight=0.8, text_weight=0.2, threshold=0.5, reuse_threshold=0.9,
                             guess_precision=0.5)
    teaching = DualModalityMemory(mem_store, fused, HashingTextEmbedder(), config, tmp_path / "teaching")
    colours = [(200, 40, 40), (40, 40, 200), (40, 180, 40), (180, 180, 40), (180, 40, 180), (40, 180, 180)]
    rules = []
    for i in range(42):  # the rule chosen after each lesson as a turn would, but the last two
        colour = colours[i % len(colours)]
        view = make_image(tuple(min(255, c + 5 * (i // len(colours))) for c in colour), mark=2 + i % 7)
        answer = f"object {i % len(colours)}" if i % 5 else f"slip {i}"  # some answers no other event shares
        if i >= 40:
            answer = "object 0"  # the last lessons disagree with the most alike events
        teaching.add(make_event(mem_store, view, answer, f"user{i % 3}"), view)
        if i < 40:
            rules.append(teaching.guess_rule(tuned=True))
    assert len(set(rules)) > 1  # the lessons moved it
    fresh = DualModalityMemory(mem_store, fused, HashingTextEmbedder(), config, tmp_path / "fresh")
    assert teaching.guess_rule() == fresh.guess_rule()
    assert teaching.guess_rule(tuned=True) == fresh.guess_rule(tuned=True)


def test_turns_at_once_after_a_change_choose_the_guess_rule_once(mem_store, tmp_path):
    import threading
    import time

    from ilearn.models.embedders import FusedImageEmbedder

    fused = FusedImageEmbedder(weight=0.7, first=_Noise(), second=StubImageEmbedder())
    config = RetrievalConfig(image_weight=0.8, text_weight=0.2, threshold=0.5, reuse_threshold=0.9,
                             guess_precision=0.5)
    mem = DualModalityMemory(mem_store, fused, HashingTextEmbedder(), config, tmp_path)
    for i in range(12):
        view = make_image((200 - 60 * (i % 3), 40, 40 + 60 * (i % 3)), mark=2 + i)
        mem.add(make_event(mem_store, view, f"object {i % 3}", "alice"), view)
    chosen, calls = mem._calibrate_guesses, []

    def counted(default):
        calls.append(default)
        time.sleep(0.05)  # long enough for every turn below to arrive while it chooses
        return chosen(default)

    mem._calibrate_guesses = counted
    rules, start = [], threading.Barrier(8)

    def turn():
        start.wait()
        rules.append(mem.guess_rule())

    threads = [threading.Thread(target=turn) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(rules)) == 1 and rules[0][0] is not None


@pytest.mark.parametrize("noise_first", [True, False])
def test_the_memory_chooses_the_guess_weight_from_its_own_events(mem_store, tmp_path, noise_first):
    from ilearn.models.embedders import FusedImageEmbedder

    stub = StubImageEmbedder()
    fused = FusedImageEmbedder(weight=0.7, first=_Noise() if noise_first else stub,
                               second=stub if noise_first else _Noise())
    config = RetrievalConfig(image_weight=0.8, text_weight=0.2, threshold=0.5, reuse_threshold=0.9,
                             guess_precision=0.5)
    mem = DualModalityMemory(mem_store, fused, HashingTextEmbedder(), config, tmp_path)
    colours = {"ibuprofen": (200, 40, 40), "aspirin": (40, 40, 200), "naproxen": (40, 180, 40)}
    for answer, colour in colours.items():
        mem.add(make_event(mem_store, make_image(colour, mark=4), answer, "alice"), make_image(colour, mark=4))
    assert mem.guess_weight() is None  # one picture of each: nothing to learn the weight from
    for answer, colour in colours.items():
        view = make_image(tuple(min(255, c + 25) for c in colour), mark=8)
        mem.add(make_event(mem_store, view, answer, "bob"), view)
    chosen = mem.guess_weight()  # recomputed after the change
    # each event's nearest other view is its own object's: guesses are right from the least alike pair on
    gate = mem.guess_gate()
    assert gate is not None and -1.0 < gate < 1.0
    plain = DualModalityMemory(mem_store, fused, HashingTextEmbedder(),
                               replace(config, guess_precision=None, tuned_guess_precision=0.5), tmp_path / "fixed")
    assert plain.guess_weight() is not None and plain.guess_gate() is None  # the fixed guess_threshold gates
    # a tuned version's answers face their own share (tuned_guess_precision): calibrated as well
    assert plain.guess_rule(tuned=True)[1] == pytest.approx(gate)
    # a gate per share, chosen on the same read of the events
    from ilearn.memory.retrieval import leave_one_out_gate

    _, _, (sims, same, answers), _ = plain._guess_rule
    plain.config = replace(plain.config, tuned_guess_precision=0.05)
    low = leave_one_out_gate(sims, same, answers, 0.05)
    assert plain.guess_rule(tuned=True)[1] == pytest.approx(low) and low <= gate
    assert set(plain._guess_rule[3]) == {None, 0.5, 0.05} and plain.guess_rule()[1] is None
    # a share asked for by name (an offline reading of several) is the same gate, kept beside the others
    assert plain.guess_rule(tuned=True, precision=0.3)[1] == pytest.approx(leave_one_out_gate(sims, same, answers, 0.3))
    assert set(plain._guess_rule[3]) == {None, 0.5, 0.05, 0.3} and plain.config.tuned_guess_precision == 0.05
    off = DualModalityMemory(mem_store, fused, HashingTextEmbedder(),
                             replace(config, tuned_guess_precision=None), tmp_path / "off")
    assert off.guess_rule(tuned=True)[1] is None and off.guess_rule()[1] == pytest.approx(gate)
    # away from the embedder's own 0.7 towards the part that sees the objects (ties stay nearest 0.7)
    assert chosen is not None and (chosen < 0.7 if noise_first else chosen >= 0.7)
    hit = mem.search(make_image((210, 50, 50), mark=6), Q, "alice", floor=-1.0, k=10)
    assert hit and all(m.parts is not None for m in hit)
    weight = 0.7
    for m in hit:  # the parts recombine into the image cosine
        assert weight * m.parts[0] + (1 - weight) * m.parts[1] == pytest.approx(m.image_sim, abs=1e-4)
    assert all(m.parts is None for m in memory(mem_store, tmp_path / "plain").search(PILLS, Q, "alice", floor=-1.0))
