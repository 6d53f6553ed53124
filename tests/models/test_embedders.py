from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ilearn.errors import InvalidInput
from ilearn.models.embedders import (
    CachedImageEmbedder,
    CachedTextEmbedder,
    EfficientNetImageEmbedder,
    ForegroundImageEmbedder,
    HashingTextEmbedder,
    MiniLMTextEmbedder,
    StubImageEmbedder,
    image_key,
)

torch.set_num_threads(1)


class DictStore:
    def __init__(self) -> None:
        self.data: dict[tuple[str, str], np.ndarray] = {}

    def get_embedding(self, kind: str, key: str):
        return self.data.get((kind, key))

    def put_embedding(self, kind: str, key: str, vector: np.ndarray) -> None:
        self.data[(kind, key)] = np.asarray(vector, np.float32)


def shape_image(color, shape: str = "ellipse", size: int = 96) -> Image.Image:
    im = Image.new("RGB", (size, size), (235, 235, 230))
    draw = ImageDraw.Draw(im)
    box = (size // 4, size // 6, 3 * size // 4, 5 * size // 6)
    (draw.ellipse if shape == "ellipse" else draw.rectangle)(box, fill=color)
    return im


def assert_unit_rows(x: np.ndarray, dim: int, n: int) -> None:
    assert x.shape == (n, dim) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_stub_embedders_normalised_and_deterministic():
    images = StubImageEmbedder()
    a = images.embed_images([shape_image((200, 0, 0)), shape_image((0, 0, 200))])
    assert_unit_rows(a, images.dim, 2)
    np.testing.assert_array_equal(a[0], images.embed_images([shape_image((200, 0, 0))])[0])
    texts = HashingTextEmbedder()
    t = texts.embed_texts(["what is this?", "what is this", "what colour is the cap?"])
    assert_unit_rows(t, 384, 3)
    assert t[0] @ t[1] == pytest.approx(1.0) and t[0] @ t[2] < 0.9
    assert texts.embed_texts([]).shape == (0, 384)


def test_cached_image_embedder_embeds_each_image_once():
    inner, store = StubImageEmbedder(), DictStore()
    cached = CachedImageEmbedder(inner, store)
    red, blue = shape_image((200, 0, 0)), shape_image((0, 0, 200))
    first = cached.embed_images([red, blue, red], keys=["r", "b", "r"])
    assert inner.calls == 2  # duplicate in one batch embedded once
    again = cached.embed_images([red, blue], keys=["r", "b"])
    assert inner.calls == 2  # both from the cache
    np.testing.assert_array_equal(first[:2], again)
    cached.embed_images([red.copy()])  # no key given: keyed by pixels
    cached.embed_images([red.copy()])
    assert inner.calls == 3 and store.get_embedding(cached.kind, image_key(red)) is not None
    with pytest.raises(InvalidInput):
        cached.embed_images([red], keys=["a", "b"])


def test_cached_text_embedder():
    inner, store = HashingTextEmbedder(), DictStore()
    cached = CachedTextEmbedder(inner, store)
    cached.embed_texts(["a b", "a b", "c"])
    cached.embed_texts(["c"])
    assert inner.calls == 2


def test_efficientnet_embedder_real_model():
    emb = EfficientNetImageEmbedder(batch_size=2)
    imgs = [shape_image((200, 30, 30)), shape_image((205, 35, 30)), shape_image((30, 30, 200), "rect")]
    x = emb.embed_images(imgs)
    assert_unit_rows(x, 1280, 3)
    assert x[0] @ x[1] > x[0] @ x[2]  # a near-identical image is closer than a different object
    np.testing.assert_allclose(emb.embed_images(imgs[:1])[0], x[0], atol=1e-5)  # batching does not change it
    assert emb.embed_images([]).shape == (0, 1280)


def test_minilm_embedder_real_model():
    emb = MiniLMTextEmbedder()
    x = emb.embed_texts(["what is this?", "what is this object?", "how many pills are left in the bottle?",
                         "how many tablets remain in the bottle?"])
    assert_unit_rows(x, 384, 4)
    assert x[0] @ x[1] > 0.3 > x[0] @ x[2]
    assert x[2] @ x[3] > 0.7  # a paraphrase is close
    np.testing.assert_allclose(emb.embed_texts(["what is this?"])[0], x[0], atol=1e-5)  # padding does not leak


@pytest.fixture(scope="module")
def fg_embedder():
    return ForegroundImageEmbedder(batch_size=4)


class CountingForeground(ForegroundImageEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def embed_images(self, images):
        self.calls += len(images)
        return super().embed_images(images)


def pharmacy_views():
    from ilearn.data.bottles import BOTTLES, VIEW_STYLES, render_view

    by_id = {b.id: b for b in BOTTLES}
    easy = VIEW_STYLES["easy"]
    # paracetamol and aspirin differ only by cap colour; loratadine and cetirizine only by band colour
    return {k: [render_view(by_id[k], seed, easy) for seed in (11, 12)]
            for k in ("paracetamol", "aspirin", "loratadine", "cetirizine")}


def test_foreground_embedder_normalised_deterministic_and_named(fg_embedder):
    views = pharmacy_views()
    images = [views["paracetamol"][0], views["aspirin"][0], shape_image((30, 30, 200), "rect")]
    x = fg_embedder.embed_images(images)
    assert_unit_rows(x, fg_embedder.dim, 3)
    np.testing.assert_allclose(fg_embedder.embed_images(images[1:2])[0], x[1], atol=1e-5)  # same image, same vector
    assert fg_embedder.embed_images([]).shape == (0, fg_embedder.dim)
    other = ForegroundImageEmbedder(cnn_weight=1.0)
    assert other.name != fg_embedder.name != EfficientNetImageEmbedder.name  # the index rebuilds on change
    with pytest.raises(InvalidInput):
        ForegroundImageEmbedder(cnn_weight=-1.0)


def test_foreground_embedder_tells_look_alikes_apart(fg_embedder):
    views = pharmacy_views()
    v = {k: fg_embedder.embed_images(pair) for k, pair in views.items()}
    for a, b in (("paracetamol", "aspirin"), ("aspirin", "paracetamol"), ("loratadine", "cetirizine"),
                 ("cetirizine", "loratadine")):
        same, look_alike = v[a][0] @ v[a][1], v[a][0] @ v[b][1]
        assert same > look_alike, (a, b, same, look_alike)


def test_foreground_embedder_cached_once_per_image():
    inner, store = CountingForeground(), DictStore()
    cached = CachedImageEmbedder(inner, store)
    image = pharmacy_views()["aspirin"][0]
    first = cached.embed_images([image, image.copy()])
    cached.embed_images([image.copy()])
    assert inner.calls == 1
    assert cached.kind == f"image:{inner.name}"
    np.testing.assert_array_equal(first[0], first[1])


def test_white_balance_cancels_a_tint_and_skin_leaves_the_mask():
    from ilearn.models.image_stats import banded_colour_hist, drop_skin, upright_crop, white_balance

    image = pharmacy_views()["loratadine"][0]
    tinted = Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) * [0.75, 0.85, 1.0], 0, 255)
                             .astype(np.uint8))
    crop, mask = upright_crop(image)
    tcrop, tmask = upright_crop(tinted)
    raw = banded_colour_hist(crop, mask) @ banded_colour_hist(tcrop, tmask)
    balanced = banded_colour_hist(white_balance(crop, mask), mask) @ banded_colour_hist(white_balance(tcrop, tmask),
                                                                                        tmask)
    assert balanced > raw and balanced > 0.95, (raw, balanced)
    skin = Image.new("RGB", (64, 64), (224, 172, 140))
    ImageDraw.Draw(skin).rectangle((0, 0, 31, 63), fill=(168, 92, 28))  # amber stays, skin goes
    kept = drop_skin(skin, np.ones((64, 64), dtype=bool))
    assert kept[:, :30].all() and not kept[:, 34:].any()


def test_shape_profile_tells_tall_from_round():
    from ilearn.data.bottles import BOTTLES, VIEW_STYLES, render_view
    from ilearn.models.image_stats import SHAPE_DIM, shape_profile, upright_crop

    by_id = {b.id: b for b in BOTTLES}
    prof = {k: [shape_profile(upright_crop(render_view(by_id[k], s, VIEW_STYLES["easy"]))[1]) for s in (3, 4)]
            for k in ("famotidine", "omeprazole")}
    for v in prof["famotidine"] + prof["omeprazole"]:
        assert v.shape == (SHAPE_DIM,) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    assert prof["famotidine"][0] @ prof["famotidine"][1] > prof["famotidine"][0] @ prof["omeprazole"][1]
    assert prof["omeprazole"][0] @ prof["omeprazole"][1] > prof["omeprazole"][0] @ prof["famotidine"][1]
    assert not shape_profile(np.zeros((64, 64), dtype=bool)).any()


def test_foreground_embedder_without_cnn_never_loads_the_encoder():
    emb = ForegroundImageEmbedder(cnn_weight=0.0, colour_weight=2.0, layout_weight=0.0, shape_weight=1.0)
    x = emb.embed_images([pharmacy_views()["aspirin"][0]])
    assert_unit_rows(x, emb.dim, 1)
    assert emb._model is None
    assert not x[0, :1280].any()  # the cnn block weighs 0
    assert emb.name != ForegroundImageEmbedder(shape_weight=2.0).name


@pytest.mark.parametrize("tilt", [-35.0, -20.0, 0.0, 25.0])
def test_upright_angle_ignores_a_box_stuck_to_the_object(tilt):
    from ilearn.models.image_stats import upright_angle

    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[12:56, 26:40] = 1  # an upright bottle, 14 wide and 44 tall
    mask[36:44, 40:58] = 1  # a box held against its side
    turned = np.asarray(Image.fromarray(mask * 255).rotate(tilt, resample=Image.Resampling.NEAREST)) > 127
    ys, xs = np.nonzero(turned)
    ev, evec = np.linalg.eigh(np.cov(np.stack([xs, ys]).astype(float)))  # the principal axis is pulled by the box
    axis = evec[:, 1] if evec[1, 1] <= 0 else -evec[:, 1]
    pca = float(np.degrees(np.arctan2(axis[0], -axis[1])))
    assert abs(upright_angle(xs, ys) + tilt) <= 6.0 < abs(pca + tilt)  # rotating back by -tilt stands it up
    disc = np.hypot(*np.mgrid[-32:32, -32:32]) < 20
    assert upright_angle(*np.nonzero(disc)[::-1]) == 0.0  # round: left alone
