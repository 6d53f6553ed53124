import json

import pytest

from ilearn.config import Config, ModelConfig
from ilearn.errors import InvalidInput


def test_defaults_round_trip_through_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(Config().to_dict()))
    assert Config.load(path) == Config()


def test_nested_settings_and_override():
    config = Config.from_dict({"model": {"backend": "tiny"}, "learn": {"trainable": ["vision", "projector"]}})
    assert config.model.backend == "tiny" and config.learn.trainable == ("vision", "projector")
    assert config.override(retrieval={"top_k": 5}).retrieval.top_k == 5


@pytest.mark.parametrize("data, message", [
    ({"modle": {}}, "unknown setting"),
    ({"model": {"threads": 0}}, "threads"),
    ({"retrieval": {"sharing": "everyone"}}, "sharing"),
    ({"retrieval": {"guess_precision": 1.0}}, "guess_precision must be a share in"),
    ({"retrieval": {"guess_precision": 0}}, "guess_precision must be a share in"),
    ({"learn": {"trainable": ["eyes"]}}, "unknown parts"),
    ({"learn": {"recipe": "magic"}}, "recipe"),
])
def test_invalid_settings_are_refused(data, message):
    with pytest.raises(InvalidInput, match=message):
        Config.from_dict(data)


def test_the_store_is_chosen_by_a_url(tmp_path):
    from ilearn.memory.sqlite import sqlite_path

    assert Config(home="data").store_url == "sqlite:///data/ilearn.db"
    assert Config(home=str(tmp_path)).store_url == f"sqlite:///{tmp_path}/ilearn.db"  # four slashes: absolute
    assert Config(store="sqlite:///elsewhere/x.db").store_url == "sqlite:///elsewhere/x.db"
    assert str(sqlite_path("sqlite:///elsewhere/x.db")) == "elsewhere/x.db"
    assert str(sqlite_path("sqlite:////abs/x.db")) == "/abs/x.db"
    assert Config(store="postgresql://robot@db/ilearn?schema=home1").store_url == "postgresql://robot@db/ilearn?schema=home1"
    with pytest.raises(InvalidInput, match="unknown store 'mysql'.*choose one of postgres, postgresql, sqlite"):
        Config.from_dict({"store": "mysql://db/ilearn"})
    with pytest.raises(InvalidInput, match="must be a URL"):
        Config(store="ilearn.db")
    with pytest.raises(InvalidInput, match="names a file"):
        sqlite_path("sqlite:///:memory:")


def test_embedders_are_named_settings_with_auto_defaults_per_model_backend():
    assert Config().embedder("image_embedder") == "fused" and Config().embedder("text_embedder") == "minilm"
    tiny = Config(model=ModelConfig(backend="tiny"))
    assert (tiny.embedder("image_embedder"), tiny.embedder("text_embedder")) == ("stub", "hashing")
    chosen = tiny.override(retrieval={"image_embedder": "foreground", "text_embedder": "minilm"})
    assert (chosen.embedder("image_embedder"), chosen.embedder("text_embedder")) == ("foreground", "minilm")
    with pytest.raises(InvalidInput, match="unknown image embedder 'clip'"):
        Config.from_dict({"retrieval": {"image_embedder": "clip"}})
