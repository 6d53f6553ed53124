"""Issue 20, item 3: trust that cannot be bought with fake ids (docs/privacy.md, the threat model).

Model-free embedders and the SQLite store: every event below is about the same bottle and question, so they all
compete. "Honest" users have accounts older than the attack (they were first seen before the answer they back
was taught); the attackers' ids are made up at attack time.
"""

from __future__ import annotations

import logging
import time

import pytest
from PIL import Image

from ilearn.cli import main
from ilearn.config import Config, RetrievalConfig
from ilearn.errors import InvalidInput
from ilearn.memory.retrieval import DualModalityMemory
from ilearn.memory.sqlite import SQLiteStore
from ilearn.memory.trust import ACCEPTED_KEY, DESCRIPTION_KEY, SCOPE_KEY, TrustPolicy
from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder
from ilearn.types import Event, EventStatus, ImageRef, Label, Scope, is_rejection

Q = "What is this medicine called?"


def bottle(shift: int = 0) -> Image.Image:
    image = Image.new("RGB", (48, 48), (235, 235, 225))
    for x in range(14 + shift, 34 + shift):
        for y in range(8, 44):
            image.putpixel((x, y), (200, 30, 30) if y < 16 else (240, 240, 240))
    return image


class World:
    """One robot's memory on a SQLite store: users teach the bottle, bystanders ask it."""

    def __init__(self, home, sharing: str = "corroboration", **policy):
        self.store = SQLiteStore(home / "ilearn.db")
        config = RetrievalConfig(sharing=sharing, image_weight=0.7, text_weight=0.3, threshold=0.8)
        self.memory = DualModalityMemory(self.store, StubImageEmbedder(), HashingTextEmbedder(), config, home,
                                         trust=TrustPolicy(sharing=sharing, **policy))
        self.shift = 0

    def users(self, *names: str, trusted: bool = False, age_s: float = 0.0) -> None:
        for name in names:
            self.store.ensure_user(name, trusted=trusted)
            if age_s:
                self.store._conn().execute("UPDATE users SET created = ? WHERE id = ?", (time.time() - age_s, name))

    def photo(self) -> tuple[ImageRef, Image.Image]:
        """A new photo of the bottle, in the store."""
        import io

        from ilearn.images import sha256_bytes

        self.shift = (self.shift + 1) % 5
        image = bottle(self.shift)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
        return self.store.put_image(data, ImageRef(sha256_bytes(data), 48, 48, "PNG")), image

    def teach(self, user: str, answer: str, supersedes: str | None = None) -> Event:
        """`user` teaches `answer` on a new photo of the bottle."""
        ref, image = self.photo()
        return self.memory.add(Event(ref, Q, answer, user, supersedes=supersedes), image)

    def accept(self, user: str, answer: str) -> Event:
        """`user` accepts the model's `answer` ("Thanks!") on a new photo of the bottle: the event `construct`
        distils from it, the model's words marked as accepted."""
        ref, image = self.photo()
        event = Event(ref, Q, answer, user, provenance={"answer": "turn-answer", ACCEPTED_KEY: "turn-thanks"})
        return self.memory.add(event, image)

    def reject(self, user: str, *answers: str, question: str = Q, robot_id: str = "default") -> Event:
        """`user` turns the model's `answers` down on a new photo of the bottle and leaves without the right one
        (the event `construct` distils: no answer, QUARANTINED)."""
        ref, image = self.photo()
        event = Event(ref, question, "", user, rejected=list(answers), label=Label.NEGATIVE,
                      status=EventStatus.QUARANTINED, robot_id=robot_id)
        return self.memory.add(event, image)

    def shared_rejections(self) -> dict[str, str]:
        """The shared rejections' users -> the answers they turned down."""
        return {e.user_id: ",".join(e.rejected) for e in self.store.list_events(scope=Scope.SHARED)
                if is_rejection(e)}

    def seen(self, user: str = "bystander") -> set[str]:
        """The answers a user who taught nothing gets from memory."""
        return {m.event.answer for m in self.memory.search(bottle(2), Q, user, k=20)}

    def close(self) -> None:
        self.memory.close()
        self.store.close()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    w.users("ana", "bob", "cy", "dan", "eve")  # regulars, first seen before anything below was taught
    yield w
    w.close()


def test_two_honest_users_share_an_answer(world):
    world.teach("ana", "ibuprofen")
    assert world.seen() == set()  # one voice: private
    world.teach("bob", "ibuprofen")
    assert world.seen() == {"ibuprofen"}


@pytest.mark.parametrize("attackers", [1, 2, 5])
def test_made_up_ids_change_no_bystanders_answer(world, attackers):
    world.teach("ana", "ibuprofen")
    world.teach("bob", "ibuprofen")
    held = [world.teach(f"fake{i}", "poison") for i in range(attackers)]  # ids made up now
    assert all(e.status == EventStatus.QUARANTINED for e in held)
    assert world.seen() == {"ibuprofen"}
    assert {e.id for e, _ in world.memory.review_queue()} == {e.id for e in held}


def test_an_honest_majority_is_never_locked_out(world):
    """Two made-up ids teach a lie first: it is shared (their voices are all there is). The regulars' corrections
    go to review while they are outnumbered, and take over once they have more voices."""
    world.teach("fake1", "poison")
    world.teach("fake2", "poison")
    assert world.seen() == {"poison"}
    first = world.teach("ana", "ibuprofen")
    second = world.teach("bob", "ibuprofen")
    assert first.status == second.status == EventStatus.QUARANTINED  # 1 and 2 voices against 2
    third = world.teach("cy", "ibuprofen")  # 3 against 2
    assert third.status == EventStatus.ACTIVE
    assert world.seen() == {"ibuprofen"}
    assert all(world.store.get_event(e.id).status == EventStatus.ACTIVE for e in (first, second))
    assert world.memory.review_queue() == []


def test_ids_younger_than_the_policy_are_no_voices(tmp_path):
    w = World(tmp_path, min_age_s=86_400)
    w.users("ana", "bob", age_s=2 * 86_400)
    w.teach("fake1", "poison")
    w.teach("fake2", "poison")
    assert w.seen() == set()  # fresh ids: no corroboration, whoever comes first
    w.teach("ana", "ibuprofen")
    w.teach("bob", "ibuprofen")
    assert w.seen() == {"ibuprofen"}
    w.close()


def test_the_age_of_a_voice_is_a_setting(tmp_path):
    """retrieval.min_age_s (a settings file or --set) reaches the memory's trust policy without Python."""
    config = Config().override(retrieval={"min_age_s": 86_400})
    store = SQLiteStore(tmp_path / "ilearn.db")
    memory = DualModalityMemory(store, StubImageEmbedder(), HashingTextEmbedder(), config.retrieval, tmp_path)
    assert memory.trust.min_age_s == 86_400
    memory.close()
    store.close()
    assert TrustPolicy().min_age_s == RetrievalConfig().min_age_s == 0  # the default: every id counts at once
    for bad in (-1, float("nan")):
        with pytest.raises(InvalidInput, match="min_age_s"):
            RetrievalConfig(min_age_s=bad)


def test_a_trusted_teacher_cannot_retire_another_teachers_answer(tmp_path):
    w = World(tmp_path, sharing="trusted")
    w.users("teacher1", "teacher2", trusted=True)
    right = w.teach("teacher1", "ibuprofen")
    assert w.seen() == {"ibuprofen"}  # a teacher shares at once
    other = w.teach("teacher2", "aspirin", supersedes=right.id)
    assert other.status == EventStatus.QUARANTINED
    assert w.store.get_event(right.id).status == EventStatus.ACTIVE and w.seen() == {"ibuprofen"}
    assert w.memory.resolve(other.id, keep=True).scope == Scope.SHARED  # a reviewer decides
    assert w.seen() == {"aspirin"} and w.store.get_event(right.id).status == EventStatus.SUPERSEDED
    w.close()


def test_a_trusted_teacher_cannot_override_a_corroborated_answer(tmp_path):
    w = World(tmp_path, sharing="trusted")
    w.users("ana", "bob")
    w.users("teacher", trusted=True)
    w.teach("ana", "ibuprofen")
    w.teach("bob", "ibuprofen")
    assert w.teach("teacher", "aspirin").status == EventStatus.QUARANTINED
    assert w.seen() == {"ibuprofen"}
    w.close()


def test_a_trusted_teacher_corrects_an_uncorroborated_answer_at_once(tmp_path):
    w = World(tmp_path, sharing="trusted")
    w.users("ana")
    w.users("teacher", trusted=True)
    wrong = w.teach("ana", "aspirin")
    fixed = w.teach("teacher", "ibuprofen", supersedes=wrong.id)
    assert fixed.status == EventStatus.ACTIVE and w.seen() == {"ibuprofen"}
    assert w.store.get_event(wrong.id).status == EventStatus.SUPERSEDED
    w.close()


def test_a_trusted_users_thanks_to_the_models_words_is_one_voice_not_authority(tmp_path):
    """A careless caretaker thanks the base model's nonsense: it stays theirs until another user backs it, and it
    never contradicts what a trusted user taught (the pharmacy's "area of a circle" answer, docs/real-images.md)."""
    w = World(tmp_path, sharing="trusted", accepted_is_voice=True)
    w.users("ana")
    w.users("careless", "teacher", trusted=True)
    junk = w.accept("careless", "the formula for the area of a circle")
    assert junk.scope == Scope.PRIVATE and w.seen() == set()
    assert {m.event.answer for m in w.memory.search(bottle(2), Q, "careless", k=20)} == {junk.answer}  # theirs
    backed = w.accept("ana", "the formula for the area of a circle")  # a second voice: corroborated
    assert w.seen() == {junk.answer}
    assert {w.store.get_event(e.id).provenance[SCOPE_KEY] for e in (junk, backed)} == {"corroborated"}
    w.close()


def test_a_trusted_users_acceptance_cannot_contradict_a_taught_answer_and_backs_an_agreeing_one(tmp_path, caplog):
    w = World(tmp_path, sharing="trusted", accepted_is_voice=True)
    w.users("careless", "teacher", trusted=True)
    taught = w.teach("teacher", "ibuprofen")
    assert w.seen() == {"ibuprofen"}
    with caplog.at_level(logging.WARNING, logger="ilearn.memory.retrieval"):
        wrong = w.accept("careless", "aspirin")
    assert wrong.status == EventStatus.QUARANTINED and w.seen() == {"ibuprofen"}
    [(held, _)] = w.memory.review_queue()
    assert held.id == wrong.id
    # one voice against a taught answer, not two teachers who disagree
    assert "shared with the voices of 1 other user" in caplog.text and "trusted careless" not in caplog.text
    agreeing = w.accept("careless", "ibuprofen")
    assert agreeing.scope == Scope.SHARED and w.store.get_event(taught.id).scope == Scope.SHARED
    w.close()


def test_by_default_a_trusted_users_acceptance_is_one_voice_and_off_it_is_shared_at_once(tmp_path):
    """retrieval.accepted_is_voice is on by default and reaches the memory's trust rules; off, a trusted user's
    "Thanks!" shares the model's words at once."""
    assert RetrievalConfig().accepted_is_voice is True and TrustPolicy().accepted_is_voice is True
    for name, on in (("on", True), ("off", False)):
        config = Config().override(retrieval={"sharing": "trusted", "accepted_is_voice": on})
        store = SQLiteStore(tmp_path / f"{name}.db")
        assert DualModalityMemory(store, StubImageEmbedder(), HashingTextEmbedder(), config.retrieval,
                                  tmp_path / name).trust.accepted_is_voice is on
        store.close()
    w = World(tmp_path, sharing="trusted")
    w.users("careless", trusted=True)
    w.accept("careless", "aspirin")
    assert w.seen() == set()
    w.close()
    w = World(tmp_path / "off", sharing="trusted", accepted_is_voice=False)
    w.users("careless", trusted=True)
    w.accept("careless", "aspirin")
    assert w.seen() == {"aspirin"}
    w.close()


def test_events_review_lists_and_resolves(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    w = World(home)
    w.users("ana", "bob")
    w.teach("ana", "ibuprofen")
    w.teach("bob", "ibuprofen")
    liar = w.teach("mallory", "poison")
    w.close()
    argv = ["--home", str(home), "--set", "retrieval.image_weight=0.7", "--set", "retrieval.text_weight=0.3",
            "--set", "retrieval.threshold=0.8", "--model", "tiny"]
    assert main(["events", "review", *argv]) == 0
    out = capsys.readouterr().out
    assert liar.id in out and "'poison'" in out and "disputes 'ibuprofen' (ana), 'ibuprofen' (bob)" in out
    assert "1 event(s) waiting for review" in out
    assert main(["events", "review", *argv, "--reject", liar.id]) == 0
    assert "rejected" in capsys.readouterr().out
    assert main(["events", "review", *argv]) == 0
    assert "0 event(s) waiting" in capsys.readouterr().out
    assert main(["events", "review", *argv, "--keep", liar.id]) == 2  # no longer waiting
    assert "not quarantined" in capsys.readouterr().err


# ---- rejections: the negatives KTO and REINFORCE learn from are shared by the same rules -------------------
def test_one_users_rejection_stays_private_and_is_never_retrieved(world):
    held = world.reject("ana", "aspirin")
    assert held.scope == Scope.PRIVATE and held.status == EventStatus.QUARANTINED and held.answer == ""
    assert held.id not in world.memory.index
    assert world.seen("ana") == set() and world.memory.review_queue() == []  # nothing to retrieve or to review


def test_two_users_turning_down_the_same_answer_share_both_rejections(world):
    first = world.reject("ana", "aspirin")
    world.reject("bob", "paracetamol")  # another answer: no voice for aspirin's rejection
    assert world.shared_rejections() == {}
    world.reject("cy", "Aspirin.")  # the same answer, worded as answers are compared (answer_key)
    assert world.shared_rejections() == {"ana": "aspirin", "cy": "Aspirin."}
    assert world.store.get_event(first.id).provenance[SCOPE_KEY] == "corroborated"
    assert world.seen() == set()  # shared for training, still never retrieved


def test_a_rejection_on_another_question_or_object_is_no_voice(world):
    world.reject("ana", "aspirin")
    world.reject("bob", "aspirin", question="What is this medicine used for?")
    assert world.shared_rejections() == {}


def test_a_rejection_on_another_robot_is_no_voice(world):
    world.reject("ana", "aspirin", robot_id="kitchen")
    world.reject("bob", "aspirin")
    assert world.shared_rejections() == {}


def test_forgetting_a_user_unshares_only_the_rejections_their_voice_held(world):
    """Each robot counts its own rejections' voices: forgetting one of three leaves two, still shared; forgetting
    a second leaves one, unshared, though another robot's users turned the same answer down."""
    for user in ("ana", "bob", "cy"):
        world.reject(user, "aspirin")
    for user in ("dan", "eve"):
        world.reject(user, "aspirin", robot_id="kitchen")
    assert set(world.shared_rejections()) == {"ana", "bob", "cy", "dan", "eve"}
    world.memory.forget_user("cy")
    assert set(world.shared_rejections()) == {"ana", "bob", "dan", "eve"}
    world.memory.forget_user("bob")
    assert set(world.shared_rejections()) == {"dan", "eve"}


def test_a_rejection_the_shared_answer_agrees_with_is_shared(world):
    world.teach("ana", "ibuprofen")
    world.teach("bob", "ibuprofen")
    world.reject("cy", "aspirin")  # the memory's corroborated answer says aspirin is wrong too
    world.reject("dan", "ibuprofen")  # turning the shared answer down is one voice against it: private
    assert world.shared_rejections() == {"cy": "aspirin"}


def test_made_up_ids_cannot_share_a_rejection(tmp_path):
    w = World(tmp_path, min_age_s=86_400)
    w.users("ana", "bob", age_s=2 * 86_400)
    w.reject("fake1", "ibuprofen")
    w.reject("fake2", "ibuprofen")
    assert w.shared_rejections() == {}
    w.reject("ana", "ibuprofen")
    w.reject("bob", "ibuprofen")
    assert set(w.shared_rejections()) == {"ana", "bob", "fake1", "fake2"}  # corroborated: as `_settle` shares
    w.close()


@pytest.mark.parametrize("sharing, shared", [("trusted", {"teacher": "aspirin"}), ("private", {})])
def test_a_trusted_users_rejection_is_shared_at_once_and_none_when_private(tmp_path, sharing, shared):
    w = World(tmp_path, sharing=sharing)
    w.users("teacher", trusted=True)
    w.users("ana", "bob")
    w.reject("teacher", "aspirin")
    if sharing == "private":
        w.reject("ana", "aspirin")
        w.reject("bob", "aspirin")
    assert w.shared_rejections() == shared
    w.close()


def test_an_event_with_neither_answer_nor_rejection_is_refused(world):
    ref, image = world.photo()
    with pytest.raises(InvalidInput, match="answer"):
        world.memory.add(Event(ref, Q, "", "ana", rejected=[" "], status=EventStatus.QUARANTINED), image)
    assert world.store.list_events() == []


def test_forgetting_a_voice_unshares_what_it_corroborated(world):
    world.reject("ana", "aspirin")
    world.reject("bob", "aspirin")
    assert set(world.shared_rejections()) == {"ana", "bob"}
    world.memory.forget_user("ana")
    assert world.shared_rejections() == {}  # bob's voice alone
    world.teach("cy", "ibuprofen")
    world.teach("dan", "ibuprofen")
    world.reject("eve", "paracetamol")  # agrees with the shared ibuprofen
    assert world.shared_rejections() == {"eve": "paracetamol"}
    world.memory.forget_user("cy")
    assert world.seen() == set() and world.shared_rejections() == {}  # no shared answer agrees with eve now


def test_a_rejection_a_crash_left_unadmitted_is_admitted_at_the_next_start(tmp_path):
    w = World(tmp_path)
    w.users("ana", "bob")
    w.reject("ana", "aspirin")
    ref, _ = w.photo()  # bob's rejection committed by the session's distillation, then the process died
    w.store.add_events([Event(ref, Q, "", "bob", rejected=["aspirin"], label=Label.NEGATIVE,
                              status=EventStatus.QUARANTINED)])
    assert w.shared_rejections() == {}
    w.memory.close()
    w.memory = DualModalityMemory(w.store, StubImageEmbedder(), HashingTextEmbedder(), w.memory.config, tmp_path,
                                  trust=w.memory.trust)  # its start brings the index in line with the store
    assert w.shared_rejections() == {"ana": "aspirin", "bob": "aspirin"}
    assert w.memory.ensure_fresh() == "loaded"  # admitted once
    w.close()


# ---- descriptions (a pick on a board): many right answers, none competes --------------------------------------
def describe(w: World, user: str, text: str) -> Event:
    """`user` described the panel they meant as `text` (what `construct` distils from an accepted pick)."""
    ref, image = w.photo()
    return w.memory.add(Event(ref, Q, text, user, provenance={DESCRIPTION_KEY: "turn"}), image)


def test_trusted_players_descriptions_are_all_shared_and_none_goes_to_review(tmp_path):
    w = World(tmp_path, sharing="trusted")
    w.users("p1", "p2", trusted=True)
    first = describe(w, "p1", "the striped fan")
    second = describe(w, "p2", "the tall grey tower")  # the same panel worded otherwise: no contradiction
    assert [e.status for e in (first, second)] == [EventStatus.ACTIVE] * 2 and w.memory.review_queue() == []
    assert {e.answer for e in w.store.list_events(scope=Scope.SHARED)} == {"the striped fan", "the tall grey tower"}
    w.teach("p1", "ibuprofen")  # an answer to the same question does not compete with descriptions either
    assert w.store.list_events(status=EventStatus.QUARANTINED) == []
    w.close()


def test_descriptions_are_shared_when_voices_word_them_alike_and_unshared_when_one_is_forgotten(world):
    describe(world, "ana", "the striped fan")
    describe(world, "bob", "a grey tower")
    assert world.store.list_events(scope=Scope.SHARED) == []  # one voice each
    describe(world, "cy", "The striped fan.")
    assert {e.user_id for e in world.store.list_events(scope=Scope.SHARED)} == {"ana", "cy"}
    assert world.store.list_events(status=EventStatus.QUARANTINED) == []
    world.memory.forget_user("cy")
    assert world.store.list_events(scope=Scope.SHARED) == []
