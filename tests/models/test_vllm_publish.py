"""Publishing promoted versions to a vLLM server, against a small fake server that records the calls: the
publisher alone, then a deployment built with `model.publish` "vllm-lora" (the runtime, the `models` command,
workers that see a forget made elsewhere)."""

from __future__ import annotations

import logging
import time

import pytest

from fake_vllm import (
    FakeVLLM,
    ask,
    chat_models,
    fake_replicas,
    fake_vllm,
    lora_calls,
    published_config,
    version,
)
from ilearn.assistant import Assistant, forget_user_data
from ilearn.cli import main
from ilearn.config import ModelConfig
from ilearn.errors import InvalidInput
from ilearn.learning.registry import ModelRegistry
from ilearn.memory.sqlite import SQLiteStore
from ilearn.models.openai import OpenAIVisionLanguageModel, RemoteModelError
from ilearn.models.vllm_publish import AdapterPublisher, PublishedVersions, VLLMAdapters
from ilearn.runtime import build_runtime
from ilearn.types import Event


@pytest.fixture
def server():
    with fake_vllm() as url:
        yield url


@pytest.fixture
def registry(tmp_path):
    store = SQLiteStore(tmp_path / "ilearn.db")
    yield ModelRegistry(store, tmp_path)
    store.close()


def test_promotions_and_rollbacks_switch_adapters_under_new_names(server, registry) -> None:
    publisher = AdapterPublisher(OpenAIVisionLanguageModel.from_url(f"{server}#base-vlm"), VLLMAdapters(server))
    with publisher.turn() as model:
        assert ask(model) == "base-vlm"
    v1, v2 = version(registry), version(registry)
    assert publisher.sync(registry) is None  # the base serves: nothing to do

    registry.promote(v1)
    first = publisher.sync(registry)
    assert first.startswith(f"ilearn-{v1}-") and lora_calls("load") == [first]
    assert FakeVLLM.calls[-1][1]["lora_path"] == registry.get(v1).path
    with publisher.turn() as model:
        assert ask(model) == first and model.version == v1

    registry.promote(v2)
    with publisher.turn() as running:  # a turn that started on v1 ...
        second = publisher.sync(registry)
        assert ask(running) == first and lora_calls("unload") == []  # ... keeps v1 to its end
        with publisher.turn() as model:
            assert ask(model) == second
    assert lora_calls("unload") == [first]  # unloaded once no turn used it

    registry.rollback()  # back to v1: loaded again under a name never used before
    again = publisher.sync(registry)
    assert again.startswith(f"ilearn-{v1}-") and again not in (first, second)
    assert lora_calls("unload") == [first, second] and FakeVLLM.loaded == {again}
    registry.rollback()  # back to the base: its name serves, nothing loaded
    assert publisher.sync(registry) == "base-vlm" and FakeVLLM.loaded == set()
    with publisher.turn() as model:
        assert ask(model) == "base-vlm"


def test_a_refused_load_changes_nothing(server, registry) -> None:
    publisher = AdapterPublisher(OpenAIVisionLanguageModel.from_url(f"{server}#base-vlm"), VLLMAdapters(server))
    v1, v2 = version(registry), version(registry)
    registry.promote(v1)
    served = publisher.sync(registry)
    FakeVLLM.refuse.add(registry.get(v2).path)
    registry.promote(v2)
    with pytest.raises(RemoteModelError, match="refused load_lora_adapter.*400"):
        publisher.sync(registry)
    assert publisher.served == (v1, served) and lora_calls("unload") == []
    with publisher.turn() as model:
        assert ask(model) == served


def test_an_unreachable_server_is_a_clear_error(registry) -> None:
    adapters = VLLMAdapters("http://127.0.0.1:9/v1", timeout=2)
    with pytest.raises(RemoteModelError, match="could not be reached"):
        adapters.load("x", "/models/x")


# -- a deployment with model.publish "vllm-lora" ------------------------------------------------------------------
def test_the_setting_needs_the_openai_backend() -> None:
    assert ModelConfig(backend="openai", publish="vllm-lora").publish == "vllm-lora"
    with pytest.raises(InvalidInput, match="model.publish 'vllm-lora' needs model.backend 'openai'.*'small'"):
        ModelConfig(backend="small", publish="vllm-lora")
    with pytest.raises(InvalidInput, match="model.publish must be one of none, vllm-lora, not 'lora'"):
        ModelConfig(backend="openai", publish="lora")
    with pytest.raises(InvalidInput, match="model.publish_retry_s must be >= 0"):
        ModelConfig(backend="openai", publish="vllm-lora", publish_retry_s=-1)


def test_the_retry_delay_is_a_setting(server, tmp_path) -> None:
    config = published_config(tmp_path, server).override(model={"publish_retry_s": 2.5})
    with build_runtime(config) as runtime:
        assert isinstance(runtime.versions, PublishedVersions) and runtime.versions.retry_s == 2.5


def test_a_runtime_serves_promotions_and_rollbacks_from_the_vllm_server(server, tmp_path) -> None:
    with build_runtime(published_config(tmp_path, server)) as runtime:
        versions, registry = runtime.versions, runtime.registry
        assert isinstance(versions, PublishedVersions)
        v1, v2 = version(registry), version(registry)
        registry.promote(v1)  # what `learn` and the service's promote do; the next turn reads it
        with versions.hold() as handle:
            first = lora_calls("load")[0]
            assert first.startswith(f"ilearn-{v1}-") and handle.version == v1
            assert ask(versions.served) == first  # the parts built around "the model" use the turn's adapter

        with versions.hold() as running:  # a turn that started on v1 ...
            registry.promote(v2)
            versions.refresh()  # ... while the learning scheduler or the service promotes v2
            second = lora_calls("load")[1]
            assert ask(running.vlm) == first and lora_calls("unload") == []  # ... keeps v1 to its end
            with versions.hold() as handle:
                assert ask(handle.vlm) == second and handle.version == v2
        assert lora_calls("unload") == [first] and FakeVLLM.loaded == {second}

        registry.rollback()  # back to v1 under a name never used before; v2 unloaded (no turn holds it)
        with versions.hold() as handle:
            again = lora_calls("load")[2]
            assert again.startswith(f"ilearn-{v1}-") and again != first and ask(handle.vlm) == again
        assert lora_calls("unload") == [first, second] and FakeVLLM.loaded == {again}
        registry.rollback()  # back to the base model: its name serves, nothing loaded
        with versions.hold() as handle:
            assert ask(handle.vlm) == "base-vlm" and handle.version == "base"
        assert FakeVLLM.loaded == set()
        assert chat_models() == [first, first, second, again, "base-vlm"]


def test_an_assistant_turn_asks_the_promoted_adapter(server, tmp_path) -> None:
    with Assistant.from_config(published_config(tmp_path, server)) as assistant:
        assistant.registry.promote(version(assistant.registry))
        reply = assistant.respond("ana", "what is this?")
    assert reply.text == lora_calls("load")[0] and chat_models() == [reply.text]


def test_a_refused_load_keeps_the_served_version(server, tmp_path, caplog) -> None:
    with build_runtime(published_config(tmp_path, server)) as runtime:
        versions, registry = runtime.versions, runtime.registry
        v1, v2 = version(registry), version(registry)
        registry.promote(v1)
        served = versions.refresh().vlm.model_name
        FakeVLLM.refuse.add(registry.get(v2).path)
        registry.promote(v2)
        with caplog.at_level(logging.ERROR, logger="ilearn.models.vllm_publish"), versions.hold() as handle:
            assert ask(handle.vlm) == served and handle.version == v1
        assert [r.getMessage() for r in caplog.records] == [
            f"could not publish model version {v2} to the vLLM server: vLLM refused load_lora_adapter of "
            f"{lora_calls('load')[1]!r} (400): cannot load {lora_calls('load')[1]}; {v1} serves on"]
        assert not caplog.records[0].exc_info  # one line, no traceback
        with versions.hold() as handle:  # not tried again at every turn
            assert ask(handle.vlm) == served and len(lora_calls("load")) == 2
        FakeVLLM.refuse.clear()
        assert versions.refresh().version == v2  # the service's promote, or the next update, tries again
        assert lora_calls("unload") == [served]


def test_the_models_command_checks_the_adapter_and_the_server_follows(server, tmp_path, capsys) -> None:
    home = tmp_path / "home"
    options = ["--home", str(home), "--model", "openai", "--model-path", f"{server}#base-vlm",
               "--set", "model.publish=vllm-lora"]
    with build_runtime(published_config(home, server)) as runtime:  # the serving process
        registry = runtime.registry
        v1, v2 = version(registry), version(registry)
        assert main(["models", "promote", v1, *options]) == 0  # another process
        checked = lora_calls("load")[0]
        assert checked.startswith(f"ilearn-check-{v1}-") and lora_calls("unload") == [checked]
        assert registry.active_id() == v1 and f"promoted {v1}" in capsys.readouterr().out
        with runtime.versions.hold() as handle:  # its next turn reads the store and publishes v1
            assert handle.version == v1 and ask(handle.vlm) == lora_calls("load")[1] != checked

        FakeVLLM.refuse.add(registry.get(v2).path)
        assert main(["models", "promote", v2, *options]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ilearn: error: vLLM refused load_lora_adapter") and err.count("\n") == 1
        assert registry.active_id() == v1  # never made active: the server serves v1 on
        with runtime.versions.hold() as handle:
            assert handle.version == v1

        FakeVLLM.refuse.clear()
        assert main(["models", "promote", v2, *options]) == 0
        FakeVLLM.refuse.add(registry.get(v1).path)
        assert main(["models", "rollback", *options]) == 2 and registry.active_id() == v2  # the rollback undone
        FakeVLLM.refuse.clear()
        assert main(["models", "rollback", *options]) == 0 and registry.active_id() == v1
        assert main(["models", "rollback", *options]) == 0  # to the base: nothing to check
        assert registry.active_id() == "base" and len(lora_calls("load")) == 6
        with runtime.versions.hold() as handle:
            assert ask(handle.vlm) == "base-vlm"
        assert FakeVLLM.loaded == set()


def test_a_forget_elsewhere_stops_every_worker_serving_the_forgotten_adapter(server, tmp_path, caplog) -> None:
    """Two workers serve a version trained on kim's events; kim is forgotten by another process (as `ilearn events
    forget` does) and vLLM refuses the replacement: each worker, at its next store read, unloads its own adapter of
    the forgotten version at once and serves the base model until the replacement loads."""
    home = tmp_path / "home"
    with build_runtime(published_config(home, server)) as one, build_runtime(published_config(home, server)) as two:
        registry = one.registry
        taught = Event(image=None, question="what is this?", answer="zqsecret", user_id="kim")
        one.store.add_events([taught])
        clean, tainted = version(registry), version(registry, event_ids=[taught.id])
        registry.promote(clean)
        registry.promote(tainted)
        names = {}
        for worker, runtime in (("one", one), ("two", two)):
            with runtime.versions.hold() as handle:
                names[worker] = ask(handle.vlm)
        assert all(n.startswith(f"ilearn-{tainted}-") for n in names.values()) and len(set(names.values())) == 2

        FakeVLLM.refuse.add(registry.get(clean).path)
        with two.versions.hold() as running:  # a turn of worker two that started on the forgotten adapter
            report = forget_user_data(one.store, None, ModelRegistry(one.store, home), home, "kim")
            assert report.versions.trained == [tainted] and registry.active_id() == clean
            with caplog.at_level(logging.ERROR, logger="ilearn.models.vllm_publish"), two.versions.hold() as handle:
                assert ask(handle.vlm) == "base-vlm" and handle.version == "base"
            assert names["two"] in lora_calls("unload") and names["two"] not in FakeVLLM.loaded
            with pytest.raises(RemoteModelError, match="does not exist"):
                ask(running.vlm)  # its next request fails rather than be answered by the forgotten adapter
        message = caplog.records[-1].getMessage()
        assert message.startswith(f"could not publish model version {clean} to the vLLM server: vLLM refused")
        assert message.endswith(f"{tainted}, served before, was trained on forgotten data: unloaded; the base model "
                                "serves until the server loads it")
        assert FakeVLLM.loaded == {names["one"]}  # worker one has not read the store since
        assert one.versions.current().version == "base" and FakeVLLM.loaded == set()  # e.g. at its /readyz

        loads = len(lora_calls("load"))
        with two.versions.hold() as handle:  # not tried again before the retry delay
            assert ask(handle.vlm) == "base-vlm" and len(lora_calls("load")) == loads
        FakeVLLM.refuse.clear()
        two.versions.retry_s = 0.0
        with two.versions.hold() as handle:
            assert handle.version == clean and ask(handle.vlm) == lora_calls("load")[-1]
        assert one.versions.refresh().version == clean
        assert not set(names.values()) & (FakeVLLM.loaded | set(chat_models()[-2:]))


def test_a_forget_sweeps_the_server_of_every_workers_adapter_of_the_forgotten_version(server, tmp_path, capsys) -> None:
    """A worker that is idle (or was killed) keeps its adapter of a forgotten version loaded until its next store
    read: `ilearn events forget` in another process, and a forget in a serving process, unload every adapter of
    that version the server lists, whoever loaded it; other versions' adapters stay."""
    home = tmp_path / "home"
    options = ["--home", str(home), "--model", "openai", "--model-path", f"{server}#base-vlm",
               "--set", "model.publish=vllm-lora"]
    with build_runtime(published_config(home, server)) as one, build_runtime(published_config(home, server)) as two:
        registry = one.registry
        for user, answer in (("kim", "zqsecret"), ("lee", "zqother")):
            one.store.add_events([Event(image=None, question="what is this?", answer=answer, user_id=user)])
        kim, lee = (one.store.list_events(user_id=u)[0].id for u in ("kim", "lee"))
        clean, tainted, tainted2 = version(registry), version(registry, [kim]), version(registry, [lee])
        registry.promote(clean)
        registry.promote(tainted)
        for runtime in (one, two):
            with runtime.versions.hold() as handle:
                assert handle.version == tainted
        VLLMAdapters(server).load(f"ilearn-{clean}-kept", registry.get(clean).path)  # another version's: kept
        assert len([n for n in FakeVLLM.loaded if n.startswith(f"ilearn-{tainted}-")]) == 2

        assert main(["events", "forget", "--user", "kim", *options]) == 0  # neither worker has read the store
        out = capsys.readouterr().out
        assert "their adapters unloaded from the vLLM server: ilearn-" in out and out.count(f"ilearn-{tainted}-") == 2
        assert FakeVLLM.loaded == {f"ilearn-{clean}-kept"}

        registry.promote(tainted2)
        with two.versions.hold() as handle:  # worker two serves lee's version; worker one stays idle
            assert handle.version == tainted2
        report = forget_user_data(one.store, None, one.registry, home, "lee", versions=one.versions)
        assert report.versions.trained == [tainted2] and report.served == clean
        assert not [n for n in FakeVLLM.loaded if n.startswith(f"ilearn-{tainted2}-")]  # two's adapter too

        assert main(["events", "forget", "--user", "nobody", *options]) == 2  # unknown user: nothing swept


def test_a_server_that_cannot_list_adapters_leaves_the_forget_standing(tmp_path, capsys) -> None:
    home = tmp_path / "home"
    options = ["--home", str(home), "--model", "openai", "--model-path", "http://127.0.0.1:9/v1#base-vlm",
               "--set", "model.publish=vllm-lora"]
    home.mkdir()
    store = SQLiteStore(home / "ilearn.db")
    registry = ModelRegistry(store, home)
    store.add_events([Event(image=None, question="what is this?", answer="zqsecret", user_id="kim")])
    version(registry, [store.list_events()[0].id])
    store.close()
    assert main(["events", "forget", "--user", "kim", *options]) == 0
    out = capsys.readouterr().out
    assert "forgot user 'kim'" in out and "adapters were not swept" in out and "could not list" in out


def test_the_server_loads_adapters_from_where_it_sees_them(server, tmp_path) -> None:
    """`model.publish_path_map` "LOCAL=SERVER": the vLLM server mounts the versions' folder elsewhere."""
    home = tmp_path / "home"
    config = published_config(home, server).override(model={"publish_path_map": f"{home}/models=/adapters"})
    with build_runtime(config) as runtime:
        v1 = version(runtime.registry)
        runtime.versions.change(lambda: runtime.registry.promote(v1))
        [(_, body)] = [(e, b) for e, b in FakeVLLM.calls if e == "load_lora_adapter"]
        assert body["lora_path"] == f"/adapters/{v1}" and runtime.registry.get(v1).path == str(home / "models" / v1)
    adapters = VLLMAdapters(server, path_map="/srv/ilearn/=/mnt/a")
    assert adapters.server_path("/srv/ilearn/models/v") == "/mnt/a/models/v"
    assert adapters.server_path("/srv/ilearnx/v") == "/srv/ilearnx/v"  # outside LOCAL: unchanged
    for wrong in ("adapters", "/a=b", "/a"):
        with pytest.raises(InvalidInput, match="model.publish_path_map must be LOCAL=SERVER"):
            ModelConfig(backend="openai", publish="vllm-lora", publish_path_map=wrong)


def test_stale_adapters_of_killed_workers_are_listed_and_swept(server, tmp_path, capsys) -> None:
    """A worker killed while it served a version leaves that adapter loaded (nothing unloads it at its next
    turn): `ilearn models adapters` names it stale once another version is active, `--sweep` unloads it with any
    left-over check, and keeps the active version's adapters and those of other deployments."""
    home = tmp_path / "home"
    options = ["--home", str(home), "--model", "openai", "--model-path", f"{server}#base-vlm",
               "--set", "model.publish=vllm-lora"]
    with build_runtime(published_config(home, server)) as live:
        registry = live.registry
        old, new = version(registry), version(registry)
        registry.promote(old)
        killed = AdapterPublisher(live.versions.publisher.vlm, VLLMAdapters(server))
        killed_name = killed.publish(old, registry.get(old).path)  # a worker that then died: never unloaded
        VLLMAdapters(server).load(f"ilearn-check-{new}-deadbeef", registry.get(new).path)  # a check left behind
        VLLMAdapters(server).load("ilearn-mdl_elsewhere-12345678", registry.get(new).path)  # another deployment's
        registry.promote(new)
        with live.versions.hold() as handle:  # the live worker serves the new version
            assert handle.version == new
            live_name = ask(handle.vlm)
        assert main(["models", "adapters", *options]) == 0
        out = capsys.readouterr().out
        assert f"serving: {new}" in out and "2 stale: `ilearn models adapters --sweep`" in out
        assert f"{killed_name}  retired  stale" in out and f"{live_name}  active\n" in out
        assert "ilearn-mdl_elsewhere-12345678  not this deployment's\n" in out
        assert FakeVLLM.loaded >= {killed_name, live_name}

        assert main(["models", "adapters", "--sweep", *options]) == 0
        assert "unloaded 2 stale adapter(s)" in capsys.readouterr().out
        assert FakeVLLM.loaded == {live_name, "ilearn-mdl_elsewhere-12345678"}
        with live.versions.hold() as handle:  # the live worker answers on
            assert ask(handle.vlm) == live_name

    plain = ["--home", str(tmp_path / "other"), "--model", "openai", "--model-path", f"{server}#base-vlm"]
    assert main(["models", "adapters", *plain]) == 2
    assert "model.publish vllm-lora" in capsys.readouterr().err


def test_a_killed_workers_adapter_of_the_active_version_is_swept_once_its_lease_expires(server, tmp_path,
                                                                                         capsys) -> None:
    """Every worker leases the adapter it serves in the store: one killed while it served the active version
    leaves an adapter under a name no live worker renews; once its lease expires it is listed stale and swept,
    and the live worker's adapter of the same version stays and answers on."""
    import time

    from ilearn.models.vllm_publish import ADAPTER_LEASE

    home = tmp_path / "home"
    options = ["--home", str(home), "--model", "openai", "--model-path", f"{server}#base-vlm",
               "--set", "model.publish=vllm-lora"]
    with build_runtime(published_config(home, server)) as live:
        registry = live.registry
        v1 = version(registry)
        live.versions.change(lambda: registry.promote(v1))
        with live.versions.hold() as handle:
            live_name = ask(handle.vlm)
        killed = AdapterPublisher(live.versions.publisher.vlm, VLLMAdapters(server), leases=registry.store,
                                  lease_s=0.2, holder="worker-2:4242")
        killed_name = killed.sync(registry)  # then the process died: nothing renews its lease
        assert {lease.key: lease.holder for lease in registry.store.list_leases(ADAPTER_LEASE)} == {
            live_name: live.versions.publisher.holder, killed_name: "worker-2:4242"}

        assert main(["models", "adapters", *options]) == 0  # its lease runs yet: a live worker's, as far as anyone knows
        out = capsys.readouterr().out
        assert f"{killed_name}  active\n" in out and f"{live_name}  active\n" in out and "stale" not in out
        time.sleep(0.3)
        assert main(["models", "adapters", *options]) == 0
        out = capsys.readouterr().out
        assert f"{killed_name}  active, held by no live worker  stale" in out and f"{live_name}  active\n" in out
        assert main(["models", "adapters", "--sweep", *options]) == 0
        assert f"unloaded 1 stale adapter(s): {killed_name}" in capsys.readouterr().out
        assert FakeVLLM.loaded == {live_name}
        assert [lease.key for lease in registry.store.list_leases(ADAPTER_LEASE)] == [live_name]
        with live.versions.hold() as handle:
            assert ask(handle.vlm) == live_name


def test_a_worker_renews_its_lease_and_takes_back_an_adapter_swept_while_it_was_idle(server, registry) -> None:
    """A turn renews the lease once a third of `lease_s` has passed; a worker idle for longer than `lease_s`
    whose adapter was swept loads it again at its next turn (the 404), and leases it again."""
    import time

    from ilearn.models.vllm_publish import ADAPTER_LEASE

    vlm = OpenAIVisionLanguageModel.from_url(f"{server}#base-vlm")
    publisher = AdapterPublisher(vlm, VLLMAdapters(server), leases=registry.store, lease_s=0.3)
    v1 = version(registry)
    registry.promote(v1)
    name = publisher.sync(registry)
    [first] = registry.store.list_leases(ADAPTER_LEASE)
    with publisher.turn() as model:  # too early to renew
        ask(model)
    assert registry.store.list_leases(ADAPTER_LEASE) == [first]
    time.sleep(0.15)
    with publisher.turn() as model:
        ask(model)
    [renewed] = registry.store.list_leases(ADAPTER_LEASE)
    assert renewed.key == name and renewed.expires > first.expires

    time.sleep(0.35)  # idle: the lease expired, and a sweep unloads the adapter
    VLLMAdapters(server).unload(name)
    registry.store.drop_lease(ADAPTER_LEASE, name)
    with publisher.turn() as model:
        assert ask(model) == name  # loaded again after the 404
    assert name in FakeVLLM.loaded and [lease.key for lease in registry.store.list_leases(ADAPTER_LEASE)] == [name]
    publisher.publish("base")  # unloading it gives the lease up
    assert registry.store.list_leases(ADAPTER_LEASE) == [] and name not in FakeVLLM.loaded


# -- several vLLM replicas behind one address ------------------------------------------------------------------------
def test_replicas_behind_a_balancer_each_hold_the_served_adapter(tmp_path, capsys) -> None:
    """`model.publish_servers` names each replica: every promotion is loaded on all of them before a turn asks for
    it (the balancer sends each request to the next replica, so every turn finds it), a refusal by one leaves none
    holding the new adapter and the old one serving, and retired adapters leave every replica."""
    with fake_replicas(2) as (balancer, replicas):
        (url0, r0), (url1, r1) = replicas
        config = published_config(tmp_path, balancer).override(model={"publish_servers": f"{url0},{url1}"})
        with build_runtime(config) as runtime:
            registry, versions = runtime.registry, runtime.versions
            v1, v2, v3 = version(registry), version(registry), version(registry)
            versions.change(lambda: registry.promote(v1))
            with versions.hold() as handle:
                first = ask(handle.vlm)
                assert first.startswith(f"ilearn-{v1}-") and r0.loaded == r1.loaded == {first}
                assert [ask(handle.vlm) for _ in range(4)] == [first] * 4  # whichever replica answers
            assert all(any(e == "chat/completions" for e, _ in r.calls) for r in (r0, r1))

            r1.refuse.add(registry.get(v2).path)
            with pytest.raises(RemoteModelError, match=f"vLLM at {url1} refused load_lora_adapter"):
                versions.change(lambda: registry.promote(v2))
            assert registry.active_id() == v1 and r0.loaded == r1.loaded == {first}  # r0 took it and let it go
            assert len([n for e, b in r0.calls if e == "load_lora_adapter" for n in [b["lora_name"]]]) == 2
            with versions.hold() as handle:
                assert [ask(handle.vlm) for _ in range(2)] == [first] * 2

            versions.change(lambda: registry.promote(v3))
            with versions.hold() as handle:
                third = ask(handle.vlm)
                assert third.startswith(f"ilearn-{v3}-") and [ask(handle.vlm) for _ in range(3)] == [third] * 3
            assert r0.loaded == r1.loaded == {third}  # the retired v1 unloaded from both

            r1.loaded.add(f"ilearn-{v1}-0badc0de")  # left on one replica by a killed worker
            options = ["--home", str(tmp_path), "--model", "openai", "--model-path", f"{balancer}#base-vlm",
                       "--set", "model.publish=vllm-lora", "--set", f"model.publish_servers={url0},{url1}"]
            assert main(["models", "adapters", "--sweep", *options]) == 0
            out = capsys.readouterr().out
            assert "the 2 vLLM replicas hold 2 iLearn adapter(s)" in out and "unloaded 1 stale adapter(s)" in out
            assert r0.loaded == r1.loaded == {third}
    for wrong in ("vllm-0:8000/v1", "http://a/v1,ftp://b"):
        with pytest.raises(InvalidInput, match="model.publish_servers must be http"):
            ModelConfig(backend="openai", publish="vllm-lora", publish_servers=wrong)


def test_an_unload_skips_replicas_that_do_not_hold_the_adapter() -> None:
    with fake_replicas(2) as (_, replicas):
        (url0, r0), (url1, r1) = replicas
        adapters = VLLMAdapters([url0, url1])
        r0.loaded.add("ilearn-v-12345678")
        assert adapters.loaded() == ["ilearn-v-12345678"]
        adapters.unload("ilearn-v-12345678")  # r1 answers 404: it did not hold it
        assert r0.loaded == r1.loaded == set()
        with pytest.raises(RemoteModelError, match="404"):  # held by none: an error, as with one server
            adapters.unload("ilearn-v-12345678")


def test_a_replica_that_restarted_is_given_the_served_adapter_again(tmp_path, caplog) -> None:
    """A vLLM replica that restarts holds no runtime-loaded adapter: the turn whose request it answers 404 loads
    the served adapter again where it is missing and asks once more, so no turn fails; an adapter unloaded on
    purpose (a forgotten version's) is never loaded again."""
    with fake_replicas(2) as (balancer, replicas):
        (url0, r0), (url1, r1) = replicas
        config = published_config(tmp_path, balancer).override(model={"publish_servers": f"{url0},{url1}"})
        with build_runtime(config) as runtime:
            registry, versions = runtime.registry, runtime.versions
            v1 = version(registry, ["evt_1"])
            versions.change(lambda: registry.promote(v1))
            served = versions.publisher.served[1]
            r1.loaded.clear()  # replica 1 restarted
            with caplog.at_level(logging.WARNING), versions.hold() as handle:
                assert [ask(handle.vlm) for _ in range(4)] == [served] * 4  # whichever replica answers
            assert r0.loaded == r1.loaded == {served}
            assert f"loaded again on {url1}" in caplog.text
            loads = [b for e, b in r1.calls if e == "load_lora_adapter"]
            assert [b["lora_name"] for b in loads] == [served, served]  # published, then loaded again once
            assert loads[-1]["lora_path"] == registry.get(v1).path

            with versions.hold() as handle:  # a turn holding the adapter when its version is forgotten
                registry.forget_events(["evt_1"])
                versions.forget([v1])
                r0.loaded.clear()
                r1.loaded.clear()
                with pytest.raises(RemoteModelError, match="404"):
                    ask(handle.vlm)  # revoked: answered by nobody rather than loaded again
            assert r0.loaded == r1.loaded == set()


def test_restoring_loads_only_where_the_adapter_is_missing() -> None:
    with fake_replicas(3) as (_, replicas):
        adapters = VLLMAdapters([url for url, _ in replicas])
        (url0, r0), (url1, r1), (url2, r2) = replicas
        r0.loaded.add("ilearn-v-12345678")
        r2.loaded.add("ilearn-v-12345678")
        assert adapters.restore("ilearn-v-12345678", "/adapters/v") == [url1]
        assert r0.loaded == r1.loaded == r2.loaded == {"ilearn-v-12345678"}
        assert adapters.restore("ilearn-v-12345678", "/adapters/v") == []
        r1.loaded.clear()
        r1.refuse.add("/adapters/v")
        with pytest.raises(RemoteModelError, match=f"vLLM at {url1} refused load_lora_adapter"):
            adapters.restore("ilearn-v-12345678", "/adapters/v")


def _worker(server: str, registry, holder: str, lease_s: float) -> AdapterPublisher:
    vlm = OpenAIVisionLanguageModel.from_url(f"{server}#base-vlm")
    return AdapterPublisher(vlm, VLLMAdapters(server), leases=registry.store, lease_s=lease_s, holder=holder)


def test_a_sweep_unloads_only_adapters_whose_leases_expired(server, registry) -> None:
    """`sweep_expired` unloads a killed worker's adapter once its lease expired, never a live worker's, and drops
    its lease; a second worker sweeping the same state finds nothing left to do."""
    from ilearn.models.vllm_publish import ADAPTER_LEASE

    live, other = _worker(server, registry, "worker-1:1", 30.0), _worker(server, registry, "worker-3:3", 30.0)
    killed = _worker(server, registry, "worker-2:4242", 0.2)
    registry.promote(version(registry))
    names = {w: w.sync(registry) for w in (live, other, killed)}  # then `killed` died: nothing renews its lease
    assert live.sweep_expired() == [] and FakeVLLM.loaded == set(names.values())  # its lease runs yet
    time.sleep(0.3)
    assert live.sweep_expired() == [names[killed]] and other.sweep_expired() == []
    assert FakeVLLM.loaded == {names[live], names[other]}
    assert sorted(lease.key for lease in registry.store.list_leases(ADAPTER_LEASE)) == sorted(
        [names[live], names[other]])


def test_live_workers_sweep_on_their_own_once_a_lease_time_has_passed(server, registry) -> None:
    """No one runs `--sweep`: a live worker's turn, a lease time after the last sweep, sweeps in the background."""
    live, killed = _worker(server, registry, "worker-1:1", 0.3), _worker(server, registry, "worker-2:4242", 0.3)
    registry.promote(version(registry))
    mine, dead = live.sync(registry), killed.sync(registry)
    with live.turn() as model:  # too early: nothing expired, no sweep due
        assert ask(model) == mine
    time.sleep(0.4)
    with live.turn() as model:
        assert ask(model) == mine
    deadline = time.monotonic() + 5
    while dead in FakeVLLM.loaded and time.monotonic() < deadline:
        time.sleep(0.02)
    assert FakeVLLM.loaded == {mine}
