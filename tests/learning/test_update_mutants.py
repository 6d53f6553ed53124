"""Model-update behaviour that mutation testing found untested (docs/mutation-testing.md).

The helpers of `ilearn.learning.update` on small inputs, and one `learn` run on one training step of the tiny
model whose gate turns the candidate down: what the outcome, the registered version and the rejection record.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest
from learning_data import MEDICINES, NAME_QUESTION, USE_QUESTION, medicine

from ilearn.assistant import Assistant
from ilearn.config import Config, LearnConfig
from ilearn.errors import InvalidInput
from ilearn.images import decode_image
from ilearn.learning.distill import REPLAY_COLUMN
from ilearn.learning.gate import negatives_from_events
from ilearn.learning.update import (
    HeldOutLeak,
    LearnOutcome,
    dataset_kind,
    guard_heldout,
    image_loader,
    learn,
    register_candidate,
    replay_rows,
    split_heldout,
    train_candidate,
    trainable_problem,
    training_rows,
    training_set,
)
from ilearn.models.stub import StubVLM
from ilearn.types import Event, EventStatus, Label, ModelStatus, ModelVersion, Scope


class CountingStore:
    """Image bytes by sha256, counting reads."""

    def __init__(self, images: dict[str, bytes]) -> None:
        self.images, self.reads = images, 0

    def get_image_bytes(self, sha256: str) -> bytes:
        self.reads += 1
        return self.images[sha256]


def test_image_loader_decodes_each_image_once_within_the_pixel_limit():
    image, ref = decode_image(medicine("red"), max_pixels=10**6)
    store = CountingStore({ref.sha256: medicine("red")})
    load = image_loader(store)
    first = load(ref)
    assert load(ref) is first and store.reads == 1
    assert first.size == image.size and first.tobytes() == image.tobytes()
    with pytest.raises(InvalidInput):
        image_loader(store, max_pixels=96 * 96 - 1)(ref)


def test_an_unknown_recipe_names_the_known_ones():
    with pytest.raises(InvalidInput, match=r"^unknown recipe 'magic'; choose one of .*dpo.*kto.*reinforce.*sft"):
        dataset_kind("magic")


def test_trainable_problem_names_what_is_missing():
    assert trainable_problem("dpo", []) == "no dpo training examples yet"
    assert trainable_problem("kto", [{"label": True}, {"label": True}]) == \
        "kto needs both desirable and undesirable examples"
    assert trainable_problem("kto", [{"label": True}, {"label": False}]) is None
    assert trainable_problem("sft", [{"label": True}]) is None  # only kto needs both labels


def test_training_set_repeats_each_event_row_and_adds_no_replay_when_off():
    rows = [{"event_id": "a"}, {"event_id": "b"}]
    assert training_set(rows, LearnConfig(event_repeats=3, replay=0)) == rows * 3


def test_guard_heldout_names_the_leaked_events():
    rows = [{"event_id": "e3"}, {"event_id": "e1"}, {"event_id": "e3"}, {"messages": []}, {"event_id": "e2"}]
    guard_heldout(rows, [])
    guard_heldout(rows, ["e9"])
    with pytest.raises(HeldOutLeak, match=r"^2 held-out event\(s\) reached the training rows: e1, e3$"):
        guard_heldout(rows, ["e3", "e1", "e9"])


def test_train_candidate_refuses_held_out_rows_before_training():
    class Untouchable:  # neither a model nor a registry is used: the guard comes first
        def __getattr__(self, name):
            raise AssertionError(f"{name} used before the held-out guard")

    rows = [{"event_id": "e1"}, {"event_id": "e2"}]
    with pytest.raises(HeldOutLeak, match="e2"):
        train_candidate(Untouchable(), Untouchable(), LearnConfig(), rows, {"heldout_event_ids": ["e2"], "x": 1})


def test_train_candidate_without_held_out_ids_goes_on_to_train():
    class Registry:
        def new_path(self):
            raise LookupError("reached the registry")

    with pytest.raises(LookupError, match="reached the registry"):
        train_candidate(None, Registry(), LearnConfig(), [{"event_id": "e1"}])
    with pytest.raises(LookupError, match="reached the registry"):
        train_candidate(None, Registry(), LearnConfig(), [{"event_id": "e1"}], {"other": 1})


def test_reinforce_rows_take_the_settings_reward_remap():
    event = Event(None, "what is this?", "ibuprofen", "u", label=Label.POSITIVE, rejected=["aspirin"])
    learn_cfg = LearnConfig(recipe="reinforce", reward_positive=0.5, reward_negative=-0.25)
    rows = training_rows(learn_cfg, [event], lambda ref: None)
    assert [(r["reward"], r["event_id"]) for r in rows] == [(0.5, event.id), (-0.25, event.id)]


def test_replay_rows_are_seeded_marked_and_ask_the_sampled_question():
    rows = replay_rows(1, seed=3, recipe="dpo")
    assert len(rows) == 1 and rows[0][REPLAY_COLUMN] is True
    assert rows[0]["prompt"][0]["content"][-1]["text"]  # the sampled question itself
    again = replay_rows(1, seed=3, recipe="dpo")
    assert [r["rejected"] for r in again] == [r["rejected"] for r in rows]  # the wrong answer is seeded too
    mixed = training_set([{"event_id": "e1"}], LearnConfig(recipe="dpo", replay=1, seed=3))
    assert mixed[0] == {"event_id": "e1"} and mixed[1]["rejected"] == rows[0]["rejected"]
    assert mixed[1]["prompt"] == rows[0]["prompt"]


def test_guard_heldout_lists_at_most_five_ids():
    rows = [{"event_id": f"e{i}"} for i in range(7)]
    with pytest.raises(HeldOutLeak, match=r"^7 held-out event\(s\) reached the training rows: e0, e1, e2, e3, e4$"):
        guard_heldout(rows, [f"e{i}" for i in range(7)])


def test_register_candidate_records_the_events_settings_and_metrics(tmp_path):
    class Result:
        def to_dict(self):
            return {"train_loss": 0.5}

    class Registry:
        def register(self, **kwargs):
            self.kwargs = kwargs
            return kwargs

    registry, learn_cfg = Registry(), LearnConfig(recipe="kto")
    rows = [{"event_id": "e2"}, {"event_id": "e1"}, {"event_id": "e2"}, {"messages": []}]
    register_candidate(registry, learn_cfg, rows, "mdl_1", tmp_path, Result(), {"heldout_event_ids": ["e9"]})
    assert registry.kwargs == {"path": tmp_path, "recipe": "kto", "settings": asdict(LearnConfig(recipe="kto")),
                               "event_ids": ["e1", "e2"], "version_id": "mdl_1",
                               "metrics": {"train": {"train_loss": 0.5}, "heldout_event_ids": ["e9"]}}
    register_candidate(registry, learn_cfg, rows, "mdl_2", tmp_path, Result())
    assert registry.kwargs["metrics"] == {"train": {"train_loss": 0.5}}


def test_split_holds_out_only_active_answered_events_and_rounds_the_fraction():
    answered = [Event(None, "q", f"a{i % 5}", "u", id=f"evt_{i}") for i in range(10)]  # 5 facts, 2 views each
    blank = Event(None, "q", "  ", "u", id="evt_blank")
    retired = Event(None, "q", "old", "u", id="evt_old", status=EventStatus.SUPERSEDED)
    for seed in range(5):
        train, held = split_heldout([*answered, blank, retired], 0.25, seed)
        assert len(held) == 2  # round(0.25 * 10): the blank and the retired events are not eligible
        assert {e.id for e in held} < {e.id for e in answered}
        assert {e.id for e in train} == {e.id for e in [*answered, blank, retired]} - {e.id for e in held}
    assert len(split_heldout(answered, 0.35, 0)[1]) == 4  # 3.5 rounds to 4
    assert len(split_heldout(answered[:3], 0.1, 0)[1]) == 1  # at least one of three (three facts taught once)
    assert len(split_heldout(answered[:3], 0.9, 0)[1]) == 1  # and only one: each held out is a fact lost
    assert len(split_heldout(answered[:1], 0.6, 0)[1]) == 1  # one event: as many as the fraction rounds to


def test_the_split_depends_on_the_events_image():
    from ilearn.types import ImageRef

    pair = [Event(ImageRef(sha), "q", "same", "u", id=f"evt_{sha}") for sha in ("aaa", "bbb")]
    firsts = {split_heldout(pair, 0.5, seed).heldout[0].id for seed in range(12)}
    assert firsts == {"evt_aaa", "evt_bbb"}  # which of two otherwise equal events is held out varies with seed


def test_learn_outcome_summary():
    assert LearnOutcome(None, reasons=["no sft training examples yet", "later"]).summary() == \
        "nothing to learn: no sft training examples yet; later"
    version = ModelVersion("mdl_1", recipe="sft")
    kept = LearnOutcome(version, reasons=["learning: flat", "bias: fine"], n_train_events=6)
    assert kept.summary() == ("mdl_1 (sft, 6 events): kept as a candidate (not promoted)\n"
                              "  - learning: flat\n  - bias: fine")
    assert LearnOutcome(version, promoted=True, n_train_events=6).summary() == "mdl_1 (sft, 6 events): promoted"


# ---------------------------------------------------------------- one learn run on the tiny model
def add_events(assistant: Assistant, robot_id: str = "default") -> list[Event]:
    """Each medicine's name and use, on its photo, as active shared events of three users (no chats: quicker; the
    shared model learns from shared events only)."""
    events = []
    for i, (colour, (_, name, use)) in enumerate(MEDICINES.items()):
        data = medicine(colour)
        ref = assistant.store.put_image(data, decode_image(data, max_pixels=10**6)[1])
        events += [Event(ref, NAME_QUESTION, name, f"user{i}", robot_id=robot_id, scope=Scope.SHARED),
                   Event(ref, USE_QUESTION, f"for {use}", f"user{i}", robot_id=robot_id, scope=Scope.SHARED)]
    assistant.store.add_events(events)
    return events


def reference(messages) -> str:
    """The active side of the gate: answers each taught bottle's name and use right, and nothing else."""
    image, question = messages[-1].image, messages[-1].content
    for cap, name, use in MEDICINES.values():
        if image is not None and image.getpixel((48, 20)) == cap:
            return name if question == NAME_QUESTION else f"for {use}"
    return "I do not know."


def test_learn_records_a_refused_candidate_and_why(tmp_path):
    config = Config(home=str(tmp_path / "home")).override(
        model={"backend": "tiny"}, retrieval={"enabled": False},
        learn={"max_steps": 1, "learning_rate": 1e-9, "batch_size": 2, "heldout_fraction": 0.25, "replay": 0})
    assistant = Assistant.from_config(config)
    empty = learn(assistant.vlm, assistant.store, assistant.registry, config)
    assert empty.version is None and empty.reasons == ["no sft training examples yet"] and 0 < empty.seconds < 60
    events = add_events(assistant)
    add_events(assistant, robot_id="elsewhere")  # another robot's events are not this robot's snapshot
    outcome = learn(assistant.vlm, assistant.store, assistant.registry, config, promote=False,
                    gate_vlm=StubVLM(reference), general=False)
    version = assistant.registry.get(outcome.version.id)
    assert not outcome.promoted and version.status == ModelStatus.REJECTED  # refused, even when not promoting
    assert assistant.registry.active_id() == "base"
    assert outcome.gate["learning"] == {"active": 1.0, "candidate": 0.0}  # the reference is the active side
    assert outcome.gate["general"] is None and outcome.gate["specificity"] is not None
    assert version.metrics["rejected_because"] == "; ".join(outcome.reasons) and outcome.reasons
    assert outcome.gate == version.metrics["gate"] and outcome.train == version.metrics["train"]
    held = version.metrics["heldout_event_ids"]
    assert (outcome.n_train_events, outcome.n_heldout_events) == (len(events) - len(held), len(held))
    assert held == sorted(e.id for e in split_heldout(events, 0.25, config.learn.seed).heldout)  # learn.seed's split
    assert len(held) == 1  # every fact taught once: one held out (not round(0.25 * 6) = 2), to measure anything
    assert set(version.event_ids) == {e.id for e in events} - set(held)
    assert version.settings["seed"] == config.learn.seed and 0 < outcome.seconds < 600
    # the negatives are built from every active event of the snapshot, the held-out ones among them
    probes = negatives_from_events([e for e in events if e.id in held], events, image_loader(assistant.store))
    assert outcome.gate["n_negatives"] == len(probes) > 2


def test_learn_gates_on_the_picture_and_the_profile_bias_sets(tmp_path, monkeypatch):
    import ilearn.learning.gate as gate
    from ilearn.learning.bias import build_bias_set
    from ilearn.users.bias import gate_bias_set, profile_bias_set

    scored: list = []
    judge = gate.evaluate_candidate

    def spy(*args, **kwargs):
        scored.append(kwargs.get("bias_set"))
        return judge(*args, **kwargs)

    monkeypatch.setattr(gate, "evaluate_candidate", spy)
    config = Config(home=str(tmp_path / "home")).override(
        model={"backend": "tiny"}, retrieval={"enabled": False},
        learn={"max_steps": 1, "batch_size": 2, "heldout_fraction": 0.25, "replay": 0})
    assistant = Assistant.from_config(config)
    add_events(assistant)
    outcome = learn(assistant.vlm, assistant.store, assistant.registry, config, promote=False,
                    gate_vlm=StubVLM(reference), general=False)
    expected = gate_bias_set()
    assert len(scored) == 1 and [(i.question, i.fair, i.stereotyped) for i in scored[0]] == \
        [(i.question, i.fair, i.stereotyped) for i in expected]
    assert len(expected) == len(build_bias_set()) + len(profile_bias_set("eval"))
    assert {i.kind for i in expected} == {"person", "object", "profile", "profile fact"}
    assert outcome.gate["bias"] is not None


def test_train_candidate_hands_the_start_the_progress_and_its_id_through(tmp_path, monkeypatch):
    """What `train_candidate` gives the trainer and the registry, on a start version (training itself faked)."""
    from ilearn.learning import recipes
    from ilearn.users.tuning import USER_AWARE

    start = ModelVersion(id="mdl_1", event_ids=["e0", "e1"], path=str(tmp_path / "mdl_1"))

    class Registry:
        def get(self, version_id):
            assert version_id == "mdl_1"
            return start

        def new_path(self):
            return "mdl_2", tmp_path / "mdl_2"

        def register(self, **kwargs):
            self.kwargs = kwargs
            return kwargs

    trained = {}
    monkeypatch.setattr(recipes, "train", lambda vlm, rows, learn, path, on_step=None, start=None: trained.update(
        rows=rows, path=path, on_step=on_step, start=start) or type("Result", (), {"to_dict": lambda self: {}})())
    registry, told = Registry(), []
    learn_cfg = LearnConfig(start_from="mdl_1", user_aware=True, replay=0)
    rows = [{"event_id": "e2"}, {"event_id": "e3"}]
    train_candidate("vlm", registry, learn_cfg, rows, {"heldout_event_ids": ["e9"]}, on_step=told.append)
    assert trained["start"] == start.path and trained["path"] == tmp_path / "mdl_2" and trained["rows"] == rows
    trained["on_step"](1)
    assert told == [1]  # the caller's own progress callback
    assert registry.kwargs["version_id"] == "mdl_2"
    assert registry.kwargs["event_ids"] == ["e0", "e1", "e2", "e3"]  # the start's events are in these weights too
    assert registry.kwargs["metrics"][USER_AWARE] is True
    with pytest.raises(HeldOutLeak, match=r"the start version mdl_1 was trained on 1 of the held-out event\(s\)"):
        train_candidate("vlm", registry, learn_cfg, rows, {"heldout_event_ids": ["e1", "e9"]})
    plain = LearnConfig(replay=0)
    train_candidate("vlm", registry, plain, rows)
    assert trained["start"] is None and registry.kwargs["event_ids"] == ["e2", "e3"]
    assert USER_AWARE not in registry.kwargs["metrics"]


def test_shared_events_are_the_robots_shared_events_only(tmp_path):
    """What the shared model may learn from: neither a user's private events nor another robot's."""
    from ilearn.learning.update import shared_events
    from ilearn.memory.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "ilearn.db")
    shared = Event(None, "what is this?", "ibuprofen", "ana", robot_id="r1", scope=Scope.SHARED)
    private = Event(None, "what is this?", "my pills", "ana", robot_id="r1", scope=Scope.PRIVATE)
    elsewhere = Event(None, "what is this?", "aspirin", "bob", robot_id="r2", scope=Scope.SHARED)
    store.add_events([shared, private, elsewhere])
    assert [e.id for e in shared_events(store, "r1")] == [shared.id]
    assert [e.id for e in shared_events(store, "r2")] == [elsewhere.id]
    store.close()


def test_learn_reports_progress_gates_as_its_settings_say_and_promotes_by_default(tmp_path, monkeypatch):
    """One `learn` with its defaults: the caller hears distilling, each training step, then gating; the gate gets
    the given active model, the general set of `learn.general_limit` and the settings' margins; a candidate the
    gate passes is promoted, and its held-out events chose the memory's guess rule with it."""
    from dataclasses import replace

    import ilearn.learning.gate as gate
    import ilearn.learning.general as general
    from ilearn.learning.guesses import GUESSES

    calls: dict = {}
    judge, easyvqa = gate.evaluate_candidate, general.general_easyvqa

    def passing(*args, **kwargs):  # the gate's verdict is `calls["verdict"]`
        calls["gate"] = (args, kwargs)
        return replace(judge(*args, **kwargs), promote=calls.get("verdict", True))

    monkeypatch.setattr(gate, "evaluate_candidate", passing)
    monkeypatch.setattr(general, "general_easyvqa", lambda *a: calls.setdefault("general", (a, easyvqa(*a)))[1])
    config = Config(home=str(tmp_path / "home")).override(
        model={"backend": "tiny"}, retrieval={"guess_threshold": 0.5},
        learn={"max_steps": 2, "batch_size": 2, "heldout_fraction": 0.25, "replay": 0, "general_limit": 3,
               "learning_margin": 0.07})
    assistant = Assistant.from_config(config)
    add_events(assistant)
    active, told = StubVLM(reference), []
    assert assistant.memory is not None
    outcome = learn(assistant.vlm, assistant.store, assistant.registry, config, gate_vlm=active,
                    progress=told.append, memory=assistant.memory)
    assert outcome.promoted and assistant.registry.active_id() == outcome.version.id  # promote=True by default
    assert [p.phase for p in told] == ["distilling", "training", "training", "training", "gating"]
    assert [(p.step, p.steps) for p in told if p.phase == "training"] == [(0, 2), (1, 2), (2, 2)]
    assert [p.fraction for p in told] == pytest.approx([0.0, 0.05, 0.45, 0.85, 0.85])
    args, kwargs = calls["gate"]
    assert args[0] is active  # the serving model's side, not the model that trained
    assert calls["general"][0] == (3, config.learn.seed)  # the general set is measured by default
    assert args[3] is calls["general"][1] and outcome.gate["general"] is not None
    assert kwargs["margins"] == gate.Margins.from_config(config.learn) and kwargs["margins"].learning == 0.07
    assert outcome.version.metrics[GUESSES]["n_heldout"] == outcome.n_heldout_events
    assert any(r.startswith("guesses: ") for r in outcome.reasons)
    # without guesses (no threshold), no guess rule is chosen; a candidate the gate refuses is not promoted
    off = config.override(retrieval={"guess_threshold": None})
    calls["verdict"] = False
    again = learn(assistant.vlm, assistant.store, assistant.registry, off, gate_vlm=active,
                  memory=assistant.memory)
    assert GUESSES not in again.version.metrics
    assert not again.promoted and again.version.status == ModelStatus.REJECTED
    assert assistant.registry.active_id() == outcome.version.id


def test_nothing_to_learn_counts_this_robots_active_private_events(tmp_path):
    """With nothing shared to train on, `learn` says how many of this robot's private events it left out:
    neither another robot's nor those no longer active."""
    from ilearn.memory.sqlite import SQLiteStore

    config = Config(home=str(tmp_path / "home")).override(model={"backend": "tiny"}, learn={"replay": 0})
    store = SQLiteStore(tmp_path / "ilearn.db")

    def private(robot: str, status: EventStatus = EventStatus.ACTIVE) -> Event:
        return Event(None, "what is this?", "my pills", "ana", robot_id=robot, scope=Scope.PRIVATE, status=status)

    store.add_events([private("default"), private("default"), private("default", EventStatus.QUARANTINED),
                      *(private("elsewhere") for _ in range(3))])
    outcome = learn(StubVLM(reference), store, None, config)
    assert outcome.version is None
    assert outcome.reasons == ["no sft training examples yet",
                               "2 private event(s) are not learned from: the shared model learns only what is "
                               "shared (corroborated, taught by a trusted user or kept by a reviewer)"]
    store.close()


@pytest.mark.parametrize("recipe", ["sft", "dpo"])
def test_user_aware_training_rows_fit_each_events_answer_to_every_profile(recipe):
    """`learn.user_aware`: every event's sft row (its own picture, its id) once per profile tag, the tag before
    the question; for dpo as preference pairs, with the profile bias set's train pairs after them."""
    from ilearn.users.bias import bias_rows
    from ilearn.users.fit import profile_tag
    from ilearn.users.tuning import ARCHETYPES

    pictures = {}
    events = []
    for colour, (_, name, _use) in MEDICINES.items():
        image, ref = decode_image(medicine(colour), max_pixels=10**6)
        pictures[ref.sha256] = image
        events.append(Event(ref, NAME_QUESTION, name, "ana", label=Label.POSITIVE, rejected=["aspirin"]))
    rows = training_rows(LearnConfig(recipe=recipe, user_aware=True), events, lambda ref: pictures[ref.sha256])
    tags = {profile_tag(p) for p in ARCHETYPES}
    own = [r for r in rows if "event_id" in r]
    if recipe == "sft":
        assert len(own) == len(events) * len(tags)
    else:  # per event and tag: against another fact, and against another profile's wording where it differs
        assert len(events) * len(tags) < len(own) <= 2 * len(events) * len(tags)
    by_event = {e.id: e for e in events}
    for row in own:
        event = by_event[row["event_id"]]
        assert row["images"] == [pictures[event.image.sha256]]
        prompt = row["messages"][0] if recipe == "sft" else row["prompt"][0]
        question = prompt["content"][-1]["text"]
        assert question.endswith(NAME_QUESTION) and question[:-len(NAME_QUESTION)].strip() in tags
        target = row["messages"][1] if recipe == "sft" else row["chosen"][0]
        assert event.answer.lower() in target["content"][0]["text"].lower()  # the fact kept, the words fitted
    assert {r["event_id"] for r in own} == set(by_event)
    if recipe == "dpo":
        assert rows[len(own):] == bias_rows("train")
    else:
        assert len(rows) == len(own)


def test_a_recipe_that_names_no_dataset_is_refused_naming_the_datasets():
    """A third-party recipe registered without `dataset` gets a clear error listing the datasets a recipe may
    train on, not an AttributeError."""
    from ilearn import plugins
    from ilearn.learning.datasets import BUILDERS

    plugins.register("recipe", "homemade", "ilearn.models.stub:load_stub")  # a function without `dataset`
    try:
        with pytest.raises(InvalidInput) as info:
            dataset_kind("homemade")
    finally:
        plugins.unregister("recipe", "homemade")
    assert str(info.value) == (f"recipe 'homemade' must name the dataset it trains on (`dataset`: one of "
                               f"{', '.join(BUILDERS)}), not None")
