"""A deployment calibrating its own reuse threshold from its users' reactions, simulated on stored image vectors.

    python benchmarks/fused_embedder.py        # first: computes and caches the vectors
    python benchmarks/calibration_sim.py       # then: fixed reuse_threshold vs calibrated, per set and embedder

Per set (held-out bottle seeds 4-7, the data/real sets in the cache) and image embedder (instance CNN alone, fused
0.5): one picture per object is taught, the others are asked about one by one in random order ("What is this
called?": the text term of the fused score is 1). The top match's fused score s = image_weight * cosine +
text_weight. Reused when s >= the threshold in force; the simulated user accepts a right answer and rejects a
wrong one. Not reused with a match (s >= retrieval.threshold): the user gives the right name, which says whether
the top match was right. Each reaction goes to `ReuseCalibrator` (default settings) exactly as the assistant
records it. Reported: fix rate (right answers given outright), false reuse (wrong ones given outright) and the
final threshold, for the fixed shipped threshold and for calibration; `--draws` random orders and taught pictures.
No new events are stored on corrections (the memory stays one-shot), so this is the threshold's part alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "fused"


def stream(vectors: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    """(score image cosine, right) of each query in a random order, one random example per object taught."""
    ex = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        ex[rng.choice(np.flatnonzero(labels == label))] = True
    queries = rng.permutation(np.flatnonzero(~ex))
    s = vectors[queries] @ vectors[ex].T
    return s.max(1), labels[ex][s.argmax(1)] == labels[queries]


def simulate(cos: np.ndarray, right: np.ndarray, calibrate: bool) -> dict:
    from ilearn.config import RetrievalConfig
    from ilearn.memory.calibration import ReuseCalibrator

    rc = RetrievalConfig(calibrate=calibrate)
    cal = ReuseCalibrator(rc, None)
    scores = rc.image_weight * cos + rc.text_weight
    fixed = wrong = 0
    for s, ok in zip(scores, right, strict=True):
        if s >= cal.threshold():
            fixed += int(ok)
            wrong += int(not ok)
            cal.record(s, bool(ok))
        elif s >= rc.threshold:
            cal.record(s, bool(ok))
    n = len(scores)
    return {"fix_rate": fixed / n, "false_reuse": wrong / n, "reused": fixed + wrong, "n": n,
            "final_threshold": cal.threshold(), "pairs": len(cal)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ilearn_fused_cache"))
    parser.add_argument("--test-seeds", type=int, nargs="+", default=[4, 5, 6, 7])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--weights", type=float, nargs="+", default=[1.0, 0.7, 0.5],
                        help="instance CNN weights of the fused image cosine to simulate (1.0: the CNN alone)")
    args = parser.parse_args()
    from ilearn.models.embedders import fuse_vectors

    data = dict(np.load(args.cache / "vectors.npz", allow_pickle=True))["data"].item()
    sets = {}
    b = [data["bottles"][s] for s in args.test_seeds]
    sets["bottles (held-out seeds)"] = ([np.concatenate([d["teach"][k], d["test"][k]]) for d in b for k in (0, 1)],
                                       [np.concatenate([np.arange(12) + 100 * i, d["labels"] + 100 * i])
                                        for i, d in enumerate(b)])
    for name in ("icons-dev", "icons-check", "kinds", "details"):
        if name in data["real"]:
            sets[name] = ([data["real"][name]["vecs"][0], data["real"][name]["vecs"][1]], [data["real"][name]["labels"]])
    results = {}
    for set_name, (vecs, labels) in sets.items():
        for w in args.weights:
            emb = "instance" if w == 1.0 else f"fused {w:g}"
            if set_name.startswith("bottles"):  # each seed its own scenario: simulate each, pool the rates
                parts = [(fuse_vectors(vecs[2 * i], vecs[2 * i + 1], w), labels[i]) for i in range(len(labels))]
            else:
                parts = [(fuse_vectors(vecs[0], vecs[1], w), labels[0])]
            for calibrate in (False, True):
                runs = [simulate(*stream(v, lab, np.random.default_rng(d)), calibrate)
                        for d in range(args.draws) for v, lab in parts]
                key = f"{set_name} | {emb} | {'calibrated' if calibrate else 'fixed 0.87'}"
                results[key] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
                r = results[key]
                print(f"{key:58s} fix {100 * r['fix_rate']:5.1f}%  false {100 * r['false_reuse']:5.1f}%  "
                      f"final threshold {r['final_threshold']:.4f}  pairs {r['pairs']:.0f}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "calibration_sim.json").write_text(json.dumps({"args": {"draws": args.draws, "test_seeds": args.test_seeds},
                                                          "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
