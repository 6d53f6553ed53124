"""`ComposedVLMChat`: the VisionLanguageModel protocol (generate, score) around any ComposedVLM + processor.

Prompting, greedy generation, candidate scoring and version switching are `HFVisionLanguageModel`'s (the composed
model is a transformers model with a ChatML template); this subclass adds what only the composed model has:
ChatML stop tokens, the vision encoder run once per scored prompt, partial `.safetensors` weights checked by
`ComposedVLM.load_trainable`, `save(parts=...)` and batched generation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ilearn.config import ModelConfig
from ilearn.models.base import Generation, Message
from ilearn.models.composed import ComposedProcessor, ComposedVLM
from ilearn.models.hf import DTYPES, HFVisionLanguageModel, to_chat

logger = logging.getLogger(__name__)

__all__ = ["DTYPES", "ComposedVLMChat", "to_chat"]


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
        feats = self._model.vision(images["pixel_values"])
        shared = feats.expand(n, *feats.shape[1:]) if feats.shape[0] == 1 else feats.repeat(
            n, *([1] * (feats.dim() - 1)))
        return {"image_features": shared}

    def _load_partial(self, file: Path, state: dict[str, torch.Tensor]) -> None:
        """Partial weights (e.g. a trained projector) through `ComposedVLM.load_trainable` (keys and shapes checked)."""
        self._model.load_trainable(state)

    # -- only here ----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate_batch(self, conversations: Sequence[Sequence[Message]], *,
                       max_new_tokens: int | None = None) -> list[Generation]:
        """Greedy replies to several conversations at once (left-padded batch)."""
        start = time.perf_counter()
        texts, images = [], []
        for messages in conversations:
            text, imgs = self.prompt_text(messages)
            texts.append(text)
            images.extend(imgs)
        batch = self.processor(text=texts, images=images or None, return_tensors="pt", padding=True,
                               padding_side="left")
        inputs = self._to_device(dict(batch))
        new = self._generate_new_ids(inputs, max_new_tokens)
        seconds = (time.perf_counter() - start) / len(texts)
        results = []
        for row, mask in zip(new, inputs["attention_mask"], strict=True):
            text, n = self._decode(row.tolist())
            results.append(Generation(text=text, prompt_tokens=int(mask.sum()), completion_tokens=n, seconds=seconds))
        return results

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
