"""Build src/ilearn/data/clarify.jsonl: requests labelled ambiguous (ask) or clear (answer).

How it was made: seeded templates written for this set (not copied from the clarifier's rules), crossed with
objects, openers and punctuation, plus hand-written requests; a request is *ambiguous* when, said while
pointing a camera at an object (a medicine, a household thing), it could mean several facts (name, use,
dose) and names none of them; it is *clear* when it names what is wanted or asks about a visible property.
Each row: {"request", "ambiguous", "source"}. Run: python scripts/make_clarify_set.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "ilearn" / "data" / "clarify.jsonl"

AMBIGUOUS_CORES = [
    "what is this", "what's this", "what is that", "what's that", "what is it", "tell me about this",
    "tell me about that", "what about this one", "what about that one", "explain this", "what do you know about this",
    "can you tell me about this", "what is this thing", "what's that thing", "info on this", "any idea about this",
    "what is this one", "and this", "this?", "help me with this", "is this ok", "what can you say about this",
    "details about this", "could you help me with that", "what is this exactly", "what's this one here",
]
OPENERS = ["", "hey, ", "hi, ", "so ", "ok ", "um ", "robot, ", "excuse me, ", "please, "]
ENDINGS = ["?", "", "??", " please?", "!"]

CLEAR_TEMPLATES = [
    "what is this medicine called{e}", "what's the name of this{e}", "which medicine is this{e}",
    "what is this used for{e}", "what is this for{e}", "what does this treat{e}", "what is the dose{e}",
    "how much of this should I take{e}", "how many tablets a day{e}", "how often can I take this{e}",
    "what colour is the cap{e}", "what color is the shape{e}", "is the cap red{e}", "what shape is this{e}",
    "is there a circle in the image{e}", "does the image contain a blue shape{e}", "how many bottles are there{e}",
    "is this bottle open{e}", "what is written on the label{e}", "what brand is this{e}",
    "can I take this for a headache{e}", "is this good for allergies{e}", "what's the dosage for adults{e}",
    "where should I store this{e}", "what does this do{e}", "identify this object{e}", "name this object{e}",
    "what is the purpose of this{e}", "how big is the bottle{e}", "is the label green{e}",
    "what is the colour of the label band{e}", "which one is the ibuprofen{e}", "what size is this bottle{e}",
]
HAND_AMBIGUOUS = [
    "What's this here?", "Hmm, and that?", "What is it again?", "Tell me more about it.", "This one?",
    "Can you tell me about that thing?", "What about it?", "Information about this, please.",
    "What is that over there?", "Explain that to me.", "And what is this one?", "Any idea what this is?",
]
HAND_CLEAR = [
    "Is it safe to take with food?", "What's this pill's name?", "Which of these is for pain?",
    "How many milligrams are in one tablet?", "Is the shape a triangle?", "What colour is the bottle?",
    "Is there a rectangle?", "What is the name of this?", "What's it used for?", "How much should a child take?",
    "Does this help with fever?", "Read the label for me.", "Is the circle green?", "What's the dose for this?",
    "Count the tablets.", "Is this the paracetamol?",
]


def build(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for core in AMBIGUOUS_CORES:
        for _ in range(5):
            text = rng.choice(OPENERS) + core.rstrip("?") + rng.choice(ENDINGS)
            rows.append({"request": text[0].upper() + text[1:], "ambiguous": True, "source": "template"})
    for template in CLEAR_TEMPLATES:
        for _ in range(4):
            text = rng.choice(OPENERS) + template.format(e=rng.choice(ENDINGS))
            rows.append({"request": text[0].upper() + text[1:], "ambiguous": False, "source": "template"})
    rows += [{"request": t, "ambiguous": True, "source": "hand"} for t in HAND_AMBIGUOUS]
    rows += [{"request": t, "ambiguous": False, "source": "hand"} for t in HAND_CLEAR]
    unique = {r["request"]: r for r in rows}
    return sorted(unique.values(), key=lambda r: r["request"])


if __name__ == "__main__":
    rows = build()
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows))
    n_amb = sum(r["ambiguous"] for r in rows)
    print(f"wrote {len(rows)} requests ({n_amb} ambiguous, {len(rows) - n_amb} clear) to {OUT}")
