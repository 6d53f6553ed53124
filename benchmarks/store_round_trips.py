"""Round trips to the PostgreSQL server per dialogue: what a fleet worker pays on top of a SQLite one.

    python benchmarks/store_round_trips.py                   # stub model, 4 dialogues
    python benchmarks/store_round_trips.py --dialogues 8 --by-caller

One `Assistant` (stub model and embedders, so only the store's cost is measured) on a schema of its own on the
PostgreSQL server (`--postgres`, default the machine's; dropped afterwards). Each dialogue is a new user's
question with a photo of a new object, their correction ("No, that's <name>."), and the session closed (its
event distilled, admitted and indexed). Counted per phase (first turn, second turn, close): every statement
the store sends (psycopg's `Cursor.execute`) plus BEGIN and COMMIT of every transaction block (two round trips
each; a nested block's savepoint is counted the same). The first dialogue also pays one-time reads (model
versions, the first index catch-up); later ones show the steady state, growing slowly with the events the first
turn's retrieval reads back. `--by-caller` lists, for the last dialogue, which store method sent what.

Results: benchmarks/results/store_round_trips/round_trips.json.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import traceback
import uuid
from pathlib import Path

OUT = Path(__file__).parent / "results" / "store_round_trips"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--dialogues", type=int, default=4)
    parser.add_argument("--by-caller", action="store_true")
    args = parser.parse_args()

    import psycopg
    from PIL import Image

    from ilearn.assistant import Assistant
    from ilearn.config import Config

    phase = ["open"]
    counts: collections.Counter[str] = collections.Counter()
    callers: collections.Counter[str] = collections.Counter()

    def caller() -> str:
        frames = [f for f in traceback.extract_stack()[:-2] if "/ilearn/" in f.filename]
        return " < ".join(f"{f.filename.split('/ilearn/')[-1]}:{f.name}" for f in reversed(frames[-3:]))

    execute, enter = psycopg.Cursor.execute, psycopg.Transaction.__enter__

    def counted_execute(self, query, params=None, **kwargs):
        counts[phase[0]] += 1
        callers[f"{phase[0]} | {caller()}"] += 1
        return execute(self, query, params, **kwargs)

    def counted_enter(self):
        counts[phase[0]] += 2
        callers[f"{phase[0]} | BEGIN+COMMIT {caller()}"] += 2
        return enter(self)

    psycopg.Cursor.execute, psycopg.Transaction.__enter__ = counted_execute, counted_enter
    schema = f"bench_rt_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in args.postgres else "?"
    config = Config(home=f"/tmp/{schema}", store=f"{args.postgres}{sep}schema={schema}").override(
        model={"backend": "stub"})
    rows = []
    try:
        with Assistant.from_config(config) as assistant:
            for k in range(args.dialogues):
                picture = io.BytesIO()
                Image.new("RGB", (64, 64), (40 + 50 * (k % 4), 200 - 30 * (k % 6), 90)).save(picture, "PNG")
                counts.clear()
                callers.clear()
                phase[0] = "turn 1 (question, photo)"
                first = assistant.respond(f"user-{k}", "What is this medicine called?", image=picture.getvalue())
                phase[0] = "turn 2 (correction)"
                assistant.respond(f"user-{k}", f"No, that's medicine {k}.", session_id=first.session_id)
                phase[0] = "close (distil, admit, index)"
                assistant.close_session(first.session_id)
                phase[0] = "open"
                rows.append({"dialogue": k, **counts, "total": sum(counts.values())})
                print(f"dialogue {k}: " + ", ".join(f"{p} {n}" for p, n in counts.items())
                      + f"; total {sum(counts.values())}")
    finally:
        psycopg.Cursor.execute, psycopg.Transaction.__enter__ = execute, enter
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    if args.by_caller:
        print("\nthe last dialogue, by caller:")
        for key, n in sorted(callers.items()):
            print(f"{n:3d}  {key}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "round_trips.json").write_text(json.dumps({"dialogues": rows, "by_caller": dict(callers)}, indent=1))


if __name__ == "__main__":
    main()
