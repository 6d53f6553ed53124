"""A fleet on one PostgreSQL store: 2 and 4 worker processes against one worker on SQLite (the Python API).

    python benchmarks/fleet.py                                  # stub model: the fleet machinery's own cost
    python benchmarks/fleet.py --model tiny --workers 2 4 --clients 8 --dialogues 6

Each level starts its worker processes (each an `Assistant` with its own home folder; the baseline one worker on
a SQLite file, the others all on one PostgreSQL schema). `--clients` simulated users are spread over the
workers; each runs `--dialogues` dialogues one after the other, each about a new object of its own: a question
with the object's photo, a correction ("No, that's <name>."), the session closed (its event admitted, the trust
rules applied). All clients start at once.

Per level: turns per second (answered `respond` calls / wall time), p50 and p99 latency of a turn, each as a
ratio against the one-worker SQLite level of the same run; errors; lost turns (answered, but the turn is not in
the store); duplicate events (a session distilled into the same question and answer twice) and half events
(active with an empty question or answer, or closed sessions never distilled).

Then the cross-worker probe, `--probes` times per level: worker i teaches a fresh correction (a new user and
object) and reports when `close_session` returned; at once worker i+1 (another process) is asked the same
question about the same photo by the same user. Reuse counts when that first answer is the taught name; the
delay is from the teacher's return to the asker's answer (the hand-over between processes included).
Goal (issue 23): 100% reused within 1 s, 0 duplicate or half events, 0 lost turns.

The results go to benchmarks/results/fleet/<model>.json. The PostgreSQL server is `--postgres` (default: the
machine's, postgresql://postgres@127.0.0.1:5432/test); each run uses a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import platform
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "fleet"
QUESTION = "What is this medicine called?"


def photo(key: int) -> bytes:
    """A PNG photo of object `key`: a pattern of coloured blocks no other key shares."""
    from PIL import Image

    rng = np.random.default_rng(key)
    blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(np.kron(blocks, np.ones((16, 16, 1), dtype=np.uint8)))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- one worker process
_ANSWERED = None  # in a worker: the queue every answered turn's id goes to at once (it outlives a killed worker)


def worker(conn, home: str, store: str, model: str, answered) -> None:
    """A worker process: builds its assistant, then serves the controller's commands until "stop"."""
    global _ANSWERED
    _ANSWERED = answered
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ilearn.assistant import Assistant
    from ilearn.config import Config

    config = Config(home=home, store=store).override(model={"backend": model}, feedback={"method": "lexical"})
    assistant = Assistant.from_config(config)
    conn.send("ready")
    try:
        while True:
            command, args = conn.recv()
            if command == "stop":
                break
            conn.send({"load": _load, "teach": _teach, "ask": _ask}[command](assistant, *args))
    finally:
        assistant.close()


def _dialogue(assistant, user: str, key: int, name: str) -> tuple[list[float], list[str]]:
    """Ask about object `key`, correct the answer to `name`, close: the turns' seconds and ids."""
    image = photo(key)
    start = time.perf_counter()
    first = assistant.respond(user, QUESTION, image=image)
    _ANSWERED.put(first.turn_id)
    middle = time.perf_counter()
    fix = assistant.respond(user, f"No, that's {name}.", session_id=first.session_id)
    _ANSWERED.put(fix.turn_id)
    end = time.perf_counter()
    assistant.close_session(first.session_id)
    return [middle - start, end - middle], [first.turn_id, fix.turn_id]


def _load(assistant, clients: list[int], dialogues: int) -> dict:
    """Run `clients` users at once, `dialogues` dialogues each; the turns' latencies and ids, the errors."""
    latencies: list[float] = []
    turn_ids: list[str] = []
    errors: list[str] = []
    barrier = threading.Barrier(len(clients))
    lock = threading.Lock()

    def client(c: int) -> None:
        barrier.wait()
        for d in range(dialogues):
            try:
                secs, ids = _dialogue(assistant, f"client{c}", 1_000_000 + c * 1000 + d, f"medicine{c}x{d}")
            except Exception as exc:  # noqa: BLE001 - counted, the run goes on
                with lock:
                    errors.append(repr(exc))
                continue
            with lock:
                latencies.extend(secs)
                turn_ids.extend(ids)

    threads = [threading.Thread(target=client, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "turn_ids": turn_ids, "errors": errors}


def _teach(assistant, user: str, key: int, name: str) -> float:
    _dialogue(assistant, user, key, name)
    return time.time()


def _ask(assistant, user: str, key: int) -> tuple[str, float]:
    reply = assistant.respond(user, QUESTION, image=photo(key))
    return reply.text, time.time()


# ---------------------------------------------------------------------------------------------- the controller
def start_workers(n: int, store: str, model: str, root: Path, answered) -> list:
    ctx = mp.get_context("spawn")
    workers = []
    for i in range(n):
        parent, child = ctx.Pipe()
        process = ctx.Process(target=worker, args=(child, str(root / f"w{i}"), store, model, answered), daemon=True)
        process.start()
        workers.append((process, parent))
    for _, conn in workers:
        if conn.recv() != "ready":
            raise RuntimeError("a worker did not start")
    return workers


def integrity(store_url: str, turn_ids: list[str]) -> dict:
    """Lost turns, duplicate events and half events in the store after a level."""
    from ilearn import plugins
    from ilearn.config import store_scheme
    from ilearn.types import EventStatus

    store = plugins.create("store", store_scheme(store_url), store_url, create=False)
    try:
        stored = {t.id for s in store.list_sessions() for t in s.turns}
        events = store.list_events()
        seen: dict[tuple, int] = {}
        for e in events:
            key = (e.session_id, e.question, e.answer)
            seen[key] = seen.get(key, 0) + 1
        half = sum(1 for e in events if e.status == EventStatus.ACTIVE and not (e.question.strip() and e.answer.strip()))
        half += sum(1 for s in store.list_sessions(with_turns=False, undistilled=True) if s.closed)
        return {"lost_turns": sum(1 for t in turn_ids if t not in stored),
                "duplicate_events": sum(n - 1 for n in seen.values()), "half_events": half, "events": len(events)}
    finally:
        store.close()


def drain(answered) -> list[str]:
    """Every turn id the workers reported as answered."""
    import queue

    ids = []
    while True:
        try:
            ids.append(answered.get(timeout=1.0))
        except queue.Empty:
            return ids


def level(n_workers: int, store: str, args, root: Path, *, kill: bool = False) -> dict:
    """One level; with `kill`, worker 0 is killed (SIGKILL) `--kill-after` seconds into the load and started
    again afterwards (its start distils what the kill left), before the store is checked."""
    answered = mp.get_context("spawn").Queue()
    workers = start_workers(n_workers, store, args.model, root, answered)
    try:
        shares = [list(range(args.clients))[i::n_workers] for i in range(n_workers)]
        start = time.perf_counter()
        for (_, conn), share in zip(workers, shares, strict=True):
            conn.send(("load", (share, args.dialogues)))
        if kill:
            time.sleep(args.kill_after)
            workers[0][0].kill()
            workers[0][0].join()
        results = [conn.recv() for i, (_, conn) in enumerate(workers) if not (kill and i == 0)]
        wall = time.perf_counter() - start
        latencies = np.array([x for r in results for x in r["latencies"]])
        probes = []
        alive = workers[1:] if kill else workers
        for p in range(args.probes if len(alive) > 1 else 0):
            teacher, asker = alive[p % len(alive)][1], alive[(p + 1) % len(alive)][1]
            name, key, user = f"probe{p}name", 2_000_000 + p, f"prober{p}"
            teacher.send(("teach", (user, key, name)))
            taught_at = teacher.recv()
            asker.send(("ask", (user, key)))
            text, answered_at = asker.recv()
            probes.append({"reused": text.strip().lower() == name, "delay_s": answered_at - taught_at})
        for _, conn in alive:
            conn.send(("stop", ()))
        if kill:  # the killed worker comes back on its home: its start distils the sessions the kill left
            (process, conn), = start_workers(1, store, args.model, root, answered)
            conn.send(("stop", ()))
            process.join(timeout=60)
    finally:
        for process, _ in workers:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    turn_ids = drain(answered)
    out = {"workers": n_workers, "killed": int(kill), "store": store.split("://")[0], "answered": len(turn_ids),
           "turns": len(latencies), "seconds": wall,
           "turns_per_s": len(latencies) / wall, "p50_ms": float(np.percentile(latencies, 50) * 1000),
           "p99_ms": float(np.percentile(latencies, 99) * 1000), "errors": sum(len(r["errors"]) for r in results),
           "error_examples": [e for r in results for e in r["errors"]][:3], **integrity(store, turn_ids)}
    if probes:
        delays = [p["delay_s"] for p in probes]
        out |= {"probes": len(probes), "reused": sum(p["reused"] for p in probes),
                "reused_within_1s": sum(p["reused"] and p["delay_s"] < 1.0 for p in probes),
                "probe_delay_p50_ms": float(np.median(delays) * 1000), "probe_delay_max_ms": max(delays) * 1000}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="stub", help="model backend of every worker (stub, tiny, small)")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4], help="worker counts on PostgreSQL")
    parser.add_argument("--clients", type=int, default=8, help="simulated users at once, spread over the workers")
    parser.add_argument("--dialogues", type=int, default=5, help="dialogues per client (2 turns each)")
    parser.add_argument("--probes", type=int, default=10, help="cross-worker reuse probes per level")
    parser.add_argument("--kill-after", type=float, default=2.0,
                        help="seconds into the load of the last level repeated with one worker killed (0: none)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    import psycopg

    schema = f"bench_fleet_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in args.postgres else "?"
    load_before = os.getloadavg()[0]
    levels = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        try:
            levels.append(level(1, f"sqlite:///{root / 'baseline' / 'ilearn.db'}", args, root / "baseline"))
            for n in args.workers:
                store = f"{args.postgres}{sep}schema={schema}_{n}"
                levels.append(level(n, store, args, root / f"pg{n}"))
            if args.kill_after > 0:
                n = args.workers[-1]
                store = f"{args.postgres}{sep}schema={schema}_kill"
                levels.append(level(n, store, args, root / "kill", kill=True))
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                for name in [*args.workers, "kill"]:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema}_{name} CASCADE")
    base = levels[0]
    for lv in levels:
        lv["turns_per_s_ratio"] = lv["turns_per_s"] / base["turns_per_s"]
        lv["p50_ratio"], lv["p99_ratio"] = lv["p50_ms"] / base["p50_ms"], lv["p99_ms"] / base["p99_ms"]
    report = {"model": args.model, "clients": args.clients, "dialogues": args.dialogues, "cores": os.cpu_count(),
              "python": platform.python_version(), "load_before": load_before, "load_after": os.getloadavg()[0],
              "levels": levels}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.model}.json").write_text(json.dumps(report, indent=1))
    print(f"{'level':<22}{'turns/s':>9}{'ratio':>7}{'p50 ms':>9}{'p99 ms':>9}{'err':>5}{'lost':>5}{'dup':>5}"
          f"{'half':>5}  cross-worker reuse")
    for lv in levels:
        reuse = (f"{lv['reused_within_1s']}/{lv['probes']} within 1 s (p50 {lv['probe_delay_p50_ms']:.0f} ms, "
                 f"max {lv['probe_delay_max_ms']:.0f} ms)" if "probes" in lv else "-")
        label = f"{lv['workers']} x {'pg' if lv['store'].startswith('postgres') else lv['store']}" + \
            (", 1 killed" if lv["killed"] else "")
        print(f"{label:<22}{lv['turns_per_s']:>9.1f}{lv['turns_per_s_ratio']:>7.2f}"
              f"{lv['p50_ms']:>9.0f}{lv['p99_ms']:>9.0f}{lv['errors']:>5}{lv['lost_turns']:>5}"
              f"{lv['duplicate_events']:>5}{lv['half_events']:>5}  {reuse}")
    print(f"load average {load_before:.1f} -> {report['load_after']:.1f} on {os.cpu_count()} cores; "
          f"{OUT / (args.model + '.json')}")


if __name__ == "__main__":
    main()
