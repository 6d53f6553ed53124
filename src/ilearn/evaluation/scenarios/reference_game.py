"""The ``reference-game`` scenario (ReSpect's MultiRef): pick abstract figures that the user describes in words.

Each figure is a tangram-like composition of 2-5 polygons drawn with PIL from seeded random attributes:

- ``kind``: how its parts are arranged (tower, row, stairs, fan);
- ``piece``: the parts' shape (triangles, squares, diamonds, slabs);
- ``fill``: solid, outlined, striped or grey;
- ``orientation``: upright, tilted left, tilted right or upside down;
- ``parts``: the number of parts (2-5).

Its hidden verbal description (``"a striped tower of three triangles, tilted left"``) is built from those
attributes, and `describe` builds partial descriptions from any subset of them, so a simulated user can start
vague and add a distinguishing attribute after a wrong pick.

A `Game` is a board of k figures (6-10 by default, every description unique) rendered as one image with
numbered slots (1..k), and 2-3 target slots. Some distractors differ from a target by one attribute only, so a
partial description is often ambiguous. The assistant answers with a slot number (`parse_slot` reads it);
feedback is implicit only; the game is complete when every target has been picked.
"""

from __future__ import annotations

import logging
import math
import random
import re
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from ilearn.errors import InvalidInput
from ilearn.evaluation.scenarios.base import derive_seed

logger = logging.getLogger(__name__)

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "kind": ("tower", "row", "stairs", "fan"),
    "piece": ("triangles", "squares", "diamonds", "slabs"),
    "fill": ("solid", "outlined", "striped", "grey"),
    "orientation": ("upright", "tilted left", "tilted right", "upside down"),
    "parts": ("2", "3", "4", "5"),
}
#: The order in which users add attributes to a description.
DESCRIBE_ORDER: tuple[str, ...] = ("kind", "piece", "parts", "fill", "orientation")
NUMBER_WORDS = {"2": "two", "3": "three", "4": "four", "5": "five"}
_ROTATION = {"upright": 0.0, "tilted left": 30.0, "tilted right": -30.0, "upside down": 180.0}
_FILL_LABEL = {"solid": "solid black", "outlined": "outlined", "striped": "striped", "grey": "grey"}
CELL = 96


@dataclass
class Figure:
    """One figure of a board: its slot number (1-based), attributes, full description and its own image."""

    slot: int
    attributes: dict[str, str]
    description: str
    crop: Image.Image


@dataclass
class Game:
    """A board of figures with numbered slots and the target slots the user wants picked, in order."""

    id: str
    board: Image.Image
    figures: list[Figure]
    targets: list[int]
    seed: int = 0

    def figure(self, slot: int) -> Figure:
        """The figure in a slot (1-based)."""
        if not 1 <= slot <= len(self.figures):
            raise InvalidInput(f"slot {slot} is not on this board (1..{len(self.figures)})")
        return self.figures[slot - 1]


@dataclass
class ReferenceGameScenario:
    """Teach games (played while learning) and held-out test games (scoring), all seeded."""

    teach_games: list[Game]
    test_games: list[Game]
    seed: int = 0
    name: str = "reference-game"
    general: list = field(default_factory=list)

    def games(self, split: str) -> list[Game]:
        """The teach or the test games."""
        if split not in ("teach", "test"):
            raise InvalidInput(f"split must be 'teach' or 'test', not {split!r}")
        return self.teach_games if split == "teach" else self.test_games


def describe(attributes: dict[str, str], keys: tuple[str, ...] | list[str] | None = None) -> str:
    """A noun phrase naming the figure by the attributes in `keys` (all of them by default).

    >>> describe({"kind": "tower", "piece": "triangles", "parts": "3", "fill": "striped",
    ...           "orientation": "tilted left"})
    'the striped tower of three triangles, tilted left'
    """
    keys = DESCRIBE_ORDER if keys is None else tuple(keys)
    a = attributes
    words = ["the"]
    if "fill" in keys:
        words.append(_FILL_LABEL[a["fill"]])
    words.append(a["kind"] if "kind" in keys else "figure")
    if "parts" in keys:
        words.append(f"of {NUMBER_WORDS[a['parts']]} {a['piece'] if 'piece' in keys else 'pieces'}")
    elif "piece" in keys:
        words.append(f"of {a['piece']}")
    text = " ".join(words)
    if "orientation" in keys:
        text += f", {a['orientation']}"
    return text


def distinguishing(target: dict[str, str], other: dict[str, str]) -> list[str]:
    """The attribute keys on which two figures differ, in DESCRIBE_ORDER."""
    return [k for k in DESCRIBE_ORDER if target[k] != other[k]]


def matches(attributes: dict[str, str], keys: tuple[str, ...] | list[str], target: dict[str, str]) -> bool:
    """Whether a figure fits a partial description of `target` made of `keys`."""
    return all(attributes[k] == target[k] for k in keys)


def precise_keys(game: Game, slot: int) -> list[str]:
    """The attributes a precise user names for the figure in `slot`: in DESCRIBE_ORDER, until no other figure
    of the board fits the description."""
    target = game.figure(slot).attributes
    others = [f.attributes for f in game.figures if f.slot != slot]
    keys: list[str] = []
    for key in DESCRIBE_ORDER:
        if not others:
            break
        keys.append(key)
        others = [o for o in others if o[key] == target[key]]
    return keys or [DESCRIBE_ORDER[0]]


_SLOT_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}


def parse_slot(text: str, n_slots: int) -> int | None:
    """The first slot number (digits or a number word) in a reply that lies in 1..n_slots, or None."""
    for token in re.findall(r"\d+|[a-z]+", text.lower()):
        value = int(token) if token.isdigit() else _SLOT_WORDS.get(token)
        if value is not None and 1 <= value <= n_slots:
            return value
    return None


def _piece(kind: str, size: float, rng: random.Random) -> list[tuple[float, float]]:
    s = size * rng.uniform(0.85, 1.15)
    if kind == "triangles":
        return [(-s / 2, s / 2), (s / 2, s / 2), (rng.uniform(-0.2, 0.2) * s, -s / 2)]
    if kind == "squares":
        return [(-s / 2, -s / 2), (s / 2, -s / 2), (s / 2, s / 2), (-s / 2, s / 2)]
    if kind == "diamonds":
        return [(0, -s / 2), (s / 2.6, 0), (0, s / 2), (-s / 2.6, 0)]
    skew = s * 0.3  # slabs: parallelograms
    return [(-s / 2 + skew, -s / 4), (s / 2 + skew, -s / 4), (s / 2 - skew, s / 4), (-s / 2 - skew, s / 4)]


def draw_figure(attributes: dict[str, str], seed: int, size: int = CELL) -> Image.Image:
    """One figure on a white square image; the seed only jitters part sizes and positions."""
    rng = random.Random(seed)
    n = int(attributes["parts"])
    scale = 4  # supersample, then shrink: smooth edges
    big = size * scale
    image = Image.new("L", (big, big), 255)
    d = ImageDraw.Draw(image)
    piece_size = big * 0.8 / (n if attributes["kind"] in ("tower", "row", "stairs") else 2.6)
    centres = []
    for i in range(n):
        t = i - (n - 1) / 2
        jitter = rng.uniform(-0.06, 0.06) * piece_size
        if attributes["kind"] == "tower":  # the first (largest) part at the bottom
            centres.append((jitter, -t * piece_size * 1.0, 0.0))
        elif attributes["kind"] == "row":
            centres.append((t * piece_size * 1.05, jitter, 0.0))
        elif attributes["kind"] == "stairs":
            centres.append((t * piece_size * 0.95, -t * piece_size * 0.95, 0.0))
        else:  # fan: parts spread around a pivot below the centre
            angle = math.radians(-70 + 140 * i / max(1, n - 1))
            r = piece_size * 0.85
            centres.append((r * math.sin(angle), -r * math.cos(angle) + piece_size * 0.4, math.degrees(angle)))
    rotation = math.radians(_ROTATION[attributes["orientation"]] + rng.uniform(-6, 6))
    fill = attributes["fill"]
    for i, (cx, cy, own) in enumerate(centres):  # parts shrink along the figure: orientation stays visible
        pts = _piece(attributes["piece"], piece_size * (1.0 - 0.5 * i / max(1, n)), rng)
        a = math.radians(own)
        pts = [(x * math.cos(a) - y * math.sin(a) + cx, x * math.sin(a) + y * math.cos(a) + cy) for x, y in pts]
        pts = [(big / 2 + x * math.cos(rotation) - y * math.sin(rotation),
                big / 2 + x * math.sin(rotation) + y * math.cos(rotation)) for x, y in pts]
        if fill == "outlined":
            d.polygon(pts, fill=255, outline=0, width=3 * scale)
        elif fill == "grey":
            d.polygon(pts, fill=140, outline=90, width=scale)
        else:
            d.polygon(pts, fill=20)
            if fill == "striped":
                mask = Image.new("L", (big, big), 0)
                ImageDraw.Draw(mask).polygon(pts, fill=255)
                stripes = Image.new("L", (big, big), 20)
                sd = ImageDraw.Draw(stripes)
                for k in range(-big, 2 * big, 9 * scale):
                    sd.line((k, 0, k - big, big), fill=235, width=2 * scale)
                image.paste(stripes, (0, 0), mask)
    return image.resize((size, size), Image.Resampling.LANCZOS).convert("RGB")


def _random_attributes(rng: random.Random) -> dict[str, str]:
    return {k: rng.choice(v) for k, v in ATTRIBUTES.items()}


def _mutate(attributes: dict[str, str], rng: random.Random) -> dict[str, str]:
    out = dict(attributes)
    key = rng.choice(list(ATTRIBUTES))
    out[key] = rng.choice([v for v in ATTRIBUTES[key] if v != attributes[key]])
    return out


def render_board(crops: list[Image.Image], cols: int = 5) -> Image.Image:
    """The crops laid out in a grid with their slot numbers (1-based) in the top-left corner of each cell."""
    rows = math.ceil(len(crops) / cols)
    pad = 4
    board = Image.new("RGB", (cols * (CELL + pad) + pad, rows * (CELL + pad) + pad), (200, 200, 200))
    d = ImageDraw.Draw(board)
    for i, crop in enumerate(crops):
        x, y = pad + (i % cols) * (CELL + pad), pad + (i // cols) * (CELL + pad)
        board.paste(crop.resize((CELL, CELL)), (x, y))
        d.rectangle((x, y, x + 15, y + 13), fill=(30, 60, 160))
        d.text((x + 3, y + 1), str(i + 1), fill=(255, 255, 255))
    return board


def make_game(seed: int, n_figures: tuple[int, int] = (6, 10), n_targets: tuple[int, int] = (2, 3),
              game_id: str = "game") -> Game:
    """A seeded game: unique figures, about half of the distractors one attribute away from a target."""
    rng = random.Random(seed)
    k = rng.randint(*n_figures)
    t = rng.randint(*n_targets)
    if not 1 <= t < k:
        raise InvalidInput(f"a game needs fewer targets ({t}) than figures ({k})")
    chosen: list[dict[str, str]] = []
    seen: set[tuple[str, ...]] = set()

    def add(attrs: dict[str, str]) -> None:
        key = tuple(attrs[a] for a in ATTRIBUTES)
        if key not in seen:
            seen.add(key)
            chosen.append(attrs)

    while len(chosen) < t:
        add(_random_attributes(rng))
    targets_attrs = list(chosen)
    while len(chosen) < k:
        add(_mutate(rng.choice(targets_attrs), rng) if rng.random() < 0.5 else _random_attributes(rng))
    rng.shuffle(chosen)
    figures = [Figure(slot=i + 1, attributes=a, description=describe(a),
                      crop=draw_figure(a, derive_seed("figure", seed, i)))
               for i, a in enumerate(chosen)]
    target_slots = [next(f.slot for f in figures if f.attributes is a) for a in targets_attrs]
    return Game(game_id, render_board([f.crop for f in figures]), figures, target_slots, seed)


def reference_game_scenario(seed: int = 0, n_teach: int = 20, n_test: int = 10,
                            n_figures: tuple[int, int] = (6, 10),
                            n_targets: tuple[int, int] = (2, 3)) -> ReferenceGameScenario:
    """`n_teach` teach games and `n_test` held-out games, all determined by `seed`."""
    if n_teach < 0 or n_test < 0:
        raise InvalidInput("n_teach and n_test must be >= 0")
    teach = [make_game(derive_seed("refgame", seed, "teach", i), n_figures, n_targets, f"teach{i}")
             for i in range(n_teach)]
    test = [make_game(derive_seed("refgame", seed, "test", i), n_figures, n_targets, f"test{i}")
            for i in range(n_test)]
    return ReferenceGameScenario(teach, test, seed)
