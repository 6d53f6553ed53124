"""Micro-batching: the answers of turns running at the same time, on the same model, in one batched generation.

On a CPU a decoding step of a small language model costs about twice as much for 8 rows as for 1 (it is bound
by reading the weights; `small`: 187 vs 90 ms of CPU a step on this machine), so batching the answers of
different sessions gives more turns per second than threads alone (benchmarks/concurrency.py).

A call runs when fewer than `workers` batches are running, taking along the calls queued for the same model
object and token budget, up to `max_batch`. Before it starts, it waits up to `gather_s` for turns still on
their way to the model (`turn()` marks them; a turn that ends without calling `generate` stops counting), so
that users answered together stay together instead of splitting into batches that alternate. One user alone
never waits, and gets the same reply as without batching (a batch of one is a plain `generate`, on the
caller's thread). A batch of several runs on a thread of its own.

Three ways to schedule differently (benchmarks/concurrency.py, `small`, 8 users, docs/batching.md): `split`,
free workers share the waiting turns (two batches of 4 at once rather than one of 8); `early`, each reply goes to
its caller as soon as it ends (the model's `generate_batch` takes `on_reply`, as `ComposedVLMChat`'s does);
`join`, continuous batching: calls that arrive while every worker is busy join a running batch between its
decoding steps (the model's `generate_batch` takes `more`). The runtime splits (`model.batch_split`): on two
cores of its own, two batches of 4 beat one of 8; on cores other jobs keep busy it lost. `early` and `join` stay
off: users that are answered apart come back apart, so batches shrink and cost more per turn, a joining
prompt's prefill costs about as much as a decoding step of the whole batch, and a long reply waits through every
one of them (p99 about 10 s against 5-6 s without, 8 users).

A model batches when it has `generate_batch` (`BatchGenerator`); models without it answer each call alone. A call
with `avoid` (replies the user rejected) gets its greedy reply in a batch like any other; only when that reply is
one it must avoid does it go alone, to the model's own fallback (beam search for another reply), which starts from
the same greedy reply: the result is the model's `generate(..., avoid=...)`. If a batch fails, each of its calls is
retried alone, so one bad request cannot fail the others.

Streaming (`on_text`, `ilearn.models.streaming`): a streamed call is batched like any other, and gets its own
row's text while the batch decodes it, when the model's `generate_batch` takes `on_piece`; a batch of one
streams through the model's `generate_stream`. A streamed call on a model that batches without `on_piece` goes
alone (to stream); a model that cannot stream at all answers it whole. A call retried alone after its batch
failed is not streamed again (the caller sends the rest of the final reply).
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ilearn.models.base import Generation, Message, VisionLanguageModel
from ilearn.models.streaming import OnText, StreamingGenerator
from ilearn.types import answer_key

logger = logging.getLogger(__name__)


@runtime_checkable
class BatchGenerator(Protocol):
    """A model that generates greedy replies to several conversations in one batch."""

    def generate_batch(self, conversations: Sequence[Sequence[Message]], *,
                       max_new_tokens: int | None = None) -> list[Generation]:
        """One greedy reply per conversation, in order.

        A model whose `generate_batch` also takes `on_reply` (a callable of the conversation's index and its
        generation) calls it as each reply ends; the batcher then returns that reply before the batch ends. One
        that also takes `more` (a callable of the number of free rows, returning conversations) asks it between
        decoding steps for conversations that join the batch; their indices follow the ones given."""
        ...


@dataclass(eq=False)
class _Call:
    vlm: VisionLanguageModel
    messages: list[Message]
    max_new_tokens: int
    on_text: OnText | None = None
    result: Generation | None = None
    alone: bool = False  # its batch failed: the caller generates it alone
    done: bool = False


class MicroBatcher:
    """Batches concurrent `generate` calls on the same model object (module docstring).

    `workers`: batches generated at the same time (two: both cores of a 2-core machine busy when more than
    `max_batch` turns wait, or turns of two model versions during a promotion)."""

    def __init__(self, max_batch: int = 8, workers: int = 2, gather_s: float = 0.2, *, split: bool = False,
                 early: bool = False, join: bool = False) -> None:
        if max_batch < 1 or workers < 1 or gather_s < 0:
            raise ValueError("max_batch and workers must be >= 1, gather_s >= 0")
        self.max_batch = max_batch
        self.workers = workers
        self.gather_s = gather_s
        self.split = split
        """Free workers share the waiting turns (two batches of 4 at once rather than one of 8)."""
        self.early = early
        """Each reply goes to its caller as soon as it ends, before its batch ends."""
        self.join = join
        """Continuous batching: calls join a running batch between its decoding steps."""
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Call] = []
        self._running = 0
        self._expected = 0  # turns that may still call generate
        self._local = threading.local()
        self.runs = 0
        """Batches run so far (a call alone counts as a batch of one)."""
        self.calls = 0
        """Calls answered in those batches (calls / runs: the mean batch size)."""

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Mark a turn on this thread that may call `generate`: a batch about to start waits a little for it."""
        with self._cond:
            self._expected += 1
        self._local.expected = True
        try:
            yield
        finally:
            with self._cond:
                self._arrived()

    def _arrived(self) -> None:
        """This thread's turn no longer counts as on its way (caller holds the condition)."""
        if getattr(self._local, "expected", False):
            self._local.expected = False
            self._expected -= 1
            self._cond.notify_all()

    def generate(self, vlm: VisionLanguageModel, messages: Sequence[Message], *, max_new_tokens: int,
                 avoid: Sequence[str] = (), on_text: OnText | None = None) -> Generation:
        """`vlm.generate(messages, ...)`, batched with concurrent calls on the same `vlm` when it can be; with
        `on_text`, the reply's text is handed to it while it is generated, where the model can (module docstring)."""
        if avoid or not isinstance(vlm, StreamingGenerator):
            on_text = None  # avoiding rejected replies needs the model's whole-reply fallback
        if avoid and self.max_batch > 1 and isinstance(vlm, BatchGenerator):
            greedy = self.generate(vlm, messages, max_new_tokens=max_new_tokens)  # batched with the others
            if answer_key(greedy.text) not in {answer_key(a) for a in avoid}:
                return greedy
        alone = (self.max_batch == 1 or bool(avoid) or not isinstance(vlm, BatchGenerator)
                 or (on_text is not None and not _takes(vlm, "on_piece")))
        call = _Call(vlm, list(messages), max_new_tokens, on_text)
        with self._cond:
            self._arrived()
            if alone:
                batch = None
            else:
                self._queue.append(call)
                batch = self._lead(call)
        if alone:
            return _single(call, avoid)
        if batch is not None and len(batch) == 1:
            self._run(batch)
        elif batch is not None:  # on a thread of its own: this caller leaves as soon as its own reply ends
            threading.Thread(target=self._run, args=(batch,), name="ilearn-batch", daemon=True).start()
            with self._cond:
                self._cond.wait_for(lambda: call.done)
        if call.alone:
            return vlm.generate(messages, max_new_tokens=max_new_tokens)
        return call.result

    def _lead(self, call: _Call) -> list[_Call] | None:
        """Wait until `call` is done by another thread's batch (None), or lead a batch with it (caller holds the
        condition)."""
        deadline = None
        while not call.done:
            if self._running < self.workers and call in self._queue:
                deadline = deadline or time.monotonic() + self.gather_s
                left = deadline - time.monotonic()
                if self._expected > 0 and len(self._peers(call)) < self.max_batch - 1 and left > 0:
                    self._cond.wait(left)  # others are on their way to the model
                    continue
                self._running += 1
                return self._take(call)
            self._cond.wait()
        return None

    def _peers(self, call: _Call) -> list[_Call]:
        return [c for c in self._queue
                if c is not call and c.vlm is call.vlm and c.max_new_tokens == call.max_new_tokens]

    def _take(self, call: _Call) -> list[_Call]:
        """`call` and the oldest queued calls for the same model and token budget, up to `max_batch`; with `split`,
        an even share of them and of the turns still on their way for each free worker (the others lead batches
        of their own at the same time). The caller holds the condition; `_running` counts this batch already."""
        peers = self._peers(call)
        free = self.workers - self._running + 1 if self.split else 1
        share = min(self.max_batch, -(-(len(peers) + 1 + self._expected) // free))
        batch = [call, *peers[: share - 1]]
        taken = {id(c) for c in batch}
        self._queue = [c for c in self._queue if id(c) not in taken]
        if self._queue:
            self._cond.notify_all()  # a waiting call may lead the next share
        return batch

    def _run(self, batch: list[_Call]) -> None:
        vlm = batch[0].vlm
        try:
            if len(batch) == 1:
                results = [_single(batch[0])]
            else:
                extra: dict = {}
                if any(c.on_text is not None for c in batch):
                    extra["on_piece"] = lambda i, piece: _hand_piece(batch[i], piece)
                if (self.early or self.join) and _takes(vlm, "on_reply"):
                    extra["on_reply"] = lambda i, result: self._hand_out(batch[i], result)
                    if self.join and _takes(vlm, "more"):
                        extra["more"] = lambda free: self._join(batch, free)
                results = vlm.generate_batch([c.messages for c in batch], max_new_tokens=batch[0].max_new_tokens,
                                             **extra)
            for c, result in zip(batch, results, strict=True):
                if c.result is None:
                    c.result = result
        except Exception:
            logger.exception("a batch of %d answers failed; each not yet answered is generated alone", len(batch))
            for c in batch:
                c.alone = c.result is None
        finally:
            with self._cond:
                for c in batch:
                    c.done = True
                self._running -= 1
                self.runs += 1
                self.calls += len(batch)
                self._cond.notify_all()

    def _join(self, batch: list[_Call], free: int) -> list[list[Message]]:
        """Queued calls for the running `batch`'s model and token budget that join it between decoding steps (at
        most `free`), added to `batch`; none while a worker is free (they lead a batch of their own there)."""
        with self._cond:
            if self._running < self.workers:
                return []
            joining = [c for c in self._queue if c.vlm is batch[0].vlm
                       and c.max_new_tokens == batch[0].max_new_tokens][:free]
            if joining:
                taken = {id(c) for c in joining}
                self._queue = [c for c in self._queue if id(c) not in taken]
                batch.extend(joining)
            return [c.messages for c in joining]

    def _hand_out(self, call: _Call, result: Generation) -> None:
        """A reply that ended before its batch: its caller goes on now."""
        with self._cond:
            call.result = result
            call.done = True
            self._cond.notify_all()


def _hand_piece(call: _Call, piece: str) -> None:
    """A piece of a batched row's text, to its caller if it streams."""
    if call.on_text is not None:
        call.on_text(piece)


def _single(call: _Call, avoid: Sequence[str] = ()) -> Generation:
    """One call generated alone: streamed through `generate_stream` when it has `on_text`."""
    if call.on_text is not None:
        return call.vlm.generate_stream(call.messages, max_new_tokens=call.max_new_tokens, on_text=call.on_text)
    return call.vlm.generate(call.messages, max_new_tokens=call.max_new_tokens, avoid=avoid)


def _takes(vlm: BatchGenerator, argument: str) -> bool:
    """Whether the model's `generate_batch` takes `argument` (`on_reply`: it hands each reply out as it ends;
    `more`: calls may join it between decoding steps)."""
    try:
        return argument in inspect.signature(vlm.generate_batch).parameters
    except (TypeError, ValueError):
        return False


__all__ = ["BatchGenerator", "MicroBatcher"]
