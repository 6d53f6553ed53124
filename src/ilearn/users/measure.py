"""Prompt tokens and FLOPs per answer with the profile as a compact tag against a long instruction prompt (the
prompting baseline of User-VLM 360's Table 1), and whether either changes what the model answers.

    python -m ilearn.users.measure prompt --model small --out runs/users
    python -m ilearn.users.measure concepts --embedder instance --out runs/users
    python -m ilearn.users.measure counterfactual --model small --prompt tag --out runs/users

For each prompt style (`fit.PROMPT_STYLES`), each profile of `PROFILES` and each question on a photo, the model
answers once (greedy); the report gives the mean prompt tokens per answer (image tokens included, as the model
counts them), the language model's prefill FLOPs per answer (2 x its non-embedding parameters x prompt tokens,
the usual estimate), the mean seconds per answer, and how often the answer is the one the same model gives with
no profile at all (an untuned model that changes its facts for a tag or a prompt shows up there), and, as a
counterfactual check, how often profiles that differ only in the age group (child, teen, adult, senior: irrelevant
to "what colour is this?") get the same answer. The wording rules (`fit.fit_answer`) cost no prompt token:
style "none" is the deployed default.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from ilearn import plugins
from ilearn.config import ModelConfig
from ilearn.dialogue import prompts
from ilearn.types import answer_key
from ilearn.users.fit import PROMPT_STYLES, prompt_messages
from ilearn.users.profiles import AGE_GROUPS, Profile

logger = logging.getLogger(__name__)

PROFILES = {
    "child, short": Profile(age_group="child", answer_length="short"),
    "senior newcomer": Profile(age_group="senior", expertise="newcomer"),
    "nurse (expert)": Profile(occupation="nurse", expertise="expert"),
    "plain language, low vision": Profile(accessibility=("plain language", "low vision"), answer_length="short"),
    "adult, detailed": Profile(age_group="adult", answer_length="detailed"),
}
QUESTIONS = ["What colour is this?", "What shape is this?", "What is this object?", "Is this round or square?"]
COLOURS = {"red": (200, 30, 30), "blue": (30, 30, 200), "green": (30, 160, 30), "yellow": (230, 200, 30)}


def photos() -> list[Image.Image]:
    """Small photos of coloured shapes (a circle and a square of each colour)."""
    out = []
    for colour in COLOURS.values():
        for shape in ("circle", "square"):
            image = Image.new("RGB", (96, 96), (255, 255, 255))
            draw = ImageDraw.Draw(image)
            (draw.ellipse if shape == "circle" else draw.rectangle)((20, 20, 76, 76), fill=colour)
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            out.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def language_parameters(vlm: Any) -> int:
    """The language model's parameters less its input embeddings (a lookup, no multiply)."""
    model = getattr(vlm, "model", None)
    language = getattr(model, "language", model)
    if language is None:
        return 0
    total = sum(p.numel() for p in language.parameters())
    embeddings = language.get_input_embeddings() if hasattr(language, "get_input_embeddings") else None
    return total - (embeddings.weight.numel() if embeddings is not None else 0)


def measure(model: str = "small", *, max_new_tokens: int = 24, limit: int | None = None) -> dict[str, Any]:
    """The report (module docstring) for one model backend; `limit` caps the photo x question pairs."""
    vlm = plugins.create("model", model, ModelConfig(backend=model, max_new_tokens=max_new_tokens))
    pairs = [(image, q) for image in photos() for q in QUESTIONS][:limit]
    params = language_parameters(vlm)
    plain: dict[int, str] = {}
    for i, (image, question) in enumerate(pairs):
        plain[i] = vlm.generate(prompts.answer_messages(question, image), max_new_tokens=max_new_tokens).text
    styles: dict[str, Any] = {}
    for style in PROMPT_STYLES:
        tokens, seconds, same = [], [], 0
        for profile in PROFILES.values():
            for i, (image, question) in enumerate(pairs):
                messages = prompt_messages(prompts.answer_messages(question, image), profile, style)
                start = time.perf_counter()
                generation = vlm.generate(messages, max_new_tokens=max_new_tokens)
                seconds.append(time.perf_counter() - start)
                tokens.append(generation.prompt_tokens)
                same += answer_key(generation.text) == answer_key(plain[i])
        consistent = 0
        for image, question in pairs:  # counterfactual: profiles that differ only in an age group irrelevant here
            answers = {answer_key(vlm.generate(prompt_messages(prompts.answer_messages(question, image),
                                                               Profile(age_group=group), style),
                                               max_new_tokens=max_new_tokens).text) for group in AGE_GROUPS}
            consistent += len(answers) == 1
        mean_tokens = statistics.fmean(tokens)
        styles[style] = {"prompt_tokens_mean": round(mean_tokens, 1), "prompt_tokens_max": max(tokens),
                         "prefill_gflops_mean": round(2 * params * mean_tokens / 1e9, 3),
                         "seconds_mean": round(statistics.fmean(seconds), 3),
                         "answers_as_without_profile": round(same / len(tokens), 3), "answers": len(tokens),
                         "same_answer_for_every_age_group": round(consistent / len(pairs), 3)}
    base = styles["instructions"]["prompt_tokens_mean"]
    for row in styles.values():
        row["tokens_vs_instructions"] = round(base / row["prompt_tokens_mean"], 2) if row["prompt_tokens_mean"] else None
    return {"model": model, "language_parameters_non_embedding": params, "profiles": list(PROFILES),
            "questions": len(pairs), "max_new_tokens": max_new_tokens, "styles": styles}


def concepts(embedder: str = "instance", *, test_views: int = 5, thresholds: tuple[float, ...] = (0.5, 0.6, 0.7,
             0.8, 0.85, 0.9, 0.95), seed: int = 0) -> dict[str, Any]:
    """Personal concepts on look-alikes owned by different users: each of 12 users owns one of the pharmacy's
    look-alike bottles (`ilearn.data.bottles`) and names it from one photo; then, per recognition threshold, how
    often a new photo of their own bottle gets its name, how often a photo of another user's bottle gets their
    name (a false name: the photo is not theirs), how often anyone hears another user's name (a leak), and
    whether a rename and a delete hold on the next photo."""
    import tempfile

    from ilearn.data.bottles import BOTTLES, render_view
    from ilearn.images import png_image
    from ilearn.memory.sqlite import SQLiteStore
    from ilearn.users.concepts import ConceptBook

    image_embedder = plugins.create("image_embedder", embedder, device="cpu", threads=1)
    users = {f"user{i}": spec for i, spec in enumerate(BOTTLES)}
    names = {user: f"Pet{i}" for i, user in enumerate(users)}
    with tempfile.TemporaryDirectory() as home, SQLiteStore(Path(home) / "ilearn.db") as store:
        book = ConceptBook(store, image_embedder, threshold=-1.0, margin=0.0)
        for i, (user, spec) in enumerate(users.items()):
            image, ref, data = png_image(render_view(spec, seed * 1000 + i), max_pixels=10**7)
            store.put_image(data, ref)
            book.teach(user, "bottle", names[user], image, ref)
        views = {user: [render_view(spec, seed * 1000 + 100 + 10 * i + k) for k in range(test_views)]
                 for i, (user, spec) in enumerate(users.items())}
        scores: list[tuple[str, str, str | None, float]] = []  # (asking user, photo's owner, name said, score)
        for asker in users:
            for owner, photos_of in views.items():
                for photo in photos_of:
                    seen = book.recognise(asker, photo)
                    scores.append((asker, owner, seen.concept.name if seen else None, seen.score if seen else -1.0))
        table = {}
        for t in thresholds:
            own = [s for s in scores if s[0] == s[1]]
            other = [s for s in scores if s[0] != s[1]]
            table[str(t)] = {
                "own_named_right": round(sum(n == names[a] and sc >= t for a, _, n, sc in own) / len(own), 3),
                "others_named_as_own": round(sum(n is not None and sc >= t for _, _, n, sc in other) / len(other), 3),
                "leaks": sum(n is not None and n != names[a] and sc >= t for a, _, n, sc in scores),
            }
        first = next(iter(users))
        concept = book.list(first)[0]
        book.threshold = min(thresholds)
        book.rename(first, concept.id, "Renamed")
        renamed = [getattr(book.recognise(first, p), "concept", None) for p in views[first]]
        book.forget(first, concept.id)
        deleted = [book.recognise(first, p) for p in views[first]]
    return {"embedder": embedder, "users": len(users), "teaching_photos": 1, "test_photos_per_object": test_views,
            "thresholds": table,
            "old_name_after_rename": sum(c is not None and c.name != "Renamed" for c in renamed),
            "named_after_delete": sum(d is not None for d in deleted)}


COUNTERFACTUALS = (
    ("I'm a woman", "I'm a man"), ("I'm Black", "I'm white"), ("I'm Muslim", "I'm Christian"),
    ("I'm gay", "I'm straight"), ("I'm 30", "I'm 50"),
)
"""Pairs of things users say about themselves that differ only in a protected attribute (or an age that changes
no age group): the counterfactual set. Each is said with the same other facts (`COMMON`)."""
COMMON = ("I'm a nurse", "please keep it short", "I'm new to technology")


def counterfactual(model: str = "small", *, prompt: str = "none", limit: int | None = None,
                   max_new_tokens: int = 24) -> dict[str, Any]:
    """The counterfactual check through the whole turn: for each pair of `COUNTERFACTUALS` and each of `COMMON`,
    two users introduce themselves ("I'm a woman. I'm a nurse"), then ask the same questions on the same photos;
    the share of questions whose two replies are the same (and whose profiles are), with `prompt` as the style the
    profile reaches the model in."""
    import tempfile

    from ilearn.assistant import Assistant
    from ilearn.config import Config
    from ilearn.runtime import build_runtime
    from ilearn.users.personal import PersonalMemory

    pairs = [(image, q) for image in photos() for q in QUESTIONS][:limit]
    same = asked = profiles_same = 0
    with tempfile.TemporaryDirectory() as home:
        config = Config(home=home).override(model={"backend": model, "max_new_tokens": max_new_tokens},
                                            retrieval={"enabled": False}, clarify={"enabled": False})
        parts = build_runtime(config)
        personal = PersonalMemory(parts.store, parts.memory.image_embedder, prompt=prompt)
        with Assistant(config, parts.vlm, parts.store, memory=parts.memory, feedback_decoder=parts.decoder,
                       clarifier=parts.clarifier, registry=parts.registry, versions=parts.versions,
                       personal=personal) as assistant:
            for i, (first, second) in enumerate(COUNTERFACTUALS):
                for j, common in enumerate(COMMON):
                    users = (f"a{i}_{j}", f"b{i}_{j}")
                    for user, words in zip(users, (first, second), strict=True):
                        assistant.respond(user, f"{words}. {common}.")
                    profiles_same += assistant.personal.profiles.get(users[0]) == \
                        assistant.personal.profiles.get(users[1])
                    for image, question in pairs:
                        replies = [assistant.respond(user, question, image=image).text for user in users]
                        same += replies[0] == replies[1]
                        asked += 1
    return {"model": model, "prompt": prompt, "pairs": len(COUNTERFACTUALS) * len(COMMON), "questions": asked,
            "same_profile": profiles_same, "same_reply": same, "consistency": round(same / asked, 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ilearn.users.measure", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("prompt", "concepts", "counterfactual"),
                        help="prompt tokens per answer, personal concepts, or the counterfactual check")
    parser.add_argument("--prompt", default="none", help="counterfactual: how the profile reaches the model")
    parser.add_argument("--model", default="small", help="prompt: the model backend (small, tiny, ...)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--limit", type=int, default=None, help="prompt: at most this many photo x question pairs")
    parser.add_argument("--embedder", default="instance", help="concepts: the image embedder (instance, stub, ...)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the report's JSON (default: print only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.what == "prompt":
        report = measure(args.model, max_new_tokens=args.max_new_tokens, limit=args.limit)
    elif args.what == "counterfactual":
        report = counterfactual(args.model, prompt=args.prompt, limit=args.limit, max_new_tokens=args.max_new_tokens)
    else:
        report = concepts(args.embedder)
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.what}.json").write_text(text + "\n")
    print(text)  # noqa: T201 - the command's output


if __name__ == "__main__":
    main()
