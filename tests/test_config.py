import json

import pytest

from ilearn.config import Config
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
    ({"learn": {"trainable": ["eyes"]}}, "unknown parts"),
    ({"learn": {"recipe": "magic"}}, "recipe"),
])
def test_invalid_settings_are_refused(data, message):
    with pytest.raises(InvalidInput, match=message):
        Config.from_dict(data)
