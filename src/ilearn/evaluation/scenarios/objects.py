"""The ``objects`` scenario: the pharmacy protocol on a folder of the user's own photos.

Folder layout::

    DIR/
      mug/                    one subfolder per object; its name is the object's name
        IMG_001.jpg           its photos: PNG, JPEG (also WebP, BMP, GIF), any size;
        IMG_002.png           transparent backgrounds are flattened on white
        facts.json            optional, see below
      house_keys/             "_" and "-" in a folder name read as spaces: "house keys"
        ...

``facts.json`` (optional, one per object) is a JSON object of facts, string values (numbers are accepted and
turned into text), any keys::

    {"name": "Grandma's mug", "use": "tea", "colour": "blue"}

Without ``name`` the folder name is the name; without a facts file the only fact is the name, i.e. the answer
to "what is this?". Each key becomes an intent that a simulated user can ask about ("What is the colour of
this?"; ``name``, ``use`` and ``dose`` have their own questions) and a facet that clarifying questions offer
(`ObjectsScenario.facets`, its cues the key's words: "Do you want to know its name, or the habitat?"); a folder
whose objects have only a name has one facet, so "what is this?" is answered as "What is this called?".

Splitting: each object's photos, sorted by file name, are shuffled with the seed; ``round(test_fraction * n)``
of them, at least one when the object has two photos or more, are held out for testing; the rest are used to
teach. An object with a single photo is taught only (a warning says so).

Errors: a missing folder, a folder with no object subfolders, or an object whose photos are all unreadable
raise `InvalidInput`; a bad ``facts.json`` raises `InvalidInput` too. A single corrupt or unreadable photo is
skipped with a warning and listed in `ObjectsScenario.skipped`, so that one bad file does not stop a run.
Hidden files and files with other extensions are ignored.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ilearn.dialogue.clarify import facet_settings, facets_for_keys
from ilearn.errors import InvalidImage, InvalidInput
from ilearn.evaluation.scenarios.base import FactScenario, Item, derive_seed, easyvqa_general
from ilearn.images import load_image

logger = logging.getLogger(__name__)

PHOTO_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
FACTS_FILE = "facts.json"


def folder_name(name: str) -> str:
    """The object's name from its folder name: separators become spaces."""
    return " ".join(name.replace("_", " ").replace("-", " ").split())


def read_facts(path: Path, default_name: str) -> dict[str, str]:
    """The facts of an object: its facts.json (if any) with ``name`` defaulting to `default_name`."""
    facts: dict[str, str] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput(f"{path} must hold a JSON object of facts, e.g. {{\"use\": \"tea\"}}")
        for key, value in data.items():
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise InvalidInput(f"{path}: fact {key!r} must be a string or a number, not {type(value).__name__}")
            text = str(value).strip()
            if not str(key).strip() or not text:
                raise InvalidInput(f"{path}: empty fact key or value for {key!r}")
            facts[str(key).strip()] = text
    facts.setdefault("name", default_name)
    return facts


@dataclass
class ObjectsScenario(FactScenario):
    """A `FactScenario` read from a folder; `skipped` lists the photos that could not be read."""

    root: str = ""
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def from_folder(cls, directory: str | Path, *, seed: int = 0, test_fraction: float = 0.3,
                    max_side: int = 448, general: int = 0) -> ObjectsScenario:
        """Read one subfolder per object (see the module docstring) and split each object's photos.

        `max_side` shrinks larger photos (keeping their aspect ratio) so big camera photos do not fill memory.
        """
        root = Path(directory)
        if not root.is_dir():
            raise InvalidInput(f"no objects folder at {root}")
        if not 0.0 < test_fraction < 1.0:
            raise InvalidInput("test_fraction must be between 0 and 1")
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise InvalidInput(f"{root} holds no object folders: make one subfolder per object, named after it, "
                               "with its photos inside")
        items: list[Item] = []
        skipped: list[str] = []
        for folder in folders:
            photos = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                            and p.suffix.lower() in PHOTO_EXTENSIONS)
            images: list[Image.Image] = []
            for photo in photos:
                try:
                    image = load_image(photo)[0]
                except InvalidImage as exc:
                    logger.warning("skipping %s: %s", photo, exc)
                    skipped.append(str(photo))
                    continue
                if max(image.size) > max_side:
                    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                images.append(image)
            if not images:
                raise InvalidInput(f"object folder {folder} has no readable photos "
                                   f"(expected {', '.join(sorted(PHOTO_EXTENSIONS))})")
            facts = read_facts(folder / FACTS_FILE, folder_name(folder.name))
            rng = random.Random(derive_seed("objects", seed, folder.name))
            order = list(range(len(images)))
            rng.shuffle(order)
            n_test = max(1, round(test_fraction * len(images))) if len(images) >= 2 else 0
            if n_test == 0:
                logger.warning("object %s has a single photo: it is used for teaching only", folder.name)
            test = [images[i] for i in order[:n_test]]
            teach = [images[i] for i in order[n_test:]]
            items.append(Item(folder.name, facts["name"], facts, teach, test))
        intents = tuple(dict.fromkeys(k for item in items for k in item.facts))
        logger.info("objects scenario: %d objects, %d photos, %d skipped", len(items),
                    sum(len(i.teach_views) + len(i.test_views) for i in items), len(skipped))
        return cls("objects", items, seed=seed, general=easyvqa_general(general, seed), noun="object",
                   intents=intents, facets=facet_settings(facets_for_keys(intents)), root=str(root),
                   skipped=skipped)
