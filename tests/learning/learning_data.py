"""Helpers of the learning tests: coloured-shape images and rows in TRL's standard columns."""

from __future__ import annotations

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60)}


def shape(colour: str, size: int = 32) -> Image.Image:
    """A filled circle of a named colour on white."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    ImageDraw.Draw(image).ellipse((size // 5, size // 5, 4 * size // 5, 4 * size // 5), fill=COLOURS[colour])
    return image


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


QUESTION = "what color is the shape?"


def rows_for(recipe: str, n: int = 4, wrong: bool = False) -> list[dict]:
    """`n` rows for `recipe` about coloured shapes (`wrong`: teach the wrong colours)."""
    names = list(COLOURS)
    out = []
    for i in range(n):
        colour = names[i % len(names)]
        other = names[(i + 1) % len(names)]
        answer = other if wrong else colour
        image = [shape(colour)]
        if recipe == "sft":
            out.append({"messages": user(QUESTION) + assistant(answer), "images": image})
        elif recipe == "dpo":
            out.append({"prompt": user(QUESTION), "chosen": assistant(answer), "rejected": assistant(other),
                        "images": image})
        elif recipe == "kto":
            good = i % 2 == 0
            out.append({"prompt": user(QUESTION), "completion": assistant(colour if good else other),
                        "label": good, "images": image})
        else:  # reinforce
            good = i % 2 == 0
            out.append({"prompt": user(QUESTION), "completion": assistant(colour if good else other),
                        "label": "positive" if good else "negative", "images": image})
    return out
