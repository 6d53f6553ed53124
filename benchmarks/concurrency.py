"""Many users talking at once to one runtime (threads): turns per second and latency per turn against one user.

    python benchmarks/concurrency.py                       # tiny model, 1 2 4 8 16 32 users
    python benchmarks/concurrency.py --model small         # the embedded default model (first load ~30 s)

Each simulated user talks in sessions of its own, one dialogue after the other with no pause, on pharmacy
photos; every user starts at once (a barrier). `--script questions` (default): a question with a photo, then a
second question about it; every turn is answered by the model. `--script dialogue`: benchmarks/turn_latency.py's
dialogue (an ambiguous question, the reply to the clarifying question, a correction, a second question), where
half the turns need no model. Every level runs at least `--turns` turns (each user the same number of whole
dialogues) on the same runtime, one level after the other, and nothing is taught meanwhile (sessions are left
open), so the levels do the same work per turn.

Every dialogue is about a photo of its own, as a robot's camera never gives the same frame twice: what a
runtime keeps of a photo (the retrieval memory's query embedding, the model's vision features) serves only the
turns of that dialogue, never a later one.

Per level: turns per second (all turns / wall time of the level), p50 and p99 latency of a turn (`respond`
call), each as a ratio against the one-user level of the same run; errors (exceptions from `respond`) and lost
turns (answered, but the reply's turn is not in the store afterwards). The goal (issue 17, `small`, 2 cores):
8 users >= 1.6x the turns per second of one user, 0 errors, 0 lost turns, p99 with 8 users < 3x the one-user
p50. The machine's load average is recorded before and after each level: other jobs on the same cores change
every figure; the CPU seconds this process spent per turn (all its threads) change with it too (shared
caches), but less.

With users that never pause, latency and throughput are tied (Little's law): 8 users waiting on each other's
turns wait 8 / (turns per second) on average, so a p99 under 3x one user's p50 needs 8 users to give about
3x the turns per second of one user (more than two cores give without batching).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from ilearn.assistant import Assistant
from ilearn.config import Config

OUT = Path(__file__).parent / "results" / "concurrency"
SCRIPTS = {
    "questions": [("What is this medicine called?", True), ("What is the dose of this?", False)],
    "dialogue": [("What is this?", True), ("its name", False), ("No, that's ibuprofen.", False),
                 ("What is this medicine used for?", True)],
}
"""One dialogue per script: (text, with the photo). In "questions" every turn is answered by the model (the
goal's latency ratios compare like with like); "dialogue" is benchmarks/turn_latency.py's, where half the turns
need no model (a clarifying question, an acknowledgement), so its latencies are bimodal."""


def photos(n: int) -> list[bytes]:
    """`n` PNG photos of pharmacy bottles, no two the same (new views, as in benchmarks/turn_latency.py)."""
    import io

    from ilearn.evaluation.scenarios.pharmacy import BOTTLES, pharmacy_scenario

    scenario = pharmacy_scenario(seed=0, n_teach=1, n_test=max(1, math.ceil(n / len(BOTTLES))))
    views = [view for item in scenario.items for view in item.test_views]
    out = []
    for view in views[:n]:
        buf = io.BytesIO()
        view.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def dialogue(assistant: Assistant, script: str, user: str, photo: bytes, latencies: list[float],
             replies: list) -> None:
    """One scripted dialogue; appends each turn's latency (s) and reply."""
    session = None
    for text, with_photo in SCRIPTS[script]:
        start = time.perf_counter()
        reply = assistant.respond(user, text, image=photo if with_photo else None, session_id=session)
        latencies.append(time.perf_counter() - start)
        replies.append(reply)
        session = reply.session_id


def batch_check(assistant: Assistant, script: str, views: list[bytes], n: int = 8) -> dict | None:
    """The script's model prompts on `n` photos, answered one by one (`generate`) and as one batch
    (`generate_batch`): how many batched replies equal the replies alone (greedy: all of them should), and the
    seconds of each way; where the model keeps its photos' vision features, the batch once more with them kept
    (a dialogue's later turns) against the best of two batches that encode every photo. None when the model does
    not batch."""
    import io

    from PIL import Image

    from ilearn.dialogue.prompts import answer_messages

    vlm = assistant.vlm
    if not hasattr(vlm, "generate_batch"):
        return None
    questions = [text for text, _ in SCRIPTS[script]]
    conversations = [answer_messages(questions[i % len(questions)], Image.open(io.BytesIO(views[i % len(views)])))
                     for i in range(n)]
    limit = assistant.config.model.max_new_tokens
    start = time.perf_counter()
    alone = [vlm.generate(c, max_new_tokens=limit) for c in conversations]
    alone_s = time.perf_counter() - start
    start = time.perf_counter()
    batch = vlm.generate_batch(conversations, max_new_tokens=limit)
    batch_s = time.perf_counter() - start
    features = getattr(vlm.model, "feature_cache", None)
    again_s = None
    if features is not None:  # the same batch once more with its photos' vision features kept, then without any
        start = time.perf_counter()
        vlm.generate_batch(conversations, max_new_tokens=limit)
        again_s = time.perf_counter() - start
        vlm.model.feature_cache, kept = type(features)(size=0), features
        start = time.perf_counter()
        vlm.generate_batch(conversations, max_new_tokens=limit)
        batch_s = min(batch_s, time.perf_counter() - start)
        vlm.model.feature_cache = kept
    equal = sum(a.text == b.text for a, b in zip(alone, batch, strict=True))
    return {"conversations": n, "equal": equal, "alone_s": alone_s, "batch_s": batch_s,
            "alone_over_batch": alone_s / batch_s if batch_s > 0 else None, "features_kept_s": again_s,
            "batch_over_features_kept": batch_s / again_s if again_s else None,
            "reply_tokens": [a.completion_tokens for a in alone],
            "differences": [(a.text, b.text) for a, b in zip(alone, batch, strict=True) if a.text != b.text][:3]}


def level_dialogues(script: str, n_users: int, min_turns: int) -> int:
    """Dialogues per user of a level: at least `min_turns` turns in all."""
    return max(1, math.ceil(min_turns / n_users / len(SCRIPTS[script])))


def run_level(assistant: Assistant, script: str, n_users: int, min_turns: int, level: int,
              views: list[bytes]) -> dict:
    """`n_users` threads, each the same number of dialogues (at least `min_turns` turns in all), all started at
    once; each dialogue about a photo of its own from `views` (n_users x dialogues of them)."""
    dialogues = level_dialogues(script, n_users, min_turns)
    start_line = threading.Barrier(n_users + 1)
    latencies: list[list[float]] = [[] for _ in range(n_users)]
    replies: list[list] = [[] for _ in range(n_users)]
    errors: list[str] = []

    def user(i: int) -> None:
        start_line.wait()
        for d in range(dialogues):
            try:
                dialogue(assistant, script, f"l{level}-u{i}", views[i * dialogues + d], latencies[i], replies[i])
            except Exception as exc:  # counted, reported
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=user, args=(i,)) for i in range(n_users)]
    runs, calls = assistant.batcher.runs, assistant.batcher.calls
    features = getattr(getattr(assistant.vlm, "model", None), "feature_cache", None)
    seen = (features.hits, features.misses) if features is not None else (0, 0)
    for t in threads:
        t.start()
    load_before = os.getloadavg()
    start_line.wait()
    start, cpu_start = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    flat = np.array([x for per_user in latencies for x in per_user]) * 1000.0
    all_replies = [r for per_user in replies for r in per_user]
    stored = {t.id for sid in {r.session_id for r in all_replies} for t in assistant.get_session(sid).turns}
    lost = sum(1 for r in all_replies if r.turn_id not in stored)
    runs, calls = assistant.batcher.runs - runs, assistant.batcher.calls - calls
    reused, encoded = ((features.hits - seen[0], features.misses - seen[1]) if features is not None else (None, None))
    return {"users": n_users, "dialogues_per_user": dialogues, "turns": len(all_replies), "wall_s": wall,
            "turns_per_s": len(all_replies) / wall if wall > 0 else 0.0,
            "cpu_s_per_turn": cpu / len(all_replies) if all_replies else None,
            "p50_ms": float(np.percentile(flat, 50)) if flat.size else None,
            "p99_ms": float(np.percentile(flat, 99)) if flat.size else None,
            "mean_ms": float(flat.mean()) if flat.size else None,
            "mean_batch": calls / runs if runs else None, "photos_encoded": encoded, "photos_reused": reused,
            "errors": len(errors), "error_examples": errors[:3],
            "lost_turns": lost,
            "load_before": list(load_before), "load_after": list(os.getloadavg())}


def with_ratios(levels: list[dict]) -> list[dict]:
    """Each level with turns/s, p50 and p99 as ratios against the one-user level (p99 also against its p50)."""
    one = next(x for x in levels if x["users"] == 1)
    for x in levels:
        x["tps_ratio"] = x["turns_per_s"] / one["turns_per_s"]
        x["p50_ratio"] = x["p50_ms"] / one["p50_ms"]
        x["p99_ratio"] = x["p99_ms"] / one["p99_ms"]
        x["p99_over_single_p50"] = x["p99_ms"] / one["p50_ms"]
    return levels


def goal(levels: list[dict]) -> dict:
    """The issue's goal, checked on the 8-user level."""
    eight = next((x for x in levels if x["users"] == 8), None)
    if eight is None:
        return {"checked": False}
    return {"checked": True, "tps_ratio_8_ge_1.6": eight["tps_ratio"] >= 1.6,
            "p99_8_lt_3x_single_p50": eight["p99_over_single_p50"] < 3.0,
            "no_errors": all(x["errors"] == 0 for x in levels),
            "no_lost_turns": all(x["lost_turns"] == 0 for x in levels)}


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "commit": commit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="model backend (tiny, small, ...)")
    parser.add_argument("--script", choices=sorted(SCRIPTS), default="questions", help="what each user says")
    parser.add_argument("--users", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--turns", type=int, default=64, help="at least this many turns per level")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (global to the process)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="longest reply (default: the config's)")
    parser.add_argument("--max-batch", type=int, default=None, help="model.max_batch (1: no batching)")
    parser.add_argument("--batch-workers", type=int, default=None,
                        help="batches generated at the same time (default: MicroBatcher's)")
    parser.add_argument("--gather-s", type=float, default=None,
                        help="seconds a batch about to start waits for turns on their way (default: MicroBatcher's)")
    parser.add_argument("--split", action=argparse.BooleanOptionalAction, default=None,
                        help="free batch workers share the waiting turns (default: the config's model.batch_split)")
    parser.add_argument("--early", action="store_true", help="each reply returns as soon as it ends")
    parser.add_argument("--join", action="store_true",
                        help="continuous batching: turns join a running batch between decoding steps")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON result (default results/concurrency/MODEL-SCRIPT.json)")
    args = parser.parse_args()
    if 1 not in args.users:
        parser.error("--users must include 1 (the ratios are against one user)")
    torch.set_num_threads(args.threads)
    model = {"backend": args.model, "threads": args.threads}
    for key in ("max_new_tokens", "max_batch"):
        if getattr(args, key) is not None:
            model[key] = getattr(args, key)
    levels_n = sorted(args.users)
    sizes = [n * level_dialogues(args.script, n, args.turns) for n in levels_n]
    views = photos(1 + 8 + sum(sizes))  # the warm-up's, the batch check's, then each level's
    with tempfile.TemporaryDirectory() as home:
        config = Config(home=str(Path(home) / "ilearn")).override(model=model)
        started = time.perf_counter()
        assistant = Assistant.from_config(config)
        if args.batch_workers is not None:
            assistant.batcher.workers = args.batch_workers
        if args.split is not None:
            assistant.batcher.split = args.split
        if args.gather_s is not None:
            assistant.batcher.gather_s = args.gather_s
        for flag in ("early", "join"):
            if getattr(args, flag):
                setattr(assistant.batcher, flag, True)
        load_s = time.perf_counter() - started
        warm: list[float] = []
        dialogue(assistant, args.script, "warmup", views[0], warm, [])  # lazily built parts load here
        check = batch_check(assistant, args.script, views[1:9])
        if check is not None:
            print(f"generate_batch: {check['equal']} of {check['conversations']} replies equal generate's alone; "
                  f"{check['alone_s']:.2f} s one by one, {check['batch_s']:.2f} s as one batch "
                  f"(x{check['alone_over_batch']:.2f}); reply tokens {check['reply_tokens']}", flush=True)
            if check["features_kept_s"]:
                print(f"the same batch with its photos' vision features kept: {check['features_kept_s']:.2f} s "
                      f"(x{check['batch_over_features_kept']:.2f})", flush=True)
        levels = []
        first = 9
        for level, (n, size) in enumerate(zip(levels_n, sizes, strict=True)):
            result = run_level(assistant, args.script, n, args.turns, level, views[first:first + size])
            first += size
            levels.append(result)
            print(f"{n:>3} users: {result['turns']:>4} turns in {result['wall_s']:6.1f} s = "
                  f"{result['turns_per_s']:6.2f} turns/s, p50 {result['p50_ms']:7.1f} ms, "
                  f"p99 {result['p99_ms']:7.1f} ms, CPU {result['cpu_s_per_turn']:.3f} s/turn, "
                  f"batch {result['mean_batch'] or 0:.1f}, photos encoded {result['photos_encoded']} reused "
                  f"{result['photos_reused']}, errors {result['errors']}, lost {result['lost_turns']}, "
                  f"load {result['load_before'][0]:.1f}",
                  flush=True)
        assistant.close()
    levels = with_ratios(levels)
    report = {"model": args.model, "script": args.script, "turns_min": args.turns,
              "max_batch": assistant.config.model.max_batch, "batch_workers": assistant.batcher.workers,
              "split": assistant.batcher.split, "gather_s": assistant.batcher.gather_s, "early": args.early, "join": args.join,
              "load_s": load_s, "machine": machine(), "batch_check": check, "levels": levels, "goal": goal(levels)}
    print(f"{'users':>5} {'turns/s':>8} {'x1':>6} {'p50 x1':>7} {'p99 x1':>7} {'p99/p50(1)':>10}")
    for x in levels:
        print(f"{x['users']:>5} {x['turns_per_s']:8.2f} {x['tps_ratio']:6.2f} {x['p50_ratio']:7.2f} "
              f"{x['p99_ratio']:7.2f} {x['p99_over_single_p50']:10.2f}")
    print("goal:", report["goal"])
    out = args.out or OUT / f"{args.model}-{args.script}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
