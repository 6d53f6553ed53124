"""The command line's options come from the typed settings: one help text, one validation."""

from __future__ import annotations

import argparse

import pytest

from ilearn.cli import build_parser, load_config, main
from ilearn.cli_settings import add_set_option, add_setting, apply, field_docs, overrides
from ilearn.config import Config, LearnConfig, ModelConfig, RetrievalConfig
from ilearn.errors import InvalidInput


def _parse(*argv: str) -> Config:
    return load_config(build_parser().parse_args(["events", "list", *argv]))


def test_field_docs_are_the_docstrings_under_the_fields():
    docs = field_docs(ModelConfig)
    assert docs["threads"].startswith("Torch CPU threads")
    assert docs["device"] == "Torch device: cpu, cuda, cuda:1 ..."
    assert set(field_docs(LearnConfig)) >= {"recipe", "max_steps", "trainable", "reward_negative"}


def test_help_of_an_option_is_its_settings_docstring(capsys):
    with pytest.raises(SystemExit):
        main(["learn", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Torch CPU threads (measured: with other load present" in text
    assert "Stop after this many optimizer steps" in text and "setting learn.max_steps" in text
    assert "turn off: Use past events as references" in text


def test_named_options_and_set_reach_the_settings():
    config = _parse("--model", "tiny", "--threads", "2", "--no-retrieval", "--home", "h",
                    "--set", "retrieval.image_weight=0.7", "--set", "learn.trainable=vision,projector",
                    "--set", "clarify.facets=[{\"name\": \"habitat\"}]", "--set", "model.path=/models/x")
    assert (config.model.backend, config.model.threads, config.retrieval.enabled, config.home) == ("tiny", 2, False, "h")
    assert config.retrieval.image_weight == 0.7 and config.learn.trainable == ("vision", "projector")
    assert config.clarify.facets == ({"name": "habitat"},) and config.model.path == "/models/x"
    assert _parse() == Config()  # nothing given: the defaults, untouched


def test_the_command_line_wins_over_the_settings_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"model": {"backend": "tiny", "threads": 3}, "learn": {"max_steps": 7}}')
    config = _parse("--config", str(path), "--threads", "1")
    assert (config.model.backend, config.model.threads, config.learn.max_steps) == ("tiny", 1, 7)


@pytest.mark.parametrize("argv, message", [
    (["--set", "learn.max_steps=-1"], "max_steps"),             # the settings class's own check
    (["--set", "model.threads=0"], "model.threads must be >= 1"),
    (["--set", "nosuch.thing=1"], "unknown setting 'nosuch.thing'"),
    (["--set", "model.colour=red"], "model has: backend"),
    (["--set", "learn.max_steps"], "SECTION.FIELD=VALUE"),
    (["--set", "learn.max_steps=many"], "learn.max_steps takes int"),
    (["--model", "nosuch"], "nosuch"),
])
def test_bad_settings_are_clear_errors(argv, message):
    with pytest.raises(InvalidInput, match=message):
        _parse(*argv)


def test_a_bad_setting_exits_with_one_line_and_no_traceback(tmp_path, capsys):
    code = main(["events", "list", "--home", str(tmp_path), "--set", "model.threads=0"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ilearn: error:") and "Traceback" not in err and err.count("\n") == 1


def test_a_wrongly_typed_named_option_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["learn", "--max-steps", "many"])
    assert "learn.max_steps takes int" in capsys.readouterr().err


def test_learn_options_reach_the_learn_settings():
    args = build_parser().parse_args(["learn", "--recipe", "kto", "--max-steps", "5", "--trainable", "vision"])
    config = load_config(args)
    assert (config.learn.recipe, config.learn.max_steps, config.learn.trainable) == ("kto", 5, ("vision",))


def test_any_parser_can_take_settings():
    parser = argparse.ArgumentParser()
    add_setting(parser, "retrieval.image_weight", "--image-weight")
    add_set_option(parser)
    given = overrides(parser.parse_args(["--image-weight", "0.5", "--set", "retrieval.text_weight=0.5"]))
    assert given == {"retrieval.image_weight": 0.5, "retrieval.text_weight": 0.5}
    assert apply(Config(), given).retrieval == RetrievalConfig(image_weight=0.5, text_weight=0.5)
