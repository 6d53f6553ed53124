"""Fused image features: cosine = w * cos(instance CNN) + (1 - w) * cos(frozen EfficientNet-Lite0), swept over w.

    python benchmarks/fused_embedder.py                       # cal seeds 8-11, held-out 4-7, data/real sets
    python benchmarks/fused_embedder.py --seeds 8 9 --test-seeds 4 5 --draws 10

On the pharmacy's drawn look-alike bottles (benchmarks/one_shot.py descriptors protocol: one view taught per bottle,
`--n-test` new views each) and on the real-image sets of scripts/make_real_images.py (one example per object drawn
at random, `--draws` times; the other pictures asked about). Per w: 1-NN accuracy, and the fix rate / false reuse
at the image-cosine threshold chosen on the CALIBRATION data only (bottle seeds `--seeds` + icons-dev, pooled: the
lowest threshold whose false-reuse share is <= --max-false). icons-check, kinds and the held-out bottle seeds are
checks. Also per w: the rates at the image cosine the shipped `retrieval.reuse_threshold` needs (same question).
w is chosen on the calibration data: the best pooled fix rate among the w whose bottle 1-NN is within
1 point of the instance CNN alone. Vectors are cached in --cache; results go to benchmarks/results/fused/.
One thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from frozen_nn import draw_examples  # noqa: E402
from one_shot import _pick, _rates, _views  # noqa: E402

OUT = Path(__file__).parent / "results" / "fused"
WEIGHTS = [round(x, 2) for x in np.linspace(0, 1, 11)]


def _embed(images, inst, eff) -> tuple[np.ndarray, np.ndarray]:
    return inst.embed_images(images), eff.embed_images(images)


def _vectors(args) -> dict:
    """{set: {"instance", "efficientnet", "labels"} (real) or seed: (teach..., test..., labels) (bottles)}."""
    cache = args.cache / "vectors.npz"
    if cache.exists() and not args.fresh:
        return dict(np.load(cache, allow_pickle=True))["data"].item()
    from ilearn.evaluation.scenarios.objects import ObjectsScenario
    from ilearn.models.embedders import EfficientNetImageEmbedder
    from ilearn.models.instance import InstanceImageEmbedder

    inst, eff = InstanceImageEmbedder(threads=1), EfficientNetImageEmbedder(threads=1)
    data: dict = {"bottles": {}, "real": {}}
    for seed in sorted(set(args.seeds + args.test_seeds)):
        items = _views(seed, args.n_test, args.views)
        teach = [it.teach_views[0] for it in items]
        test = [v for it in items for v in it.test_views]
        data["bottles"][seed] = {"teach": _embed(teach, inst, eff), "test": _embed(test, inst, eff),
                                 "labels": np.repeat(np.arange(len(items)), args.n_test)}
        print(f"bottles seed {seed}: {len(teach) + len(test)} images", flush=True)
    for folder in args.real:
        sc = ObjectsScenario.from_folder(folder, seed=0)
        images = [im for item in sc.items for im in item.teach_views + item.test_views]
        labels = np.array([i for i, item in enumerate(sc.items) for _ in item.teach_views + item.test_views])
        data["real"][folder.name] = {"vecs": _embed(images, inst, eff), "labels": labels}
        print(f"{folder.name}: {len(images)} images", flush=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    np.savez(cache, data=np.array(data, dtype=object))
    return data


def _fuse(pair: tuple[np.ndarray, np.ndarray], w: float) -> np.ndarray:
    from ilearn.models.embedders import fuse_vectors

    return fuse_vectors(pair[0], pair[1], w)


def _bottle_scores(data: dict, seeds: list[int], w: float):
    tops, oks, others = [], [], []
    for seed in seeds:
        d = data["bottles"][seed]
        s = _fuse(d["test"], w) @ _fuse(d["teach"], w).T
        labels = d["labels"]
        tops += list(s.max(1))
        oks += list(s.argmax(1) == labels)
        others += list(np.where(np.arange(s.shape[1])[None] == labels[:, None], -np.inf, s).max(1))
    return np.array(tops), np.array(oks), np.array(others)


def _real_scores(d: dict, w: float, draws: int):
    """One example per object, `draws` random draws: (top, right, best other-object score) per query."""
    vecs, labels = _fuse(d["vecs"], w), d["labels"]
    tops, oks, others = [], [], []
    for seed in range(draws):
        ex = draw_examples(labels, 1, np.random.default_rng(seed))
        s = vecs[~ex] @ vecs[ex].T
        ql, el = labels[~ex], labels[ex]
        tops += list(s.max(1))
        oks += list(el[s.argmax(1)] == ql)
        others += list(np.where(el[None] == ql[:, None], -np.inf, s).max(1))
    return np.array(tops), np.array(oks), np.array(others)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[8, 9, 10, 11], help="bottle calibration seeds")
    parser.add_argument("--test-seeds", type=int, nargs="+", default=[4, 5, 6, 7], help="held-out bottle seeds")
    parser.add_argument("--n-test", type=int, default=6)
    parser.add_argument("--views", default="default")
    parser.add_argument("--real", type=Path, nargs="*", default=[Path("data/real") / n for n in
                                                                  ("icons-dev", "icons-check", "kinds")])
    parser.add_argument("--dev", default="icons-dev", help="the real set used for calibration")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--max-false", type=float, default=0.02)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ilearn_fused_cache"))
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    import torch

    from ilearn.config import RetrievalConfig

    torch.set_num_threads(1)
    data = _vectors(args)
    rows = {}
    for w in WEIGHTS:
        cal_b = _bottle_scores(data, args.seeds, w)
        held_b = _bottle_scores(data, args.test_seeds, w)
        real = {name: _real_scores(d, w, args.draws) for name, d in data["real"].items()}
        cal = tuple(np.concatenate([a, b]) for a, b in zip(cal_b, real[args.dev], strict=True)) \
            if args.dev in real else cal_b
        t = _pick(cal[0], cal[1], args.max_false)
        row = {"image_threshold": t, "calibration_pooled": _rates(*cal, t), "bottles_cal": _rates(*cal_b, t),
               "bottles_held_out": _rates(*held_b, t)}
        row.update({name: _rates(*r, t) for name, r in real.items()})
        fixed = (RetrievalConfig().reuse_threshold - RetrievalConfig().text_weight) / RetrievalConfig().image_weight
        row["at_reuse_threshold"] = {"image_threshold": fixed, "bottles_held_out": _rates(*held_b, fixed),
                                     **{name: _rates(*r, fixed) for name, r in real.items()}}
        rows[w] = row
        print(f"w {w:.1f} thr {t:.3f} | " + " | ".join(
            f"{k} 1nn {100 * v['nn1']:.1f} fix {100 * v['fix_rate']:.1f} false {100 * v['false_reuse']:.1f}"
            for k, v in row.items() if isinstance(v, dict) and "nn1" in v), flush=True)
        at = row["at_reuse_threshold"]
        print(f"      at the shipped reuse_threshold (image cosine {at['image_threshold']:.4f}): " + " | ".join(
            f"{k} fix {100 * v['fix_rate']:.1f} false {100 * v['false_reuse']:.1f} open "
            f"{100 * v['open_set_false_reuse']:.1f}" for k, v in at.items() if isinstance(v, dict)), flush=True)
    base = rows[1.0]["bottles_cal"]["nn1"]
    ok = [w for w in WEIGHTS if rows[w]["bottles_cal"]["nn1"] >= base - 0.01]
    chosen = max(ok, key=lambda w: (rows[w]["calibration_pooled"]["fix_rate"],
                                    rows[w].get(args.dev, rows[w]["bottles_cal"])["nn1"]))
    print(f"chosen w (calibration only): {chosen}")
    OUT.mkdir(parents=True, exist_ok=True)
    out = {"args": {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if k == "real" else v)
                    for k, v in vars(args).items()}, "chosen_w": chosen, "rows": {str(w): r for w, r in rows.items()}}
    (OUT / "sweep.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
