"""Config.personal: the personal memory's recognition threshold, margin and prompt style, read by every assistant
(`ilearn serve` included) and checked."""

from __future__ import annotations

import argparse

import pytest

from ilearn.assistant import Assistant
from ilearn.cli_settings import add_set_option, load_config
from ilearn.config import PROMPT_STYLES, Config, PersonalConfig
from ilearn.errors import InvalidInput
from ilearn.memory.sqlite import open_store
from ilearn.models.stub import StubVLM
from ilearn.users import fit


def test_the_prompt_styles_are_the_fitting_modules():
    assert PROMPT_STYLES == fit.PROMPT_STYLES


def test_defaults_are_the_personal_memorys():
    assert (PersonalConfig().threshold, PersonalConfig().margin, PersonalConfig().prompt) == (None, 0.02, "none")


def test_the_default_threshold_is_the_embedders_scale(tmp_path):
    """Cosines differ in scale between embedders: unless set, the threshold is the embedder's `concept_threshold`
    (measured per embedder), and one that states none gets the book's default."""
    from ilearn.models.embedders import FusedImageEmbedder, StubImageEmbedder
    from ilearn.users.concepts import DEFAULT_THRESHOLD, ConceptBook

    store = open_store(tmp_path)
    stub = StubImageEmbedder()
    fused = FusedImageEmbedder(first=StubImageEmbedder(), second=StubImageEmbedder())
    assert ConceptBook(store, stub).threshold == 0.95 and ConceptBook(store, fused).threshold == 0.8
    assert ConceptBook(store, stub, threshold=0.5).threshold == 0.5

    class Plain:
        dim = 3

    assert ConceptBook(store, Plain()).threshold == DEFAULT_THRESHOLD


@pytest.mark.parametrize("settings", [{"threshold": 1.01}, {"threshold": -1.01}, {"margin": -0.001},
                                      {"prompt": "long"}])
def test_bad_settings_are_refused(settings):
    with pytest.raises(InvalidInput, match="personal"):
        Config.from_dict({"personal": settings})


@pytest.mark.parametrize("settings", [{"threshold": 1.0}, {"threshold": -1.0}, {"margin": 0.0}])
def test_the_bounds_are_allowed(settings):
    assert Config.from_dict({"personal": settings}).personal == PersonalConfig(**settings)


def test_an_assistant_uses_them(tmp_path):
    config = Config.from_dict({"home": str(tmp_path), "personal": {"threshold": 0.9, "margin": 0.05,
                                                                    "prompt": "tag"}})
    store = open_store(tmp_path)
    with Assistant(config, StubVLM(responder=lambda m: "red"), store, feedback_decoder=None) as assistant:
        assert assistant.personal.prompt == "tag"
        assert (assistant.personal.concepts.threshold, assistant.personal.concepts.margin) == (0.9, 0.05)


def test_the_command_line_sets_them(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None)
    add_set_option(parser)
    args = parser.parse_args(["--set", "personal.prompt=instructions", "--set", "personal.threshold=0.85"])
    config = load_config(args)
    assert config.personal == PersonalConfig(threshold=0.85, prompt="instructions")
    assert load_config(parser.parse_args(["--set", "personal.threshold=null"])).personal.threshold is None
    with pytest.raises(InvalidInput):
        load_config(parser.parse_args(["--set", "personal.prompt=shouting"]))
