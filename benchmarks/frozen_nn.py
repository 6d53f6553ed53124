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
Results go to benchmarks/results/frozen_nn/FOLDER.json. One thread.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="objects folders (one subfolder per object)")
    parser.add_argument("--seeds", type=int, default=20, help="random draws of the examples")
    args = parser.parse_args()
    import torch

    from ilearn.models.embedders import EfficientNetImageEmbedder

    torch.set_num_threads(1)
    embedder = EfficientNetImageEmbedder(threads=1)
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"{'folder':28s} {'objects':>7s} {'pictures':>8s}  {'1 example':>17s}  {'3 examples':>17s}  "
          f"{'half':>17s}  {'protocol split':>17s}")
    for folder in args.folders:
        result = evaluate(folder, args.seeds, embedder)
        result["args"] = {"seeds": args.seeds}
        (OUT / f"{folder.resolve().name}.json").write_text(json.dumps(result, indent=1) + "\n")
        cells = [result["k_shot"][k] for k in ("1", "3", "half")] + [result["protocol_split"]]
        print(f"{folder.name:28s} {result['objects']:7d} {result['pictures']:8d}  " + "  ".join(
            f"{100 * c['accuracy']:5.1f} [{100 * c['low']:4.1f}-{100 * c['high']:5.1f}]" for c in cells), flush=True)


if __name__ == "__main__":
    main()
