"""The pointing stage: a request that describes a thing on a board of panels is answered with the panel.

A scenario's own stage (the reference game's boards, `ilearn.dialogue.choice`), tried on a new request before
Chain of Question: it applies only when the image is a board and the request names a thing on it.
"""

from __future__ import annotations

import time

from ilearn.dialogue import choice, prompts
from ilearn.images import png_image
from ilearn.turn import TurnState, accepted_answers
from ilearn.types import TurnKind


class PointAtPanel:
    """Pick the panel a request describes, never one the user turned down or already accepted in this dialogue.

    The answer turn carries the chosen panel as its image and the expression as its precise question: what
    construct.py distils the pick from.
    """

    def __init__(self, max_pixels: int = 40_000_000) -> None:
        self.max_pixels = max_pixels

    def __call__(self, state: TurnState) -> bool:
        """Answer `state` with a pick (True), or leave it to the turn (False: no board, or no description)."""
        if state.image is None or (expression := choice.referring_expression(state.request.text)) is None:
            return False
        panels = choice.split_panels(state.image)
        if panels is None:
            return False
        start = time.perf_counter()
        taken = choice.slots_in(state.avoid) | choice.slots_in(accepted_answers(state.history))
        pick = choice.choose(state.model.vlm, panels, expression, taken)
        state.clock("answer", start)
        if pick is None:
            state.reply = state.say(prompts.NOT_SURE, TurnKind.ANSWER, precise_question=expression)
            return True
        _, ref, data = png_image(pick.panel, max_pixels=self.max_pixels)
        state.reply_image = (ref, data)
        state.reply = state.say(choice.pick_text(pick.slot), TurnKind.ANSWER, precise_question=expression,
                                image=ref)
        return True


__all__ = ["PointAtPanel"]
