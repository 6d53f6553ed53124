"""The one registry of backends: names, unknown names, entry points, missing optional dependencies."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest

from ilearn import plugins
from ilearn.config import Config, ModelConfig
from ilearn.errors import InvalidInput, MissingDependency
from ilearn.models.stub import StubVLM


@pytest.fixture
def scratch():
    """Names registered in a test are removed afterwards."""
    added: list[tuple[str, str]] = []
    yield added
    for kind, name in added:
        plugins.unregister(kind, name)


def fake_entry_points(monkeypatch, group: str, name: str, value: str) -> None:
    """Installed packages declare one entry point `name = value` in `group` (and nothing else)."""
    real = importlib.metadata.entry_points

    def entry_points(**selection):
        if selection.get("group") == group:
            return importlib.metadata.EntryPoints([importlib.metadata.EntryPoint(name, value, group)])
        return real(**selection)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_every_kind_has_built_ins_and_an_entry_point_group():
    for kind in plugins.KINDS:
        assert plugins.names(kind), kind
        assert plugins.GROUPS[kind].startswith("ilearn.")
    assert plugins.names("model") == ["hf", "openai", "small", "stub", "tiny"]
    assert plugins.names("recipe") == ["dpo", "kto", "reinforce", "sft"]


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(InvalidInput, match=r"unknown model backend 'nope'; choose one of hf, openai, small, stub, tiny"):
        plugins.create("model", "nope", ModelConfig())
    with pytest.raises(InvalidInput, match=r"unknown feedback method 'psychic' \(setting feedback.method\).*hybrid"):
        Config.from_dict({"feedback": {"method": "psychic"}})
    with pytest.raises(InvalidInput, match="unknown kind of part 'gadget'"):
        plugins.names("gadget")


def test_a_backend_of_an_installed_package_is_found_through_its_entry_point(monkeypatch, tmp_path):
    fake_entry_points(monkeypatch, "ilearn.models", "echo", "ilearn.models.stub:load_stub")
    assert "echo" in plugins.names("model")
    config = Config(home=str(tmp_path), model=ModelConfig(backend="echo"))  # validated against the registry
    assert isinstance(plugins.create("model", config.model.backend, config.model), StubVLM)


def test_register_adds_a_backend_in_process_and_refuses_a_second_one_of_the_same_name(scratch):
    plugins.register("clarifier", "always-never", "ilearn.dialogue.clarify:never_clarifier")
    scratch.append(("clarifier", "always-never"))
    assert not plugins.create("clarifier", "always-never", None).assess("what is this?", True).ambiguous
    with pytest.raises(InvalidInput, match="already registered"):
        plugins.register("clarifier", "always-never", "ilearn.dialogue.clarify:lexical_clarifier")
    with pytest.raises(InvalidInput, match="module:factory"):
        plugins.register("clarifier", "broken", "ilearn.dialogue.clarify")


def test_a_missing_optional_dependency_names_the_extra_to_install(scratch):
    plugins.register("model", "needs-extra", "ilearn.models.stub:load_stub",
                     requires=("ilearn_no_such_package",), extra="train")
    scratch.append(("model", "needs-extra"))
    with pytest.raises(MissingDependency, match=r"'ilearn_no_such_package' is not installed: pip install 'ilearn\[train\]'"):
        plugins.create("model", "needs-extra", ModelConfig())
    with pytest.raises(InvalidInput, match="name the extra"):
        plugins.register("model", "no-extra", "ilearn.models.stub:load_stub", requires=("x",))


def test_every_built_in_target_imports():
    for kind, name, target, options in plugins.BUILTINS:
        if all(importlib.util.find_spec(m) is not None for m in options.get("requires", ())):
            assert callable(plugins.resolve(kind, name)), target
