"""`ComposedVLMChat`: the VisionLanguageModel protocol (generate, score) around any ComposedVLM + processor."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ilearn.config import ModelConfig
from ilearn.errors import InvalidInput, NotFound
from ilearn.models.base import Generation, Message
from ilearn.models.composed import ComposedProcessor, ComposedVLM

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def to_chat(messages: Sequence[Message]) -> tuple[list[dict], list]:
    """Protocol messages -> (chat-template messages with list content, the images in order)."""
    if not messages:
        raise InvalidInput("at least one message is required")
    chat, images = [], []
    for m in messages:
        if m.role not in {"system", "user", "assistant"}:
            raise InvalidInput(f"unknown message role {m.role!r}")
        content: list[dict] = []
        if m.image is not None:
            content.append({"type": "image"})
            images.append(m.image.convert("RGB"))
        content.append({"type": "text", "text": m.content})
        chat.append({"role": m.role, "content": content})
    return chat, images


class ComposedVLMChat:
    """Greedy chat and candidate scoring with a ComposedVLM; can switch weights (adapters, partial states)."""

    def __init__(self, model: ComposedVLM, processor: ComposedProcessor, config: ModelConfig, *,
                 name: str, version: str = "base") -> None:
        torch.set_num_threads(config.threads)
        self.name = name
        self.version = version
        self.config = config
        self.device = torch.device(config.device)
        self.dtype = DTYPES[config.dtype]
        self._model = model.to(device=self.device, dtype=self.dtype).eval()
        self.processor = processor
        self._peft = None  # PeftModel wrapping self._model while an adapter is loaded
        self._pristine: dict[str, torch.Tensor] = {}  # original tensors overwritten by set_weights(file)
        tok = processor.tokenizer
        self._stop_ids = sorted({i for i in (tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id)
                                 if isinstance(i, int) and i >= 0})

    @property
    def model(self) -> ComposedVLM:
        """The underlying transformers model (with LoRA layers injected while an adapter is loaded)."""
        return self._model

    # -- inputs -------------------------------------------------------------------------------------------
    def prompt_text(self, messages: Sequence[Message]) -> tuple[str, list]:
        """The chat-templated prompt (ending with the assistant header) and its images."""
        chat, images = to_chat(messages)
        if chat[-1]["role"] == "assistant":
            raise InvalidInput("the last message must be the user's")
        text = self.processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return text, images

    def _encode(self, texts: list[str], images: list, padding_side: str) -> dict[str, torch.Tensor]:
        batch = self.processor(text=texts, images=images or None, return_tensors="pt", padding=True,
                               padding_side=padding_side)
        out = {k: v.to(self.device) for k, v in batch.items()}
        if "pixel_values" in out:
            out["pixel_values"] = out["pixel_values"].to(self.dtype)
        return out

    # -- the protocol -------------------------------------------------------------------------------------
    def generate(self, messages: Sequence[Message], *, max_new_tokens: int | None = None) -> Generation:
        """Greedy reply to the conversation (the last message is the user's)."""
        return self.generate_batch([messages], max_new_tokens=max_new_tokens)[0]

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
        inputs = self._encode(texts, images, "left")
        tok = self.processor.tokenizer
        out = self._model.generate(**inputs, max_new_tokens=max_new_tokens or self.config.max_new_tokens,
                                   do_sample=False, eos_token_id=self._stop_ids, pad_token_id=tok.pad_token_id)
        new = out[:, inputs["input_ids"].shape[1]:]
        seconds = (time.perf_counter() - start) / len(texts)
        results = []
        for row, mask in zip(new, inputs["attention_mask"], strict=True):
            ids = row.tolist()
            n = next((i for i, t in enumerate(ids) if t in self._stop_ids or t == tok.pad_token_id), len(ids))
            text = tok.decode(ids[:n], skip_special_tokens=True).strip()
            results.append(Generation(text=text, prompt_tokens=int(mask.sum()), completion_tokens=n, seconds=seconds))
        return results

    @torch.inference_mode()
    def score(self, messages: Sequence[Message], candidates: Sequence[str]) -> list[float]:
        """Summed log-probability of each candidate as the whole assistant reply (its end-of-turn token included)."""
        if not candidates:
            return []
        prompt, images = self.prompt_text(messages)
        tok = self.processor.tokenizer
        enc = self._encode([prompt], images, "right")
        prompt_ids = enc["input_ids"][0].tolist()
        end = [self._stop_ids[0]] if self._stop_ids else []
        rows = [prompt_ids + tok(c, add_special_tokens=False)["input_ids"] + end for c in candidates]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, device=self.device)
            mask[i, : len(r)] = 1
        features = None
        if "pixel_values" in enc:
            feats = self._model.vision(enc["pixel_values"])
            features = feats.expand(len(rows), *feats.shape[1:]) if feats.shape[0] == 1 else feats.repeat(
                len(rows), *([1] * (feats.dim() - 1)))
        logits = self._model(input_ids=ids, attention_mask=mask, image_features=features).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        scores = []
        for i, r in enumerate(rows):
            scores.append(float(logprobs[i, len(prompt_ids) - 1: len(r) - 1].sum()))
        return scores

    # -- versions -----------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the base weights this wrapper was built with."""
        if self._peft is not None:
            self._model = self._peft.unload()
            self._peft = None
        if self._pristine:
            own = self._model.state_dict()
            with torch.no_grad():
                for k, v in self._pristine.items():
                    own[k].copy_(v)
            self._pristine = {}
        self._model.eval()
        self.version = "base"

    def set_weights(self, path: str | Path, version: str | None = None) -> None:
        """Serve a trained version: a PEFT adapter folder, or a .safetensors file of (partial) weights.

        The previous version is undone first, so versions never stack.
        """
        path = Path(path)
        if not path.exists():
            raise NotFound(f"no model weights at {path}")
        self.reset()
        if path.is_dir() and (path / "adapter_config.json").is_file():
            from peft import PeftModel

            # PEFT's unload() keeps the trained copy of `modules_to_save`: remember the originals to restore them
            saved = json.loads((path / "adapter_config.json").read_text()).get("modules_to_save") or []
            self._pristine = {k: v.detach().clone() for k, v in self._model.state_dict().items()
                              if any(m in k.split(".") for m in saved)}
            self._peft = PeftModel.from_pretrained(self._model, str(path), is_trainable=False)
            self._peft.to(device=self.device, dtype=self.dtype)
        else:
            file = path / "weights.safetensors" if path.is_dir() else path
            if not file.is_file():
                raise NotFound(f"{path} holds neither adapter_config.json nor weights.safetensors")
            from safetensors.torch import load_file

            state = load_file(str(file))
            own = self._model.state_dict()
            self._pristine = {k: own[k].detach().clone() for k in state if k in own}
            self._model.load_trainable(state)
        self._model.eval()
        self.version = version or path.stem
        logger.info("model %s now serves version %s from %s", self.name, self.version, path)

    load_adapter = set_weights

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
