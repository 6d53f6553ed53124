"""Chain of Question: precision and recall of "ask a clarifying question" on the labelled request set.

    python benchmarks/clarify.py                 # lexical and model deciders, model = small
    python benchmarks/clarify.py --model tiny    # quick check of the code path

The set (src/ilearn/data/clarify.jsonl) is built by scripts/make_clarify_set.py; see its docstring.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources

import torch

from ilearn.config import ModelConfig
from ilearn.dialogue.clarify import LexicalClarifier, ModelClarifier


def load_set() -> list[dict]:
    text = resources.files("ilearn.data").joinpath("clarify.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def precision_recall(rows: list[dict], asks: list[bool]) -> dict:
    tp = sum(a and r["ambiguous"] for r, a in zip(rows, asks, strict=True))
    fp = sum(a and not r["ambiguous"] for r, a in zip(rows, asks, strict=True))
    fn = sum((not a) and r["ambiguous"] for r, a in zip(rows, asks, strict=True))
    return {"precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else 0.0,
            "tp": tp, "fp": fp, "fn": fn, "n": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = load_set()
    print(f"{len(rows)} requests, {sum(r['ambiguous'] for r in rows)} ambiguous")
    from ilearn.models import load_model

    vlm = load_model(ModelConfig(backend=args.model, threads=args.threads))
    for name, clarifier in [("lexical", LexicalClarifier()), (f"model ({args.model})", ModelClarifier(vlm))]:
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
