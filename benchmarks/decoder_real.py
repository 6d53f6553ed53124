"""Measure the lexical feedback decoder on real replies (src/ilearn/data/reactions_real.jsonl), beside a baseline.

The real set holds replies people wrote to each other (chitchat-dataset 0.9.0, MIT), hand-labelled positive /
neutral / negative with the correction when the reply names what is right (docs/reactions.md). Its splits:
"train" (the rules were revised on its errors; "train-fresh" is its rows cc378-cc462, drawn later, and
"train-fresh-3" its rows cc463-cc527, the third pass's draw, "train-fresh-4" its rows cc528-cc565, the draw
that measured the third pass's fixes unseen, "train-fresh-5" its rows cc566-cc618, the fifth pass's draw,
"train-fresh-6" its rows from cc619 on, the sixth pass's draw), "dev" (the old decoder's errors on it were seen
once, before the revision; not used since), "blind" (labelled before any decoder ran on it; see docs/reactions.md). The project's own sets are measured
too: "tuned" (templated and hand-written rows of reactions.jsonl) and "heldout" (reactions_heldout.jsonl and the
held-out rows of reactions.jsonl). The simulated users' real wording (src/ilearn/data/user_wording.jsonl) is
decoded in a pharmacy exchange ("sim-wording").

For each set and decoder: per-label precision and recall, corrections extracted right (of the rows whose reply
names what is right), corrections invented (extracted where the reply names nothing), and the decode time per
turn. The baseline is the decoder of another git revision (default: the one before issue 19's work), loaded from
git in the same run; ratios are current / baseline. Goals (issue 19): P+ >= 0.95 and P- >= 0.90 with recall >= 0.6
each on the real set; corrections right >= 90%, none invented; the project's sets no worse than 0.95 / 0.90.

    PYTHONPATH=src .venv/bin/python benchmarks/decoder_real.py
    PYTHONPATH=src .venv/bin/python benchmarks/decoder_real.py --baseline-rev HEAD~3 --show-errors dev
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "ilearn" / "data"
BASELINE_REV = "a4b1cbf"  # main before issue 19 (feedback.py as the issue measured it)
LABELS = ("positive", "neutral", "negative")
FRESH_FROM = 378  # the first id of the train rows drawn fresh on 2026-12-04
FRESH3_FROM = 463  # the first id of the third pass's fresh draw (2026-12-07)
FRESH4_FROM = 528  # the first id of the draw that measured the third pass's fixes unseen (2026-12-07)
FRESH5_FROM = 566  # the first id of the fifth pass's draw (2026-12-07, later)
FRESH6_FROM = 619  # the first id of the sixth pass's draw (2026-12-07, twelfth session)


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def sets() -> dict[str, list[dict]]:
    real = load("reactions_real.jsonl")
    project = load("reactions.jsonl")
    out = {split: [r for r in real if r["split"] == split] for split in ("train", "dev", "blind")}
    # train rows added last (cc378 on): a fresh draw labelled before any decoder ran on them, measured once before
    # the rules were revised on them (docs/reactions.md)
    out["train-fresh"] = [r for r in real if r["split"] == "train" and FRESH_FROM <= int(r["id"][2:]) < FRESH3_FROM]
    out["train-fresh-3"] = [r for r in real if r["split"] == "train" and FRESH3_FROM <= int(r["id"][2:]) < FRESH4_FROM]
    out["train-fresh-4"] = [r for r in real if r["split"] == "train" and FRESH4_FROM <= int(r["id"][2:]) < FRESH5_FROM]
    out["train-fresh-5"] = [r for r in real if r["split"] == "train" and FRESH5_FROM <= int(r["id"][2:]) < FRESH6_FROM]
    out["train-fresh-6"] = [r for r in real if r["split"] == "train" and int(r["id"][2:]) >= FRESH6_FROM]
    out["real-all"] = real
    out["tuned"] = [r for r in project if r["source"] in ("template", "handwritten")]
    out["heldout"] = [r for r in project if r["source"] == "heldout"] + load("reactions_heldout.jsonl")
    sim = []
    for row in load("user_wording.jsonl"):
        if row["category"] in ("pick_next", "pick_wrong", "vague"):
            continue
        label = "positive" if row["category"] == "positive" else "neutral" if row["category"] == "neutral" \
            else "negative"
        correction = "Ibuprofen" if row["category"] == "negative_correction" else None
        sim.append({"question": "what is this medicine called?", "answer": "It is Paracetamol.",
                    "reaction": row["text"].format(x="Ibuprofen", q="What is the name of this medicine?"),
                    "label": label, "correction": correction})
    out["sim-wording"] = sim
    return out


def predict(rows: list[dict]) -> dict:
    """The labels and corrections of the importable `ilearn.dialogue.feedback` for `rows`, with the decode times."""
    from ilearn.dialogue import feedback

    decoder = feedback.LexicalFeedbackDecoder()
    preds, times = [], []
    for r in rows:
        start = time.perf_counter()
        fb = decoder.judge(feedback.Exchange(r["question"], r["answer"], r["reaction"]))
        times.append(time.perf_counter() - start)
        preds.append((fb.label.value, fb.correction))
    return {"preds": preds, "times": times}


def predict_at(rev: str, named: dict[str, list[dict]]) -> dict[str, dict]:
    """`predict` for each set of `named` by the decoder of git revision `rev`: its whole source tree (the decoder
    spans several modules since lexical.py was split off) in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        out = subprocess.run([sys.executable, __file__, "--predict"], input=json.dumps(named), env=env, check=True,
                             capture_output=True, text=True, cwd=tmp).stdout
    return json.loads(out)


def measure(rows: list[dict], predicted: dict) -> dict:
    preds = [(label, correction) for label, correction in predicted["preds"]]
    out: dict = {"n": len(rows), "ms": 1000 * statistics.median(predicted["times"])}
    for label in LABELS:
        hits = sum(p == label and r["label"] == label for r, (p, _) in zip(rows, preds, strict=True))
        guessed = sum(p == label for p, _ in preds)
        gold = sum(r["label"] == label for r in rows)
        out[label] = (hits / guessed if guessed else float("nan"), hits / gold if gold else float("nan"))
    named = [(r, c) for r, (_, c) in zip(rows, preds, strict=True) if r.get("correction")]
    out["corrections"] = (sum((c or "").lower() == r["correction"].lower() for r, c in named), len(named))
    out["invented"] = sum(bool(c) for r, (_, c) in zip(rows, preds, strict=True)
                          if not r.get("correction") and r.get("correction_clear", True))
    out["preds"] = preds
    return out


def row(name: str, m: dict) -> str:
    cells = [f"{m[label][0]:.3f} / {m[label][1]:.3f}" for label in LABELS]
    right, total = m["corrections"]
    return (f"| {name} | {m['n']} | " + " | ".join(cells) + f" | {right}/{total} | {m['invented']} | {m['ms']:.2f} |")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and b == b and a == a else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision of the baseline decoder")
    parser.add_argument("--show-errors", default="", help="comma-separated sets whose errors to print")
    parser.add_argument("--predict", action="store_true", help=argparse.SUPPRESS)  # the child of `predict_at`
    args = parser.parse_args()
    if args.predict:
        print(json.dumps({name: predict(rows) for name, rows in json.load(sys.stdin).items()}))
        return
    named = sets()
    baseline = predict_at(args.baseline_rev, named)
    print("| set | n | positive P / R | neutral P / R | negative P / R | corrections right | invented | ms/turn |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    shown = set(filter(None, args.show_errors.split(",")))
    for name, rows in named.items():
        now, before = measure(rows, predict(rows)), measure(rows, baseline[name])
        print(row(f"{name} (now)", now))
        print(row(f"{name} (baseline {args.baseline_rev})", before))
        print(f"|   ratio now/baseline: P+ {_ratio(now['positive'][0], before['positive'][0])}, "
              f"P- {_ratio(now['negative'][0], before['negative'][0])}, time {_ratio(now['ms'], before['ms'])} "
              "| | | | | | | |")
        if name in shown:
            for r, (label, correction) in zip(rows, now["preds"], strict=True):
                if label != r["label"] or (correction or None) != (r.get("correction") or None):
                    print(f"    {r['label']:>8} -> {label:<8} {correction!r:>14}  {r['reaction'][:70]!r}")


if __name__ == "__main__":
    main()
