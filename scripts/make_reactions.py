"""Build src/ilearn/data/reactions.jsonl, the labelled set of user reactions the feedback decoders are measured on.

How it is made (stated here and in the benchmark's output):
- Templated part: a seeded generator (random.Random(SEED)) draws, for each of 8 categories, ROWS_PER_CATEGORY
  rows from templates x objects x wording variants. An exchange is a question about an object in an image
  (8 domains: medicine, fruit, tool, animal, colour, shape, kitchen item, count; 4-5 question wordings each)
  and the assistant's answer (one of 3 wordings). The reaction is drawn from 12-20 wording variants of the
  category; a correction names another object of the same domain, and its gold `correction` is that object's
  bare name (no article). Categories and gold labels:
    thanks -> positive; confirmation -> positive; correction (with the right answer) -> negative + correction;
    correction_bare (without it) -> negative; rephrasing (the question asked again in other words) -> negative;
    frustration -> negative; topic_change -> neutral; ambiguous -> neutral.
- Held-out part: HELDOUT, 30 ordinary reactions of every category written by hand after the first
  measurement and never used to tune the rules (source "heldout"). A second held-out set,
  src/ilearn/data/reactions_heldout.jsonl (127 rows, ids hx001-hx127, source "heldout"), is not made by this
  script: it was written by hand independently of these templates (other objects and domains, colloquial
  wording, negations that agree such as "you're not wrong", surprise, partial acceptance), labelled before
  the decoder was run on it, and is not to be used to tune the rules.
- Hand-written part: TRICKY, about 50 reactions written by hand to probe the rules' limits (sarcasm, negated
  thanks, "no thanks, that's all", "yes, but what dose?", hedged corrections, doubt, follow-ups after thanks).
  Their labels are our judgement; "no thanks, that's all" is labelled neutral (it could be read as positive).
Caveat: the lexical rules were written by the same engineer with these template wordings in view and were then
tuned on the errors of the templated and tricky parts, so both flatter them; the held-out part is the honest figure.

Each row: id, category, source (template | handwritten), question, answer, reaction, label, correction (or null).
Run: PYTHONPATH=src .venv/bin/python scripts/make_reactions.py [--out PATH] [--per-category N] [--seed S]

The real set, src/ilearn/data/reactions_real.jsonl, is not generated: its 345 rows are replies people wrote to
each other (chitchat-dataset 0.9.0, MIT, a PyPI package), labelled by hand (docs/reactions.md). Two options of
this script serve it, with the package installed (`pip install chitchat-dataset==0.9.0`, not a dependency):
  --real-candidates N   print N (question, answer, reply) triples from conversations the set does not use yet,
                        drawn as the set's rows were (the other's question, the answer, a short reply), to label;
  --check-real          verify that every row's answer and reply occur in the conversation its origin names.
--train-check trains the learned check of the feedback rules (ilearn.dialogue.reaction_check) on reactions.jsonl
(templated rows weighted 0.3) and the real set's train split, and writes src/ilearn/data/reaction_check.npz
(needs scikit-learn; the dev and blind splits and reactions_heldout.jsonl stay out of training).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 13
ROWS_PER_CATEGORY = 60
OUT = Path(__file__).resolve().parents[1] / "src" / "ilearn" / "data" / "reactions.jsonl"

# domain -> (objects, countable, question wordings, rephrasings of the question)
DOMAINS: dict[str, tuple[list[str], bool, list[str], list[str]]] = {
    "medicine": (["ibuprofen", "paracetamol", "aspirin", "antihistamine", "cough syrup", "vitamin C"], False,
                 ["what medicine is this?", "which medication is in this box?", "what's in this pill bottle?",
                  "can you tell me what medicine this is?"],
                 ["which medicine is it?", "what is the name of this medicine?", "I asked what medicine this is",
                  "what medication is in the box?", "so what medicine is in this bottle?"]),
    "fruit": (["apple", "pear", "mango", "banana", "orange", "lemon", "kiwi"], True,
              ["what fruit is this?", "which fruit am I holding?", "what kind of fruit is on the plate?",
               "can you name this fruit?"],
              ["which fruit is this?", "what is this fruit called?", "what fruit am I holding?",
               "I mean what kind of fruit is it?", "tell me the name of the fruit"]),
    "tool": (["hammer", "wrench", "screwdriver", "pliers", "saw"], True,
             ["what tool is this?", "which tool is on the bench?", "what is this tool called?"],
             ["which tool is this?", "what's the name of this tool?", "what tool is on the bench?",
              "the tool, what is it?"]),
    "animal": (["cat", "dog", "rabbit", "hamster", "parrot"], True,
               ["what animal is this?", "which animal is in the photo?", "what pet is on the sofa?"],
               ["which animal is it?", "what animal is in the photo?", "what kind of animal is this?",
                "the animal on the sofa, what is it?"]),
    "colour": (["red", "blue", "green", "yellow", "purple"], False,
               ["what colour is the mug?", "which colour is the mug on the desk?", "what is the colour of the mug?"],
               ["what colour is the mug?", "the colour of the mug, what is it?", "which colour does the mug have?",
                "tell me the colour of the mug"]),
    "shape": (["circle", "square", "triangle", "rectangle"], True,
              ["what shape is this?", "which shape is in the image?", "what shape is the sign?"],
              ["which shape is it?", "what is the shape in the image?", "the shape, what is it?",
               "what shape is the sign exactly?"]),
    "kitchen": (["mug", "kettle", "spoon", "fork", "bowl", "toaster"], True,
                ["what kitchen item is this?", "what is on the counter?", "which utensil is this?"],
                ["which kitchen item is it?", "what is this kitchen item?", "what's on the counter?",
                 "what utensil is this?"]),
    "count": (["two", "three", "four", "five"], False,
              ["how many cups are on the table?", "how many cups can you see?", "count the cups on the table"],
              ["how many cups are there on the table?", "how many cups are there?",
               "count the cups again", "what is the number of cups on the table?"]),
}

ANSWER_WORDINGS = ["It is {a}.", "This is {a}.", "{A}."]

THANKS = ["thanks!", "thank you", "thanks a lot", "great, thanks", "cheers", "thx", "perfect, thank you",
          "thanks, that helps", "awesome thanks", "many thanks", "thank you so much", "ty",
          "ok thanks", "much appreciated", "thanks, that's helpful", "thank you, good to know"]
CONFIRM = ["yes, that's right", "correct", "exactly", "yep, it's {a}", "that's it", "right, {a}", "yes",
           "spot on", "yeah that's correct", "indeed it is", "you got it", "that's the one", "good job",
           "yes, {x}", "perfect", "yes it is", "that's correct", "right!", "bingo", "yup"]
CORRECT = ["no, that's the {y}", "no, it's {b}", "it's actually {b}", "wrong, {y}", "not {x} but {y}",
           "that's wrong, it's {b}", "nope, it's {b}", "no no, {y}", "incorrect, the answer is {y}",
           "it's {b}, not {a}", "that's not {a}, it's {b}", "actually, it's {b}", "no, {y}",
           "wrong! it's {b}", "no, the right answer is {y}", "not {a}, {b}"]
CORRECT_BARE = ["no", "no, that's wrong", "that's not right", "incorrect", "nope", "that isn't correct",
                "wrong answer", "no, that's not it", "that's not what it is", "you're wrong", "not quite",
                "hmm no, that's incorrect", "wrong", "no, sorry, that's wrong", "nah, not right"]
FRUSTRATION = ["ugh, useless", "seriously?", "come on, that's not even close", "are you even looking at the picture?",
               "this is hopeless", "why do you keep getting this wrong", "oh come on", "you're useless",
               "that makes no sense", "what?!", "are you kidding me?", "sigh... no", "terrible answer",
               "how did you get that?", "that's ridiculous"]
TOPIC = ["what about the {o}?", "ok, and what colour is the mug?", "now tell me the time", "how many chairs are in the room?",
         "can you open the door?", "where did I leave my keys?", "what's the weather like?", "next: what is this?",
         "and who is in the photo?", "what's on the shelf behind it?", "is the door locked?",
         "can you read the text on the sign?", "how far away is the table?"]
AMBIGUOUS = ["ok", "hmm", "I see", "interesting", "oh", "alright", "maybe", "if you say so", "hm, not sure",
             "really?", "huh", "okay then", "mmm", "let me check", "oh well", "I guess"]

TRICKY: list[tuple[str, str, str, str, str | None]] = [
    # (question, answer, reaction, label, correction)
    ("what medicine is this?", "It is ibuprofen.", "great, wrong again", "negative", None),
    ("what fruit is this?", "This is an apple.", "oh great, another wrong answer", "negative", None),
    ("what medicine is this?", "It is aspirin.", "no thanks, that's all", "neutral", None),
    ("what medicine is this?", "It is ibuprofen.", "yes, but what dose?", "positive", None),
    ("what tool is this?", "It is a hammer.", "thanks for nothing", "negative", None),
    ("what animal is this?", "This is a dog.", "not helpful, thanks", "negative", None),
    ("what fruit is this?", "This is a pear.", "thank you, but that's not it", "negative", None),
    ("what fruit is this?", "It is a banana.", "yeah right, as if that's a banana", "negative", None),
    ("what fruit is this?", "It is an apple.", "perfect... except it's a pear", "negative", "pear"),
    ("which medication is in this box?", "It is aspirin.", "no problem, that's the one", "positive", None),
    ("what medicine is this?", "It is aspirin.", "no doubt about it, that's aspirin", "positive", None),
    ("what tool is this?", "It is a hammer.", "correct me if I'm wrong, but isn't that a wrench?", "negative", "wrench"),
    ("what shape is this?", "It is a circle.", "not bad, that's right", "positive", None),
    ("what animal is this?", "This is a cat.", "you're right, thanks", "positive", None),
    ("what medicine is this?", "It is paracetamol.", "right, and the dose?", "positive", None),
    ("what colour is the mug?", "It is red.", "that's right?", "neutral", None),
    ("what medicine is this?", "It is ibuprofen.", "is it really ibuprofen?", "neutral", None),
    ("what medicine is this?", "It is ibuprofen.", "hmm, I think it's paracetamol", "negative", "paracetamol"),
    ("which mug is mine?", "The red one.", "It's the blue one", "negative", "blue one"),
    ("what medicine is this?", "It is ibuprofen.", "Nope. Aspirin.", "negative", "Aspirin"),
    ("what colour is the car?", "It is red.", "wrong colour, it's green", "negative", "green"),
    ("what fruit is this?", "It is a pear.", "close, but it's a mango", "negative", "mango"),
    ("what fruit is this?", "It is a lemon.", "not exactly, it's more of an orange", "negative", "orange"),
    ("what animal is this?", "This is a dog.", "I don't think so", "negative", None),
    ("what medicine is this?", "It is aspirin.", "are you sure?", "negative", None),
    ("what animal is this?", "This is a cat.", "lol no", "negative", None),
    ("what animal is this?", "This is a cat.", "no way, that's a rabbit", "negative", "rabbit"),
    ("what fruit is this?", "It is a mango.", "Thanks! Now what about this one?", "positive", None),
    ("what fruit is this?", "It is an apple.", "good, now count the apples", "positive", None),
    ("what tool is this?", "It is a hammer.", "that's not a hammer", "negative", None),
    ("what animal is this?", "This is a cat.", "it's not a cat", "negative", None),
    ("what animal is this?", "This is a cat.", "a cat? it's clearly a dog", "negative", "dog"),
    ("what medicine is this?", "It is aspirin.", "do you even know what ibuprofen is?", "negative", None),
    ("what's in this bottle?", "It is cough syrup.", "thanks, but I asked about the bottle on the left", "negative", None),
    ("which box is the ibuprofen?", "The left one.", "I meant the other box", "negative", None),
    ("what shape is this?", "It is a square.", "sure, whatever", "neutral", None),
    ("what medicine is this?", "It is ibuprofen.", "yes!! finally", "positive", None),
    ("how many cups are on the table?", "Three.", "finally got it right", "positive", None),
    ("what tool is this?", "It is a wrench.", "wow, you really nailed it this time", "positive", None),
    ("what fruit is this?", "It is a banana.", "wow. just wow. a banana?", "negative", None),
    ("what medicine is this?", "It is ibuprofen.", "that's correct, it's ibuprofen", "positive", None),
    ("what fruit is this?", "It is a pear.", "not a pear but a mango", "negative", "mango"),
    ("what medicine is this?", "It is ibuprofen.", "no, no, it's the paracetamol, not the ibuprofen",
     "negative", "paracetamol"),
    ("what shape is this?", "It is a triangle.", "mmm not really", "negative", None),
    ("what animal is this?", "This is a hamster.", "could be", "neutral", None),
    ("what medicine is this?", "It is ibuprofen.", "The label says aspirin", "negative", "aspirin"),
    ("what medicine is this?", "It is ibuprofen.", "thank you! what's the dose for a child?", "positive", None),
    ("how many apples are in the bowl?", "Three.", "Yes it's three", "positive", None),
    ("what colour is the bottle?", "It is blue.", "uh, it's green", "negative", "green"),
    ("what fruit is this?", "It is an orange.", "which one is it then?", "negative", None),
    ("what kitchen item is this?", "It is a kettle.", "kettle, yes", "positive", None),
    ("what animal is this?", "This is a parrot.", "that's what I thought, thanks", "positive", None),
]


# Written after the first measurement and never used to tune the rules: the honest held-out figure.
HELDOUT: list[tuple[str, str, str, str, str | None]] = [
    ("what medicine is this?", "It is aspirin.", "cool, cheers", "positive", None),
    ("what fruit is this?", "It is a kiwi.", "kiwi indeed, thank you", "positive", None),
    ("what tool is this?", "It is a saw.", "that is correct", "positive", None),
    ("what animal is this?", "This is a rabbit.", "yes a rabbit, well done", "positive", None),
    ("what colour is the mug?", "It is green.", "yup, green", "positive", None),
    ("how many cups are on the table?", "Four.", "four, exactly right", "positive", None),
    ("what medicine is this?", "It is paracetamol.", "great, that's what I needed", "positive", None),
    ("what shape is the sign?", "It is a triangle.", "excellent, thanks!", "positive", None),
    ("what medicine is this?", "It is aspirin.", "no, this one is ibuprofen", "negative", "ibuprofen"),
    ("what fruit is this?", "It is a lemon.", "wrong, that's a lime", "negative", "lime"),
    ("what tool is this?", "It is a wrench.", "nope, pliers", "negative", "pliers"),
    ("what animal is this?", "This is a dog.", "it is a fox, not a dog", "negative", "fox"),
    ("what colour is the mug?", "It is blue.", "no it's purple", "negative", "purple"),
    ("how many cups are on the table?", "Three.", "incorrect, there are two", "negative", "two"),
    ("what kitchen item is this?", "It is a bowl.", "that's a plate, not a bowl", "negative", "plate"),
    ("what medicine is this?", "It is aspirin.", "not aspirin, it's the cough syrup", "negative", "cough syrup"),
    ("what fruit is this?", "It is a mango.", "no that's not right at all", "negative", None),
    ("what tool is this?", "It is a hammer.", "that's wrong I'm afraid", "negative", None),
    ("what animal is this?", "This is a cat.", "you are mistaken", "negative", None),
    ("what shape is this?", "It is a square.", "that's not it at all", "negative", None),
    ("what medicine is this?", "It is ibuprofen.", "ugh, not again", "negative", None),
    ("what fruit is this?", "It is an apple.", "why is this so hard for you", "negative", None),
    ("what medicine is this?", "It is ibuprofen.", "what medication is this then?", "negative", None),
    ("what animal is this?", "This is a cat.", "tell me which animal this is", "negative", None),
    ("what fruit is this?", "It is a pear.", "where is the nearest shop?", "neutral", None),
    ("what tool is this?", "It is a saw.", "what time is it?", "neutral", None),
    ("what medicine is this?", "It is aspirin.", "okay", "neutral", None),
    ("what colour is the mug?", "It is red.", "oh really", "neutral", None),
    ("what animal is this?", "This is a dog.", "hm", "neutral", None),
    ("what kitchen item is this?", "It is a kettle.", "let me think about it", "neutral", None),
]

def with_article(word: str, countable: bool) -> str:
    """'an apple', 'a pear', 'ibuprofen'."""
    if not countable:
        return word
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def make_rows(per_category: int, seed: int) -> list[dict]:
    """The templated rows, then the hand-written ones."""
    rng = random.Random(seed)
    rows: list[dict] = []
    categories = ["thanks", "confirmation", "correction", "correction_bare", "rephrasing", "frustration",
                  "topic_change", "ambiguous"]
    seen: set[tuple[str, str, str]] = set()
    for category in categories:
        made, tries = 0, 0
        while made < per_category and tries < per_category * 50:
            tries += 1
            domain = rng.choice(sorted(DOMAINS))
            objects, countable, questions, rephrasings = DOMAINS[domain]
            x, y = rng.sample(objects, 2)
            a, b = with_article(x, countable), with_article(y, countable)
            question = rng.choice(questions)
            wordings = ANSWER_WORDINGS if domain not in ("colour", "count") else ["It is {a}.", "{A}."]
            answer = rng.choice(wordings).format(a=a, A=a[0].upper() + a[1:])
            label, correction = "neutral", None
            if category == "thanks":
                reaction, label = rng.choice(THANKS), "positive"
            elif category == "confirmation":
                reaction, label = rng.choice(CONFIRM).format(a=a, x=x), "positive"
            elif category == "correction":
                reaction, label, correction = rng.choice(CORRECT).format(a=a, b=b, x=x, y=y), "negative", y
            elif category == "correction_bare":
                reaction, label = rng.choice(CORRECT_BARE), "negative"
            elif category == "rephrasing":
                reaction, label = rng.choice([r for r in rephrasings if r != question]), "negative"
            elif category == "frustration":
                reaction, label = rng.choice(FRUSTRATION), "negative"
            elif category == "topic_change":
                other = rng.choice([d for d in DOMAINS if d != domain])
                reaction = rng.choice(TOPIC).format(o=rng.choice(DOMAINS[other][0]))
            else:
                reaction = rng.choice(AMBIGUOUS)
            if rng.random() < 0.25:  # casing / punctuation variants
                if rng.random() < 0.5 or reaction.endswith("?"):
                    reaction = reaction.capitalize()
                else:
                    reaction = reaction.rstrip("!.") + "."
            key = (question, answer, reaction)
            if key in seen:
                continue
            seen.add(key)
            rows.append({"category": category, "source": "template", "question": question, "answer": answer,
                         "reaction": reaction, "label": label, "correction": correction})
            made += 1
    for question, answer, reaction, label, correction in TRICKY:
        rows.append({"category": "tricky", "source": "handwritten", "question": question, "answer": answer,
                     "reaction": reaction, "label": label, "correction": correction})
    for question, answer, reaction, label, correction in HELDOUT:
        rows.append({"category": "heldout", "source": "heldout", "question": question, "answer": answer,
                     "reaction": reaction, "label": label, "correction": correction})
    for i, row in enumerate(rows):
        row["id"] = f"r{i:04d}"
    return rows


REAL = OUT.with_name("reactions_real.jsonl")


def _chitchat() -> dict:
    """chitchat-dataset's conversations (conversation id -> {"messages": [[{"text", "sender", ...}, ...], ...]})."""
    try:
        import chitchat_dataset
    except ImportError as exc:
        raise SystemExit("needs the chitchat-dataset package: pip install chitchat-dataset==0.9.0") from exc
    return json.loads((Path(chitchat_dataset.__file__).parent / "dataset.json").read_text(encoding="utf-8"))


def _conversation(origin: str) -> str:
    return origin.split("conversation ")[1].split(",")[0]


def real_candidates(n: int, seed: int) -> list[dict]:
    """Up to `n` unlabelled (question, answer, reply) triples, one per conversation the real set does not use."""
    data = _chitchat()
    used = {_conversation(json.loads(line)["origin"]) for line in REAL.read_text().splitlines() if line.strip()}
    keys = sorted(k for k in data if k not in used)
    rng = random.Random(seed)
    rng.shuffle(keys)
    out = []
    for cid in keys:
        blocks = data[cid]["messages"]
        triples = []
        for i in range(1, len(blocks) - 1):
            question = blocks[i - 1][-1]["text"].strip()
            answer = " ".join(m["text"].strip() for m in blocks[i])
            reply = blocks[i + 1][0]["text"].strip()
            if question.endswith("?") and not answer.endswith("?") and len(reply.split()) <= 14:
                triples.append({"origin": f"chitchat-dataset 0.9.0 dataset.json, conversation {cid}, message block "
                                          f"{i}", "question": question, "answer": answer, "reaction": reply})
        if triples:
            out.append(rng.choice(triples))
        if len(out) >= n:
            break
    return out


def check_real() -> int:
    """The number of real rows whose answer or reply does not occur in the conversation their origin names."""
    data = _chitchat()
    bad = 0
    for line in REAL.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        texts = " ".join(m["text"] for block in data.get(_conversation(row["origin"]), {}).get("messages", [])
                         for m in block)
        if row["reaction"] not in texts or any(part not in texts for part in row["answer"].split("  ")):
            bad += 1
            print(f"{row['id']}: not found in its conversation")
    return bad


CHECK = OUT.with_name("reaction_check.npz")


def train_check(out: Path = CHECK) -> None:
    """Train and save the feedback rules' learned check (see ilearn.dialogue.reaction_check)."""
    from ilearn.dialogue.reaction_check import ReactionClassifier

    rows = [json.loads(line) for line in OUT.read_text().splitlines() if line.strip()]
    rows += [r for r in (json.loads(line) for line in REAL.read_text().splitlines() if line.strip())
             if r["split"] == "train"]
    weights = [0.3 if r["source"] == "template" else 1.0 for r in rows]
    model = ReactionClassifier.train([r["reaction"] for r in rows], [r["label"] for r in rows], weights)
    model.save(out)
    print(f"trained on {len(rows)} reactions, wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--per-category", type=int, default=ROWS_PER_CATEGORY)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--real-candidates", type=int, default=0, help="print N unlabelled real triples")
    parser.add_argument("--check-real", action="store_true", help="verify the real set against the package")
    parser.add_argument("--train-check", action="store_true", help="train the feedback rules' learned check")
    args = parser.parse_args()
    if args.train_check:
        train_check()
        return
    if args.real_candidates:
        for triple in real_candidates(args.real_candidates, args.seed):
            print(json.dumps(triple, ensure_ascii=False))
        return
    if args.check_real:
        bad = check_real()
        print(f"{bad} rows not found")
        raise SystemExit(1 if bad else 0)
    rows = make_rows(args.per_category, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as f:
        for row in rows:
            f.write(json.dumps({k: row[k] for k in ("id", "category", "source", "question", "answer", "reaction",
                                                   "label", "correction")}) + "\n")
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
