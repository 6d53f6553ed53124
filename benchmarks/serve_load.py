"""`ilearn serve` under load: 1, 10 and 50 concurrent HTTP clients on loopback, a learning job promoting a version
in the middle, and the server killed (kill -9) mid-load and restarted.

    python benchmarks/serve_load.py                        # tiny model: levels 1 10 50, learn, kill
    python benchmarks/serve_load.py --model small          # the embedded default model (first load ~30 s)
    python benchmarks/serve_load.py --levels 1 10 --turns 40 --phases levels
    python benchmarks/serve_load.py --levels 50 --phases levels --robots 5 --fleet 2 4   # a fleet on PostgreSQL

The server is a real `ilearn serve` process (a fresh home in a temporary folder, pharmacy facets, keys made
beforehand). Each client holds its own HTTP connection and runs dialogues one after the other with no pause:
an ambiguous question with a photo ("What is this?", a clarifying question), the reply to it (an answer), a
spoken correction ("No, that's X."), then a new photo with a precise question (a new session) and an explicit
thumbs up on its answer; its sessions are closed at the end. A turn is one `POST /v1/turns`. Every dialogue is a
new user and answers stay private (`retrieval.sharing` private), so no turn is answered from what an earlier
level taught: every level does the same work per turn (corrections shared across users would let later levels
reuse stored answers instead of asking the model).

Per level: turns per second (turns / wall time), p50 and p99 latency of a turn, errors (a non-200 reply or a
transport error), lost turns (a turn answered with 200 whose reply is not in its session afterwards), and the
ratio of turns per second against the one-client level of the same run. Phases:

- `levels`: each level in turn, bounded by `--turns` turns (at least one dialogue per client) and `--seconds`;
- `learn`: the server restarted with corrections shared once two users agree (what the shared model learns
  from), the 10-client level again, running until an admin's learning job (started after 15 s, promote on) has
  ended and a new version serves (promoted by hand if the gate refused it), plus 5 s: errors, lost turns, the
  job's outcome and the model versions the replies name (both the base and the new one);
- `kill`: the 10-client level, the server killed with SIGKILL half-way, restarted on the same home: every turn
  that got an answer before the kill must be in the store after the restart (lost turns = 0).

With `--fleet W ...`, each of the levels runs again on `ilearn serve --workers W` over one PostgreSQL schema
(`--postgres`; a schema per fleet, dropped afterwards; the keys in it): W worker processes on one port, a
client's turns on whichever worker takes its connection, each row with its turns per second as a ratio against
the one-worker SQLite level of the same clients. `--robots R` spreads the clients over R robots (a key each; a
robot key sees only its own sessions, so lost turns are read back with each turn's own key). After each level,
`--probes N` cross-worker probes: a new user shows a new object to one worker (a connection whose `/readyz`
names it), corrects it ("No, that's <name>.") and closes the session; at once the same user asks the same
question with the same photo on a connection held by another worker: reused when that first reply is the taught
name, the delay counted from the close's reply. With `--fleet-kill S`, one worker process is killed (SIGKILL)
S seconds into each fleet's largest level: its clients get transport errors and stop, uvicorn starts another
worker, and every turn answered before must still be stored (lost turns 0), with no half or duplicate event.

Goals (issue 21): 50 clients, 0 errors, 0 lost turns; with `small`, 10 clients >= 2.5x the turns per second of
one client. Issue 23: 50 clients over several robots on 2 and 4 workers, 0 errors, 0 lost turns. Results go to benchmarks/results/serve_load/<model>.json; the load average is recorded per level.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

OUT = Path(__file__).parent / "results" / "serve_load"
CORRECTIONS = ["ibuprofen", "aspirin", "paracetamol", "loratadine"]


def photos(n: int) -> list[str]:
    """`n` base64 PNG photos of pharmacy bottles (new views of the scenario's items)."""
    from ilearn.evaluation.scenarios.pharmacy import pharmacy_scenario

    scenario = pharmacy_scenario(seed=0, n_teach=1, n_test=2)
    views = [view for item in scenario.items for view in item.test_views]
    out = []
    for i in range(n):
        buf = io.BytesIO()
        views[i % len(views)].save(buf, format="PNG")
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


# ---------------------------------------------------------------------------------------------- the server
class Server:
    """An `ilearn serve` process on a free loopback port."""

    def __init__(self, home: Path, config: Path, model: str, store: str = "", workers: int = 1) -> None:
        self.home, self.config, self.model, self.store, self.workers = home, config, model, store, workers
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = open(home / "server.log", "a")  # noqa: SIM115 (kept open for the server's life)

    def start(self, timeout_s: float = 600.0) -> float:
        """Start and wait until /readyz answers; the seconds it took."""
        start = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ilearn.cli", "serve", "--home", str(self.home), "--config", str(self.config),
             "--model", self.model, "--port", str(self.port), *(["--store", self.store] if self.store else []),
             *(["--workers", str(self.workers)] if self.workers > 1 else [])], stdout=self.log, stderr=self.log,
            env=env)
        while time.perf_counter() - start < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"ilearn serve exited ({self.process.returncode}); see {self.home}/server.log")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return time.perf_counter() - start
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("ilearn serve did not become ready")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------- the clients
@dataclass
class Tally:
    """What the clients of one level saw."""

    latencies: list[float] = field(default_factory=list)
    answered: list[tuple[str, str, str]] = field(default_factory=list)  # (session, reply turn, key) of 200 replies
    errors: list[str] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)
    kinds: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


def client(url: str, token: str, name: str, pictures: list[str], min_turns: int, deadline: float,
           tally: Tally) -> None:
    """One client: dialogues until it has sent `min_turns` turns (whole dialogues) or the deadline passes."""
    headers = {"Authorization": f"Bearer {token}"}
    turns, dialogue = 0, 0
    with httpx.Client(base_url=url, headers=headers, timeout=300) as http:
        while turns < min_turns and time.monotonic() < deadline and not tally.stop.is_set():
            first, second = pictures[dialogue % len(pictures)], pictures[(dialogue + 1) % len(pictures)]
            correction = CORRECTIONS[dialogue % len(CORRECTIONS)]
            script = [("What is this?", first, False), ("its name", None, True), (f"No, that's {correction}.", None, True),
                      ("What is this medicine used for?", second, True)]
            session, sessions = None, []
            for text, picture, same in script:
                body = {"user": f"{name}-d{dialogue}", "text": text, "image_base64": picture}
                if same and session is not None:
                    body["session_id"] = session
                reply = _turn(http, body, tally, token)
                turns += 1
                if reply is None:
                    return  # the server is gone (killed) or refused: this client stops
                session = reply["session_id"]
                if session not in sessions:
                    sessions.append(session)
            if _post(http, f"/v1/sessions/{session}/feedback", {"rating": "up"}, tally) is None:
                return
            for sid in sessions:
                if _post(http, f"/v1/sessions/{sid}/close", None, tally) is None:
                    return
            dialogue += 1


def _turn(http: httpx.Client, body: dict, tally: Tally, token: str) -> dict | None:
    start = time.perf_counter()
    reply = _post(http, "/v1/turns", body, tally)
    if reply is not None:
        with tally.lock:
            tally.latencies.append(time.perf_counter() - start)
            tally.answered.append((reply["session_id"], reply["turn_id"], token))
            tally.versions.add(reply["model_version"])
            tally.kinds[reply["kind"]] = tally.kinds.get(reply["kind"], 0) + 1
    return reply


def _post(http: httpx.Client, path: str, body: dict | None, tally: Tally) -> dict | None:
    try:
        r = http.post(path, json=body)
    except httpx.TransportError as exc:
        with tally.lock:
            tally.errors.append(f"{path}: {type(exc).__name__}")
        return None
    if r.status_code != 200:
        with tally.lock:
            tally.errors.append(f"{path}: {r.status_code} {r.text[:200]}")
        return None
    return r.json()


def run_level(url: str, tokens: str | list[str], n_clients: int, min_turns: int, seconds: float, level: str,
              pictures: list[str], during=None) -> tuple[dict, Tally]:
    """`n_clients` clients at once, client i with key i of `tokens` (round robin: one robot each); `during(tally)`
    runs in its own thread meanwhile (a learning job, a kill)."""
    tokens = [tokens] if isinstance(tokens, str) else tokens
    tally = Tally()
    per_client = max(4, -(-min_turns // n_clients))
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=client, args=(url, tokens[i % len(tokens)], f"{level}-u{i}", pictures,
                                                     per_client, deadline, tally)) for i in range(n_clients)]
    load_before = os.getloadavg()
    start = time.perf_counter()
    for t in threads:
        t.start()
    side = threading.Thread(target=during, args=(tally,)) if during is not None else None
    if side is not None:
        side.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if side is not None:
        side.join()
    lat = np.array(tally.latencies) if tally.latencies else np.array([np.nan])
    row = {"level": level, "clients": n_clients, "turns": len(tally.latencies), "seconds": round(wall, 2),
           "turns_per_s": round(len(tally.latencies) / wall, 3), "p50_s": round(float(np.percentile(lat, 50)), 4),
           "p99_s": round(float(np.percentile(lat, 99)), 4), "errors": len(tally.errors),
           "error_examples": sorted(set(tally.errors))[:3], "versions": sorted(tally.versions), "kinds": tally.kinds,
           "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()]}
    return row, tally


def lost_turns(url: str, answered: list[tuple[str, str, str]]) -> int:
    """Turns answered with 200 whose reply is not in its session now (read with the key that sent the turn)."""
    by_session: dict[tuple[str, str], set[str]] = {}
    for session, turn, token in answered:
        by_session.setdefault((token, session), set()).add(turn)
    lost = 0
    with httpx.Client(base_url=url, timeout=120) as http:
        for (token, session), turns in by_session.items():
            r = http.get(f"/v1/sessions/{session}", headers={"Authorization": f"Bearer {token}"})
            stored = {t["id"] for t in r.json()["turns"]} if r.status_code == 200 else set()
            lost += len(turns - stored)
    return lost


# ---------------------------------------------------------------------------------------------- phases
def learning_job(url: str, admin: str, after_s: float, result: dict):
    """A side task: start a learning job (promote on) after `after_s` and follow it to its end; if the gate refused
    the candidate, promote it by hand, so that a new version always takes over mid-load; then let the clients run
    a few more seconds and stop them."""

    def run(tally: Tally) -> None:
        try:
            time.sleep(after_s)
            headers = {"Authorization": f"Bearer {admin}"}
            job = httpx.post(f"{url}/v1/learn", json={"general": False}, headers=headers, timeout=60).json()
            while job.get("status") in ("queued", "running"):
                time.sleep(1.0)
                job = httpx.get(f"{url}/v1/learn/{job['id']}", headers=headers, timeout=60).json()
            result.update(job)
            outcome = job.get("outcome") or {}
            if outcome.get("version") and not outcome.get("promoted"):
                r = httpx.post(f"{url}/v1/model-versions/{outcome['version']}/promote", headers=headers, timeout=300)
                result["promoted_by_hand"] = r.status_code == 200
            with tally.lock:
                result["turns_before_swap"] = len(tally.answered)
            time.sleep(5.0)
        finally:
            tally.stop.set()

    return run


def killer(server: Server, after_s: float, result: dict):
    def run(tally: Tally) -> None:
        time.sleep(after_s)
        with tally.lock:
            result["answered_before_kill"] = len(tally.answered)
        server.kill()
        result["killed_at_s"] = after_s

    return run


def make_keys(location: str, n_robots: int) -> tuple[list[str], str]:
    """Keys of `n_robots` robots and an admin's, without a rate limit, in the key store at `location`."""
    from ilearn.serve.keys import KeyLimits, KeyStore

    keys = KeyStore(location)
    unlimited = KeyLimits(rate_per_minute=10_000_000)
    robots = [keys.create(f"bench{i}" if i else "bench", limits=unlimited)[1] for i in range(n_robots)]
    admin = keys.create("bench", "admin", limits=unlimited)[1]
    keys.close()
    return robots, admin


def connections(url: str, token: str = "", n: int = 16) -> list[tuple[httpx.Client, str]]:
    """`n` HTTP clients opened at once, each with the name of the worker its (kept-alive) connection reached
    (`/readyz`; "" when it did not answer). New connections go to whichever worker accepts first, which on an idle
    server is mostly the same one: opening several at once spreads them."""
    from concurrent.futures import ThreadPoolExecutor

    def connect(_: int) -> tuple[httpx.Client, str]:
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=300)
        try:
            return http, http.get("/readyz").json().get("worker", "")
        except (httpx.HTTPError, ValueError):
            return http, ""

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(connect, range(n)))


def worker_client(url: str, token: str, avoid: str | None = None, tries: int = 20) -> tuple[httpx.Client, str]:
    """An HTTP client whose connection is held by a worker other than `avoid`, and that worker's name: each try
    opens 16 connections at once (`connections`) and keeps one that another worker took."""
    for _ in range(tries):
        opened = connections(url, token)
        chosen = next(((h, w) for h, w in opened if w and w != avoid), None)
        for http, _ in opened:
            if chosen is None or http is not chosen[0]:
                http.close()
        if chosen is not None:
            return chosen
    raise RuntimeError(f"no connection reached a worker other than {avoid} in {tries} tries of 16")


def cross_worker_probes(url: str, token: str, n: int, level: str) -> dict:
    """`n` fresh corrections taught through one worker and asked at once through another (module docstring)."""
    from fleet import QUESTION, photo

    reused, delays, pairs, in_time = 0, [], [], 0
    for k in range(n):
        name = f"probe{k}-{uuid_hex()}"
        picture = base64.b64encode(photo(10_000 + 97 * k + len(level))).decode()
        user = f"{level}-probe{k}-{uuid_hex()}"
        teacher, taught_by = worker_client(url, token)
        asker, asked_by = worker_client(url, token, avoid=taught_by)
        try:
            first = teacher.post("/v1/turns", json={"user": user, "text": QUESTION, "image_base64": picture}).json()
            teacher.post("/v1/turns", json={"user": user, "text": f"No, that's {name}.",
                                            "session_id": first["session_id"]}).raise_for_status()
            teacher.post(f"/v1/sessions/{first['session_id']}/close").raise_for_status()
            taught = time.perf_counter()
            reply = asker.post("/v1/turns", json={"user": user, "text": QUESTION, "image_base64": picture}).json()
            delays.append(time.perf_counter() - taught)
        finally:
            teacher.close()
            asker.close()
        hit = name.lower() in reply.get("text", "").lower()
        reused += hit
        in_time += hit and delays[-1] <= 1.0
        pairs.append((taught_by, asked_by))
    return {"probes": n, "reused": reused, "reused_within_1s": in_time,
            "delay_p50_ms": round(1000 * float(np.median(delays)), 1) if delays else None,
            "delay_max_ms": round(1000 * max(delays), 1) if delays else None,
            "worker_pairs": sorted({f"{a}->{b}" for a, b in pairs})}


def uuid_hex() -> str:
    import uuid

    return uuid.uuid4().hex[:6]


def worker_pids(server: Server) -> list[int]:
    """The worker processes of `ilearn serve --workers N` (children of the server running multiprocessing's spawn)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat[1]) == server.process.pid and "spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def worker_killer(server: Server, after_s: float, result: dict):
    """A side task: SIGKILL one worker process `after_s` into the level; then wait (up to 300 s) until uvicorn's
    replacement answers, i.e. bursts of new connections reach as many distinct workers as before."""

    def run(tally: Tally) -> None:
        time.sleep(after_s)
        before = worker_pids(server)
        with tally.lock:
            result["answered_before_kill"] = len(tally.answered)
        os.kill(before[0], signal.SIGKILL)
        killed = time.monotonic()
        result.update(killed_at_s=after_s, workers_before=len(before))

        while time.monotonic() - killed < 300:
            opened = connections(server.url)
            seen = {worker for _, worker in opened} - {""}
            for http, _ in opened:
                http.close()
            if len(seen) == len(before) and before[0] not in worker_pids(server):
                result["replaced_after_s"] = round(time.monotonic() - killed, 1)
                break
            time.sleep(0.5)

    return run


def store_events(store: str) -> dict:
    """Duplicate events (a session distilled into the same question and answer twice) and half events (active with
    an empty question or answer, or a closed session never distilled), read from the fleet's schema."""
    import psycopg

    from ilearn.memory.postgres import parse_url

    conninfo, schema = parse_url(store)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        duplicates = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {schema}.events GROUP BY session_id, "
                                  "question, answer HAVING count(*) > 1) d").fetchone()[0]
        half = conn.execute(f"SELECT count(*) FROM {schema}.events WHERE status = 'active' AND "
                            "(question = '' OR answer = '')").fetchone()[0]
        undistilled = conn.execute(f"SELECT count(*) FROM {schema}.sessions WHERE closed AND NOT distilled"
                                   ).fetchone()[0]
        events = conn.execute(f"SELECT count(*) FROM {schema}.events").fetchone()[0]
    return {"events": events, "duplicate_events": duplicates, "half_events": half + undistilled}


def run_fleets(args: argparse.Namespace, home: Path, pictures: list[str], baseline: list[dict]) -> list[dict]:
    """The levels again on `ilearn serve --workers W` for each W of `args.fleet`, all workers on one PostgreSQL
    schema of their own (dropped afterwards); each row's ratio against the SQLite level of the same clients."""
    import uuid

    import psycopg

    by_clients = {row["clients"]: row for row in baseline}
    sep = "&" if "?" in args.postgres else "?"
    schemas, rows = [], []
    try:
        for workers in args.fleet:
            schema = f"bench_serve_{uuid.uuid4().hex[:8]}"
            schemas.append(schema)
            store = f"{args.postgres}{sep}schema={schema}"
            fleet_home = home / f"fleet-{workers}"
            fleet_home.mkdir()
            robots, _ = make_keys(store, args.robots)
            server = Server(fleet_home, write_config(fleet_home, args.max_new_tokens, args.learn_steps), args.model,
                            store=store, workers=workers)
            started = round(server.start(), 1)
            try:
                for n in args.levels:
                    kill: dict = {}
                    during = (worker_killer(server, args.fleet_kill, kill)
                              if args.fleet_kill and n == max(args.levels) else None)
                    row, tally = run_level(server.url, robots, n, args.turns, args.seconds, f"w{workers}c{n}",
                                           pictures, during=during)
                    row.update(workers=workers, store="postgresql", start_s=started,
                               lost_turns=lost_turns(server.url, tally.answered))
                    if kill:
                        row["worker_killed"] = kill
                    if args.probes:
                        row["cross_worker"] = cross_worker_probes(server.url, robots[0], args.probes, row["level"])
                    row.update(store_events(store))
                    base = by_clients.get(n)
                    row["turns_per_s_ratio_vs_sqlite"] = (round(row["turns_per_s"] / base["turns_per_s"], 2)
                                                          if base and base["turns_per_s"] else None)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                server.stop()
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return rows


def write_config(home: Path, max_new_tokens: int, learn_steps: int, sharing: str = "private") -> Path:
    from ilearn.dialogue.clarify import PHARMACY_FACETS, facet_settings

    config = {"model": {"max_new_tokens": max_new_tokens}, "clarify": {"facets": list(facet_settings(PHARMACY_FACETS))},
              "learn": {"max_steps": learn_steps}, "retrieval": {"sharing": sharing}}
    path = home / f"settings-{sharing}.json"
    path.write_text(json.dumps(config))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny or small")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 10, 50], help="concurrent clients per level")
    parser.add_argument("--turns", type=int, default=80, help="turns per level at least (whole dialogues)")
    parser.add_argument("--seconds", type=float, default=300.0, help="a level stops starting dialogues after this")
    parser.add_argument("--phases", nargs="+", default=["levels", "learn", "kill"], choices=["levels", "learn", "kill"])
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--learn-steps", type=int, default=5, help="training steps of the mid-load learning job")
    parser.add_argument("--robots", type=int, default=1, help="robots (a key each) the clients are spread over")
    parser.add_argument("--fleet", type=int, nargs="*", default=[],
                        help="worker counts of `ilearn serve --workers W` on PostgreSQL to run the levels on too")
    parser.add_argument("--probes", type=int, default=0,
                        help="cross-worker probes after each fleet level (a correction taught through one worker, "
                             "asked at once through another)")
    parser.add_argument("--fleet-kill", type=float, default=0.0,
                        help="kill one worker process this many seconds into each fleet's largest level (0: no)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    pictures = photos(8)
    report: dict = {"model": args.model, "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "args": {k: str(v) for k, v in vars(args).items()}, "levels": []}
    with tempfile.TemporaryDirectory(prefix="ilearn-serve-load-") as tmp:
        home = Path(tmp)
        robots, admin = make_keys(str(home / "keys.db"), args.robots)
        robot = robots[0]
        server = Server(home, write_config(home, args.max_new_tokens, args.learn_steps), args.model)
        report["start_s"] = round(server.start(), 1)
        try:
            if "levels" in args.phases:
                for n in args.levels:
                    row, tally = run_level(server.url, robots, n, args.turns, args.seconds, f"c{n}", pictures)
                    row["lost_turns"] = lost_turns(server.url, tally.answered)
                    report["levels"].append(row)
                    print(json.dumps(row), flush=True)
                base = report["levels"][0]["turns_per_s"] if report["levels"] else None
                for row in report["levels"]:
                    row["turns_per_s_ratio"] = round(row["turns_per_s"] / base, 2) if base else None
            if "learn" in args.phases:  # the shared model learns from shared (corroborated) answers only
                server.stop()
                server.config = write_config(home, args.max_new_tokens, args.learn_steps, "corroboration")
                server.start()
                job: dict = {}
                # the clients run until the new version has served for a while (the job stops them), within 4x --seconds
                row, tally = run_level(server.url, robot, 10, 10**9, 4 * args.seconds, "learn", pictures,
                                       during=learning_job(server.url, admin, 15.0, job))
                row["lost_turns"] = lost_turns(server.url, tally.answered)
                row["job"] = {k: job.get(k) for k in ("status", "outcome", "error", "promoted_by_hand",
                                                      "turns_before_swap")}
                report["learn"] = row
                print(json.dumps(row), flush=True)
            if "kill" in args.phases:
                result: dict = {}
                row, tally = run_level(server.url, robot, 10, 10 * args.turns, args.seconds, "kill", pictures,
                                       during=killer(server, 8.0, result))
                result["restart_s"] = round(server.start(), 1)
                result["answered"] = len(tally.answered)
                result["lost_turns"] = lost_turns(server.url, tally.answered)
                result["client_errors_at_kill"] = row["errors"]
                report["kill"] = result
                print(json.dumps(result), flush=True)
        finally:
            server.stop()
        if args.fleet:
            report["fleet"] = run_fleets(args, home, pictures, report["levels"])
    levels = {row["clients"]: row for row in report["levels"]}
    report["goals"] = {
        "50_clients_0_errors_0_lost": (levels[50]["errors"] == 0 and levels[50]["lost_turns"] == 0)
        if 50 in levels else None,
        "10_clients_turns_per_s_ratio": levels[10]["turns_per_s_ratio"] if 10 in levels and 1 in levels else None,
        "kill_0_lost": report["kill"]["lost_turns"] == 0 if "kill" in report else None,
    }
    if report.get("fleet"):
        big = [r for r in report["fleet"] if r["clients"] >= 50]
        whole = [r for r in big if "worker_killed" not in r]
        report["goals"]["fleet_50_clients_0_errors_0_lost"] = (
            all(r["errors"] == 0 and r["lost_turns"] == 0 for r in whole) if whole else None)
        killed = [r for r in report["fleet"] if "worker_killed" in r]
        report["goals"]["fleet_worker_killed_0_lost"] = all(r["lost_turns"] == 0 for r in killed) if killed else None
        report["goals"]["fleet_0_lost_0_duplicate_0_half"] = all(
            r["lost_turns"] == 0 and r["duplicate_events"] == 0 and r["half_events"] == 0 for r in report["fleet"])
        probes = [r["cross_worker"] for r in report["fleet"] if "cross_worker" in r]
        if probes:
            report["goals"]["fleet_reused_within_1s"] = (f"{sum(p['reused_within_1s'] for p in probes)} of "
                                                        f"{sum(p['probes'] for p in probes)}")
    print(json.dumps(report["goals"]))
    out = args.out or OUT / f"{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
