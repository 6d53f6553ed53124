"""Pointing: pick the panel of a board that a user describes ("Which number is the grey fan?").

A *board* is one image made of panels laid out on a grid and separated by a plain gutter (a game board, a
contact sheet, the shelves of a cabinet photographed front on). `split_panels` cuts it into its panels in
reading order, so panel ``k`` is the one labelled ``k`` (1-based). A request on a board that names a
thing (`referring_expression`: "Please pick the striped tower.", "Which number is the grey fan? Answer with
the number.") is answered by `choose`: the model scores the description as its own description of every
panel (``log p(expression | panel, PANEL_QUESTION)``) and the best panel the user has not turned down is
the answer ("It's number 3.").

That makes each pick one image-level judgement the model can learn from feedback alone: construct.py
distils a pick into an event about the *panel* (question `PANEL_QUESTION`, answer the user's description
when they accepted the pick, the description as a rejected answer when they turned it down), and every
training recipe then learns to describe the panels as users do, which is exactly what the next pick scores.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ilearn.models.base import Message

logger = logging.getLogger(__name__)

PANEL_QUESTION = "Describe this figure."
"""The question a pick is distilled under: its answer is the user's description of the panel."""

_GUTTER_TOLERANCE = 6  # per channel, out of 255
_MIN_PANEL = 12  # pixels: thinner runs between gutters are rules or noise, not panels
_NOT_POINTING = re.compile(r"\b(what|what's|how|why|who|whose|when|where)\b"
                           r"|^\s*(is|are|does|do|did|can you (tell|describe|count))\b", re.IGNORECASE)
_DESCRIPTION = re.compile(r"\b(?:the|a|an)\s+[^.?!]+", re.IGNORECASE)
_TRAILING = re.compile(r"(?:[\s,]+(?:please|for me|thanks|thank you))+\s*$", re.IGNORECASE)
_LEADING = re.compile(r"^\s*(?:(?:please|now|ok|okay|yes|no|right|and|then|next|i mean|could you|can you|would you|"
                      r"select|pick|choose|grab|take|point (?:at|to)|show me|find|which (?:number|one|figure|panel)"
                      r"(?: is)?)[\s,!.:]*)+", re.IGNORECASE)


@dataclass(frozen=True)
class Pick:
    """The chosen panel (1-based), its image, and every panel's score (None for panels the user turned down)."""

    slot: int
    panel: Image.Image
    scores: list[float | None]


def split_panels(image: Image.Image) -> list[Image.Image] | None:
    """The panels of a board in reading order, or None when the image is not a board of at least 2 panels.

    The gutter is the colour of the top-left pixel; rows and columns made of it alone separate the panels.
    Cells that are all gutter (the empty end of the last row) are not panels.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    gutter = np.all(np.abs(rgb - rgb[0, 0]) <= _GUTTER_TOLERANCE, axis=2)
    rows, cols = _runs(~gutter.all(axis=1)), _runs(~gutter.all(axis=0))
    if len(rows) * len(cols) < 2:
        return None
    panels = [image.crop((c0, r0, c1, r1)).convert("RGB") for r0, r1 in rows for c0, c1 in cols
              if not gutter[r0:r1, c0:c1].all()]
    return panels if len(panels) >= 2 else None


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the runs of True at least _MIN_PANEL long."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True) if e - s >= _MIN_PANEL]


def referring_expression(text: str) -> str | None:
    """What a pointing request names, or None when the text asks something else about the image.

    >>> referring_expression("Which number is the grey fan? Answer with the number.")
    'the grey fan'
    >>> referring_expression("Could you select the striped tower of two slabs, tilted left, please?")
    'the striped tower of two slabs, tilted left'
    >>> referring_expression("What colour is the fan?") is None
    True
    """
    if _NOT_POINTING.search(text):
        return None
    found = _DESCRIPTION.search(text)
    phrase = found.group(0) if found else _LEADING.sub("", text).split("?")[0]
    phrase = _TRAILING.sub("", phrase.strip(" \t\n.,!?")).strip(" .,!?")
    return phrase or None


def slots_in(texts: Sequence[str]) -> set[int]:
    """The slot numbers named in earlier picks ("It's number 3." -> 3)."""
    return {int(n) for t in texts for n in re.findall(r"\b(\d+)\b", t)}


def pick_text(slot: int) -> str:
    """The assistant's answer for a pick."""
    return f"It's number {slot}."


def choose(vlm, panels: Sequence[Image.Image], expression: str, avoid: set[int] = frozenset()) -> Pick | None:
    """The panel the model finds best described by `expression`, skipping the slots in `avoid`; None when
    every panel is avoided."""
    scores: list[float | None] = []
    for slot, panel in enumerate(panels, start=1):
        if slot in avoid:
            scores.append(None)
            continue
        scores.append(vlm.score([Message("user", PANEL_QUESTION, image=panel)], [expression])[0])
    open_ = [(s, i) for i, s in enumerate(scores) if s is not None]
    if not open_:
        return None
    best = max(open_)[1]
    return Pick(best + 1, panels[best], scores)


__all__ = ["PANEL_QUESTION", "Pick", "choose", "pick_text", "referring_expression", "slots_in", "split_panels"]
