"""Which answers could the memory give outright on real pictures? Reuse rules and frozen-feature variants compared.

    python benchmarks/reuse_rules.py                       # the four data/real sets (scripts/make_real_images.py)
    python benchmarks/reuse_rules.py --draws 20 --taught 1 3

Per set, `--taught` pictures per object are taught (drawn at random, `--draws` times) and every other picture is
asked about; the nearest taught picture's object is the answer. Reported per features and rule: 1-NN accuracy and
the fix rate (right answers given outright, of all asked) at <= `--max-false` false reuse (wrong ones given
outright), with the rule's threshold chosen on icons-dev (the development set) and applied unchanged to the others.
Rules: "abs" (the top cosine >= t, as `retrieval.reuse_threshold`) and "margin" (the top cosine beats the best
picture of ANOTHER object by >= t, a ratio test). Features, all from frozen EfficientNet-Lite0: pooled (what the
fused embedder uses), sqrt (power-normalised), probs (ImageNet class probabilities, Hellinger), and wccn (within-class
whitening of sqrt features, learnt on the OTHER sets: a projection trained on diverse real pictures, leave one set
out). One thread; results go to benchmarks/results/reuse_rules/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from frozen_nn import draw_examples  # noqa: E402

OUT = Path(__file__).parent / "results" / "reuse_rules"
SETS = ("icons-dev", "icons-check", "kinds", "details")


def features(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pooled features, ImageNet logits, labels) of every picture of an object folder."""
    import torch

    from ilearn.evaluation.scenarios.objects import ObjectsScenario
    from ilearn.models.embedders import EfficientNetImageEmbedder

    embedder = EfficientNetImageEmbedder(threads=1)
    model = embedder._load()
    scenario = ObjectsScenario.from_folder(folder, seed=0)
    images = [im for item in scenario.items for im in item.teach_views + item.test_views]
    labels = np.array([i for i, item in enumerate(scenario.items) for _ in item.teach_views + item.test_views])
    pooled, logits = [], []
    with torch.inference_mode():
        for start in range(0, len(images), 16):
            x = torch.from_numpy(np.stack([embedder.preprocess(im) for im in images[start:start + 16]]))
            p = model.extract_features(x).mean(dim=(2, 3))
            pooled.append(p.numpy())
            logits.append(model._fc(p).numpy())
    return np.concatenate(pooled), np.concatenate(logits), labels


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def whitening(x: np.ndarray, labels: np.ndarray, lam: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(mean, W): within-class covariance whitening, ridge `lam` times the mean eigenvalue."""
    mean = x.mean(0)
    centred = x - mean
    within = np.zeros((x.shape[1],) * 2)
    for c in np.unique(labels):
        z = centred[labels == c] - centred[labels == c].mean(0)
        within += z.T @ z
    within = within / len(x) + lam * np.trace(within / len(x)) / len(within) * np.eye(len(within))
    w, v = np.linalg.eigh(within)
    return mean, v @ np.diag(w ** -0.5) @ v.T


def queries(vectors: np.ndarray, labels: np.ndarray, taught: int, draws: int) -> np.ndarray:
    """Rows (top cosine, margin over the best other object, right) of every asked picture over the draws."""
    rows = []
    for seed in range(draws):
        ex = draw_examples(labels, taught, np.random.default_rng(seed))
        s = vectors[~ex] @ vectors[ex].T
        asked, known = labels[~ex], labels[ex]
        for i in range(len(asked)):
            order = np.argsort(-s[i])
            top = known[order[0]]
            rival = next((s[i, j] for j in order[1:] if known[j] != top), -1.0)
            rows.append((s[i, order[0]], s[i, order[0]] - rival, top == asked[i]))
    return np.array(rows)


def best_threshold(rows: np.ndarray, column: int, max_false: float) -> float:
    ok = rows[:, 2].astype(bool)
    best, threshold = -1.0, float("inf")
    for t in np.unique(rows[:, column]):
        chosen = rows[:, column] >= t
        if (chosen & ~ok).mean() <= max_false and (chosen & ok).mean() > best:
            best, threshold = (chosen & ok).mean(), float(t)
    return threshold


def rates(rows: np.ndarray, column: int, threshold: float) -> dict:
    ok, chosen = rows[:, 2].astype(bool), rows[:, column] >= threshold
    return {"fix": round(float((chosen & ok).mean()), 3), "false": round(float((chosen & ~ok).mean()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, default=Path("data/real"))
    parser.add_argument("--taught", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--max-false", type=float, default=0.02)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    data = {name: features(args.real / name) for name in SETS if (args.real / name).is_dir()}
    if "icons-dev" not in data:
        raise SystemExit(f"no {args.real}/icons-dev: build the sets first (scripts/setup_real_images.sh)")

    def variant(kind: str, name: str) -> np.ndarray:
        pooled, logits, labels = data[name]
        root = l2(np.sqrt(pooled.clip(0)))
        if kind == "pooled":
            return l2(pooled)
        if kind == "sqrt":
            return root
        if kind == "probs":
            z = logits - logits.max(1, keepdims=True)
            return l2(np.sqrt(np.exp(z) / np.exp(z).sum(1, keepdims=True)))
        others = [n for n in data if n != name]  # wccn: learnt on the other sets only
        x = np.vstack([l2(np.sqrt(data[n][0].clip(0))) for n in others])
        y = np.concatenate([data[n][2] + 1000 * i for i, n in enumerate(others)])
        mean, w = whitening(x, y)
        return l2((root - mean) @ w)

    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "sets": {n: len(d[2]) for n, d in data.items()}}
    for kind in ("pooled", "sqrt", "probs", "wccn"):
        for taught in args.taught:
            rows = {name: queries(variant(kind, name), data[name][2], taught, args.draws) for name in data}
            entry: dict = {"1nn": {n: round(float(r[:, 2].mean()), 3) for n, r in rows.items()}}
            for column, rule in ((0, "abs"), (1, "margin")):
                t = best_threshold(rows["icons-dev"], column, args.max_false)
                entry[rule] = {"threshold": round(t, 4), **{n: rates(r, column, t) for n, r in rows.items()}}
            results[f"{kind} taught={taught}"] = entry
            line = " ".join(f"{n} {v:.2f}" for n, v in entry["1nn"].items())
            print(f"{kind:6s} taught {taught}: 1-NN {line}", flush=True)
            for rule in ("abs", "margin"):
                print(f"    {rule:6s} " + " | ".join(f"{n} fix {entry[rule][n]['fix']:.2f} false "
                                                    f"{entry[rule][n]['false']:.3f}" for n in data), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "reuse_rules.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {OUT / 'reuse_rules.json'}")


if __name__ == "__main__":
    main()
