"""Instance image embedder: a small CNN that tells look-alike objects apart across views (retrieval vectors).

Retrieval must recognise *this* object in a new photo after being shown it once, while its look-alikes (same
body, another cap colour, another band, another shape) must not match. Frozen ImageNet features do not do it
(pooled EfficientNet-Lite0: 34% nearest-neighbour on the pharmacy look-alikes); hand-made colour and shape
statistics reach about 75% (`ForegroundImageEmbedder`). This embedder learns what stays the same across views
of one object and what differs between look-alikes:

- input: the object isolated from its background, turned upright, white-balanced and stripped of skin-toned
  pixels (`ilearn.models.image_stats`), as a 64x64 RGB + mask array (`prepare`);
- `InstanceNet`: four conv blocks (32-256 channels) and a linear head to 128-d, L2-normalised; ~1.2 M
  parameters, about 3 ms an image on one CPU thread;
- at inference, the vectors of the crop and of its mirror image are averaged (objects look the same mirrored),
  over the `views` of the image (itself, turned 10 degrees either way, its borders cut by 6%): the crop
  pipeline isolates and turns the object a little differently in each, and the average holds still across
  photos. Measured on the pharmacy look-alikes (benchmarks/one_shot.py descriptors: one view taught per
  bottle, 6 new views each): nearest neighbour right 97.2% on held-out seeds 4-7 with the four views vs 95.1%
  on the image alone (calibration seeds 8-15: 97.6% vs 97.0%); about 4x the time (55 ms an image on one
  loaded thread).

The weights ship in ``ilearn/assets/instance_embedder.safetensors`` (fp16, ~3.4 MB); `ilearn.models.train_instance`
reproduces them: families of procedurally drawn bottles one attribute apart, 16 views each, trained with a
normalised-softmax (proxy) loss. The twelve bottles of the ``pharmacy`` scenario are never among them. The
training objects are drawn ones: on photos of real objects measure before you rely on it (``ilearn experiment
objects``), and choose the embedder with ``retrieval.image_embedder``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ilearn.errors import InvalidInput
from ilearn.models.numerics import l2_normalise, set_threads

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

INPUT = 64
"""Side of the square object crop the network sees."""
WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "instance_embedder.safetensors"


def prepare(image: Image.Image) -> np.ndarray:
    """(INPUT, INPUT, 4) uint8: the upright, white-balanced object crop (RGB) and its mask without skin (A)."""
    from PIL import Image as PILImage

    from ilearn.models.image_stats import drop_skin, upright_crop, white_balance

    crop, mask = upright_crop(image)
    balanced = white_balance(crop, mask)
    keep = drop_skin(balanced, mask)
    rgb = np.asarray(balanced.resize((INPUT, INPUT), PILImage.Resampling.BILINEAR), dtype=np.uint8)
    alpha = np.asarray(PILImage.fromarray(keep.astype(np.uint8) * 255).resize((INPUT, INPUT),
                                                                                PILImage.Resampling.NEAREST))
    return np.concatenate([rgb, alpha[..., None]], axis=2)


TURN = 10.0
"""Degrees by which `views` turns the image either way."""
BORDER = 0.06
"""Share of each side that `views` cuts off."""


def views(image: Image.Image) -> list[Image.Image]:
    """The views of one image whose vectors `InstanceImageEmbedder` averages: the image, the image turned
    `TURN` degrees either way (corners filled with its top-left colour) and the image with `BORDER` of each
    side cut off."""
    fill = image.getpixel((0, 0))
    w, h = image.size
    dx, dy = int(w * BORDER), int(h * BORDER)
    return [image, image.rotate(-TURN, expand=True, fillcolor=fill), image.rotate(TURN, expand=True, fillcolor=fill),
            image.crop((dx, dy, w - dx, h - dy)) if w - 2 * dx > 0 and h - 2 * dy > 0 else image]


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """(n, INPUT, INPUT, 4) uint8 -> (n, 4, INPUT, INPUT) float32 tensor, colours centred on 0."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).float().div_(255.0).permute(0, 3, 1, 2).contiguous()
    x[:, :3] -= 0.5
    return x


class InstanceNet(nn.Module):
    """(n, 4, INPUT, INPUT) -> (n, dim) L2-normalised: four conv-BN-ReLU x2 + max-pool blocks, a linear head."""

    def __init__(self, dim: int = 128, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.features = nn.Sequential(block(4, width), block(width, 2 * width), block(2 * width, 4 * width),
                                      block(4 * width, 8 * width))
        side = INPUT // 16
        self.head = nn.Linear(8 * width * side * side, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.head(self.features(x).flatten(1)), dim=1)


def load_net(weights: str | Path = WEIGHTS, dim: int = 128) -> InstanceNet:
    """An `InstanceNet` (float32, train mode as built) with the weights of a safetensors file (default: shipped)."""
    from safetensors.torch import load_file

    net = InstanceNet(dim)
    net.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    return net


def mirror_embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(n, dim) L2-normalised: the mean of the vectors of the crops and of their mirror images."""
    return nn.functional.normalize(net(x) + net(x.flip(3)), dim=1)


class InstanceImageEmbedder:
    """Retrieval image vectors from `InstanceNet` (module docstring): 128-d, L2-normalised, averaged over the
    image's `views` and their mirror images."""

    dim = 128
    concept_threshold = 0.8
    """Cosine from which a photo shows a user's own thing (`ilearn.users.concepts.ConceptBook`): 98.3% of new
    photos of one's own look-alike bottle, 1.4% of other users' (`python -m ilearn.users.measure concepts`)."""

    def __init__(self, *, device: str = "cpu", threads: int = 1, batch_size: int = 32,
                 weights: str | Path | None = None):
        if batch_size < 1:
            raise InvalidInput("batch_size must be >= 1")
        self.device = device
        self.threads = threads
        self.batch_size = batch_size
        self.weights = Path(weights) if weights is not None else WEIGHTS
        if not self.weights.is_file():
            raise InvalidInput(f"instance embedder weights not found: {self.weights} "
                               "(python -m ilearn.models.train_instance writes them)")
        self.name = "instance-cnn-v2" if weights is None else f"instance-cnn-v2:{self.weights.name}"
        self._net: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._net is None:
                net = load_net(self.weights, self.dim)
                self._net = net.eval().requires_grad_(False).to(torch.device(self.device))
                logger.info("loaded instance image embedder from %s on %s", self.weights, self.device)
        return self._net

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        """Vectors of already `prepare`d crops, (n, INPUT, INPUT, 4) uint8 -> (n, dim) float32."""
        net = self._load()
        set_threads(self.threads)
        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                x = to_tensor(batch[start:start + self.batch_size]).to(self.device)
                out.append(mirror_embed(net, x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, 128) float32, rows L2-normalised: the mean over each image's `views`."""
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        crops = [[prepare(v) for v in views(im)] for im in images]
        vecs = self.embed_prepared(np.stack([c for cs in crops for c in cs]))
        return l2_normalise(vecs.reshape(len(images), len(crops[0]), self.dim).sum(axis=1))
