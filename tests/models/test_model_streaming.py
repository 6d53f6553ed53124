"""Streamed replies: `ReplyPieces` hands out only text that the rest of the reply cannot change, and the
micro-batcher streams a call alone, in a batch, or not at all (the model decides what it can)."""

from __future__ import annotations

import threading

from ilearn.models.base import Generation, Message
from ilearn.models.batching import MicroBatcher
from ilearn.models.streaming import ReplyPieces, StreamingGenerator
from ilearn.models.stub import StreamingStubVLM, StubVLM

VOCAB = {1: "\n", 2: "Ibu", 3: "profen", 4: " is", 5: " a", 6: " pain", 7: " medicine", 8: " ", 9: ".", 10: "<end>",
         11: "\xc3", 12: "\xa9"}
END = 10


def decode(ids: list[int]) -> str:
    """A byte-level decoder: ids 11 and 12 are the two bytes of 'é' (half of it decodes to U+FFFD)."""
    raw = "".join(VOCAB[i] for i in ids if i != END).encode("latin-1")
    return raw.decode("utf-8", errors="replace")


def pieces_of(steps: list[list[int]], decoder=decode) -> tuple[list[str], ReplyPieces]:
    out: list[str] = []
    pieces = ReplyPieces(decoder, out.append, cut_ids={END})
    for ids in steps:
        pieces.add(ids)
    return out, pieces


def test_words_are_handed_out_once_a_space_follows_them_and_never_leading_whitespace():
    out, pieces = pieces_of([[1], [2], [3], [4], [5], [6], [7], [9]])
    assert out == ["Ibuprofen", " is", " a", " pain"]  # " medicine." may still grow: held back
    assert "".join(out) == "Ibuprofen is a pain" == pieces.sent
    assert decode([1, 2, 3, 4, 5, 6, 7, 9]).strip().startswith(pieces.sent)


def test_nothing_after_the_end_of_the_reply_is_handed_out():
    out, pieces = pieces_of([[2, 3, 4], [10], [5, 6, 8]])
    assert out == ["Ibuprofen"] and pieces.stopped


def test_a_half_decoded_character_is_held_back():
    out, _ = pieces_of([[2, 8], [11]])  # "Ibu \ufffd": the first byte of "é" alone
    assert out == ["Ibu"]
    out, _ = pieces_of([[2, 8], [11], [12], [8]])
    assert out == ["Ibu", " é"]


def test_streaming_stops_when_a_longer_decode_rewrites_what_was_sent():
    def cleanup(ids: list[int]) -> str:  # a tokenizer clean-up that turns "Ibu is" into "Ibuis" once a pain follows
        text = decode(ids)
        return text.replace("Ibu is", "Ibuis") if "pain" in text else text

    out, pieces = pieces_of([[2, 4, 8], [5, 6, 8], [7, 8]], cleanup)
    assert out == ["Ibu is"] and pieces.stopped


class Streaming(StreamingStubVLM):
    """A streaming model that batches too, recording how each call was answered."""

    def __init__(self, on_piece: bool = True) -> None:
        super().__init__(responder=lambda messages: f"{messages[-1].content} is a pain medicine")
        self.alone: list[str] = []
        self.batches: list[list[str]] = []
        if on_piece:
            self.generate_batch = self._batch_with_pieces
        else:
            self.generate_batch = self._batch

    def generate_stream(self, messages, *, max_new_tokens=None, on_text):
        self.alone.append(messages[-1].content)
        return super().generate_stream(messages, max_new_tokens=max_new_tokens, on_text=on_text)

    def _batch(self, conversations, *, max_new_tokens=None):
        self.batches.append([c[-1].content for c in conversations])
        return [Generation(text=self.responder(c)) for c in conversations]

    def _batch_with_pieces(self, conversations, *, max_new_tokens=None, on_piece=None):
        results = self._batch(conversations, max_new_tokens=max_new_tokens)
        for i, result in enumerate(results):
            if on_piece is not None:
                on_piece(i, result.text.split()[0])
        return results


def ask(text: str) -> list[Message]:
    return [Message("user", text)]


def test_a_streamed_call_alone_goes_through_generate_stream():
    vlm, got = Streaming(), []
    result = MicroBatcher().generate(vlm, ask("aspirin"), max_new_tokens=8, on_text=got.append)
    assert result.text == "aspirin is a pain medicine"
    assert got == ["aspirin", " is", " a", " pain"] and vlm.alone == ["aspirin"]


def test_a_call_that_must_avoid_rejected_answers_is_not_streamed():
    vlm, got = Streaming(), []
    result = MicroBatcher().generate(vlm, ask("aspirin"), max_new_tokens=8, avoid=["paracetamol"], on_text=got.append)
    assert result.text == "aspirin is a pain medicine" and got == [] and vlm.alone == []
    assert vlm.avoided == []  # its greedy reply was not the rejected one: no fallback needed
    rejected = MicroBatcher().generate(vlm, ask("aspirin"), max_new_tokens=8, avoid=["aspirin is a pain medicine"],
                                       on_text=got.append)
    assert got == [] and vlm.avoided == ["aspirin is a pain medicine"] and rejected.text


def test_a_model_that_cannot_stream_answers_whole():
    vlm, got = StubVLM(responder=lambda m: "aspirin is a pain medicine"), []
    assert not isinstance(vlm, StreamingGenerator)
    assert MicroBatcher().generate(vlm, ask("x"), max_new_tokens=8, on_text=got.append).text.startswith("aspirin")
    assert got == []


def together(batcher: MicroBatcher, vlm, texts: list[str], streamed: set[str]) -> dict[str, list[str]]:
    """Turns that reach the model at once; the pieces each streamed call got."""
    ready = threading.Barrier(len(texts), timeout=10)
    got: dict[str, list[str]] = {t: [] for t in texts}

    def turn(text: str) -> None:
        with batcher.turn():
            ready.wait()
            batcher.generate(vlm, ask(text), max_new_tokens=8, on_text=got[text].append if text in streamed else None)

    threads = [threading.Thread(target=turn, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return got


def test_streamed_calls_are_batched_and_each_gets_its_own_rows_pieces():
    vlm = Streaming()
    got = together(MicroBatcher(max_batch=8, workers=1, gather_s=2.0), vlm, ["q0", "q1", "q2"], {"q0", "q2"})
    assert sorted(len(b) for b in vlm.batches) == [3] and vlm.alone == []
    assert got == {"q0": ["q0"], "q1": [], "q2": ["q2"]}


def test_a_streamed_call_goes_alone_on_a_model_whose_batches_cannot_stream():
    vlm = Streaming(on_piece=False)
    got = together(MicroBatcher(max_batch=8, workers=1, gather_s=2.0), vlm, ["q0", "q1", "q2"], {"q0"})
    assert vlm.alone == ["q0"] and [sorted(b) for b in vlm.batches] == [["q1", "q2"]]
    assert got["q0"] == ["q0", " is", " a", " pain"]
