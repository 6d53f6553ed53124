"""The micro-batcher: concurrent answers on one model in one batch; alone, a call is a plain generate."""

from __future__ import annotations

import threading
import time

import pytest

from ilearn.models.base import Generation, Message
from ilearn.models.batching import MicroBatcher


class Batching:
    """A model with generate_batch that records what it was called with."""

    def __init__(self, fail_batches: bool = False) -> None:
        self.batches: list[int] = []
        self.singles: list[tuple[str, tuple[str, ...]]] = []
        self.fail_batches = fail_batches
        self._lock = threading.Lock()

    def generate(self, messages, *, max_new_tokens=48, avoid=()):
        with self._lock:
            self.singles.append((messages[-1].content, tuple(avoid)))
        return Generation(text=f"alone: {messages[-1].content}")

    def generate_batch(self, conversations, *, max_new_tokens=None):
        with self._lock:
            self.batches.append(len(conversations))
        if self.fail_batches:
            raise RuntimeError("out of memory")
        return [Generation(text=f"batched: {c[-1].content}") for c in conversations]

    def score(self, messages, candidates):
        return [0.0] * len(candidates)


def ask(text: str) -> list[Message]:
    return [Message("user", text)]


def together(batcher: MicroBatcher, vlm, n: int) -> list[str]:
    """n turns that all reach the model: each enters its turn, then all ask at once."""
    ready = threading.Barrier(n, timeout=10)
    out: list[str | None] = [None] * n

    def turn(i: int) -> None:
        with batcher.turn():
            ready.wait()
            out[i] = batcher.generate(vlm, ask(f"q{i}"), max_new_tokens=8).text

    threads = [threading.Thread(target=turn, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return out


def test_turns_reaching_the_model_together_are_one_batch():
    vlm = Batching()
    out = together(MicroBatcher(max_batch=8, workers=1, gather_s=10), vlm, 6)
    assert vlm.batches == [6] and vlm.singles == []
    assert out == [f"batched: q{i}" for i in range(6)]


def test_batches_hold_at_most_max_batch():
    vlm = Batching()
    batcher = MicroBatcher(max_batch=4, workers=1, gather_s=10)
    out = together(batcher, vlm, 8)
    assert sorted(vlm.batches) == [4, 4] and batcher.calls == 8 and batcher.runs == 2
    assert out == [f"batched: q{i}" for i in range(8)]


def test_free_workers_share_the_waiting_turns_and_run_at_the_same_time():
    class Concurrent(Batching):
        both = threading.Barrier(2, timeout=10)  # a batch returns only once the other one is running too

        def generate_batch(self, conversations, *, max_new_tokens=None):
            self.both.wait()
            return super().generate_batch(conversations, max_new_tokens=max_new_tokens)

    vlm = Concurrent()
    out = together(MicroBatcher(max_batch=8, workers=2, gather_s=10, split=True), vlm, 7)
    assert sorted(vlm.batches) == [3, 4] and vlm.singles == []
    assert out == [f"batched: q{i}" for i in range(7)]


def test_a_reply_that_ends_early_returns_before_its_batch_ends():
    class Streaming(Batching):
        """Hands out the reply of "q0" at once, the others only when `finish` is set."""

        def __init__(self) -> None:
            super().__init__()
            self.finish = threading.Event()
            self.still_running: list[bool] = []

        def generate_batch(self, conversations, *, max_new_tokens=None, on_reply=None):
            out = [Generation(text=f"streamed: {c[-1].content}") for c in conversations]
            first = next(i for i, c in enumerate(conversations) if c[-1].content == "q0")
            on_reply(first, out[first])
            self.finish.wait(10)
            self.still_running.append(self.finish.is_set())
            return out

    vlm = Streaming()
    batcher = MicroBatcher(max_batch=8, workers=1, gather_s=10, early=True)
    ready = threading.Barrier(3, timeout=10)
    out: dict[int, str] = {}

    def turn(i: int) -> None:
        with batcher.turn():
            ready.wait()
            out[i] = batcher.generate(vlm, ask(f"q{i}"), max_new_tokens=8).text
            if i == 0:
                vlm.finish.set()  # only q0's caller lets the batch end: it must have its reply first

    threads = [threading.Thread(target=turn, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert out == {i: f"streamed: q{i}" for i in range(3)} and vlm.still_running == [True]


class Joining(Batching):
    """Hands out each reply at once; then, until `stop` is set, asks for calls that join (and answers them)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.stop = threading.Event()
        self.joined: list[str] = []

    def generate_batch(self, conversations, *, max_new_tokens=None, on_reply=None, more=None):
        with self._lock:
            self.batches.append(len(conversations))
        out = [Generation(text=f"batched: {c[-1].content}") for c in conversations]
        for i, g in enumerate(out):
            on_reply(i, g)
        self.started.set()
        while not self.stop.is_set():
            for c in more(8 - len(conversations)) if more else []:
                self.joined.append(c[-1].content)
                out.append(Generation(text=f"joined: {c[-1].content}"))
                on_reply(len(out) - 1, out[-1])
            time.sleep(0.01)
        return out


def run_with_a_latecomer(workers: int, join: bool = True) -> tuple[Joining, dict[int, str]]:
    """Two calls batched; a third made while their batch runs on one of `workers`; the batch ends once the third
    has its reply."""
    vlm = Joining()
    batcher = MicroBatcher(max_batch=8, workers=1, gather_s=10, early=True, join=join)  # one batch of two
    out: dict[int, str] = {}
    ready = threading.Barrier(2, timeout=10)

    def ask_as(i: int) -> None:
        with batcher.turn():
            if i < 2:
                ready.wait()  # both on their way before either reaches the model: one batch
            out[i] = batcher.generate(vlm, ask(f"q{i}"), max_new_tokens=8).text

    first = [threading.Thread(target=ask_as, args=(i,)) for i in range(2)]
    for t in first:
        t.start()
    assert vlm.started.wait(10)
    batcher.workers = workers
    leave = threading.Event()

    def on_its_way() -> None:  # another turn that may reach the model: the third call waits for it a moment
        with batcher.turn():
            leave.wait(10)

    other = threading.Thread(target=on_its_way)
    other.start()
    threading.Timer(0.5, leave.set).start()
    if not join:
        threading.Timer(1.0, vlm.stop.set).start()  # the batch ends by itself: the third call waits for it
    ask_as(2)
    other.join(10)
    vlm.stop.set()
    for t in first:
        t.join(10)
    return vlm, out


def test_a_call_joins_a_running_batch_when_no_worker_is_free():
    vlm, out = run_with_a_latecomer(workers=1)
    assert vlm.batches == [2] and vlm.joined == ["q2"] and vlm.singles == []
    assert out == {0: "batched: q0", 1: "batched: q1", 2: "joined: q2"}


def test_without_join_a_call_waits_for_a_worker():
    vlm, out = run_with_a_latecomer(workers=1, join=False)
    assert vlm.batches == [2] and vlm.joined == [] and out[2] == "alone: q2"


def test_a_call_goes_to_a_free_worker_rather_than_join():
    vlm, out = run_with_a_latecomer(workers=2)
    assert vlm.batches == [2] and vlm.joined == [] and out[2] == "alone: q2"


def test_by_default_a_batch_is_answered_together_and_not_split():
    class Streaming(Batching):
        def generate_batch(self, conversations, *, max_new_tokens=None, on_reply=None, more=None):
            assert on_reply is None and more is None
            return super().generate_batch(conversations, max_new_tokens=max_new_tokens)

    vlm = Streaming()
    out = together(MicroBatcher(max_batch=8, workers=2, gather_s=10), vlm, 7)
    assert vlm.batches == [7] and out == [f"batched: q{i}" for i in range(7)]


def test_one_call_alone_is_a_plain_generate_without_waiting():
    vlm = Batching()
    batcher = MicroBatcher(gather_s=30)
    start = time.perf_counter()
    with batcher.turn():
        assert batcher.generate(vlm, ask("q"), max_new_tokens=8).text == "alone: q"
    assert time.perf_counter() - start < 5 and vlm.batches == []


def test_a_turn_that_needs_no_model_stops_the_wait():
    vlm = Batching()
    batcher = MicroBatcher(gather_s=30)
    entered = threading.Event()
    leave = threading.Event()

    def clarifying_turn():  # ends without calling the model
        with batcher.turn():
            entered.set()
            leave.wait(10)

    other = threading.Thread(target=clarifying_turn)
    other.start()
    assert entered.wait(10)
    threading.Timer(0.2, leave.set).start()
    start = time.perf_counter()
    with batcher.turn():
        assert batcher.generate(vlm, ask("q"), max_new_tokens=8).text == "alone: q"
    assert time.perf_counter() - start < 5  # not the 30 s gather
    other.join(10)


def test_a_call_with_rejected_replies_is_batched_unless_its_greedy_reply_is_one_of_them():
    """The greedy reply comes from the batch; only a call whose greedy reply was rejected goes alone, to the
    model's own fallback (which starts from the same greedy reply)."""
    vlm = Batching()
    batcher = MicroBatcher(workers=1, gather_s=10)
    ready = threading.Barrier(2, timeout=10)
    out: dict[str, str] = {}

    def turn(question: str, avoid: list[str]) -> None:
        with batcher.turn():
            ready.wait()
            out[question] = batcher.generate(vlm, ask(question), max_new_tokens=8, avoid=avoid).text

    threads = [threading.Thread(target=turn, args=("q0", ["aspirin"])),
               threading.Thread(target=turn, args=("q1", ["Batched: Q1."]))]  # the same answer, other spelling
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert out == {"q0": "batched: q0", "q1": "alone: q1"}
    assert vlm.batches == [2] and vlm.singles == [("q1", ("Batched: Q1.",))]
    assert MicroBatcher(max_batch=1).generate(vlm, ask("q"), max_new_tokens=8, avoid=["x"]).text == "alone: q"
    assert vlm.singles[-1] == ("q", ("x",))  # no batching: straight to the model, avoid and all


def test_models_without_batching_answer_alone():
    class Plain:
        def generate(self, messages, *, max_new_tokens=48, avoid=()):
            return Generation(text="plain")

    assert MicroBatcher().generate(Plain(), ask("q"), max_new_tokens=8).text == "plain"
    assert MicroBatcher().generate(Plain(), ask("q"), max_new_tokens=8, avoid=["plain"]).text == "plain"


def test_a_failed_batch_is_answered_call_by_call():
    vlm = Batching(fail_batches=True)
    out = together(MicroBatcher(workers=1, gather_s=10), vlm, 3)
    assert vlm.batches == [3] and out == [f"alone: q{i}" for i in range(3)]


def test_settings_are_checked():
    with pytest.raises(ValueError):
        MicroBatcher(max_batch=0)
