"""Tiny random-weight transformers VLMs (LLaVA(-NeXT), Qwen2(.5)-VL, Idefics3, SmolVLM, PaliGemma) saved to a folder, for tests.

Each builder makes a real transformers model class from a tiny config (hidden 32, 2 layers, 32 px images) and a
byte-level BPE tokenizer trained on the spot with `tokenizers` (about 0.1 s, deterministic), wraps them with the
family's processor (PIL image processors only: torchvision is not needed) and saves both with `save_pretrained`.
The folder then loads offline through `load_model(ModelConfig(backend="hf", path=folder))`.

Qwen2-VL and SmolVLM processors normally require a video processor (which needs torchvision); the `*ImageOnly`
processor subclasses of `ilearn.models.hf` keep only the image processor and the tokenizer. `AutoProcessor.from_pretrained` on such
a folder returns only the tokenizer, so use `ilearn.models.hf.load_processor(folder)` (or pass the processor explicitly to TRL).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import Idefics3Processor, LlavaProcessor, PaliGemmaProcessor, PreTrainedTokenizerFast

from ilearn.errors import InvalidInput
from ilearn.models.hf import (
    Qwen2_5_VLImageOnlyProcessor,
    Qwen2VLImageOnlyProcessor,
    SmolVLMImageOnlyProcessor,
)

logger = logging.getLogger(__name__)

KINDS = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "paligemma")
"""The families `build_tiny_hf` can build."""

HIDDEN = 32
LAYERS = 2
IMAGE_SIZE = 32

BASE_CORPUS = [
    "system user assistant you are a helpful robot assistant answer briefly",
    "what color is the shape? what is the red shape? is there a circle in the image? does the image contain a triangle?",
    "yes no red green blue yellow teal brown gray black white circle rectangle triangle square",
    "this is a cup a mug a bottle a book a ball a cat a dog a chair a table the the the",
    "thanks that's right no that is wrong it is actually please which one do you mean the left or the right",
    "I don't know 0 1 2 3 4 5 6 7 8 9 , . ! ? : ; ' \" ( ) [ ] { } - _",
]
"""Text the tiny tokenizers are trained on (the tiny composed model uses it as it is)."""
_CORPUS = [*BASE_CORPUS[:-1], BASE_CORPUS[-1] + " User: Assistant:"]  # the hf families' templates add these words

# ChatML with list content (the shape `apply_chat_template` gets from multimodal chats).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ IMAGE }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Idefics3 / SmolVLM style: "<|im_start|>User:<image>text<end_of_utterance>\nAssistant:".
IDEFICS_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}: {{ message['content'] }}{% else %}"
    "{% if message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def train_tokenizer(special_tokens: list[str], *, eos: str, bos: str | None, pad: str, unk: str | None = None,
                    vocab_size: int = 400, extra: dict[str, str] | None = None,
                    corpus: Sequence[str] = _CORPUS) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with the given special tokens, trained on a small fixed `corpus` in about 0.1 s."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(corpus) * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=bos, pad_token=pad,
                                   unk_token=unk, **(extra or {}))


def _llama(tokenizer, vocab_size: int | None = None, **kwargs: Any):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size or len(tokenizer), hidden_size=HIDDEN, intermediate_size=HIDDEN * 2,
        num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **kwargs,
    )


def _vision_kwargs() -> dict[str, Any]:
    return dict(hidden_size=HIDDEN, intermediate_size=HIDDEN * 2, num_hidden_layers=LAYERS, num_attention_heads=4,
                image_size=IMAGE_SIZE, patch_size=8)


def _build_llava():
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = train_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"], eos="<|im_end|>",
                                bos="<|im_start|>", pad="<|endoftext|>", extra={"extra_special_tokens":
                                                                                {"image_token": "<image>"}})
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHATML_TEMPLATE.replace("{{ IMAGE }}", "<image>"))
    config = LlavaConfig(vision_config=CLIPVisionConfig(**_vision_kwargs()), text_config=_llama(tokenizer),
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-1,
                         projector_hidden_act="gelu")
    return LlavaForConditionalGeneration(config), processor


def _build_llava_next():
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
    )
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    tokenizer = train_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"], eos="<|im_end|>",
                                bos="<|im_start|>", pad="<|endoftext|>", extra={"extra_special_tokens":
                                                                                {"image_token": "<image>"}})
    pinpoints = [[IMAGE_SIZE, IMAGE_SIZE], [IMAGE_SIZE, 2 * IMAGE_SIZE], [2 * IMAGE_SIZE, IMAGE_SIZE]]
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, image_grid_pinpoints=pinpoints,
                                                 crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=CHATML_TEMPLATE.replace("{{ IMAGE }}", "<image>"))
    config = LlavaNextConfig(vision_config=CLIPVisionConfig(**_vision_kwargs()), text_config=_llama(tokenizer),
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                             vision_feature_select_strategy="default", vision_feature_layer=-1,
                             image_grid_pinpoints=pinpoints)
    return LlavaNextForConditionalGeneration(config), processor


def _build_qwen2_5_vl():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    qwen2, processor = _build_qwen2_vl()
    processor = Qwen2_5_VLImageOnlyProcessor(image_processor=processor.image_processor, tokenizer=processor.tokenizer,
                                             chat_template=processor.chat_template)
    base = qwen2.config
    vision = dict(depth=LAYERS, hidden_size=HIDDEN, intermediate_size=HIDDEN * 2, num_heads=4, patch_size=8,
                  spatial_merge_size=2, temporal_patch_size=2, in_channels=3, out_hidden_size=HIDDEN,
                  window_size=16, fullatt_block_indexes=[LAYERS - 1])
    config = Qwen2_5_VLConfig(text_config=base.text_config.to_dict(), vision_config=vision,
                              image_token_id=base.image_token_id, video_token_id=base.video_token_id,
                              vision_start_token_id=base.vision_start_token_id,
                              vision_end_token_id=base.vision_end_token_id)
    return Qwen2_5_VLForConditionalGeneration(config), processor


def _build_qwen2_vl():
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tokenizer = train_tokenizer(specials, eos="<|im_end|>", bos=None, pad="<|endoftext|>")
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 16 * 16, "longest_edge": IMAGE_SIZE * IMAGE_SIZE},
                                               patch_size=8, merge_size=2, temporal_patch_size=2)
    template = CHATML_TEMPLATE.replace("{{ IMAGE }}", "<|vision_start|><|image_pad|><|vision_end|>")
    processor = Qwen2VLImageOnlyProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                          chat_template=template)
    ids = tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=HIDDEN * 2,
                num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}, rope_parameters={
                    "rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0},
                bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(depth=LAYERS, embed_dim=HIDDEN, hidden_size=HIDDEN, num_heads=4, mlp_ratio=2, patch_size=8,
                  spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
                           video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                           vision_end_token_id=ids("<|vision_end|>"), eos_token_id=tokenizer.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id)
    return Qwen2VLForConditionalGeneration(config), processor


def _idefics_parts(processor_cls):
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<fake_token_around_image>", "<image>",
                "<end_of_utterance>", "<global-img>"]
    tokenizer = train_tokenizer(specials, eos="<end_of_utterance>", bos="<|im_start|>", pad="<|endoftext|>")
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": IMAGE_SIZE}, do_image_splitting=False,
                                                max_image_size={"longest_edge": IMAGE_SIZE})
    seq_len = (IMAGE_SIZE // 8) ** 2 // 4  # patches per side squared, over scale_factor**2
    processor = processor_cls(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=seq_len,
                              chat_template=IDEFICS_TEMPLATE)
    return tokenizer, processor


def _build_idefics_family(config_cls: type, model_cls: type, processor_cls: type):
    """Idefics3 and SmolVLM share the architecture; only their config, model and processor classes differ."""
    tokenizer, processor = _idefics_parts(processor_cls)
    config = config_cls(vision_config=_vision_kwargs(), text_config=_llama(tokenizer).to_dict(),
                        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=2,
                        pad_token_id=tokenizer.pad_token_id)
    return model_cls(config), processor


def _build_idefics3():
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration

    return _build_idefics_family(Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor)


def _build_smolvlm():
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    return _build_idefics_family(SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageOnlyProcessor)


def _build_paligemma():
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        SiglipVisionConfig,
    )
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tokenizer = train_tokenizer(["<pad>", "<eos>", "<bos>", "<unk>", "<image>"], eos="<eos>", bos="<bos>",
                                pad="<pad>", unk="<unk>")
    image_processor = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    image_processor.image_seq_length = (IMAGE_SIZE // 8) ** 2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)  # adds <loc>/<seg> tokens
    text = GemmaConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=HIDDEN * 2,
                       num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                       max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = SiglipVisionConfig(**_vision_kwargs(), projection_dim=HIDDEN)
    config = PaliGemmaConfig(vision_config=vision, text_config=text,
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"), projection_dim=HIDDEN,
                             pad_token_id=tokenizer.pad_token_id)
    return PaliGemmaForConditionalGeneration(config), processor


_BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "llava": _build_llava, "llava_next": _build_llava_next, "qwen2_vl": _build_qwen2_vl, "qwen2_5_vl": _build_qwen2_5_vl, "idefics3": _build_idefics3, "smolvlm": _build_smolvlm,
    "paligemma": _build_paligemma,
}


def make_tiny_hf(kind: str, seed: int = 0) -> tuple[torch.nn.Module, Any]:
    """The (model, processor) pair of a tiny random-weight VLM of family `kind` (one of KINDS), in memory."""
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise InvalidInput(f"unknown tiny VLM kind {kind!r}; choose one of {list(KINDS)}")
    torch.manual_seed(seed)
    model, processor = builder()
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    return model.eval(), processor


def build_tiny_hf(kind: str, folder: Path, seed: int = 0) -> Path:
    """Build a tiny random-weight transformers VLM and save model + processor to `folder`; returns `folder`.

    `kind` is one of KINDS: "llava" (LlavaForConditionalGeneration, CLIP vision tower, Llama text), "llava_next"
    (LlavaNextForConditionalGeneration, any-resolution tiles), "qwen2_vl" (Qwen2VLForConditionalGeneration),
    "qwen2_5_vl" (Qwen2_5_VLForConditionalGeneration), "idefics3" (Idefics3ForConditionalGeneration), "smolvlm"
    (SmolVLMForConditionalGeneration; needs `num2words`) or "paligemma" (PaliGemmaForConditionalGeneration, Gemma
    text). All have hidden size 32, 2 layers and take 32 px images; weights are random but deterministic for `seed`.
    Takes a second or so, fully offline. The chat-template families use ChatML (LLaVA, Qwen) or the Idefics3
    "User:/Assistant:" layout; PaliGemma has no chat template (prefix + suffix, as the real model).

    Load the result with `load_model(ModelConfig(backend="hf", path=str(folder)))`, or get the raw pair with
    `ilearn.models.hf.load_pretrained(folder)`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, processor = make_tiny_hf(kind, seed=seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "ilearn_tiny.json").write_text(json.dumps({"kind": kind, "seed": seed}))
    logger.info("saved a tiny %s VLM (%d parameters) to %s", kind, sum(p.numel() for p in model.parameters()), folder)
    return folder
