"""One-shot fix rate of the retrieval memory on the pharmacy look-alike bottles (issue: Dual-modality retrieval).

    python benchmarks/one_shot.py descriptors            # image descriptor ablation: 1-NN, fix rate at <= 2% false
    python benchmarks/one_shot.py memory                 # through DualModalityMemory: cases a / b / b2 / c

Protocol: each of the 12 bottles is taught ONCE (one view, one event "What is this called?" -> its name); then
`--n-test` held-out views per bottle are asked about. A query is *fixed* when the top visible match scores
>= reuse_threshold and carries the right name (the assistant then answers it outright; below that the
references only go into the model's context, and a model that is always wrong stays wrong); it is a *false
reuse* when that top match carries another bottle's name. Open-set false reuse: the share of queries whose
best match among the OTHER bottles would be reused (what happens when the asked bottle was never taught: its
own events are left out of the matches, and a look-alike's name given outright counts).
Other-intent reuse: the share of new views whose taught name would be given to another question about them
("What is this used for?"; `retrieval.reuse_min_text_sim` must keep it at 0).

Thresholds are chosen on calibration seeds (--seeds) and checked on held-out seeds (--test-seeds).
Results go to benchmarks/results/one_shot/ as JSON. One thread throughout.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "one_shot"
QUESTION = "What is this called?"
OTHER_QUESTION = "What is this used for?"  # another intent: the name taught for QUESTION must never be reused


def _views(seed: int, n_test: int, style: str):
    from ilearn.evaluation.scenarios.pharmacy import pharmacy_scenario

    sc = pharmacy_scenario(seed=seed, n_teach=3, n_test=n_test, views=style)
    return sc.items


def _pick(tops: np.ndarray, oks: np.ndarray, max_false: float) -> float:
    """The lowest reuse threshold whose false-reuse share is <= max_false."""
    for t in np.sort(np.unique(tops)):
        if ((tops >= t) & ~oks).mean() <= max_false:
            return float(t)
    return 1.0


def _rates(tops, oks, others, t) -> dict:
    """Rates at threshold `t`: `tops` the top score per query (-1: not decisive), `oks` whether the top match is
    the asked bottle, `others` the best score among the OTHER bottles (the top when the asked one is not taught)."""
    tops, oks, others = np.asarray(tops), np.asarray(oks, dtype=bool), np.asarray(others)
    return {"fix_rate": float(((tops >= t) & oks).mean()), "false_reuse": float(((tops >= t) & ~oks).mean()),
            "open_set_false_reuse": float((others >= t).mean()), "nn1": float(oks.mean()), "n": int(len(tops))}


def _score(vectors_by_seed: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top score, right, best score among the other bottles) per query, from (teach, test, labels) per seed."""
    tops, oks, others = [], [], []
    for teach, test, labels in vectors_by_seed.values():
        s = test @ teach.T
        j = s.argmax(1)
        tops += list(s.max(1))
        oks += list(j == labels)
        others += list(np.where(np.arange(len(teach))[None] == labels[:, None], -np.inf, s).max(1))
    return np.array(tops), np.array(oks), np.array(others)


def descriptors(args) -> dict:
    """Each descriptor block alone and combined, against the pooled EfficientNet baseline."""
    from ilearn.models.embedders import EfficientNetImageEmbedder, ForegroundImageEmbedder, l2_normalise
    from ilearn.models.instance import InstanceImageEmbedder, prepare

    base, fg, inst = EfficientNetImageEmbedder(), ForegroundImageEmbedder(), InstanceImageEmbedder()
    variants = {"pooled (baseline)": None, "cnn (fg crop, GeM)": (1, 0, 0, 0), "colour (wb, skin out)": (0, 1, 0, 0),
                "layout (8x8)": (0, 0, 1, 0), "shape (profile)": (0, 0, 0, 1), "cnn+colour+layout .5:1:2 (v1 weights)":
                (0.5, 1, 2, 0), "colour+shape 2:1 (default)": fg.weights, "colour+shape 3:1": (0, 3, 0, 1),
                "cnn+colour+shape .5:2:1": (0.5, 2, 0, 1), "instance, the image alone": "instance-alone",
                "instance (learned CNN, default)": "instance"}
    per = {name: {} for name in variants}
    timing = {}
    for seed in args.seeds + args.test_seeds:
        items = _views(seed, args.n_test, args.views)
        teach = [it.teach_views[0] for it in items]
        test = [v for it in items for v in it.test_views]
        labels = np.repeat(np.arange(len(items)), args.n_test)
        t0 = time.perf_counter()
        bt, bq = fg.describe(teach), fg.describe(test)
        timing.setdefault("fg_ms_per_image", []).append((time.perf_counter() - t0) / (len(teach) + len(test)) * 1e3)
        t0 = time.perf_counter()
        pt, pq = base.embed_images(teach), base.embed_images(test)
        timing.setdefault("pooled_ms_per_image", []).append((time.perf_counter() - t0) / (len(teach) + len(test)) * 1e3)
        t0 = time.perf_counter()
        it, iq = inst.embed_images(teach), inst.embed_images(test)
        timing.setdefault("instance_ms_per_image", []).append((time.perf_counter() - t0) / (len(teach) + len(test)) * 1e3)
        alone = [inst.embed_prepared(np.stack([prepare(im) for im in ims])) for ims in (teach, test)]
        for name, w in variants.items():
            if w in (None, "instance", "instance-alone"):
                per[name][seed] = {None: (pt, pq), "instance": (it, iq), "instance-alone": tuple(alone)}[w] + (labels,)
                continue

            def mix(b, w=w):
                return l2_normalise(np.concatenate([np.sqrt(x) * b[k] for k, x in zip(fg.BLOCKS, w, strict=True)],
                                                   axis=1))
            per[name][seed] = (mix(bt), mix(bq), labels)
    rows = {}
    fixed = None  # the image cosine a fused score of --reuse-threshold needs (same question)
    if args.reuse_threshold is not None:
        from ilearn.config import RetrievalConfig

        rc = RetrievalConfig()
        fixed = (args.reuse_threshold - rc.text_weight) / rc.image_weight
    for name, by_seed in per.items():
        cal = _score({s: by_seed[s] for s in args.seeds})
        held = _score({s: by_seed[s] for s in args.test_seeds})
        t = _pick(cal[0], cal[1], args.max_false)
        rows[name] = {"image_threshold": t, "calibration": _rates(*cal, t), "held_out": _rates(*held, t)}
        if fixed is not None:
            rows[name]["at_reuse_threshold"] = {"image_threshold": fixed, "held_out": _rates(*held, fixed)}
        print(f"{name:30s} thr {t:.3f}  cal 1-NN {rows[name]['calibration']['nn1']:.3f} fix "
              f"{rows[name]['calibration']['fix_rate']:.3f} | held-out 1-NN {rows[name]['held_out']['nn1']:.3f} fix "
              f"{rows[name]['held_out']['fix_rate']:.3f} false {rows[name]['held_out']['false_reuse']:.3f} open "
              f"{rows[name]['held_out']['open_set_false_reuse']:.3f}", flush=True)
        if "at_reuse_threshold" in rows[name]:
            at = rows[name]["at_reuse_threshold"]
            print(f"{'':30s} at image cosine {at['image_threshold']:.3f} (reuse {args.reuse_threshold}): held-out fix "
                  f"{at['held_out']['fix_rate']:.3f} false {at['held_out']['false_reuse']:.3f} open "
                  f"{at['held_out']['open_set_false_reuse']:.3f}", flush=True)
    return {"rows": rows, "timing_ms": {k: float(np.median(v)) for k, v in timing.items()}}


# ------------------------------------------------------------------------------------------------ memory
def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _memory_case(items, n_test, case: str, config, image_embedder, text_embedder
                 ) -> list[tuple[float, bool, bool, float, float]]:
    """Per held-out view for one case, through DualModalityMemory: (top score if decisive else -1, right, any
    visible match, the decisive score for OTHER_QUESTION, the decisive score had the asked bottle never been
    taught). The last is the search with the bottle's own events left out: the pool holds every event
    (`candidates` >= events) and visibility depends on each answer's own teachers, so it is the search of a
    memory that never had them."""
    from ilearn.images import sha256_bytes
    from ilearn.memory.retrieval import DualModalityMemory, reusable
    from ilearn.memory.sqlite import SQLiteStore
    from ilearn.types import Event, ImageRef, answer_key

    teachers = {"a": ["ana"], "b": ["ana"], "b2": ["ana", "cy"], "c": ["ana"]}[case]
    asker = "ana" if case == "a" else "bob"
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "events.db")
        if case == "c":
            store.ensure_user("ana", trusted=True)
        memory = DualModalityMemory(store, image_embedder, text_embedder, config, home=None)
        for it in items:
            for i, user in enumerate(teachers):
                view = it.teach_views[i]
                data = _png(view)
                ref = ImageRef(sha256_bytes(data), view.width, view.height, "png")
                store.put_image(data, ref)
                memory.add(Event(ref, QUESTION, it.name, user), view)
        if len(items) * len(teachers) > config.candidates:
            raise ValueError("open-set scores need every event in the search pool: raise retrieval.candidates")
        out = []
        for it in items:
            for view in it.test_views[:n_test]:
                every = memory.search(view, QUESTION, asker, k=config.candidates)
                matches = every[: config.top_k]
                top = matches[0] if matches else None
                # the top score if the margin test passes (the threshold is applied by the caller), else -1
                decisive = reusable(matches, -1.0, config.reuse_margin, config.reuse_min_text_sim)
                other = reusable(memory.search(view, OTHER_QUESTION, asker), -1.0, config.reuse_margin,
                                 config.reuse_min_text_sim)
                untaught = [m for m in every if answer_key(m.event.answer) != answer_key(it.name)][: config.top_k]
                open_set = reusable(untaught, -1.0, config.reuse_margin, config.reuse_min_text_sim)
                out.append((decisive.score if decisive else -1.0, bool(top and top.event.answer == it.name),
                            top is not None, other.score if other else -1.0, open_set.score if open_set else -1.0))
        store.close()
    return out


def _case_rates(rows: list[tuple[float, bool, bool, float, float]], reuse: float) -> dict:
    """Fix rate, false reuse (closed and open set), references and other-intent reuse of `_memory_case` rows."""
    tops, oks = np.array([r[0] for r in rows]), np.array([r[1] for r in rows], dtype=bool)
    return {**_rates(tops, oks, np.array([r[4] for r in rows]), reuse),
            "any_reference": float(np.mean([r[2] for r in rows])),
            "other_intent_reuse": float(np.mean([r[3] >= reuse for r in rows]))}


def memory_bench(args) -> dict:
    """Fix rate and false reuse per case through the real DualModalityMemory (SQLite store, real embedders)."""
    from dataclasses import replace

    from ilearn.config import RetrievalConfig
    from ilearn.models.embedders import MiniLMTextEmbedder, make_image_embedder

    if args.instance_weights is not None:  # e.g. a retrained instance CNN (python -m ilearn.models.train_instance --out)
        from ilearn.models.instance import InstanceImageEmbedder

        image_embedder = InstanceImageEmbedder(weights=args.instance_weights)
    else:
        image_embedder = make_image_embedder(args.embedder)
    text_embedder = MiniLMTextEmbedder()
    base = RetrievalConfig() if args.reuse_margin is None else RetrievalConfig(reuse_margin=args.reuse_margin)
    probe = replace(base, threshold=0.0, reuse_threshold=0.0, sharing="corroboration")
    cal = [r for s in args.seeds for r in _memory_case(_views(s, args.n_test, args.views), args.n_test, "a", probe,
                                                         image_embedder, text_embedder)]
    tops, oks = np.array([r[0] for r in cal]), np.array([r[1] for r in cal])
    reuse = _pick(tops, oks, args.max_false) if args.reuse_threshold is None else args.reuse_threshold
    result = {"embedder": image_embedder.name, "image_weight": base.image_weight, "text_weight": base.text_weight,
              "reuse_threshold": reuse, "reuse_margin": base.reuse_margin,
              "calibration_case_a": _case_rates(cal, reuse), "cases": {}}
    print(f"reuse_threshold {reuse:.3f} reuse_margin {base.reuse_margin:.3f} (calibration seeds {args.seeds})",
          flush=True)
    for case, sharing in (("a", "corroboration"), ("b", "corroboration"), ("b2", "corroboration"), ("c", "trusted")):
        config = replace(base, threshold=min(base.threshold, reuse), reuse_threshold=reuse, sharing=sharing)
        rows = [r for s in args.test_seeds for r in _memory_case(_views(s, args.n_test, args.views), args.n_test,
                                                                  case, config, image_embedder, text_embedder)]
        result["cases"][case] = {"sharing": sharing, **_case_rates(rows, reuse)}
        print(case, json.dumps(result["cases"][case]), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=["descriptors", "memory"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8, 16)),
                        help="calibration scenario seeds (0-3 watched the instance CNN's training)")
    parser.add_argument("--test-seeds", type=int, nargs="+", default=[4, 5, 6, 7], help="held-out scenario seeds")
    parser.add_argument("--n-test", type=int, default=6, help="held-out views per bottle")
    parser.add_argument("--views", default="default", help="pharmacy view style: easy, default, hard")
    parser.add_argument("--max-false", type=float, default=0.02)
    parser.add_argument("--embedder", choices=["instance", "foreground", "efficientnet", "fused"], default="instance",
                        help="memory: image embedder (RetrievalConfig.image_embedder)")
    parser.add_argument("--reuse-threshold", type=float, default=None,
                        help="memory: fixed instead of calibrated; descriptors: also rates at its image cosine")
    parser.add_argument("--reuse-margin", type=float, default=None, help="memory: instead of RetrievalConfig's")
    parser.add_argument("--instance-weights", type=Path, default=None,
                        help="memory: instance CNN weights instead of the shipped ones (results get a _w suffix)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    result = descriptors(args) if args.section == "descriptors" else memory_bench(args)
    result["args"] = vars(args)
    name = args.section if args.section == "descriptors" else f"memory_{args.embedder}"
    if args.section == "memory" and args.reuse_threshold is not None:
        name += f"_t{args.reuse_threshold:g}"
    if args.section == "memory" and args.instance_weights is not None:
        name += f"_w{args.instance_weights.stem}"
    (OUT / f"{name}_{args.views}.json").write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
