"""Issue 20, item 1: the shared model learns only from shared events; a private answer never reaches another user.

Three users teach three bottles' names (each name corroborated by three users: shared); ana alone teaches a
fourth bottle's name, "zorblax" (private). bob, who never saw it, asks that bottle's name on 8 new photos: 0
answers say zorblax before `learn`, after it, and after ana is forgotten. With every event trained on (the old
`learn`) the same run answers zorblax on the new photos: `test_the_setting_can_tell` shows the test can fail.
"""

from __future__ import annotations

import io

import pytest
from learning_data import NAME_QUESTION, teach_medicines
from PIL import Image, ImageDraw

from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.learning import update
from ilearn.types import EventStatus, Scope

LEARN = {"recipe": "sft", "trainable": ("vision", "projector", "language"), "lora": (), "max_steps": 150,
         "learning_rate": 3e-3, "batch_size": 8, "heldout_fraction": 0.25, "general_limit": 8, "replay": 0}
SECRET = "zorblax"
VIEWS = ((-2, 0), (0, 6), (2, 12), (-1, 3), (1, 9))
PROBES = [(s, light) for s in (-3, -1, 1, 3) for light in (2, 8)]  # 8 photos none of the chats showed


def yellow_bottle(shift: int = 0, light: int = 0) -> bytes:
    """A bottle none of the shared medicines looks like (a yellow cap and band on a dark background)."""
    image = Image.new("RGB", (96, 96), (60 + light, 40 + light, 90 + light))
    draw = ImageDraw.Draw(image)
    draw.rectangle((22 + shift, 30, 74 + shift, 92), fill=(230, 210, min(255, 40 + light)))
    draw.rectangle((34 + shift, 12, 62 + shift, 30), fill=(240, 200, 20))
    draw.rectangle((30 + shift, 50, 66 + shift, 62), fill=(240, 200, 20))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def build(home, retrieval: bool = True) -> Assistant:
    config = Config(home=str(home)).override(model={"backend": "tiny"}, feedback={"method": "lexical"},
                                             learn=LEARN, retrieval={"enabled": retrieval})
    return Assistant.from_config(config)


def taught(home) -> Assistant:
    """Every chat becomes an event (retrieval off while teaching, as in test_learns); then retrieval on."""
    with build(home, retrieval=False) as teaching:
        teach_medicines(teaching)
        teach_secret(teaching)
    return build(home)


def teach_secret(assistant: Assistant) -> None:
    for shift, light in VIEWS:
        reply = assistant.respond("ana", NAME_QUESTION, image=yellow_bottle(shift, light))
        assistant.respond("ana", f"No, that's {SECRET}.", session_id=reply.session_id)
        assistant.close_session(reply.session_id)


def says_secret(assistant: Assistant, user: str) -> int:
    """How many of the 8 probe photos `user` gets the secret name for."""
    return sum(SECRET in assistant.respond(user, NAME_QUESTION, image=yellow_bottle(*p)).text.lower() for p in PROBES)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    return taught(tmp_path_factory.mktemp("privacy") / "home")


def test_private_and_shared_events_are_told_apart(deployment):
    events = deployment.store.list_events(status=EventStatus.ACTIVE)
    secret = [e for e in events if e.user_id == "ana"]
    assert len(secret) == len(VIEWS) and all(e.scope == Scope.PRIVATE and e.answer == SECRET for e in secret)
    shared = [e for e in events if e.user_id != "ana"]
    assert len(shared) == 30 and all(e.scope == Scope.SHARED for e in shared)


def test_a_private_answer_never_reaches_another_user_through_learning(deployment):
    assert says_secret(deployment, "bob") == 0  # before learn: retrieval keeps it private
    outcome = deployment.learn(general=False)
    assert outcome.promoted, outcome.summary()
    version = outcome.version
    secret_ids = {e.id for e in deployment.store.list_events(user_id="ana")}
    assert secret_ids.isdisjoint(version.event_ids) and secret_ids.isdisjoint(version.metrics["heldout_event_ids"])
    assert SECRET not in str(version.metrics)  # nor in the gate's examples
    assert says_secret(deployment, "bob") == 0  # the promoted model does not know it either
    assert says_secret(deployment, "ana") == 8  # ana keeps her answer, through retrieval
    deployment.forget_user("ana")
    assert says_secret(deployment, "bob") == 0


@pytest.mark.slow
def test_the_setting_can_tell(tmp_path, monkeypatch):
    """Trained on every event (as `learn` did before), the model gives bob the private name: the test above
    would fail (the gate may refuse that candidate; it is served anyway)."""
    assistant = taught(tmp_path / "home")
    monkeypatch.setattr(update, "shared_events", lambda store, robot_id: store.list_events(robot_id=robot_id))
    outcome = assistant.learn(general=False, promote=False)
    assistant.registry.promote(outcome.version.id)
    assert says_secret(assistant, "bob") >= 6


def test_learn_says_why_private_events_train_nothing(tmp_path):
    with build(tmp_path / "home") as assistant:
        teach_secret(assistant)
        private = assistant.store.count_events(user_id="ana", status=EventStatus.ACTIVE)
        outcome = assistant.learn(general=False)
    assert outcome.version is None and private >= 1
    assert outcome.reasons == ["no sft training examples yet", f"{private} private event(s) are not learned from: "
                               "the shared model learns only what is shared (corroborated, taught by a trusted "
                               "user or kept by a reviewer)"]


def test_rejections_reach_training_only_when_shared(tmp_path):
    """What users turned down (no right answer given) is the negatives of KTO and REINFORCE: one user's stays
    private, like an answer; two users turning the model's answer down on the same bottle share it (the trust
    rules, tests/test_trust.py), and `learn`'s rows then hold it as undesirable."""
    from ilearn.config import LearnConfig

    def turn_down(assistant: Assistant, user: str, view: tuple[int, int]) -> str:
        reply = assistant.respond(user, NAME_QUESTION, image=yellow_bottle(*view))
        assistant.respond(user, "No, that's wrong.", session_id=reply.session_id)
        assistant.close_session(reply.session_id)
        return reply.text

    kto = LearnConfig(recipe="kto")
    with build(tmp_path / "home") as assistant:
        wrong = turn_down(assistant, "ana", VIEWS[0])
        [held] = assistant.store.list_events(user_id="ana")
        assert held.rejected == [wrong] and held.answer == "" and held.scope == Scope.PRIVATE
        assert update.shared_events(assistant.store, "default") == []
        assert turn_down(assistant, "bob", VIEWS[1]) == wrong  # the same base model, the same answer
        shared = update.shared_events(assistant.store, "default")
        assert {e.user_id for e in shared} == {"ana", "bob"}
        rows = update.training_rows(kto, shared, lambda ref: None)
        assert [(r["completion"][0]["content"][0]["text"], r["label"]) for r in rows] == [(wrong, False)] * 2
