"""Training datasets from history events, in TRL's standard columns (conversational, vision).

- `build_sft`: ``messages`` + ``images``, from ACTIVE events with a confirmed or corrected answer
  (ReSpect's filtered fine-tuning: only answers the user accepted, or the user's own correction).
- `build_dpo`: ``prompt`` / ``chosen`` / ``rejected`` + ``images``: one row per rejected answer of an
  ACTIVE event that has a correct answer.
- `build_kto`: ``prompt`` / ``completion`` / ``label`` + ``images``: every decoded answer: the correct
  answer as desirable (True), every rejected answer as undesirable (False); answer-less negative events
  (QUARANTINED with an empty answer, see construct.py) give their rejected answers.
- `build_rewards`: ``prompt`` / ``completion`` / ``reward`` + ``images`` for REINFORCE-style training,
  with ReSpect's remap of the settings (`LearnConfig.rewards`; by default positive 1, negative -0.1, neutral
  0), over the model's own answers only (a user's correction was not sampled from the model).

A prompt is ``[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]``
(no image item when the event has none) and a completion ``[{"role": "assistant", "content": [{"type":
"text", "text": answer}]}]``. ``images`` holds what `image_fn` returns for the event's image (a PIL image
or a path; by default the path ``images/<sha256>.png`` that `export` writes).

`build` makes any of them by name (`KINDS`) with the settings' remap. `export` writes JSONL files (or HF `datasets` folders) with the image files and a ``snapshot.json`` that
records the event ids each dataset holds.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ilearn.config import LearnConfig
from ilearn.errors import InvalidInput, NotFound, require_package
from ilearn.images import to_rgb
from ilearn.types import Event, EventStatus, ImageRef, Label, is_rejection

logger = logging.getLogger(__name__)

KINDS = ("sft", "dpo", "kto", "rewards")
ImageFn = Callable[[ImageRef], Any]


def image_path(ref: ImageRef) -> str:
    """Where `export` puts an image, relative to the output folder."""
    return f"images/{ref.sha256}.png"


def prompt_messages(question: str, has_image: bool) -> list[dict]:
    """The user turn of a conversational example (image placeholder first)."""
    content: list[dict] = [{"type": "image"}] if has_image else []
    content.append({"type": "text", "text": question})
    return [{"role": "user", "content": content}]


def completion_messages(answer: str) -> list[dict]:
    """The assistant turn of a conversational example."""
    return [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def _common(event: Event, image_fn: ImageFn, with_ids: bool) -> dict:
    row: dict = {"images": [image_fn(event.image)] if event.image is not None else []}
    if with_ids:
        row["event_id"] = event.id
    return row


def _usable(event: Event) -> bool:
    return event.status == EventStatus.ACTIVE and bool(event.answer.strip()) and bool(event.question.strip())


def build_sft(events: Iterable[Event], image_fn: ImageFn = image_path, *, with_ids: bool = False) -> list[dict]:
    """`messages` (+ `images`) rows from events with a confirmed or corrected answer."""
    rows = []
    for e in events:
        if _usable(e):
            rows.append({"messages": prompt_messages(e.question, e.image is not None) + completion_messages(e.answer),
                         **_common(e, image_fn, with_ids)})
    return rows


def build_dpo(events: Iterable[Event], image_fn: ImageFn = image_path, *, with_ids: bool = False) -> list[dict]:
    """`prompt` / `chosen` / `rejected` (+ `images`) rows, one per rejected answer of a corrected event."""
    rows = []
    for e in events:
        if not _usable(e):
            continue
        for wrong in e.rejected:
            if wrong.strip() and wrong.strip() != e.answer.strip():
                rows.append({"prompt": prompt_messages(e.question, e.image is not None),
                             "chosen": completion_messages(e.answer), "rejected": completion_messages(wrong),
                             **_common(e, image_fn, with_ids)})
    return rows


def build_kto(events: Iterable[Event], image_fn: ImageFn = image_path, *, with_ids: bool = False) -> list[dict]:
    """`prompt` / `completion` / `label` (+ `images`) rows: every decoded answer, desirable or not."""
    rows = []
    for e in events:
        if not (_usable(e) or is_rejection(e)):
            continue
        prompt = prompt_messages(e.question, e.image is not None)
        if e.answer.strip():
            rows.append({"prompt": prompt, "completion": completion_messages(e.answer), "label": True,
                         **_common(e, image_fn, with_ids)})
        for wrong in e.rejected:
            rows.append({"prompt": prompt, "completion": completion_messages(wrong), "label": False,
                         **_common(e, image_fn, with_ids)})
    return rows


def build_rewards(events: Iterable[Event], image_fn: ImageFn = image_path, *, with_ids: bool = False,
                  rewards: Mapping[Label, float] | None = None) -> list[dict]:
    """`prompt` / `completion` / `reward` (+ `images`) rows over the model's own answers, each rewarded by `rewards`
    (ReSpect's remap of its feedback label; None: the default settings' `LearnConfig().rewards()`)."""
    remap = LearnConfig().rewards() if rewards is None else rewards
    rows = []
    for e in events:
        if not (_usable(e) or is_rejection(e)):
            continue
        prompt = prompt_messages(e.question, e.image is not None)
        if e.label == Label.POSITIVE and e.answer.strip():
            rows.append({"prompt": prompt, "completion": completion_messages(e.answer),
                         "reward": remap[Label.POSITIVE], **_common(e, image_fn, with_ids)})
        for wrong in e.rejected:
            rows.append({"prompt": prompt, "completion": completion_messages(wrong),
                         "reward": remap[Label.NEGATIVE], **_common(e, image_fn, with_ids)})
    return rows


BUILDERS: dict[str, Callable[..., list[dict]]] = {"sft": build_sft, "dpo": build_dpo, "kto": build_kto,
                                                  "rewards": build_rewards}


def build(kind: str, events: Iterable[Event], image_fn: ImageFn = image_path, *, with_ids: bool = False,
          learn: LearnConfig | None = None) -> list[dict]:
    """The `kind` dataset (a key of `BUILDERS`) of `events`; the rewards rows take `learn`'s reward remap (None:
    the default settings)."""
    if kind not in BUILDERS:
        raise InvalidInput(f"unknown dataset kind {kind!r}; choose from {list(KINDS)}")
    if kind == "rewards":
        return build_rewards(events, image_fn, with_ids=with_ids, rewards=(learn or LearnConfig()).rewards())
    return BUILDERS[kind](events, image_fn, with_ids=with_ids)


def to_hf_dataset(rows: Sequence[dict], image_root: str | Path | None = None):
    """A `datasets.Dataset` of the rows; image paths (relative to `image_root`) become PIL images."""
    require_package("datasets", "train")
    import datasets
    from PIL import Image

    root = Path(image_root) if image_root is not None else None
    converted = []
    for row in rows:
        images = []
        for img in row.get("images", []):
            if isinstance(img, (str, Path)):
                path = root / img if root is not None and not Path(img).is_absolute() else Path(img)
                with Image.open(path) as opened:
                    img = opened.convert("RGB")
            images.append(img)
        converted.append({**row, "images": images} if "images" in row else dict(row))
    if not converted:
        return datasets.Dataset.from_dict({})
    features = None
    if "images" in converted[0]:
        probe = datasets.Dataset.from_list([{k: v for k, v in r.items() if k != "images"} for r in converted])
        features = probe.features.copy()
        features["images"] = datasets.Sequence(datasets.Image())
    return datasets.Dataset.from_list(converted, features=features)


def export(events: Iterable[Event], store, out_dir: str | Path, fmt: str = "jsonl",
           kinds: Sequence[str] = KINDS, learn: LearnConfig | None = None) -> dict:
    """Write the datasets of `events` under `out_dir`, with image files, and return the snapshot.

    fmt "jsonl": ``<kind>.jsonl`` with image paths relative to `out_dir`; fmt "hf": ``<kind>/`` folders
    written by `datasets.Dataset.save_to_disk` (images embedded). Both write ``images/<sha256>.png`` and
    ``snapshot.json`` (event ids and row counts per dataset). Events whose image is missing from the store
    are skipped and listed in the snapshot. The rewards rows take `learn`'s reward remap (None: the defaults).
    """
    if fmt not in ("jsonl", "hf"):
        raise InvalidInput(f"fmt must be 'jsonl' or 'hf', not {fmt!r}")
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise InvalidInput(f"unknown dataset kind(s) {sorted(unknown)}; choose from {list(KINDS)}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    kept, skipped = _write_images(list(events), store, out)
    snapshot: dict = {"created": time.time(), "format": fmt, "event_ids": sorted(e.id for e in kept),
                      "skipped_event_ids": sorted(skipped), "counts": {}, "datasets": {}}
    for kind in kinds:
        rows = build(kind, kept, with_ids=True, learn=learn)
        if fmt == "jsonl":
            with (out / f"{kind}.jsonl").open("w") as f:
                for row in rows:
                    f.write(json.dumps(row) + "\n")
        else:
            to_hf_dataset(rows, out).save_to_disk(str(out / kind))
        snapshot["counts"][kind] = len(rows)
        snapshot["datasets"][kind] = {"rows": len(rows), "event_ids": sorted({r["event_id"] for r in rows})}
    snapshot["images"] = len({e.image.sha256 for e in kept if e.image is not None})
    (out / "snapshot.json").write_text(json.dumps(snapshot, indent=2))
    logger.info("exported %s to %s: %s", fmt, out, snapshot["counts"])
    return snapshot


def _write_images(events: list[Event], store, out: Path) -> tuple[list[Event], list[str]]:
    from PIL import Image

    kept, skipped, done = [], [], set()
    for e in events:
        if e.image is not None and e.image.sha256 not in done:
            target = out / image_path(e.image)
            if not target.exists():
                try:
                    data = store.get_image_bytes(e.image.sha256)
                except NotFound:
                    logger.warning("event %s: image %s is missing; skipped", e.id, e.image.sha256)
                    skipped.append(e.id)
                    continue
                with Image.open(io.BytesIO(data)) as img:
                    to_rgb(img).save(target, format="PNG")
            done.add(e.image.sha256)
        kept.append(e)
    return kept, skipped


def load_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL dataset written by `export`."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
