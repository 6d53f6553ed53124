"""The `hf` backend: any transformers VLM saved in a local folder, behind the VisionLanguageModel protocol.

Supported families (by `config.json`'s `model_type`): LLaVA, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL, Idefics3, SmolVLM and
PaliGemma / PaliGemma 2. Loading is offline (`local_files_only`). Processors use the PIL image processors, so
torchvision is not needed; Qwen2-VL, Qwen2.5-VL and SmolVLM get processor subclasses without the video processor
(`AutoProcessor.from_pretrained` on such a folder returns only the tokenizer: call `load_processor(folder)`).

`HFVisionLanguageModel` works for any (model, processor) pair of a `*ForConditionalGeneration` model: prompts come from
the processor's chat template (PaliGemma, which has none, gets its prefix / suffix format), and `score` appends each
candidate's tokens, as the template would write the assistant turn, to the encoded prompt.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    Idefics3Processor,
    LlavaNextProcessor,
    LlavaProcessor,
    PaliGemmaProcessor,
    ProcessorMixin,
    Qwen2_5_VLProcessor,
    Qwen2VLProcessor,
    SmolVLMProcessor,
)
from transformers.generation.streamers import BaseStreamer

from ilearn.config import ModelConfig
from ilearn.errors import InvalidInput, NotFound
from ilearn.models.base import Generation, Message
from ilearn.models.streaming import OnText, ReplyPieces
from ilearn.types import answer_key

logger = logging.getLogger(__name__)

SCORE_CHUNK = 16
"""Candidates scored in one forward pass."""
AVOID_BEAMS = 3
"""Beams beyond the number of rejected replies when `generate` must avoid them."""

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""`ModelConfig.dtype` names -> torch dtypes."""


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


class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
    """Qwen2-VL processor without the video processor (which needs torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs: Any) -> None:
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class Qwen2_5_VLImageOnlyProcessor(Qwen2_5_VLProcessor):  # noqa: N801 (mirrors the transformers class name)
    """Qwen2.5-VL processor without the video processor (which needs torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs: Any) -> None:
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class SmolVLMImageOnlyProcessor(SmolVLMProcessor):
    """SmolVLM processor without the video processor (which needs torchvision); needs `num2words`."""

    def __init__(self, image_processor=None, tokenizer=None, image_seq_len: int = 169, chat_template=None,
                 **kwargs: Any) -> None:
        super().__init__(image_processor, tokenizer, None, image_seq_len=image_seq_len, chat_template=chat_template,
                         **kwargs)

    def __call__(self, images=None, text=None, audio=None, videos=None, **kwargs: Any):
        if videos is not None:
            raise InvalidInput("this SmolVLM processor was built without video support")
        return super().__call__(images=images, text=text, **kwargs)

    def apply_chat_template(self, conversation, chat_template=None, **kwargs: Any):
        """The generic template rendering (SmolVLM's own reads video settings from the missing video processor)."""
        return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)


PROCESSORS: dict[str, type[ProcessorMixin]] = {
    "llava": LlavaProcessor,
    "llava_next": LlavaNextProcessor,
    "qwen2_vl": Qwen2VLImageOnlyProcessor,
    "qwen2_5_vl": Qwen2_5_VLImageOnlyProcessor,
    "idefics3": Idefics3Processor,
    "smolvlm": SmolVLMImageOnlyProcessor,
    "paligemma": PaliGemmaProcessor,
}
"""config.json `model_type` -> the processor class that folder is loaded with."""


def model_type(folder: str | Path) -> str:
    """The `model_type` in a model folder's config.json; NotFound / InvalidInput with the reason otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFound(f"no model folder at {folder}")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise NotFound(f"{folder} has no config.json: not a transformers model folder")
    try:
        kind = json.loads(config_file.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise InvalidInput(f"{config_file} is not a valid model config: {exc}") from exc
    if not kind:
        raise InvalidInput(f"{config_file} names no model_type")
    return kind


def load_processor(folder: str | Path) -> ProcessorMixin:
    """The right processor for a VLM folder (image processor + tokenizer + chat template), offline."""
    kind = model_type(folder)
    cls = PROCESSORS.get(kind)
    if cls is None:
        raise InvalidInput(f"model_type {kind!r} is not supported by the hf backend; supported: {sorted(PROCESSORS)}")
    if kind == "smolvlm":
        from ilearn.errors import require_package

        require_package("num2words", extra="hf")
    return cls.from_pretrained(str(folder), local_files_only=True)


def load_pretrained(folder: str | Path, *, device: str = "cpu", dtype: str = "float32") -> tuple[Any, ProcessorMixin]:
    """(model in eval mode on `device` / `dtype`, processor) from a local folder, offline."""
    from transformers import AutoModelForImageTextToText

    processor = load_processor(folder)
    if dtype not in DTYPES:
        raise InvalidInput(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    _check_device(device)
    model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=DTYPES[dtype], local_files_only=True)
    return model.to(device).eval(), processor


def _check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InvalidInput(f"unknown torch device {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInput(f"device {device!r} asked for, but CUDA is not available here")


class HFVisionLanguageModel:
    """Greedy chat and candidate scoring with a transformers VLM and its processor; serves PEFT adapters too."""

    def __init__(self, model: Any, processor: ProcessorMixin, config: ModelConfig, *, name: str = "hf",
                 version: str = "base") -> None:
        torch.set_num_threads(config.threads)
        self.name = name
        self.version = version
        self.config = config
        self.device = torch.device(config.device)
        self.dtype = DTYPES[config.dtype]
        self._model = model.to(device=self.device, dtype=self.dtype).eval()
        self.processor = processor
        self._peft = None
        self._pristine: dict[str, torch.Tensor] = {}
        tok = processor.tokenizer
        self._end_ids = self._end_of_turn_ids()
        stops = set(self._end_ids[:1])
        for source in (tok.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
            stops.update(source if isinstance(source, list) else [source] if isinstance(source, int) else [])
        self._stop_ids = sorted(stops)
        self._cut_ids = set(self._stop_ids)  # a generated reply is cut at the first of these when decoding
        self._pad_id = tok.pad_token_id if tok.pad_token_id is not None else (self._stop_ids or [0])[0]

    @property
    def model(self) -> Any:
        """The underlying transformers model (with LoRA layers injected while an adapter is loaded)."""
        return self._model

    @property
    def chat(self) -> bool:
        """Whether prompts come from a chat template (False: PaliGemma-style prefix / suffix)."""
        return bool(getattr(self.processor, "chat_template", None))

    # -- prompts --------------------------------------------------------------------------------------------
    def _render(self, messages: Sequence[Message], reply: str | None = None) -> tuple[str, list]:
        chat, images = to_chat(messages)
        if chat[-1]["role"] == "assistant":
            raise InvalidInput("the last message must be the user's")
        if reply is not None:
            chat.append({"role": "assistant", "content": [{"type": "text", "text": reply}]})
        text = self.processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=reply is None)
        return text, images

    def prompt_text(self, messages: Sequence[Message]) -> tuple[str, list]:
        """The prompt (chat-templated and ending with the assistant header, or a PaliGemma prefix) and its images."""
        if self.chat:
            return self._render(messages)
        chat, images = to_chat(messages)
        if chat[-1]["role"] == "assistant":
            raise InvalidInput("the last message must be the user's")
        lines = [m.content if m.role != "assistant" else f"Answer: {m.content}" for m in messages]
        image_token = getattr(self.processor, "image_token", "<image>")
        return image_token * len(images) + "\n".join(line for line in lines if line), images

    def _end_of_turn_ids(self) -> list[int]:
        """The token(s) that close an assistant turn: what the template writes after a reply (else eos)."""
        tok = self.processor.tokenizer
        if self.chat:
            marker = "\u00a7\u00a7"
            try:
                full, _ = self._render([Message("user", "hi")], reply=marker)
                after = full.split(marker, 1)[1] if marker in full else ""
                ids = tok(after, add_special_tokens=False)["input_ids"] if after else []
                special = set(tok.all_special_ids)
                if ids and ids[0] in special:
                    return ids[:1]
            except Exception as exc:  # a template that refuses the probe: fall back to eos
                logger.debug("could not read the end-of-turn token from the chat template: %s", exc)
        return [tok.eos_token_id] if tok.eos_token_id is not None else []

    def _reply_ids(self, messages: Sequence[Message], prompt: str, candidate: str) -> list[int]:
        """The candidate's tokens as the template writes the assistant turn, through its end-of-turn token."""
        tok = self.processor.tokenizer
        if self.chat:
            full, _ = self._render(messages, reply=candidate)
            p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            f_ids = tok(full, add_special_tokens=False)["input_ids"]
            if f_ids[: len(p_ids)] == p_ids and len(f_ids) > len(p_ids):
                tail = f_ids[len(p_ids):]
                end = next((i for i, t in enumerate(tail) if t in self._end_ids), None)
                if end is not None:
                    return tail[: end + 1]
        return tok(candidate, add_special_tokens=False)["input_ids"] + self._end_ids

    def _encode(self, text: str, images: list, padding_side: str = "left") -> dict[str, torch.Tensor]:
        kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
        if images:
            nested = isinstance(self.processor, Idefics3Processor | SmolVLMProcessor | PaliGemmaProcessor)
            kwargs["images"] = [images] if nested else images
        elif isinstance(self.processor, PaliGemmaProcessor):  # its processor refuses text without an image
            tok = self.processor.tokenizer
            enc = tok([(tok.bos_token or "") + text + "\n"], add_special_tokens=False, return_tensors="pt")
            enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
            return self._to_device(dict(enc))
        batch = self.processor(**kwargs)
        batch.pop("labels", None)
        return self._to_device(dict(batch))

    def _to_device(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, dtype=self.dtype if value.is_floating_point() else None)
            out[key] = value
        return out

    # -- the protocol ---------------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, messages: Sequence[Message], *, max_new_tokens: int | None = None,
                 avoid: Sequence[str] = ()) -> Generation:
        """Greedy reply to the conversation (the last message is the user's).

        When the greedy reply is one of `avoid` (replies the user rejected), beam search proposes alternatives
        (`AVOID_BEAMS` more than there are rejected replies) and the most likely one not rejected is returned.
        """
        start = time.perf_counter()
        text, images = self.prompt_text(messages)
        inputs = self._encode(text, images)
        new = self._generate_new_ids(inputs, max_new_tokens)
        reply, n = self._decode(new[0].tolist())
        rejected = {answer_key(a) for a in avoid}
        if answer_key(reply) in rejected:
            for row in self._generate_new_ids(inputs, max_new_tokens, beams=len(rejected) + AVOID_BEAMS):
                alternative, m = self._decode(row.tolist())
                if alternative and answer_key(alternative) not in rejected:
                    reply, n = alternative, m
                    break
        return Generation(text=reply, prompt_tokens=int(inputs["attention_mask"].sum()), completion_tokens=n,
                          seconds=time.perf_counter() - start)

    @torch.inference_mode()
    def generate_stream(self, messages: Sequence[Message], *, max_new_tokens: int | None = None,
                        on_text: OnText) -> Generation:
        """The greedy reply `generate(messages)` gives, its text handed to `on_text` in pieces while it is decoded
        (`ilearn.models.streaming`: the pieces joined are a prefix of the returned text)."""
        start = time.perf_counter()
        text, images = self.prompt_text(messages)
        inputs = self._encode(text, images)
        pieces = ReplyPieces(self._decode_text, on_text, self._cut_ids)
        new = self._generate_new_ids(inputs, max_new_tokens, streamer=PieceStreamer(pieces))
        reply, n = self._decode(new[0].tolist())
        return Generation(text=reply, prompt_tokens=int(inputs["attention_mask"].sum()), completion_tokens=n,
                          seconds=time.perf_counter() - start)

    def _generate_new_ids(self, inputs: dict[str, torch.Tensor], max_new_tokens: int | None,
                          beams: int = 1, streamer: PieceStreamer | None = None) -> torch.Tensor:
        """Greedy decoding of an encoded (left-padded) batch: the new token ids, one row per prompt; with
        `beams` > 1 (one prompt), beam search's `beams` best replies, best first; `streamer` gets the new tokens
        of a batch of one as they are chosen."""
        extra = {"num_beams": beams, "num_return_sequences": beams} if beams > 1 else {}
        if streamer is not None:
            extra["streamer"] = streamer
        out = self._model.generate(**inputs, max_new_tokens=max_new_tokens or self.config.max_new_tokens,
                                   do_sample=False, eos_token_id=self._stop_ids or None,
                                   pad_token_id=self._pad_id, **extra)
        return out[:, inputs["input_ids"].shape[1]:]

    def _decode(self, ids: list[int]) -> tuple[str, int]:
        """(reply text, tokens kept) of generated ids, cut before the first end-of-reply token."""
        n = next((i for i, t in enumerate(ids) if t in self._cut_ids), len(ids))
        return self._decode_text(ids[:n]).strip(), n

    def _decode_text(self, ids: list[int]) -> str:
        """The text of reply token ids (special tokens skipped, nothing stripped)."""
        return self.processor.tokenizer.decode(ids, skip_special_tokens=True)

    @torch.inference_mode()
    def score(self, messages: Sequence[Message], candidates: Sequence[str]) -> list[float]:
        """Summed log-probability of each candidate as the whole assistant reply (its end-of-turn token included)."""
        if not candidates:
            return []
        prompt, images = self.prompt_text(messages)
        enc = self._encode(prompt, images)
        replies = [self._reply_ids(messages, prompt, c) for c in candidates]
        scores: list[float] = []
        for i in range(0, len(replies), SCORE_CHUNK):
            scores.extend(float(x) for x in self.reply_logprobs(enc, replies[i: i + SCORE_CHUNK]))
        return scores

    def sequence_logprobs(self, messages: Sequence[Message], candidates: Sequence[str]) -> torch.Tensor:
        """Like `score`, as a tensor with gradients (one forward pass for all candidates)."""
        prompt, images = self.prompt_text(messages)
        enc = self._encode(prompt, images)
        return self.reply_logprobs(enc, [self._reply_ids(messages, prompt, c) for c in candidates])

    def reply_logprobs(self, enc: dict[str, torch.Tensor], replies: list[list[int]]) -> torch.Tensor:
        """Summed log-probs of token sequences `replies` appended to the encoded prompt `enc` (batch of one)."""
        n, plen = len(replies), enc["input_ids"].shape[1]
        width = plen + max(len(r) for r in replies)
        batch: dict[str, Any] = {}
        images: dict[str, torch.Tensor] = {}
        for key, value in enc.items():
            if not isinstance(value, torch.Tensor):
                batch[key] = value
            elif value.dim() == 2 and value.shape == (1, plen):  # per-token rows: extend with the reply
                fill = {"input_ids": self._pad_id, "attention_mask": 0, "token_type_ids": 1}.get(key, 0)
                rows = value.new_full((n, width), fill)
                rows[:, :plen] = value
                batch[key] = rows
            else:
                images[key] = value
        batch.update(self._candidate_images(images, n))
        for i, reply in enumerate(replies):
            batch["input_ids"][i, plen: plen + len(reply)] = torch.tensor(reply, device=self.device)
            batch["attention_mask"][i, plen: plen + len(reply)] = 1
        logits = self._model(**batch).logits.float()
        logprobs = torch.log_softmax(logits[:, plen - 1: -1], dim=-1)
        picked = logprobs.gather(-1, batch["input_ids"][:, plen:].unsqueeze(-1)).squeeze(-1)
        return (picked * batch["attention_mask"][:, plen:]).sum(-1)

    def _candidate_images(self, images: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
        """The prompt's image tensors for `n` candidate rows: one copy per candidate (image-major or batch-major)."""
        return {key: value.repeat(n, *([1] * (value.dim() - 1))) for key, value in images.items()}

    # -- versions -------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the base weights this wrapper was loaded with."""
        if self._peft is not None:
            self._model = self._peft.unload()
            self._peft = None
        if self._pristine:
            self._model.load_state_dict(self._pristine, strict=False)
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
            self._load_partial(file, state)
        self._model.eval()
        self.version = version or path.stem
        logger.info("model %s now serves version %s from %s", self.name, self.version, path)

    load_adapter = set_weights

    def _load_partial(self, file: Path, state: dict[str, torch.Tensor]) -> None:
        """Copy a partial state dict read from `file` into the model; weights it lacks are an InvalidInput."""
        unknown = sorted(set(state) - set(self._model.state_dict()))
        if unknown:
            raise InvalidInput(f"{file} has weights this model lacks, e.g. {unknown[:3]}")
        self._model.load_state_dict(state, strict=False)


class PieceStreamer(BaseStreamer):
    """transformers' streamer interface (`generate(..., streamer=)`) over `ReplyPieces`, for a batch of one: the
    first `put` (the prompt) is skipped, every later one adds the chosen token."""

    def __init__(self, pieces: ReplyPieces) -> None:
        self.pieces = pieces
        self._prompt = True

    def put(self, value: torch.Tensor) -> None:
        if self._prompt:
            self._prompt = False
            return
        self.pieces.add(value.reshape(-1).tolist())

    def end(self) -> None:
        """Nothing to flush: the text held back arrives with the whole reply (`ilearn.models.streaming`)."""


def load_hf(config: ModelConfig) -> HFVisionLanguageModel:
    """The `hf` backend: the VLM in the local folder `config.path`, on `config.device` in `config.dtype`."""
    if not config.path:
        raise InvalidInput("the hf backend needs model.path: a local folder holding a transformers VLM")
    torch.set_num_threads(config.threads)
    start = time.perf_counter()
    model, processor = load_pretrained(config.path, device=config.device, dtype=config.dtype)
    logger.info("loaded %s (%s) in %.1f s", config.path, type(model).__name__, time.perf_counter() - start)
    return HFVisionLanguageModel(model, processor, config)
