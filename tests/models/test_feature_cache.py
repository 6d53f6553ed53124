"""The vision features of recently seen images are reused at inference, never with other weights than theirs."""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image

from ilearn.config import ModelConfig
from ilearn.models import load_model
from ilearn.models.base import Message
from ilearn.models.feature_cache import FeatureCache, weights_stamp

torch.set_num_threads(1)


class Counting(torch.nn.Module):
    """A tiny encoder that counts the images it encodes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3)
        self.images = 0

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.images += pixels.shape[0]
        return self.conv(pixels)


def cached(cache: FeatureCache, encoder: Counting, pixels: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return cache.features(encoder, weights_stamp(encoder), pixels)


def test_seen_images_are_not_encoded_again_and_give_the_same_features():
    torch.manual_seed(0)
    encoder, cache = Counting().eval(), FeatureCache(size=8)
    a, b, c = (torch.rand(1, 3, 8, 8) for _ in range(3))
    first = cached(cache, encoder, torch.cat([a, b]))
    assert encoder.images == 2
    again = cached(cache, encoder, torch.cat([b, c, a, c]))  # c twice in one batch: encoded once
    assert encoder.images == 3
    with torch.inference_mode():
        direct = encoder(torch.cat([b, c, a, c]))
    assert torch.allclose(again, direct, atol=1e-6)
    assert torch.equal(again[0], first[1]) and torch.equal(again[2], first[0])
    assert (cache.hits, cache.misses) == (3, 3)


def test_other_weights_never_get_the_old_features():
    encoder, cache = Counting().eval(), FeatureCache()
    pixels = torch.rand(2, 3, 8, 8)
    old = cached(cache, encoder, pixels)
    with torch.no_grad():
        encoder.conv.weight.mul_(2.0)  # weights loaded in place
    new = cached(cache, encoder, pixels)
    assert encoder.images == 4 and not torch.allclose(old, new)
    with torch.inference_mode():
        assert torch.allclose(new, encoder(pixels), atol=1e-6)
    encoder.conv.weight = torch.nn.Parameter(encoder.conv.weight.detach() + 1)  # a new parameter object
    cached(cache, encoder, pixels)
    assert encoder.images == 8 and len(cache) == 2


def test_the_oldest_image_leaves_first_and_copies_start_empty():
    encoder, cache = Counting().eval(), FeatureCache(size=2)
    a, b, c = (torch.rand(1, 3, 8, 8) for _ in range(3))
    for pixels in (a, b, a, c):  # a used again after b: b is the oldest when c comes
        cached(cache, encoder, pixels)
    assert encoder.images == 3
    cached(cache, encoder, a)
    assert encoder.images == 3
    cached(cache, encoder, b)
    assert encoder.images == 4
    assert len(copy.deepcopy(cache)) == 0 and copy.deepcopy(cache).size == 2
    with pytest.raises(ValueError):
        FeatureCache(size=-1)


def test_used_only_at_inference_in_eval_mode_on_the_cpu():
    encoder, cache = Counting(), FeatureCache()
    pixels = torch.rand(1, 3, 8, 8)
    assert not cache.usable(encoder.eval(), pixels)  # no inference mode: gradients may be wanted
    with torch.inference_mode():
        assert cache.usable(encoder.eval(), pixels)
        assert not cache.usable(encoder.train(), pixels)
        assert not cache.usable(encoder.eval(), pixels.to("meta"))
        assert not FeatureCache(size=0).usable(encoder.eval(), pixels)


def photo(shade: int) -> Image.Image:
    return Image.new("RGB", (40, 30), (shade, 255 - shade, 90))


def test_a_dialogues_second_turn_reuses_its_photo_and_answers_the_same():
    vlm = load_model(ModelConfig(backend="tiny", seed=2))
    cache = vlm.model.feature_cache
    question = [Message("user", "what is this?", photo(10))]
    fresh = vlm.generate(question, max_new_tokens=6)
    assert (cache.hits, cache.misses) == (0, 1)
    again = vlm.generate([Message("user", "what is this?", photo(10))], max_new_tokens=6)
    assert (cache.hits, cache.misses) == (1, 1) and again.text == fresh.text
    batch = vlm.generate_batch([question, [Message("user", "and this?", photo(200))]], max_new_tokens=6)
    assert (cache.hits, cache.misses) == (2, 2) and batch[0].text == fresh.text
    scores = vlm.score(question, ["red", "blue"])
    vlm.model.feature_cache = FeatureCache(size=0)
    assert scores == pytest.approx(vlm.score(question, ["red", "blue"]), abs=1e-5)


def test_a_version_with_other_vision_weights_encodes_again(tmp_path):
    vlm = load_model(ModelConfig(backend="tiny", seed=2))
    question = [Message("user", "what is this?", photo(10))]
    base = vlm.score(question, ["red", "blue"])
    with torch.no_grad():
        for p in vlm.model.vision.parameters():
            p.mul_(1.5)
    vlm.save(tmp_path / "v1", parts=("vision",))
    vlm.reset()
    tuned_alone = load_model(ModelConfig(backend="tiny", seed=2))
    tuned_alone.set_weights(tmp_path / "v1", version="v1")
    tuned = tuned_alone.score(question, ["red", "blue"])
    assert tuned != pytest.approx(base, abs=1e-4)
    served = load_model(ModelConfig(backend="tiny", seed=2))
    assert served.score(question, ["red", "blue"]) == pytest.approx(base, abs=1e-5)
    served.set_weights(tmp_path / "v1", version="v1")
    assert served.score(question, ["red", "blue"]) == pytest.approx(tuned, abs=1e-5)
    served.reset()
    assert served.score(question, ["red", "blue"]) == pytest.approx(base, abs=1e-5)
