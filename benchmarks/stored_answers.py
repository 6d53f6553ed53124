"""How many answers an `objects` experiment stored are right: its memory checked against the folder's facts.

    python benchmarks/stored_answers.py REPORT_DIR OBJECTS_DIR [--db work/teach/ilearn.db] [--list]

Every event in the deployment's store (by default REPORT_DIR/work/teach/ilearn.db, where ``ilearn experiment``
keeps the deployment that rounds R1-R2 taught) is matched to its object by its picture (the decoded pixels of
the stored image against every picture of OBJECTS_DIR) and to the fact its question asks about ("used for" ->
``use``, "called"/"name"/"what is this" -> ``name``, any other facts.json key named in the question). Its answer
is *right* when it equals that fact (case, punctuation and spacing aside), *empty* when no answer was stored (a
user who gave up), else *wrong*. Counts are given per status (active events are the ones retrieval and training
use) and the wrong active answers are listed.

It also reads the teaching dialogues: an assistant answer that repeats the answer of a reference it was given
(an event retrieved for the turn) is a *repeat*, reused outright or copied from the prompt; a wrong repeat is
the false reuse a user sees (retrieval handing one object's answer to another). Counted per round prefix of the
user ids ("R1-teach-ana" -> R1). Results go to benchmarks/results/stored_answers/NAME.json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sqlite3
from collections import Counter
from pathlib import Path

from PIL import Image

OUT = Path(__file__).parent / "results" / "stored_answers"


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def pixel_key(image: Image.Image) -> str:
    rgb = image.convert("RGB")
    return hashlib.sha256(rgb.tobytes() + repr(rgb.size).encode()).hexdigest()


def read_objects(folder: Path) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(pixel key -> object folder name, object folder name -> facts) of an objects folder."""
    objects, facts = {}, {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        path = sub / "facts.json"
        facts[sub.name] = json.loads(path.read_text()) if path.is_file() else {}
        facts[sub.name].setdefault("name", " ".join(sub.name.replace("_", " ").replace("-", " ").split()))
        for picture in sub.iterdir():
            if picture.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}:
                objects[pixel_key(Image.open(picture))] = sub.name
    return objects, facts


def asked_fact(question: str, keys: list[str]) -> str | None:
    """The fact a question asks about (None when it cannot tell)."""
    q = normalise(question)
    for key in keys:
        if key not in ("name", "use") and normalise(key) in q:
            return key
    if "used for" in q or re.search(r"\buse\b", q):
        return "use"
    if re.search(r"\b(called|name|what is this)\b", q):
        return "name"
    return None


def audit(db_path: Path, folder: Path) -> dict:
    """Counts of right / wrong / empty stored answers, per status, and the wrong active ones."""
    objects, facts = read_objects(folder)
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    rows = db.execute("SELECT e.question, e.answer, e.status, e.label, i.data FROM events e "
                      "LEFT JOIN images i ON i.sha256 = e.image_sha ORDER BY e.created, e.rowid").fetchall()
    counts: Counter = Counter()
    wrong = []
    for question, answer, status, label, data in rows:
        obj = objects.get(pixel_key(Image.open(io.BytesIO(data)))) if data else None
        key = asked_fact(question, list(facts.get(obj, {}))) if obj else None
        if not answer.strip():
            verdict = "empty"
        elif obj is None or key is None or key not in facts[obj]:
            verdict = "unknown"
        else:
            verdict = "right" if normalise(answer) == normalise(facts[obj][key]) else "wrong"
        counts[(status, verdict)] += 1
        if status == "active" and verdict == "wrong":
            wrong.append({"object": obj, "question": question, "answer": answer, "label": label,
                          "expected": facts[obj][key]})
    by_status: dict[str, dict[str, int]] = {}
    for (status, verdict), n in sorted(counts.items()):
        by_status.setdefault(status, {})[verdict] = n
    active = by_status.get("active", {})
    return {"db": str(db_path), "objects": str(folder), "events": len(rows), "by_status": by_status,
            "active_right": active.get("right", 0), "active": sum(active.values()), "wrong_active": wrong}


def repeats(db_path: Path, folder: Path) -> dict[str, dict[str, int]]:
    """Per round: assistant answers, those given with references, those repeating a reference's answer, and
    the wrong ones among the repeats."""
    objects, facts = read_objects(folder)
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    answers = {i: a for i, a in db.execute("SELECT id, answer FROM events")}
    images = dict(db.execute("SELECT sha256, data FROM images"))
    out: dict[str, dict[str, int]] = {}
    for session, user in db.execute("SELECT id, user_id FROM sessions ORDER BY created, rowid").fetchall():
        counts = out.setdefault(user.split("-")[0], Counter())
        image = None
        for role, kind, text, sha, retrieved, question in db.execute(
                "SELECT role, kind, text, image_sha, retrieved, precise_question FROM turns "
                "WHERE session_id = ? ORDER BY seq", (session,)):
            image = sha or image
            if role != "assistant" or kind != "answer":
                continue
            counts["answers"] += 1
            given = [answers.get(e, "") for e in json.loads(retrieved or "[]")]
            counts["with_references"] += bool(given)
            if not any(a.strip() and normalise(a) == normalise(text) for a in given):
                continue
            counts["repeats"] += 1
            obj = objects.get(pixel_key(Image.open(io.BytesIO(images[image])))) if image in images else None
            key = asked_fact(question or "", list(facts.get(obj, {}))) if obj else None
            counts["wrong_repeats"] += not (key and normalise(text) == normalise(facts[obj].get(key, "")))
    return {r: dict(c) for r, c in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path, help="an `ilearn experiment objects` report folder")
    parser.add_argument("objects", type=Path, help="the objects folder it ran on")
    parser.add_argument("--db", default="work/teach/ilearn.db", help="the store, relative to the report folder")
    parser.add_argument("--list", action="store_true", help="print the wrong active answers")
    args = parser.parse_args()
    result = audit(args.report / args.db, args.objects)
    result["repeats"] = repeats(args.report / args.db, args.objects)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.report.resolve().name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['events']} events; active: {result['active_right']} right of {result['active']}; "
          + "; ".join(f"{s}: {dict(v)}" for s, v in result["by_status"].items()))
    for name, c in result["repeats"].items():
        print(f"{name} dialogues: {c.get('answers', 0)} answers, {c.get('with_references', 0)} with references, "
              f"{c.get('repeats', 0)} repeat a reference's answer, {c.get('wrong_repeats', 0)} of them wrong")
    if args.list:
        for w in result["wrong_active"]:
            print(f"  {w['object']}: {w['question']!r} -> {w['answer']!r} ({w['label']}; expected {w['expected']!r})")


if __name__ == "__main__":
    main()
