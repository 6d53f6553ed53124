"""Privacy and trust, attacked as issue 20 describes: one table of what leaks, what is left, what can be bought.

    python benchmarks/trust.py [--probes 8] [--steps 150] [--no-training]

Tiny model, model-free embedders, SQLite store, each case in a fresh home folder:

- leaks: ana privately teaches a bottle's name ("zorblax"); three users teach three other bottles (shared).
  Other users ask ana's bottle on `--probes` new photos: through retrieval (before `learn`) and through the
  trained model (after `learn`, which promotes whatever the gate says, so that a leak cannot hide behind it);
- traces after forget: ana's id, her answers, her event and session ids searched as raw bytes in every file of
  the home after `forget` (a shared answer, a model version trained on it, an export, another user's turn that
  retrieved it and a correction of it);
- bystanders: two regulars corroborate an answer; then 1 liar, 2 or 5 made-up ids, or one trusted teacher
  (sharing="trusted") teach another answer. Counted: bystanders (8 users, a new photo each) whose answer from
  memory changed, without any review;
- honest corrections locked out: two made-up ids teach a lie first, then 3 regulars correct it: regulars whose
  answer is not the one shared at the end;
- crash windows: a run of 12 events (agreements, a self-correction, a liar, fakes, an honest majority) with the
  process "killed" between committing each event and admitting it (the next start admits it): events whose
  final status or scope differs from the uninterrupted run; the baseline, measured in the same run, is the
  recovery before issue 20 (the restart indexed such an event without the rules).

Results go to benchmarks/results/trust/trust.json.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from ilearn.assistant import Assistant  # noqa: E402
from ilearn.config import Config, RetrievalConfig  # noqa: E402
from ilearn.images import sha256_bytes  # noqa: E402
from ilearn.learning.datasets import export  # noqa: E402
from ilearn.memory.retrieval import DualModalityMemory  # noqa: E402
from ilearn.memory.sqlite import SQLiteStore  # noqa: E402
from ilearn.memory.trust import ADMITTED_KEY, TrustPolicy  # noqa: E402
from ilearn.models.embedders import HashingTextEmbedder, StubImageEmbedder  # noqa: E402
from ilearn.types import Event, ImageRef  # noqa: E402

OUT = Path(__file__).parent / "results" / "trust"
NAME_Q = "What is this medicine called?"
SECRET = "zorblax"
MEDICINES = {"red": ((200, 30, 30), "ibuprofen"), "green": ((30, 160, 60), "aspirin"),
             "blue": ((40, 60, 200), "cetirizine"), "yellow": ((240, 200, 20), SECRET)}
VIEWS = ((-2, 0), (0, 6), (2, 12), (-1, 3), (1, 9))


def bottle(colour: str, shift: int = 0, light: int = 0) -> bytes:
    cap = MEDICINES[colour][0]
    image = Image.new("RGB", (96, 96), tuple(255 - c // 3 - light for c in cap))
    draw = ImageDraw.Draw(image)
    draw.rectangle((22 + shift, 30, 74 + shift, 92), fill=tuple(min(255, c + light) for c in cap))
    draw.rectangle((34 + shift, 12, 62 + shift, 30), fill=cap)
    draw.rectangle((30 + shift, 50, 66 + shift, 62), fill=cap)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def assistant(home: Path, steps: int, retrieval: bool = True) -> Assistant:
    learn = {"recipe": "sft", "trainable": ("vision", "projector", "language"), "lora": (), "max_steps": steps,
             "learning_rate": 3e-3, "batch_size": 8, "heldout_fraction": 0.25, "general_limit": 8, "replay": 0}
    return Assistant.from_config(Config(home=str(home)).override(
        model={"backend": "tiny"}, feedback={"method": "lexical"}, learn=learn, retrieval={"enabled": retrieval}))


def teach(a: Assistant, user: str, image: bytes, answer: str) -> list[Event]:
    r = a.respond(user, NAME_Q, image=image)
    a.respond(user, f"No, that's {answer}.", session_id=r.session_id)
    return a.close_session(r.session_id)


def probes(a: Assistant, n: int, users: list[str]) -> int:
    """Answers naming the secret among `n` new photos of ana's bottle asked by each of `users`."""
    views = [(s, light) for s in (-3, -1, 1, 3) for light in (2, 8)][:n]
    return sum(SECRET in a.respond(u, NAME_Q, image=bottle("yellow", *v)).text.lower() for u in users for v in views)


def leaks(root: Path, n_probes: int, steps: int, training: bool) -> dict:
    home = root / "leaks"
    with assistant(home, steps, retrieval=False) as a:  # every chat becomes an event
        for colour in ("red", "green", "blue"):
            for i, view in enumerate(VIEWS):
                teach(a, f"user{i % 3}", bottle(colour, *view), MEDICINES[colour][1])
        for view in VIEWS:
            teach(a, "ana", bottle("yellow", *view), SECRET)
    with assistant(home, steps) as a:
        others = ["bob", "cy"]
        out = {"retrieval": probes(a, n_probes, others), "probes": n_probes * len(others)}
        if training:
            outcome = a.learn(general=False, promote=False)
            if outcome.version is not None:
                a.registry.promote(outcome.version.id)
            out["training"] = probes(a, n_probes, others)
            out["ana_keeps"] = probes(a, n_probes, ["ana"])
    return out


def traces(root: Path) -> dict:
    home, ana = root / "traces", "zqana.user"
    with assistant(home, 1) as a:
        shared = bottle("red")
        [mine] = teach(a, ana, shared, "zqanashared")
        teach(a, "cy", shared, "zqanashared")
        [private] = teach(a, ana, bottle("yellow"), "zqanaprivate")
        r = a.respond("bob", NAME_Q, image=shared)
        a.respond("bob", "No, that's aspirin.", session_id=r.session_id)
        a.close_session(r.session_id)
        version_id, path = a.registry.new_path()
        (path / "weights.safetensors").write_bytes(b"w")
        a.registry.register(path=path, recipe="sft", event_ids=[mine.id], version_id=version_id,
                            metrics={"gate": {"learning": {"examples": [{"answer": "zqanaprivate"}]}}})
        a.registry.promote(version_id)
        export(a.store.list_events(), a.store, home / "exports" / "all")
        sessions = [s.id for s in a.store.list_sessions(user_id=ana)]
        a.memory.save()
        report = a.forget(ana)
    needles = [ana, "zqanaprivate", mine.id, private.id, *sessions]
    left = sum(n.encode() in p.read_bytes() for p in home.rglob("*") if p.is_file() for n in needles)
    return {"needles": len(needles), "left": left, "versions_replaced": int(report.versions.replaced)}


class World:
    """A robot's memory (stub embedders) with regulars first seen before any attack."""

    def __init__(self, home: Path, sharing: str = "corroboration") -> None:
        self.home, self.sharing = home, sharing
        self.store = SQLiteStore(home / "ilearn.db")
        self.memory = self.open()
        self.n = 0

    def open(self) -> DualModalityMemory:
        config = RetrievalConfig(sharing=self.sharing, image_weight=0.7, text_weight=0.3, threshold=0.8)
        return DualModalityMemory(self.store, StubImageEmbedder(), HashingTextEmbedder(), config, self.home,
                                  trust=TrustPolicy(sharing=self.sharing))

    def event(self, user: str, answer: str, supersedes: str | None = None) -> tuple[Event, Image.Image]:
        self.n += 1
        data = bottle("red", self.n % 5 - 2, 2 * (self.n % 4))
        ref = self.store.put_image(data, ImageRef(sha256_bytes(data), 96, 96, "PNG"))
        return Event(ref, NAME_Q, answer, user, supersedes=supersedes), Image.open(io.BytesIO(data))

    def teach(self, user: str, answer: str, supersedes: str | None = None) -> Event:
        return self.memory.add(*self.event(user, answer, supersedes))

    def bystanders(self) -> list[str]:
        """The top answer from memory for each of 8 bystanders (a new photo each), '' for none."""
        out = []
        for i in range(8):
            image = Image.open(io.BytesIO(bottle("red", i % 5 - 2, 1 + i)))
            matches = self.memory.search(image, NAME_Q, f"bystander{i}")
            out.append(matches[0].event.answer if matches else "")
        return out

    def close(self) -> None:
        self.memory.close()
        self.store.close()


def bystanders(root: Path) -> dict:
    out = {}
    for case, attackers, sharing in (("1 liar", 1, "corroboration"), ("2 made-up ids", 2, "corroboration"),
                                     ("5 made-up ids", 5, "corroboration"), ("1 trusted teacher", 1, "trusted")):
        home = root / case.replace(" ", "_")
        home.mkdir()
        w = World(home, sharing)
        for user in ("ana", "bob"):
            w.store.ensure_user(user)
        if sharing == "trusted":
            w.store.ensure_user("teacher", trusted=True)
        w.teach("ana", "ibuprofen")
        w.teach("bob", "ibuprofen")
        before = w.bystanders()
        for i in range(attackers):
            w.teach("teacher" if sharing == "trusted" else f"fake{case[0]}{i}", "poison")
        after = w.bystanders()
        out[case] = {"changed": sum(a != b for a, b in zip(before, after, strict=True)),
                     "before_right": sum(b == "ibuprofen" for b in before), "review": len(w.memory.review_queue())}
        w.close()
    return out


def locked_out(root: Path) -> dict:
    home = root / "locked_out"
    home.mkdir()
    w = World(home)
    regulars = ["ana", "bob", "cy"]
    for user in regulars:
        w.store.ensure_user(user)
    w.teach("fake1", "poison")
    w.teach("fake2", "poison")
    honest = [w.teach(user, "ibuprofen").id for user in regulars]
    shut = sum(e.status.value != "active" or e.scope.value != "shared" for e in w.store.get_events(honest))
    seen = w.bystanders()
    w.close()
    return {"honest": len(regulars), "locked_out": shut, "bystanders_right": sum(a == "ibuprofen" for a in seen)}


SCRIPT = [("ana", "ibuprofen"), ("bob", "ibuprofen"), ("mallory", "poison"), ("cy", "aspirin"),
          ("cy", "ibuprofen:self"), ("fake1", "poison"), ("fake2", "poison"), ("dan", "ibuprofen"),
          ("fake3", "poison"), ("eve", "naproxen"), ("eve", "ibuprofen:self"), ("fake4", "poison")]


def run_script(home: Path, crash_at: int | None, old_recovery: bool = False) -> dict[int, tuple[str, str]]:
    """The script's final (status, scope) per step; with `crash_at`, that step's event is committed but not
    admitted, and the memory is reopened (a restart) before the next step. `old_recovery`: the baseline, the
    recovery before issue 20 (the event marked admitted, so that the restart only indexes it)."""
    w = World(home)
    for user in ("ana", "bob", "cy", "dan", "eve"):
        w.store.ensure_user(user)
    ids: list[str] = []
    last: dict[str, str] = {}
    for step, (user, answer) in enumerate(SCRIPT):
        answer, _, how = answer.partition(":")
        event, image = w.event(user, answer, supersedes=last.get(user) if how == "self" else None)
        if step == crash_at:
            if old_recovery:
                event = replace(event, provenance={ADMITTED_KEY: "as the old recovery did"})
            w.store.add_events([event])  # committed by the session's close; the process dies before admitting
            w.memory.close()
            w.memory = w.open()  # the next start
        else:
            event = w.memory.add(event, image)
        ids.append(event.id)
        last[user] = event.id
    final = {i: (e.status.value, e.scope.value) for i, e in enumerate(w.store.get_events(ids))}
    w.close()
    return final


def crash_windows(root: Path) -> dict:
    live = run_script(root / "live", None)
    bypassed = {"now": 0, "old": 0}
    for step in range(len(SCRIPT)):
        for how in bypassed:
            crashed = run_script(root / f"crash{step}{how}", step, old_recovery=how == "old")
            bypassed[how] += sum(crashed[i] != live[i] for i in live)
    return {"windows": len(SCRIPT), "bypassed": bypassed["now"], "bypassed_old_recovery": bypassed["old"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probes", type=int, default=8, help="new photos of the private bottle per user (max 8)")
    parser.add_argument("--steps", type=int, default=150, help="training steps of `learn`")
    parser.add_argument("--no-training", action="store_true", help="skip the training leak (a minute or two)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for sub in ("live", *(f"crash{i}{how}" for i in range(len(SCRIPT)) for how in ("now", "old"))):
            (root / sub).mkdir()
        result = {"leaks": leaks(root, min(args.probes, 8), args.steps, not args.no_training),
                  "traces": traces(root), "bystanders": bystanders(root), "locked_out": locked_out(root),
                  "crash": crash_windows(root)}
    result["seconds"] = time.perf_counter() - start
    rows = [("private answers leaked through retrieval", f"{result['leaks']['retrieval']} of "
             f"{result['leaks']['probes']} probes", 0)]
    if "training" in result["leaks"]:
        rows.append(("private answers leaked through training", f"{result['leaks']['training']} of "
                     f"{result['leaks']['probes']} probes (ana herself: {result['leaks']['ana_keeps']})", 0))
    rows.append(("traces left after forget", f"{result['traces']['left']} of {result['traces']['needles']} needles"
                 f" (serving version replaced: {bool(result['traces']['versions_replaced'])})", 0))
    for case, r in result["bystanders"].items():
        rows.append((f"bystanders' answers changed by {case}", f"{r['changed']} of 8 ({r['review']} in review)", 0))
    rows.append(("honest corrections locked out", f"{result['locked_out']['locked_out']} of "
                 f"{result['locked_out']['honest']}", 0))
    rows.append(("crash windows tried / rules bypassed", f"{result['crash']['windows']} / "
                 f"{result['crash']['bypassed']} (old recovery: {result['crash']['bypassed_old_recovery']})", 0))
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'measured':<48} goal")
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value:<48} {goal}")
    print(f"({result['seconds']:.0f} s)")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "trust.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
