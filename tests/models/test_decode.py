"""Batched greedy decoding (`ComposedVLMChat.generate_batch`): the shared prompt start run once, finished rows
dropped, each reply handed out when it ends, and every reply the same as `generate` gives alone."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from ilearn.config import ModelConfig
from ilearn.models import load_model
from ilearn.models.base import Message
from ilearn.models.composed_chat import _shared_start

torch.set_num_threads(1)

RED = Image.new("RGB", (50, 40), (255, 0, 0))
BLUE = Image.new("RGB", (20, 70), (0, 0, 255))
LESSONS = [
    ([Message("user", "what color is the shape?", RED)], "red"),
    ([Message("user", "describe the shape", BLUE)], "it is a tall blue shape on white"),
    ([Message("user", "hello there")], "hello, how can I help you today?"),
    ([Message("user", "what is this?", BLUE), Message("assistant", "a bottle"), Message("user", "its dose?")],
     "two a day"),
]
"""Conversations and the replies the tiny model is taught: different lengths, so rows finish at different steps."""


def teach(device: str = "cpu"):
    """The tiny model taught LESSONS until it repeats them (random weights repeat one token to the limit)."""
    vlm = load_model(ModelConfig(backend="tiny", max_new_tokens=24, device=device))
    model = vlm.model
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        model.train()
        for _ in range(10):
            for messages, reply in LESSONS:
                prompt, images = vlm.prompt_text(messages)
                batch = vlm._encode(prompt + reply + "<|im_end|>", images)
                loss = model(**batch, labels=batch["input_ids"]).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        model.eval()
        if all(vlm.generate(messages).text == reply for messages, reply in LESSONS):
            break
    return vlm


@pytest.fixture(scope="module")
def taught():
    return teach()


CONVERSATIONS = [
    *(messages for messages, _ in LESSONS),
    [Message("user", "what color is the shape?", RED), Message("assistant", "red"),
     Message("user", "what color is the shape?", BLUE)],  # two images in one row
    [Message("system", "Answer in one word."), Message("user", "what color is the shape?", BLUE)],  # no shared start
    [Message("user", "something it never saw")],
]


def test_batched_replies_equal_replies_alone(taught):
    check_batches_equal_replies_alone(taught)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batched_replies_equal_replies_alone_on_cuda():
    vlm = teach("cuda")
    assert next(vlm.model.parameters()).device.type == "cuda"
    check_batches_equal_replies_alone(vlm)


def check_batches_equal_replies_alone(vlm) -> None:
    alone = [vlm.generate(c) for c in CONVERSATIONS]
    assert [g.text for g in alone[:4]] == [reply for _, reply in LESSONS]  # the lessons were learnt
    assert len({g.completion_tokens for g in alone}) >= 3  # rows end at different steps
    for conversations in (CONVERSATIONS, CONVERSATIONS[:4], CONVERSATIONS[4:], CONVERSATIONS[::-1]):
        batch = vlm.generate_batch(conversations)
        expected = [alone[CONVERSATIONS.index(c)] for c in conversations]
        assert [g.text for g in batch] == [g.text for g in expected]
        assert [g.completion_tokens for g in batch] == [g.completion_tokens for g in expected]
        assert [g.prompt_tokens for g in batch] == [g.prompt_tokens for g in expected]


def test_each_reply_is_handed_out_when_it_ends(taught):
    handed: list[tuple[int, str, int]] = []
    batch = taught.generate_batch(CONVERSATIONS[:4], on_reply=lambda i, g: handed.append((i, g.text,
                                                                                             g.completion_tokens)))
    assert sorted(handed) == [(i, g.text, g.completion_tokens) for i, g in enumerate(batch)]
    lengths = [n for _, _, n in handed]
    assert lengths == sorted(lengths)  # the shortest reply first: it left the batch first
    assert handed[0][1] == "red"


def test_the_token_limit_ends_every_row(taught):
    batch = taught.generate_batch(CONVERSATIONS, max_new_tokens=3)
    alone = [taught.generate(c, max_new_tokens=3) for c in CONVERSATIONS]
    assert [g.text for g in batch] == [g.text for g in alone]
    assert all(g.completion_tokens <= 3 for g in batch)
    assert taught.generate_batch([]) == []


def test_a_batch_of_one_equals_generate(taught):
    for messages in CONVERSATIONS:
        assert taught.generate_batch([messages])[0].text == taught.generate(messages).text


def test_the_shared_start_stops_before_images_and_before_the_last_token():
    image = 99
    assert _shared_start([[1, 2, 3, 4], [1, 2, 3, 5]], image) == 3
    assert _shared_start([[1, 2, image, 4], [1, 2, image, 4]], image) == 2
    assert _shared_start([[1, 2, 3], [1, 2, 3, 4]], image) == 2  # the shorter prompt keeps its last token
    assert _shared_start([[1, 2, 3], [7, 2, 3]], image) == 0
    assert _shared_start([[1, 2, 3]], image) == 0


def test_settings_that_change_greedy_choices_are_left_to_transformers(taught):
    config = taught.model.language.generation_config
    before = config.repetition_penalty
    config.repetition_penalty = 3.0
    try:
        alone = [taught.generate(c) for c in CONVERSATIONS]
        assert [g.text for g in taught.generate_batch(CONVERSATIONS)] == [g.text for g in alone]
    finally:
        config.repetition_penalty = before
    assert [g.text for g in alone] != [g.text for g in taught.generate_batch(CONVERSATIONS)]  # it mattered


def test_conversations_joining_a_running_batch_get_the_replies_they_get_alone(taught):
    alone = {i: g.text for i, g in enumerate(taught.generate(c) for c in CONVERSATIONS)}
    order = [0, 1, 6, 2, 3, 4, 5]  # 2 (the longest prompt) joins rows with shorter caches, 4 and 5 join later
    waiting = [[CONVERSATIONS[2], CONVERSATIONS[3]], [CONVERSATIONS[4], CONVERSATIONS[5]]]
    asked: list[int] = []
    handed: dict[int, str] = {}

    def more(free: int):
        asked.append(free)
        return waiting.pop(0) if len(asked) in (1, 3) else []

    batch = taught.generate_batch([CONVERSATIONS[i] for i in order[:3]], more=more,
                                  on_reply=lambda i, g: handed.setdefault(i, g.text))
    assert [g.text for g in batch] == [alone[i] for i in order]
    assert handed == {i: alone[j] for i, j in enumerate(order)}
    assert asked[0] == taught.config.max_batch - 3 and waiting == []


def _without_last_word(text: str) -> str:
    """What a stream hands out of a finished reply: all but its last word (`ilearn.models.streaming`)."""
    return text.rsplit(" ", 1)[0] if " " in text else ""


def test_a_streamed_reply_arrives_while_it_is_decoded_and_is_the_reply_generate_gives(taught):
    messages, reply = LESSONS[1]  # "it is a tall blue shape on white"
    forwards: list[None] = []  # language-model passes so far: the prompt, then one a token
    hook = taught.model.language.register_forward_hook(lambda *args: forwards.append(None))
    got: list[tuple[str, int]] = []
    try:
        streamed = taught.generate_stream(messages, on_text=lambda piece: got.append((piece, len(forwards))))
    finally:
        hook.remove()
    assert streamed.text == reply == taught.generate(messages).text
    assert [p for p, _ in got] == ["it", " is", " a", " tall", " blue", " shape", " on"]
    assert got[0][1] < got[-1][1] < len(forwards)  # each piece came while decoding went on


def test_each_row_of_a_batch_streams_its_own_reply(taught):
    got: dict[int, list[tuple[str, int]]] = {}
    steps: list[None] = []
    hook = taught.model.language.register_forward_hook(lambda *args: steps.append(None))
    try:
        batch = taught.generate_batch(CONVERSATIONS[:4],
                                      on_piece=lambda i, piece: got.setdefault(i, []).append((piece, len(steps))))
    finally:
        hook.remove()
    assert [g.text for g in batch] == [reply for _, reply in LESSONS]
    for i, (_, reply) in enumerate(LESSONS):
        assert "".join(p for p, _ in got.get(i, [])) == _without_last_word(reply)
    assert got[1][0][1] < len(steps)  # the long reply's first word came before the batch ended
    # joining rows stream too
    joined = taught.generate_batch([CONVERSATIONS[0]], more=lambda free, w=[CONVERSATIONS[1]]: [w.pop()] if w else [],
                                   on_piece=lambda i, piece: got.setdefault(10 + i, []).append((piece, 0)))
    assert [g.text for g in joined] == [LESSONS[0][1], LESSONS[1][1]]
    assert "".join(p for p, _ in got[11]) == _without_last_word(LESSONS[1][1])
