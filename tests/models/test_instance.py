"""The instance image embedder: shipped weights, invariances, look-alikes, and its training script."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from ilearn.data.bottles import BOTTLES, render_view
from ilearn.errors import InvalidInput
from ilearn.models.embedders import make_image_embedder
from ilearn.models.instance import INPUT, InstanceImageEmbedder, prepare
from ilearn.models.train_instance import lookalike_specs, render_set, save, train

torch.set_num_threads(1)
BY_ID = {b.id: b for b in BOTTLES}


@pytest.fixture(scope="module")
def embedder() -> InstanceImageEmbedder:
    return InstanceImageEmbedder()


def test_prepare_gives_an_rgb_and_mask_crop_for_any_image():
    for image in (render_view(BOTTLES[0], 1), Image.new("RGBA", (300, 120), (0, 0, 0, 0)),
                  Image.new("L", (7, 5), 128)):
        crop = prepare(image)
        assert crop.shape == (INPUT, INPUT, 4) and crop.dtype == np.uint8
    assert prepare(render_view(BOTTLES[0], 1))[..., 3].mean() > 40  # the bottle is found


def test_vectors_are_unit_length_and_mirror_invariant(embedder):
    view = render_view(BY_ID["aspirin"], 3)
    vecs = embedder.embed_images([view, ImageOps.mirror(view)])
    assert vecs.shape == (2, 128) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert float(vecs[0] @ vecs[1]) > 0.95
    assert embedder.embed_images([]).shape == (0, 128)


def test_new_views_find_their_own_bottle_among_lookalikes(embedder):
    # pairs one detail apart: cap (paracetamol/aspirin), band (ibuprofen/paracetamol, loratadine/cetirizine),
    # shape and size (omeprazole/famotidine)
    ids = ["ibuprofen", "paracetamol", "aspirin", "loratadine", "cetirizine", "omeprazole", "famotidine"]
    taught = embedder.embed_images([render_view(BY_ID[i], 1000) for i in ids])
    tests = [(k, render_view(BY_ID[i], 2000 + v)) for k, i in enumerate(ids) for v in range(3)]
    found = (embedder.embed_images([im for _, im in tests]) @ taught.T).argmax(1)
    right = sum(int(f == k) for f, (k, _) in zip(found, tests, strict=True))
    assert right >= 0.85 * len(tests), f"{right}/{len(tests)}"


def test_missing_weights_and_unknown_names_are_clear_errors(tmp_path):
    with pytest.raises(InvalidInput, match="weights not found"):
        InstanceImageEmbedder(weights=tmp_path / "none.safetensors")
    with pytest.raises(InvalidInput, match="unknown image embedder"):
        make_image_embedder("clip")
    assert make_image_embedder("instance").dim == 128


def test_training_data_excludes_the_scenario_bottles_and_comes_in_lookalike_families():
    specs = lookalike_specs(40, seed=3)
    keys = [tuple(s.attributes.values()) for s in specs]
    assert len(set(keys)) == 40
    assert not set(keys) & {tuple(b.attributes.values()) for b in BOTTLES}
    first, second = specs[0].attributes, specs[1].attributes  # a base and its first look-alike
    assert sum(first[k] != second[k] for k in first) == 1


def test_training_moves_the_weights_and_the_saved_file_loads(tmp_path):
    data = render_set(lookalike_specs(6, seed=5), views=2, seed=5)
    net = train(data, epochs=1, seed=0, batch_size=4)
    path = tmp_path / "w.safetensors"
    save(net, path)
    loaded = InstanceImageEmbedder(weights=path)
    assert loaded.name != InstanceImageEmbedder().name  # another file, another index
    shipped = InstanceImageEmbedder().embed_prepared(data[:, 0])
    mine = loaded.embed_prepared(data[:, 0])
    with torch.inference_mode():
        x = torch.from_numpy(data[:, 0].copy()).float().div(255).permute(0, 3, 1, 2)
        x[:, :3] -= 0.5
        expected = torch.nn.functional.normalize(net(x) + net(x.flip(3)), dim=1).numpy()
    np.testing.assert_allclose(mine, expected, atol=2e-2)  # fp16 file
    assert not np.allclose(mine, shipped, atol=1e-2)


def test_vectors_average_the_views_of_the_image(embedder):
    from ilearn.models.instance import views

    image = render_view(BY_ID["aspirin"], 7)
    parts = views(image)
    assert len(parts) == 4 and parts[0] is image and parts[3].size < image.size
    one = embedder.embed_prepared(np.stack([prepare(v) for v in parts])).sum(0)
    np.testing.assert_allclose(embedder.embed_images([image])[0], one / np.linalg.norm(one), atol=1e-5)
    assert len(views(Image.new("RGB", (3, 3)))) == 4  # too small to cut: the image itself stands in
