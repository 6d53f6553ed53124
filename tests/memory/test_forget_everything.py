"""Issue 20, item 2: forgetting a user removes what test_forget.py checks and also what was derived from them:
their ids in other users' rows, model versions trained on their events (marked, weights deleted, the serving
one replaced by a clean one), gate examples quoting them, dataset exports under the home, and the write-ahead log
while another connection reads. The command prints what it deleted and never rebuilds the index differently."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest
from test_forget import files_holding, photo

from ilearn.assistant import Assistant
from ilearn.cli import main
from ilearn.config import Config
from ilearn.learning.datasets import export
from ilearn.memory.sqlite import SQLiteStore
from ilearn.types import Event, ModelStatus, Scope

QUESTION = "What is this medicine called?"
ANA = "zqana.user"


def build(home) -> Assistant:
    config = Config(home=str(home)).override(model={"backend": "tiny"}, feedback={"method": "lexical"})
    return Assistant.from_config(config)


def teach(assistant: Assistant, user: str, image: bytes, answer: str) -> Event:
    r = assistant.respond(user, QUESTION, image=image)
    assistant.respond(user, f"No, that's {answer}.", session_id=r.session_id)
    [event] = assistant.close_session(r.session_id)
    return assistant.store.get_event(event.id)


def version(assistant: Assistant, event_ids: list[str], examples: list[dict]) -> str:
    """A registered and promoted model version trained on `event_ids` (weights: a loadable file that changes
    nothing; the forget loads the version that serves after it)."""
    from safetensors.torch import save_file

    version_id, path = assistant.registry.new_path()
    save_file({}, str(path / "weights.safetensors"), metadata={"format": "pt"})
    assistant.registry.register(path=path, recipe="sft", event_ids=event_ids, version_id=version_id,
                                metrics={"heldout_event_ids": [], "gate": {"learning": {"examples": examples}}})
    assistant.registry.promote(version_id)
    return version_id


@pytest.fixture
def deployment(tmp_path):
    """ana and cy teach the same bottle (shared), ana a private one; bob is answered from ana's shared event and
    corrects it; v1 is trained on cy's event, v2 (serving) on ana's too; an export under the home holds ana's."""
    assistant = build(tmp_path / "home")
    shared = photo(1)
    ana_shared = teach(assistant, ANA, shared, "zqanashared")
    cy = teach(assistant, "cy", shared, "zqanashared")
    ana_private = teach(assistant, ANA, photo(2), "zqanaprivate")
    assert assistant.store.get_event(ana_shared.id).scope == Scope.SHARED
    r = assistant.respond("bob", QUESTION, image=shared)
    assert ana_shared.id in assistant.get_session(r.session_id).turns[-1].retrieved
    assistant.respond("bob", "No, that's aspirin.", session_id=r.session_id)
    [bob] = assistant.close_session(r.session_id)
    assert bob.supersedes in {ana_shared.id, cy.id}
    v1 = version(assistant, [cy.id], [{"question": QUESTION, "answer": "zqanashared"}])
    v2 = version(assistant, [cy.id, ana_shared.id], [{"question": QUESTION, "answer": "zqanashared"}])
    home = assistant.config.home_path
    export(assistant.store.list_events(), assistant.store, home / "exports" / "all")
    return assistant, {"ana_shared": ana_shared, "ana_private": ana_private, "cy": cy, "bob": bob}, v1, v2


def test_forget_removes_what_was_derived_from_the_user(deployment):
    assistant, events, v1, v2 = deployment
    home = assistant.config.home_path
    ana_ids = [events["ana_shared"].id, events["ana_private"].id]
    needles = {"user id": ANA.encode(), "private answer": b"zqanaprivate", **{i: i.encode() for i in ana_ids}}

    report = assistant.forget(ANA)
    assert sorted(report.event_ids) == sorted(ana_ids)
    assert (report.sessions, report.images, report.vectors) == (2, 1, 2)  # the shared photo is cy's too
    assert report.exports == ["exports/all"] and not (home / "exports" / "all").exists()
    assert report.versions.trained == [v2] and report.versions.active_before == v2
    assert report.versions.active_after == v1 == assistant.registry.active_id()
    marked = assistant.registry.get(v2)
    assert marked.status == ModelStatus.RETIRED and marked.metrics["forgotten"]["events"] == 1
    assert ana_ids[0] not in marked.event_ids and "examples" not in json.dumps(marked.metrics)
    assert not (home / "models" / v2).exists() and (home / "models" / v1).exists()
    assert assistant.registry.get(v1).metrics["gate"]["learning"]["examples"]  # v1 never named ana's events
    assert f"{v2} was one of them: {v1} serves now" in report.summary()
    # ids in other rows: bob's correction and the turn that retrieved ana's event
    bob = assistant.store.get_event(events["bob"].id)
    assert bob.supersedes in (None, events["cy"].id)
    for session in assistant.store.list_sessions(user_id="bob"):
        for turn in session.turns:
            assert not set(turn.retrieved) & set(ana_ids)
    # cy alone is no corroboration: her event is private again
    assert assistant.store.get_event(events["cy"].id).scope == Scope.PRIVATE
    assistant.close()
    assert files_holding(home, needles) == {}


def test_a_replacement_that_does_not_load_leaves_the_base_model_serving(deployment):
    """The version left active after a forget has broken weights: the forgotten one never answers again, the base
    model does, and the report says so instead of naming the broken version as serving."""
    assistant, _, v1, v2 = deployment
    (assistant.config.home_path / "models" / v1 / "weights.safetensors").write_bytes(b"broken")
    report = assistant.forget(ANA)
    assert report.versions.active_after == v1 == assistant.registry.active_id()
    assert f"{v1} serves now" not in report.summary() and "base serves" in report.summary()
    reply = assistant.respond("cy", QUESTION, image=photo(3))
    assert reply.model_version not in (v1, v2)
    assistant.close()


def test_weights_that_cannot_be_deleted_are_reported_never_marked_deleted_and_retried(deployment, monkeypatch):
    """A weights folder that resists deletion (a permission, a busy file system) is named in the report and in the
    version's metrics as not deleted; the next forget (of anyone) deletes it and says so."""
    import ilearn.learning.registry as registry_module

    assistant, events, v1, v2 = deployment
    folder = assistant.config.home_path / "models" / v2
    real_rmtree = registry_module.shutil.rmtree

    def refuse(path, *args, **kwargs):
        if Path(path) != folder:
            return real_rmtree(path, *args, **kwargs)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(registry_module.shutil, "rmtree", refuse)
    report = assistant.forget(ANA)
    assert report.versions.trained == [v2] and list(report.versions.undeleted) == [v2]
    assert "PermissionError" in report.versions.undeleted[v2] and folder.exists()
    assert assistant.registry.get(v2).metrics["forgotten"]["weights"].startswith("not deleted (PermissionError")
    assert "weights NOT deleted" in report.summary() and "their weights deleted" not in report.summary()
    assert assistant.registry.forgotten(v2) and assistant.registry.active_id() == v1

    monkeypatch.setattr(registry_module.shutil, "rmtree", real_rmtree)
    again = assistant.forget("cy")  # v1 was trained on cy's event: forgotten too, and v2's folder retried
    assert v1 in again.versions.trained and again.versions.undeleted == {}
    assert not folder.exists() and not (assistant.config.home_path / "models" / v1).exists()
    assert assistant.registry.get(v2).metrics["forgotten"]["weights"] == "deleted"
    assistant.close()


def test_the_write_ahead_log_is_emptied_once_a_reader_lets_go(tmp_path):
    store = SQLiteStore(tmp_path / "ilearn.db", timeout=0.2)
    store.add_events([Event(None, "q", "a", "bob")])
    store.add_events([Event(None, f"zqsecret {i}", "zqsecret", "quillon") for i in range(30)])
    reader = sqlite3.connect(tmp_path / "ilearn.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchall()  # holds a snapshot with quillon's rows
    store.delete_user("quillon")
    assert b"zqsecret" in (tmp_path / "ilearn.db-wal").read_bytes()  # the reader still needs those pages
    reader.execute("COMMIT")
    reader.close()
    thread = threading.Thread(target=store.add_events, args=([Event(None, "q2", "a2", "bob")],))
    thread.start()
    thread.join()  # the next write (from any thread) checkpoints
    assert b"zqsecret" not in (tmp_path / "ilearn.db-wal").read_bytes()
    assert all(b"quillon" not in p.read_bytes() for p in tmp_path.iterdir())
    store.close()


def test_the_command_reports_and_keeps_the_index_embedders(deployment, capsys):
    assistant, events, _, _ = deployment
    home = assistant.config.home_path
    keys = sorted(assistant.memory.index.keys())
    meta = json.loads((home / "index" / "events.json").read_text())["meta"]
    assistant.close()
    # no --model: the settings would name the default model's embedders; the recorded ones are used
    assert main(["events", "forget", "--home", str(home), "--user", ANA]) == 0
    out = capsys.readouterr().out
    assert f"forgot user {ANA!r}: 2 event(s), 2 session(s)" in out and "serves now" in out
    assert main(["models", "list", "--home", str(home)]) == 0
    listing = [line for line in capsys.readouterr().out.splitlines() if "forgotten user's events" in line]
    assert len(listing) == 1 and "retired" in listing[0]
    assert json.loads((home / "index" / "events.json").read_text())["meta"] == meta
    with build(home) as again:
        assert sorted(again.memory.index.keys()) == sorted(k for k in keys if k not in {
            events["ana_shared"].id, events["ana_private"].id})
        assert again.memory.ensure_fresh() == "loaded"
    assert main(["events", "forget", "--home", str(home), "--user", ANA]) == 2
    assert f"unknown user {ANA!r}" in capsys.readouterr().err
