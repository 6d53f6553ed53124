"""How often would the memory's guess be right? The nearest taught picture's answer, by image cosine, when no
answer is decisive (`retrieval.guess_threshold`, `ilearn.memory.retrieval.tentative`).

    python benchmarks/guesses.py                       # data/real icons-dev, kinds, details + pharmacy bottles
    python benchmarks/guesses.py --sets icons-dev --seeds 0 1 --thresholds 0.7 0.75

Real sets (scripts/make_real_images.py): the `objects` scenario's own teach/test split for each of `--seeds`, every
teaching view in memory, every test view asked. Bottles: the pharmacy's look-alikes of `--bottle-seeds`, one view
taught per bottle, four new views asked. Embedder: the default "fused" one. Per image-cosine threshold t (the
fused score of a same-question match is 0.8 t + 0.2 with the default weights), in % of asked pictures:

- guessed right / wrong: the nearest taught picture scores >= t and is (not) of the asked object;
- open set: the best picture of ANOTHER object scores >= t, i.e. a never-taught object would get a taught name as
  a guess (each asked picture counted as if its own object had not been taught).

Results go to benchmarks/results/guesses/guesses.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "guesses"
ROOT = Path(__file__).parent.parent


def nearest(teach: np.ndarray, teach_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray) -> np.ndarray:
    """Per asked picture: (top cosine, right, best cosine among other objects' pictures)."""
    sims = test @ teach.T
    rows = []
    for i, s in enumerate(sims):
        j = int(np.argmax(s))
        other = s[teach_labels != test_labels[i]]
        rows.append((float(s[j]), bool(teach_labels[j] == test_labels[i]), float(other.max()) if other.size else -1.0))
    return np.array(rows, dtype=float).reshape(-1, 3)


def split_vectors(items, embedder) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    teach = [im for item in items for im in item.teach_views]
    test = [im for item in items for im in item.test_views]
    tl = np.array([k for k, item in enumerate(items) for _ in item.teach_views])
    ql = np.array([k for k, item in enumerate(items) for _ in item.test_views])
    return embedder.embed_images(teach), tl, embedder.embed_images(test), ql


def rates(rows: np.ndarray, t: float) -> dict:
    top, right, other = rows[:, 0], rows[:, 1] > 0, rows[:, 2]
    guessed = top >= t - 1e-9
    return {"right": round(100 * float((guessed & right).mean()), 1), "wrong": round(100 * float((guessed & ~right).mean()), 1),
            "open_set": round(100 * float((other >= t - 1e-9).mean()), 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", type=Path, default=ROOT / "data" / "real")
    p.add_argument("--sets", nargs="*", default=["icons-dev", "kinds", "details"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--bottle-seeds", type=int, nargs="*", default=[4, 5])
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.6, 0.65, 0.7, 0.75, 0.8, 0.8375])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    from ilearn.evaluation.scenarios.objects import ObjectsScenario
    from ilearn.evaluation.scenarios.pharmacy import pharmacy_scenario
    from ilearn.models.embedders import FusedImageEmbedder

    embedder = FusedImageEmbedder(threads=args.threads)
    data: dict[str, np.ndarray] = {}
    for name in args.sets:
        folder = args.real / name
        if not folder.is_dir():
            print(f"skipping {name}: {folder} not found (bash scripts/setup_real_images.sh builds it)", file=sys.stderr)
            continue
        parts = [nearest(*split_vectors(ObjectsScenario.from_folder(folder, seed=s).items, embedder)) for s in args.seeds]
        data[name] = np.concatenate(parts)
    if args.bottle_seeds:
        parts = [nearest(*split_vectors(pharmacy_scenario(seed=s, n_teach=1, n_test=4).items, embedder))
                 for s in args.bottle_seeds]
        data["bottles"] = np.concatenate(parts)

    result = {"embedder": embedder.name, "seeds": args.seeds, "bottle_seeds": args.bottle_seeds, "sets": {}}
    print(f"{'set':10s} {'asked':>5s} {'1-NN':>5s}  " + "  ".join(f"t>={t:<6g} right/wrong/open" for t in args.thresholds))
    for name, rows in data.items():
        per = {f"{t:g}": rates(rows, t) for t in args.thresholds}
        result["sets"][name] = {"asked": len(rows), "nn1": round(100 * float(rows[:, 1].mean()), 1), "by_threshold": per}
        cells = "  ".join(f"{r['right']:5.1f}/{r['wrong']:4.1f}/{r['open_set']:4.1f}".rjust(25) for r in per.values())
        print(f"{name:10s} {len(rows):5d} {result['sets'][name]['nn1']:5.1f}  {cells}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "guesses.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
