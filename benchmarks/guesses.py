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

Which taught picture a guess names (`DualModalityMemory.guess_weight`): with `--views` pictures of each object in
memory (drawn `--draws` times from all of a set's pictures, the rest asked), 1-NN accuracy with the fused
embedder's own weight (0.7), with the weight `leave_one_out_weight` chooses from the memory's pictures alone, and
with the best weight in hindsight.

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


def gated(first: np.ndarray, second: np.ndarray, labels: np.ndarray, mem: np.ndarray, w: float, gate: float):
    """(right, wrong, open set) shares of the asked pictures (not in `mem`) at weight `w` and gate `gate`: the
    nearest memory picture >= gate names the asked object (right) or another (wrong); open set: the nearest
    picture of another object >= gate (as if the asked object had never been taught)."""
    asked = ~mem
    sims = w * (first[asked] @ first[mem].T) + (1 - w) * (second[asked] @ second[mem].T)
    top = sims.max(axis=1)
    right = labels[mem][sims.argmax(axis=1)] == labels[asked]
    other = np.where(labels[mem][None, :] != labels[asked][:, None], sims, -np.inf).max(axis=1)
    on = top >= gate - 1e-9
    return float((on & right).mean()), float((on & ~right).mean()), float((other >= gate - 1e-9).mean())


def weight_choice(first: np.ndarray, second: np.ndarray, labels: np.ndarray, views: int, draws: int) -> dict:
    """1-NN accuracy (%) with `views` pictures per object in memory: the embedder's weight, the chosen one, the best;
    and the guesses (right / wrong / open set) at the gate the memory's pictures calibrate (`leave_one_out_gate`,
    precision 0.5) against the fixed gate (image cosine 0.70 at the embedder's weight)."""
    from ilearn.memory.retrieval import GUESS_WEIGHTS, leave_one_out_gate, leave_one_out_weight

    def nn(mem: np.ndarray, w: float) -> float:
        asked = ~mem
        sims = w * (first[asked] @ first[mem].T) + (1 - w) * (second[asked] @ second[mem].T)
        return float((labels[mem][sims.argmax(axis=1)] == labels[asked]).mean())

    rows, chosen, gates, calibrated, fixed = [], [], [], [], []
    for draw in range(draws):
        rng = np.random.default_rng(draw)
        mem = np.zeros(len(labels), dtype=bool)
        for k in np.unique(labels):
            idx = np.flatnonzero(labels == k)
            mem[rng.choice(idx, min(views, len(idx) - 1), replace=False)] = True
        everyone = np.ones((mem.sum(), mem.sum()), dtype=bool)
        w = leave_one_out_weight(first[mem] @ first[mem].T, second[mem] @ second[mem].T, everyone,
                                 [str(x) for x in labels[mem]], 0.7)
        chosen.append(w)
        rows.append((nn(mem, 0.7), nn(mem, 0.7 if w is None else w), max(nn(mem, x) for x in GUESS_WEIGHTS)))
        fixed.append(gated(first, second, labels, mem, 0.7, 0.70))
        if w is not None:
            sims = w * (first[mem] @ first[mem].T) + (1 - w) * (second[mem] @ second[mem].T)
            gate = leave_one_out_gate(sims, everyone, [str(x) for x in labels[mem]], 0.5)
            gates.append(gate)
            calibrated.append(gated(first, second, labels, mem, w, gate) if gate is not None else fixed[-1])
    r = 100 * np.array(rows)

    def shares(triples: list) -> list[float]:
        return [round(100 * float(x), 1) for x in np.mean(triples, axis=0)] if triples else []

    return {"views": views, "draws": draws, "fixed_0.7": round(float(r[:, 0].mean()), 1),
            "chosen": round(float(r[:, 1].mean()), 1), "best": round(float(r[:, 2].mean()), 1),
            "weights_chosen": chosen, "gates": gates, "fixed_gate_right_wrong_open": shares(fixed),
            "calibrated_gate_right_wrong_open": shares(calibrated)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", type=Path, default=ROOT / "data" / "real")
    p.add_argument("--sets", nargs="*", default=["icons-dev", "kinds", "details"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--bottle-seeds", type=int, nargs="*", default=[4, 5])
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.6, 0.65, 0.7, 0.75, 0.8, 0.8375])
    p.add_argument("--views", type=int, nargs="*", default=[1, 2, 3], help="pictures per object in memory")
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    from ilearn.evaluation.scenarios.objects import ObjectsScenario
    from ilearn.evaluation.scenarios.pharmacy import pharmacy_scenario
    from ilearn.models.embedders import FusedImageEmbedder, l2_normalise

    embedder = FusedImageEmbedder(threads=args.threads)
    data: dict[str, np.ndarray] = {}
    pictures: dict[str, tuple] = {}  # set -> (instance part, general part, labels) of all its pictures
    for name in args.sets:
        folder = args.real / name
        if not folder.is_dir():
            print(f"skipping {name}: {folder} not found (bash scripts/setup_real_images.sh builds it)", file=sys.stderr)
            continue
        parts = [nearest(*split_vectors(ObjectsScenario.from_folder(folder, seed=s).items, embedder)) for s in args.seeds]
        data[name] = np.concatenate(parts)
        items = ObjectsScenario.from_folder(folder, seed=0).items
        pictures[name] = ([im for item in items for im in item.teach_views + item.test_views],
                          np.array([k for k, item in enumerate(items) for _ in item.teach_views + item.test_views]))
    if args.bottle_seeds:
        parts = [nearest(*split_vectors(pharmacy_scenario(seed=s, n_teach=1, n_test=4).items, embedder))
                 for s in args.bottle_seeds]
        data["bottles"] = np.concatenate(parts)
        items = pharmacy_scenario(seed=args.bottle_seeds[0], n_teach=2, n_test=4).items
        pictures["bottles"] = ([im for item in items for im in item.teach_views + item.test_views],
                               np.array([k for k, item in enumerate(items) for _ in item.teach_views + item.test_views]))

    result = {"embedder": embedder.name, "seeds": args.seeds, "bottle_seeds": args.bottle_seeds, "sets": {}}
    print(f"{'set':10s} {'asked':>5s} {'1-NN':>5s}  " + "  ".join(f"t>={t:<6g} right/wrong/open" for t in args.thresholds))
    for name, rows in data.items():
        per = {f"{t:g}": rates(rows, t) for t in args.thresholds}
        result["sets"][name] = {"asked": len(rows), "nn1": round(100 * float(rows[:, 1].mean()), 1), "by_threshold": per}
        cells = "  ".join(f"{r['right']:5.1f}/{r['wrong']:4.1f}/{r['open_set']:4.1f}".rjust(25) for r in per.values())
        print(f"{name:10s} {len(rows):5d} {result['sets'][name]['nn1']:5.1f}  {cells}")
    if args.views:
        print(f"\n1-NN % with V pictures per object in memory ({args.draws} draws): the embedder's weight 0.7 / the "
              "weight the memory's pictures choose (leave one out) / the best in hindsight")
        result["weight_choice"] = {}
        for name, (images, labels) in pictures.items():
            first = l2_normalise(embedder.first.embed_images(images))
            second = l2_normalise(embedder.second.embed_images(images))
            rows = [weight_choice(first, second, labels, v, args.draws) for v in args.views]
            result["weight_choice"][name] = rows
            print(f"{name:10s} " + "  ".join(f"V={r['views']}: {r['fixed_0.7']:5.1f} / {r['chosen']:5.1f} / "
                                             f"{r['best']:5.1f}" for r in rows))
        print("\nguesses right / wrong / open set % with V pictures per object in memory: the fixed gate (image cosine "
              "0.70) -> the gate the memory's pictures calibrate (leave one out, precision 0.5; its median)")
        for name, rows in result["weight_choice"].items():
            cells = []
            for r in rows:
                a, b = r["fixed_gate_right_wrong_open"], r["calibrated_gate_right_wrong_open"]
                finite = [g for g in r["gates"] if g is not None]
                cells.append(f"V={r['views']}: " + "/".join(f"{x:.0f}" for x in a) + " -> "
                             + "/".join(f"{x:.0f}" for x in b)
                             + (f" (gate {np.median(finite):.2f})" if finite else " (no gate)"))
            print(f"{name:10s} " + "  ".join(cells))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "guesses.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
