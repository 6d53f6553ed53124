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


# Three bottles a pharmacy robot is taught through chats, each with a name and a use (two facets). The stub image
# embedder of the tiny backend tells them apart (each has its own colour and background), so no correction is
# quarantined as a contradiction of another bottle's.
MEDICINES = {"red": ((200, 30, 30), "ibuprofen", "headaches"), "green": ((30, 160, 60), "aspirin", "fever"),
             "blue": ((40, 60, 200), "cetirizine", "allergies")}
NAME_QUESTION, USE_QUESTION = "What is this medicine called?", "What is it used for?"
TEACHING_VIEWS = ((-2, 0), (0, 6), (2, 12), (-1, 3), (1, 9))
NEW_VIEW = (1, 5)  # a photo none of the teaching chats showed


def medicine(colour: str, shift: int = 0, light: int = 0) -> bytes:
    """A PNG photo of one of MEDICINES' bottles; `shift` and `light` make another view of the same bottle."""
    import io

    cap = MEDICINES[colour][0]
    image = Image.new("RGB", (96, 96), tuple(255 - c // 3 - light for c in cap))
    draw = ImageDraw.Draw(image)
    draw.rectangle((22 + shift, 30, 74 + shift, 92), fill=tuple(min(255, c + light) for c in cap))
    draw.rectangle((34 + shift, 12, 62 + shift, 30), fill=cap)
    draw.rectangle((30 + shift, 50, 66 + shift, 62), fill=cap)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def teach_medicines(assistant, views=TEACHING_VIEWS) -> None:
    """Users ask each bottle's name and use on several photos and correct the model's answers."""
    for colour, (_, name, use) in MEDICINES.items():
        for i, (shift, light) in enumerate(views):
            user_id, photo = f"user{i % 3}", medicine(colour, shift, light)
            for question, correction in ((NAME_QUESTION, f"No, that's {name}."), (USE_QUESTION, f"No, it's for {use}.")):
                reply = assistant.respond(user_id, question, image=photo)
                assistant.respond(user_id, correction, session_id=reply.session_id)
                assistant.close_session(reply.session_id)


def learn_spied(assistant):
    """(outcome, rows the trainer received) of one `assistant.learn(general=False)`."""
    import pytest

    from ilearn.learning import recipes

    received: list[list[dict]] = []
    real_train = recipes.train

    def spy(vlm, rows, learn, path, **options):
        received.append(list(rows))
        return real_train(vlm, rows, learn, path, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recipes, "train", spy)
        outcome = assistant.learn(general=False)
    return outcome, received[0]
