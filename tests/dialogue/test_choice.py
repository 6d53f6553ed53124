"""Pointing at the panel of a board a user describes: panels, descriptions, picks, and what a pick teaches."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.dialogue.choice import (
    PANEL_QUESTION,
    choose,
    pick_text,
    referring_expression,
    slots_in,
    split_panels,
)
from ilearn.evaluation.scenarios.reference_game import make_game, parse_slot, render_board
from ilearn.learning.construct import distil_session
from ilearn.learning.datasets import build_kto, build_sft
from ilearn.memory.sqlite import open_store
from ilearn.memory.trust import ACCEPTED_KEY, is_description
from ilearn.models.stub import StubVLM
from ilearn.types import EventStatus, Feedback, Label, TurnKind


def _tint(value: int) -> Image.Image:
    return Image.new("RGB", (40, 40), (value, value, value))


def _greyness(messages, candidate: str) -> float:
    """A scorer that finds "the dark one" in the darkest panel and "the light one" in the lightest."""
    mean = float(np.asarray(messages[-1].image).mean()) / 255.0
    return -mean if "dark" in candidate else mean


def test_a_board_splits_into_its_panels_in_reading_order():
    game = make_game(3, n_figures=(7, 7))
    panels = split_panels(game.board)
    assert panels is not None and len(panels) == 7  # the empty cells of the last row are not panels
    for panel, figure in zip(panels, game.figures, strict=True):
        assert panel.size == figure.crop.size
        a, b = np.asarray(panel, np.int16)[16:], np.asarray(figure.crop, np.int16)[16:]  # below the label
        assert np.abs(a - b).max() == 0


@pytest.mark.parametrize("image", [Image.new("RGB", (64, 64), (200, 30, 30)), _tint(255)])
def test_a_photo_or_a_plain_image_is_not_a_board(image):
    photo = image.copy()
    photo.paste((10, 200, 10), (20, 20, 44, 44))
    assert split_panels(image) is None and split_panels(photo) is None


@pytest.mark.parametrize("text, expected", [
    ("Which number is the grey fan? Answer with the number.", "the grey fan"),
    ("Could you select the striped tower of two slabs, tilted left, please?", "the striped tower of two slabs, "
                                                                               "tilted left"),
    ("grab the solid row", "the solid row"),
    ("the outlined stairs please", "the outlined stairs"),
    ("Right, I'm thinking of the figure of three diamonds.", "the figure of three diamonds"),
    ("Select stairs.", "stairs"),
    ("What colour is the fan?", None),
    ("Is this the grey fan?", None),
    ("Hmm, what is this one then?", None),
])
def test_the_description_in_a_request(text, expected):
    assert referring_expression(text) == expected


def test_choose_scores_every_open_panel_and_skips_the_avoided_ones():
    panels = [_tint(200), _tint(20), _tint(120), _tint(60)]
    vlm = StubVLM(scorer=_greyness)
    pick = choose(vlm, panels, "the dark one")
    assert pick is not None and pick.slot == 2 and pick.panel is panels[1]
    assert all(call_score is not None for call_score in pick.scores)
    again = choose(vlm, panels, "the dark one", avoid={2})
    assert again is not None and again.slot == 4 and again.scores[1] is None
    assert choose(vlm, panels, "the dark one", avoid={1, 2, 3, 4}) is None
    assert slots_in([pick_text(2), "It's number 10."]) == {2, 10} and parse_slot(pick_text(7), 9) == 7


class _GameDecoder:
    def decode(self, turns):
        text = turns[-1].text.lower()
        if text.startswith("yes"):
            return Feedback(Label.POSITIVE, 0.9)
        if text.startswith("no"):  # "no, not that one": with a description, never an answer for the pick
            return Feedback(Label.NEGATIVE, 0.9, correction="the dark one" if "not that" in text else None)
        return Feedback(Label.NEUTRAL, 0.5)


@pytest.fixture
def board_assistant(tmp_path):
    store = open_store(tmp_path / "home")
    vlm = StubVLM(responder=lambda messages: "a grey square", scorer=_greyness)
    return Assistant(Config(home=str(tmp_path / "home")), vlm, store, feedback_decoder=_GameDecoder())


def _board() -> Image.Image:
    return render_board([_tint(v) for v in (200, 20, 120, 60, 240)])


def test_the_assistant_points_and_a_pick_becomes_an_event_about_the_panel(board_assistant):
    a = board_assistant
    board = _board()
    first = a.respond("ana", "Please pick the dark one.", image=board)
    assert first.kind == TurnKind.ANSWER and first.text == pick_text(2)
    assert first.precise_question == "the dark one"
    a.respond("ana", "no, not that one", session_id=first.session_id)
    second = a.respond("ana", "Which number is the dark one? Answer with the number.", session_id=first.session_id)
    assert second.text == pick_text(4)  # never the rejected panel again
    a.respond("ana", "yes! now the light one", session_id=first.session_id)
    third = a.respond("ana", "Which number is the light one?", session_id=first.session_id)
    assert third.text == pick_text(5)
    a.respond("ana", "no", session_id=first.session_id)
    fourth = a.respond("ana", "Which number is the light one?", session_id=first.session_id)
    assert fourth.text == pick_text(1)  # 5 turned down, 4 already accepted for the dark one
    # a normal question on the board still goes to the model
    assert a.respond("ana", "What is this?", session_id=first.session_id).kind == TurnKind.CLARIFICATION

    session = a.get_session(first.session_id)
    picks = [t for t in session.turns if t.kind == TurnKind.ANSWER and t.image is not None]
    assert len(picks) == 4
    panel = Image.open(io.BytesIO(a.store.get_image_bytes(picks[0].image.sha256)))
    assert float(np.asarray(panel.convert("L")).mean()) < 60  # the panel it chose, stored

    events = distil_session(session)
    assert [(e.question, e.answer, e.rejected, e.status) for e in events] == [
        (PANEL_QUESTION, "", ["the dark one"], EventStatus.QUARANTINED),
        (PANEL_QUESTION, "the dark one", [], EventStatus.ACTIVE),
        (PANEL_QUESTION, "", ["the light one"], EventStatus.QUARANTINED),
    ]  # the fourth pick had no reaction: nothing learnt from it
    assert [e.image.sha256 for e in events] == [p.image.sha256 for p in picks[:3]]
    assert all(is_description(e) for e in events)  # descriptions: none competes with another (memory.trust)
    assert not any(ACCEPTED_KEY in e.provenance for e in events)  # the user's own words: taught, not accepted
    sft = build_sft(events)
    assert len(sft) == 1 and sft[0]["messages"][0]["content"][1]["text"] == PANEL_QUESTION
    assert [r["label"] for r in build_kto(events)] == [False, True, False]


def test_a_later_turn_never_judges_a_pick(board_assistant):
    a = board_assistant
    first = a.respond("ana", "Please pick the dark one.", image=_board())
    a.respond("ana", "hmm, let me think", session_id=first.session_id)  # neutral
    a.respond("ana", "no, no, no", session_id=first.session_id)  # about nothing the assistant said since
    assert distil_session(a.get_session(first.session_id)) == []


def test_a_question_after_a_pick_is_an_event_of_its_own(board_assistant):
    a = board_assistant
    first = a.respond("ana", "Please pick the dark one.", image=_board())
    a.respond("ana", "no, not that one", session_id=first.session_id)
    answer = a.respond("ana", "no, what is this medicine called?", session_id=first.session_id)
    assert answer.kind == TurnKind.ANSWER and answer.text == "a grey square"  # the model, not a pick
    a.respond("ana", "yes, thanks", session_id=first.session_id)
    pick, question = distil_session(a.get_session(first.session_id))
    assert (pick.question, pick.answer, pick.rejected) == (PANEL_QUESTION, "", ["the dark one"])
    assert (question.question, question.answer) == ("What is this called?", "a grey square")
    assert question.image is not None and question.image != pick.image  # the board, not the panel
