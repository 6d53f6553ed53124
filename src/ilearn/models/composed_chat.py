"""`ComposedVLMChat`: the VisionLanguageModel protocol (generate, score) around any ComposedVLM + processor.

Prompting, greedy generation, candidate scoring and version switching are `HFVisionLanguageModel`'s (the composed
model is a transformers model with a ChatML template); this subclass adds what only the composed model has:
ChatML stop tokens, the vision encoder run once per scored prompt, partial `.safetensors` weights checked by
`ComposedVLM.load_trainable`, `save(parts=...)` and batched generation.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import DynamicCache, GenerationConfig

from ilearn.config import ModelConfig
from ilearn.models.base import Generation, Message
from ilearn.models.composed import ComposedProcessor, ComposedVLM
from ilearn.models.hf import DTYPES, HFVisionLanguageModel, to_chat
from ilearn.models.streaming import ReplyPieces

logger = logging.getLogger(__name__)

__all__ = ["DTYPES", "ComposedVLMChat", "to_chat"]

GREEDY_SETTINGS = ("repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size", "bad_words_ids",
                   "suppress_tokens", "begin_suppress_tokens", "forced_bos_token_id", "forced_eos_token_id",
                   "min_length", "min_new_tokens", "sequence_bias", "exponential_decay_length_penalty")
"""GenerationConfig settings that change greedy replies: with any of them set, `generate_batch` answers each
conversation with `generate` (transformers applies them)."""


class ComposedVLMChat(HFVisionLanguageModel):
    """Greedy chat and candidate scoring with a ComposedVLM; can switch weights (adapters, partial states)."""

    def __init__(self, model: ComposedVLM, processor: ComposedProcessor, config: ModelConfig, *,
                 name: str, version: str = "base") -> None:
        super().__init__(model, processor, config, name=name, version=version)
        tok = processor.tokenizer
        # ChatML: a reply ends with <|im_end|> (or eos); decoding also stops at padding
        self._stop_ids = sorted({i for i in (tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id)
                                 if isinstance(i, int) and i >= 0})
        self._end_ids = self._stop_ids[:1]
        self._cut_ids = {*self._stop_ids, tok.pad_token_id}

    # -- what differs from the generic wrapper ------------------------------------------------------------
    def _reply_ids(self, messages: Sequence[Message], prompt: str, candidate: str) -> list[int]:
        """The candidate's own tokens, then the end-of-turn token (ChatML writes the reply verbatim)."""
        return self.processor.tokenizer(candidate, add_special_tokens=False)["input_ids"] + self._end_ids

    def _candidate_images(self, images: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
        """Image features computed once by the vision encoder and shared by the `n` candidate rows."""
        if "pixel_values" not in images:
            return super()._candidate_images(images, n)
        feats = self._model.vision_features(images["pixel_values"])
        shared = feats.expand(n, *feats.shape[1:]) if feats.shape[0] == 1 else feats.repeat(
            n, *([1] * (feats.dim() - 1)))
        return {"image_features": shared}

    def _load_partial(self, file: Path, state: dict[str, torch.Tensor]) -> None:
        """Partial weights (e.g. a trained projector) through `ComposedVLM.load_trainable` (keys and shapes checked)."""
        self._model.load_trainable(state)

    # -- only here ----------------------------------------------------------------------------------------
    def clear_caches(self) -> None:
        """Forget the vision features of the images seen lately (`ComposedVLM.feature_cache`)."""
        self._model.feature_cache.clear()

    @torch.inference_mode()
    def generate_batch(self, conversations: Sequence[Sequence[Message]], *, max_new_tokens: int | None = None,
                       on_reply: Callable[[int, Generation], None] | None = None,
                       more: Callable[[int], Sequence[Sequence[Message]]] | None = None,
                       on_piece: Callable[[int, str], None] | None = None) -> list[Generation]:
        """Greedy replies to several conversations at once, the same as `generate` gives each alone.

        The prompts' common start (the system prompt, up to the first image) runs once and its keys and values
        serve every row; the rest of each prompt follows it, left-padded. A row leaves the batch when its reply
        ends, so later decoding steps cost only the rows still running, and `on_reply(index, generation)` is
        called for it then (the caller may hand that reply out before the batch ends). Between decoding steps,
        `more(free_rows)` may give conversations that join the running batch (continuous batching): they take the
        next indices, after those already given. `on_piece(index, piece)` gets each row's text while it is decoded,
        as `generate_stream`'s `on_text` does (`ilearn.models.streaming`). Returns every reply in index order; a
        generation's `seconds` is the time from the batch's start to the end of its reply.
        """
        start = time.perf_counter()
        limit = max_new_tokens or self.config.max_new_tokens
        results: list[Generation] = []
        sizes: list[int] = []

        def finish(row: int, ids: list[int]) -> None:
            text, n = self._decode(ids)
            results[row] = Generation(text=text, prompt_tokens=sizes[row], completion_tokens=n,
                                      seconds=time.perf_counter() - start)
            if on_reply is not None:
                on_reply(row, results[row])

        def encode(batch: Sequence[Sequence[Message]]) -> tuple[list[list[int]], torch.Tensor | None, list[int]]:
            """(prompt ids, their images' pixels, their indices) of conversations joining the batch."""
            texts, images = [], []
            for messages in batch:
                text, imgs = self.prompt_text(messages)
                texts.append(text)
                images.extend(imgs)
            encoded = self.processor(text=texts, images=images or None)
            prompts = [[int(t) for t in row] for row in encoded["input_ids"]]
            pixels = self._to_device({"pixel_values": encoded["pixel_values"]})["pixel_values"] if images else None
            rows = list(range(len(results), len(results) + len(prompts)))
            results.extend(Generation(text="") for _ in prompts)
            sizes.extend(len(p) for p in prompts)
            return prompts, pixels, rows

        if not conversations:
            return []
        if _changes_greedy(self._model.language.generation_config):  # transformers' logits processors: one by one
            for i, messages in enumerate(conversations):
                results.append(self.generate(messages, max_new_tokens=limit) if on_piece is None else
                               self.generate_stream(messages, max_new_tokens=limit,
                                                    on_text=lambda piece, i=i: on_piece(i, piece)))
                if on_reply is not None:
                    on_reply(len(results) - 1, results[-1])
            return results
        step = None
        if on_piece is not None:
            pieces: dict[int, ReplyPieces] = {}

            def step(row: int, ids: list[int]) -> None:
                if row not in pieces:
                    pieces[row] = ReplyPieces(self._decode_text, lambda piece: on_piece(row, piece), self._cut_ids)
                pieces[row].add(ids[-1:])

        self._greedy_rows(encode(conversations), limit, finish,
                          (lambda free: encode(batch) if (batch := more(free)) else None) if more else None, step)
        return results

    def _greedy_rows(self, first: tuple[list[list[int]], torch.Tensor | None, list[int]], limit: int,
                     finish: Callable[[int, list[int]], None],
                     more: Callable[[int], tuple[list[list[int]], torch.Tensor | None, list[int]] | None] | None,
                     step: Callable[[int, list[int]], None] | None = None) -> None:
        """Greedy decoding of token-id prompts (with their images' pixels and row indices), finished rows dropped:
        `finish(row, new_ids)` for each row as soon as its reply ends; between steps, `more(free)` may give
        prompts that join; `step(row, new_ids)` after each token a row gets."""
        lm = self._model.language
        embed = self._model.get_input_embeddings()
        new: dict[int, list[int]] = {}
        running = self._record(self._prefill(*first), new, limit, finish, step)
        while True:
            free = self.config.max_batch - (running.size if running else 0)
            joining = more(free) if more is not None and free > 0 else None
            if joining is not None:
                fresh = self._record(self._prefill(*joining), new, limit, finish, step)
                running = _Rows.merge(running, fresh)
            if running is None:
                return
            running.mask = torch.cat([running.mask, running.mask.new_ones((running.size, 1))], dim=1)
            running.position = running.position + 1
            out = lm(inputs_embeds=embed(running.tokens[:, None]), attention_mask=running.mask,
                     position_ids=running.position, use_cache=True, **{_cache_argument(lm): running.cache})
            running.tokens = out.logits[:, -1].float().argmax(-1)
            running = self._record(running, new, limit, finish, step)

    def _prefill(self, prompts: list[list[int]], pixel_values: torch.Tensor | None, rows: list[int]) -> _Rows:
        """Rows for `prompts`: the shared start run once and copied to each row, the rest left-padded after it;
        their first reply tokens chosen."""
        lm = self._model.language
        shared = _shared_start(prompts, self._model.config.image_token_id)
        cache = DynamicCache(config=lm.config)
        kv = {_cache_argument(lm): cache}
        if shared:
            start_ids = torch.tensor([prompts[0][:shared]], device=self.device)
            lm.get_decoder()(inputs_embeds=self._model.get_input_embeddings()(start_ids), use_cache=True, **kv)
            cache.batch_repeat_interleave(len(prompts))
        rests = [p[shared:] for p in prompts]
        width = max(len(r) for r in rests)
        ids = torch.full((len(rests), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rests), shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for i, rest in enumerate(rests):
            ids[i, width - len(rest):] = torch.tensor(rest)
            mask[i, shared + width - len(rest):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        out = lm(inputs_embeds=self._model.embed(ids, pixel_values), attention_mask=mask, position_ids=positions,
                 use_cache=True, logits_to_keep=1, **kv)
        return _Rows(cache, mask, positions[:, -1:], out.logits[:, -1].float().argmax(-1), list(rows))

    def _record(self, rows: _Rows | None, new: dict[int, list[int]], limit: int,
                finish: Callable[[int, list[int]], None],
                step: Callable[[int, list[int]], None] | None = None) -> _Rows | None:
        """Append each row's token to its reply (`step` told); rows whose reply ended are finished and dropped (None:
        none left)."""
        if rows is None:
            return None
        keep = []
        for j, (row, token) in enumerate(zip(rows.rows, rows.tokens.tolist(), strict=True)):
            ids = new.setdefault(row, [])
            ids.append(token)
            if step is not None:
                step(row, ids)
            if token in self._cut_ids or len(ids) >= limit:
                finish(row, ids)
            else:
                keep.append(j)
        if not keep:
            return None
        if len(keep) < rows.size:
            rows.select(torch.tensor(keep, device=rows.mask.device))
        return rows

    def save(self, path: str | Path, parts: tuple[str, ...] | None = None) -> Path:
        """Save the full model + processor (save_pretrained), or only some parts as weights.safetensors."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if parts is None:
            self._model.save_pretrained(path)
            self.processor.save_pretrained(path)
        else:
            from safetensors.torch import save_file

            state = {k: v.detach().cpu().contiguous() for k, v in self._model.trainable_state(parts).items()}
            save_file(state, str(path / "weights.safetensors"))
            (path / "parts.json").write_text(json.dumps({"parts": list(parts), "backend": self.name}))
        return path


@dataclass
class _Rows:
    """Rows being decoded: their key/value cache, attention mask, last positions, last tokens, reply indices."""

    cache: DynamicCache
    mask: torch.Tensor
    position: torch.Tensor
    tokens: torch.Tensor
    rows: list[int]

    @property
    def size(self) -> int:
        return len(self.rows)

    def select(self, index: torch.Tensor) -> None:
        """Keep only the rows at `index`."""
        self.cache.batch_select_indices(index)
        self.mask, self.position, self.tokens = self.mask[index], self.position[index], self.tokens[index]
        self.rows = [self.rows[j] for j in index.tolist()]

    @staticmethod
    def merge(a: _Rows | None, b: _Rows | None) -> _Rows | None:
        """One set of rows from two: the shorter one's cache and mask left-padded (masked) to the longer one's."""
        if a is None or b is None:
            return a or b
        width = max(a.mask.shape[1], b.mask.shape[1])
        for part in (a, b):
            pad = width - part.mask.shape[1]
            if pad:
                part.mask = torch.cat([part.mask.new_zeros((part.size, pad)), part.mask], dim=1)
                for layer in part.cache.layers:
                    layer.keys = torch.cat([layer.keys.new_zeros((*layer.keys.shape[:2], pad, layer.keys.shape[3])),
                                            layer.keys], dim=2)
                    layer.values = torch.cat([layer.values.new_zeros(
                        (*layer.values.shape[:2], pad, layer.values.shape[3])), layer.values], dim=2)
        for la, lb in zip(a.cache.layers, b.cache.layers, strict=True):
            la.keys, la.values = torch.cat([la.keys, lb.keys]), torch.cat([la.values, lb.values])
        a.mask, a.position = torch.cat([a.mask, b.mask]), torch.cat([a.position, b.position])
        a.tokens, a.rows = torch.cat([a.tokens, b.tokens]), a.rows + b.rows
        return a


def _shared_start(prompts: list[list[int]], image_token_id: int | None) -> int:
    """How many leading tokens every prompt shares, stopping before the first image placeholder and leaving each
    prompt at least its last token (its logits start the reply)."""
    if len(prompts) < 2:
        return 0
    n = 0
    for column in zip(*prompts, strict=False):
        if column[0] == image_token_id or any(t != column[0] for t in column):
            break
        n += 1
    return min(n, min(len(p) for p in prompts) - 1)


def _changes_greedy(config: GenerationConfig) -> bool:
    """Whether a generation config sets anything that changes greedy choices (penalties, banned or forced tokens)."""
    default = GenerationConfig()
    return any(getattr(config, name, None) != getattr(default, name, None) for name in GREEDY_SETTINGS)


def _cache_argument(language: torch.nn.Module) -> str:
    """The name under which the language model's forward takes its key/value cache (renamed within transformers 5)."""
    return "cache" if "cache" in inspect.signature(language.forward).parameters else "past_key_values"
