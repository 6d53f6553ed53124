"""Chain of Question: precision and recall of "ask a clarifying question" on the labelled request set.

    python benchmarks/clarify.py                 # lexical and model deciders, model = small
    python benchmarks/clarify.py --model tiny    # quick check of the code path
    python benchmarks/clarify.py --lexical-only  # the lexical decider alone (no model loaded)
    python benchmarks/clarify.py --facets general --lexical-only   # another domain's facets (or a JSON file)

The set is the pharmacy's, so its figures are measured with the pharmacy's facets (`--facets pharmacy`, the
default, `ilearn.dialogue.clarify.PHARMACY_FACETS`); `--facets` takes "general" (the settings' default set) or a
JSON file holding a list of `clarify.facets` settings, to see how the same requests fare in another domain.

The set (src/ilearn/data/clarify.jsonl) is built by scripts/make_clarify_set.py; see its docstring.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources

import torch

from ilearn.config import ModelConfig
from ilearn.dialogue.clarify import (
    GENERAL_FACETS,
    PHARMACY_FACETS,
    Facet,
    LexicalClarifier,
    ModelClarifier,
    facets_from_settings,
)


def load_set() -> list[dict]:
    text = resources.files("ilearn.data").joinpath("clarify.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def precision_recall(rows: list[dict], asks: list[bool]) -> dict:
    tp = sum(a and r["ambiguous"] for r, a in zip(rows, asks, strict=True))
    fp = sum(a and not r["ambiguous"] for r, a in zip(rows, asks, strict=True))
    fn = sum((not a) and r["ambiguous"] for r, a in zip(rows, asks, strict=True))
    return {"precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else 0.0,
            "tp": tp, "fp": fp, "fn": fn, "n": len(rows)}


def load_facets(which: str) -> tuple[Facet, ...]:
    """The facets named by --facets: pharmacy, general, or a JSON file of `clarify.facets` settings."""
    if which == "pharmacy":
        return PHARMACY_FACETS
    if which == "general":
        return GENERAL_FACETS
    with open(which) as f:
        return facets_from_settings(json.load(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--facets", default="pharmacy",
                        help="pharmacy (default; the set's domain), general, or a JSON file of clarify.facets")
    parser.add_argument("--lexical-only", action="store_true", help="measure the lexical decider only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = load_set()
    facets = load_facets(args.facets)
    print(f"{len(rows)} requests, {sum(r['ambiguous'] for r in rows)} ambiguous; facets {args.facets}: "
          f"{', '.join(f.name for f in facets)}")
    deciders: list[tuple[str, LexicalClarifier]] = [("lexical", LexicalClarifier(facets))]
    if not args.lexical_only:
        from ilearn.models import load_model

        vlm = load_model(ModelConfig(backend=args.model, threads=args.threads))
        deciders.append((f"model ({args.model})", ModelClarifier(vlm, facets)))
    for name, clarifier in deciders:
        start = time.perf_counter()
        asks = [clarifier.assess(r["request"], True).ambiguous for r in rows]
        ms = (time.perf_counter() - start) * 1000 / len(rows)
        m = precision_recall(rows, asks)
        print(f"{name:>16}: precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
              f"(tp {m['tp']}, fp {m['fp']}, fn {m['fn']}; {ms:.1f} ms per request)")
        for r, a in zip(rows, asks, strict=True):
            if a != r["ambiguous"]:
                print(f"      {'missed' if r['ambiguous'] else 'false ask'}: {r['request']!r}")


if __name__ == "__main__":
    main()
