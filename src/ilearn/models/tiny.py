"""The `tiny` backend: the same classes as `small` with random weights, built in about a second, for tests.

A 3-layer CNN on 32 px images, a projector and a 2-layer Llama, with a byte-level BPE tokenizer trained on the
spot (deterministic for a given seed). Nothing is cached.
"""

from __future__ import annotations

import logging

import torch
from transformers import LlamaConfig, PreTrainedTokenizerFast

from ilearn.config import ModelConfig
from ilearn.models.composed import (
    IMAGE_TOKEN,
    ComposedConfig,
    ComposedProcessor,
    ComposedVLM,
    add_image_token,
    make_image_processor,
)
from ilearn.models.composed_chat import ComposedVLMChat

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", IMAGE_TOKEN]


def build_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with ChatML special tokens, trained in well under a second."""
    from ilearn.models.tiny_hf import BASE_CORPUS, train_tokenizer

    return train_tokenizer(SPECIAL_TOKENS, eos="<|im_end|>", bos="<|im_start|>", pad="<|endoftext|>", unk=None,
                           vocab_size=vocab_size, corpus=BASE_CORPUS)


def build_tiny(config: ModelConfig | None = None, *, image_size: int = 32, hidden: int = 64,
               layers: int = 2) -> tuple[ComposedVLM, ComposedProcessor]:
    """Random-weight ComposedVLM + processor, deterministic for `config.seed`."""
    config = config or ModelConfig(backend="tiny")
    tokenizer = build_tokenizer()
    image_token_id = add_image_token(tokenizer)
    text_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    channels = [16, 32, 32]
    vcfg = ComposedConfig(vision_type="cnn", vision_dim=channels[-1], vision_channels=channels, image_size=image_size,
                          image_pool=2, image_token_id=image_token_id, text_config=text_config)
    torch.manual_seed(config.seed)
    model = ComposedVLM(vcfg).eval()
    processor = ComposedProcessor(make_image_processor(vcfg), tokenizer, num_image_tokens=vcfg.num_image_tokens)
    return model, processor


def load_tiny(config: ModelConfig) -> ComposedVLMChat:
    """The `tiny` backend behind the VisionLanguageModel protocol."""
    torch.set_num_threads(config.threads)
    model, processor = build_tiny(config)
    return ComposedVLMChat(model, processor, config, name="tiny")
