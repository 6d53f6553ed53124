"""A LLaVA-style vision-language model composed of an image encoder, an MLP projector and an HF causal LM.

`ComposedVLM` is a real transformers model (config class, `save_pretrained` / `from_pretrained`, PEFT and TRL
work with it unchanged); `ComposedProcessor` turns chat text with `<image>` markers and PIL images into
`input_ids`, `attention_mask` and `pixel_values`. The wrapper behind the VisionLanguageModel protocol is
`ilearn.models.composed_chat.ComposedVLMChat`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GenerationMixin,
    LlamaConfig,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_utils import PILImageResampling
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
from transformers.processing_utils import ProcessorMixin

from ilearn.errors import InvalidInput
from ilearn.models.feature_cache import FeatureCache, weights_stamp

logger = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
DEFAULT_SYSTEM_PROMPT = "You are a helpful robot assistant. Answer briefly."

# ChatML (SmolLM2's format) with list content: {"type": "image"} becomes <image>, the processor expands it.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}<|im_start|>system\n__SYSTEM__<|im_end|>\n{% endif %}"
    "{%- for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}" + IMAGE_TOKEN + "\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ComposedConfig(PreTrainedConfig):
    """Vision settings plus the nested text (causal LM) config of a ComposedVLM."""

    model_type = "ilearn_composed"
    sub_configs = {"text_config": AutoConfig}

    def __init__(
        self,
        vision_type: str = "cnn",
        vision_dim: int = 64,
        vision_channels: list[int] | None = None,
        image_size: int = 224,
        image_pool: int = 3,
        image_token_id: int | None = None,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        text_config: dict | PreTrainedConfig | None = None,
        pixel_stats: bool = False,
        instance_dim: int = 0,
        **kwargs: Any,
    ) -> None:
        if vision_type not in {"cnn", "efficientnet-lite0"}:
            raise InvalidInput(f"vision_type must be cnn or efficientnet-lite0, not {vision_type!r}")
        self.vision_type = vision_type
        self.vision_dim = vision_dim
        self.vision_channels = list(vision_channels or [16, 32, 64])
        self.image_size = image_size
        self.image_pool = image_pool
        self.image_token_id = image_token_id
        self.image_mean = list(image_mean or [0.485, 0.456, 0.406])
        self.image_std = list(image_std or [0.229, 0.224, 0.225])
        self.pixel_stats = pixel_stats  # efficientnet-lite0: append per-cell colour mean/max/min (9 channels)
        self.instance_dim = instance_dim  # efficientnet-lite0: append the object's instance vector (InstanceFeatures)
        if isinstance(text_config, dict):
            from transformers import CONFIG_MAPPING

            text_config = CONFIG_MAPPING[text_config.get("model_type", "llama")](**text_config)
        self.text_config = text_config if text_config is not None else LlamaConfig()
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    @property
    def num_image_tokens(self) -> int:
        """Placeholder tokens per image: the feature grid average-pooled to image_pool x image_pool."""
        return self.image_pool * self.image_pool

    @property
    def hidden_size(self) -> int:  # read by TRL / PEFT / DeepSpeed helpers
        return self.text_config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size


class TinyCNN(nn.Module):
    """A small strided CNN: (B, 3, H, W) -> (B, C, H/2^k, W/2^k)."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 3
        for c in channels:
            layers += [nn.Conv2d(previous, c, 3, stride=2, padding=1), nn.GELU()]
            previous = c
        self.net = nn.Sequential(*layers)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)


class InstanceFeatures(nn.Module):
    """The object's instance vector (`ilearn.models.instance`) from normalised pixels: (B, 3, H, W) -> (B, dim).

    ImageNet features pooled to a few tokens cannot tell look-alike objects apart (a fine-tuned `small` model
    learnt 8% of the pharmacy bottles from them). The instance CNN, trained to tell look-alikes apart across
    views, sees the upright, white-balanced object crop; that crop is cut from the pixels without gradient
    (segmentation is not differentiable), the CNN itself trains with the vision encoder.
    """

    def __init__(self, mean: list[float], std: list[float], dim: int = 128, net: nn.Module | None = None) -> None:
        super().__init__()
        from ilearn.models.instance import InstanceNet

        self.net = net if net is not None else InstanceNet(dim)
        self.mean, self.std = list(mean), list(std)  # plain lists: models built on the meta device keep them

    def crops(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 4, INPUT, INPUT) object crops + masks of normalised pixel batches (CPU numpy work)."""
        import numpy as np
        from PIL import Image

        from ilearn.models.instance import prepare, to_tensor

        with torch.no_grad():
            mean, std = (torch.tensor(v, device=pixel_values.device).view(1, 3, 1, 1) for v in (self.mean, self.std))
            pixels = (pixel_values.float() * std + mean).clamp(0, 1).mul(255).round()
            arrays = pixels.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        prepared = np.stack([prepare(Image.fromarray(a)) for a in arrays])
        return to_tensor(prepared).to(device=pixel_values.device, dtype=self.net.head.weight.dtype)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        from ilearn.models.instance import mirror_embed

        return mirror_embed(self.net, self.crops(pixel_values))


class EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite0's convolutional trunk: (B, 3, 224, 224) -> (B, 1280, 7, 7).

    With `pixel_stats`, 9 channels are appended: the mean, max and min of each colour channel over each grid
    cell. ImageNet features keep shape far better than colour (measured on easy-vqa: shape questions 100%,
    colour questions 32% without them), and these make colour plain to the projector. With `instance`, the
    object's instance vector is appended last, the same in every cell (the projector takes it apart).
    """

    def __init__(self, net: nn.Module | None = None, pixel_stats: bool = False,
                 instance: InstanceFeatures | None = None) -> None:
        super().__init__()
        if net is None:
            from efficientnet_lite_pytorch import EfficientNet

            net = EfficientNet.from_name("efficientnet-lite0")
        self.net = net
        self.pixel_stats = pixel_stats
        self.instance = instance

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.net.extract_features(pixel_values)
        parts = [features]
        grid = features.shape[-2:]
        if self.pixel_stats:
            pool = nn.functional.adaptive_max_pool2d
            stats = [nn.functional.adaptive_avg_pool2d(pixel_values, grid), pool(pixel_values, grid),
                     -pool(-pixel_values, grid)]
            parts += [s.to(features.dtype) for s in stats]
        if self.instance is not None:
            vector = self.instance(pixel_values).to(features.dtype)
            parts.append(vector[:, :, None, None].expand(-1, -1, *grid))
        return torch.cat(parts, dim=1) if len(parts) > 1 else features


class Projector(nn.Module):
    """Pools a (B, C, H, W) grid to pool x pool tokens (or takes (B, N, C) as is), then LayerNorm + 2-layer MLP.

    With `instance_dim`, the last `instance_dim` channels are an instance vector (`InstanceFeatures`): a second
    MLP maps it to an offset added to every image token. Its output layer starts at zero, so a model gains the
    instance path without changing a single answer until it is fine-tuned.
    """

    def __init__(self, in_dim: int, out_dim: int, pool: int, instance_dim: int = 0) -> None:
        super().__init__()
        self.pool = pool
        self.norm = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, out_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(out_dim, out_dim)
        self.instance_dim = instance_dim
        self.instance: nn.Sequential | None = None
        if instance_dim:
            self.instance = nn.Sequential(nn.LayerNorm(instance_dim), nn.Linear(instance_dim, out_dim), nn.GELU(),
                                          nn.Linear(out_dim, out_dim))
            self.zero_instance_output()

    def zero_instance_output(self) -> None:
        """Zero the instance path's output layer (no effect on the tokens until trained)."""
        if self.instance is not None:
            nn.init.zeros_(self.instance[-1].weight)
            nn.init.zeros_(self.instance[-1].bias)

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) feature map -> (B, pool*pool, C) pooled tokens; (B, N, C) passes through."""
        if features.dim() == 4:
            features = nn.functional.adaptive_avg_pool2d(features, self.pool).flatten(2).transpose(1, 2)
        return features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(features)
        if self.instance is None:
            return self.fc2(self.act(self.fc1(self.norm(tokens))))
        main, vector = tokens[..., : -self.instance_dim], tokens[..., -self.instance_dim:].mean(dim=1)
        return self.fc2(self.act(self.fc1(self.norm(main)))) + self.instance(vector).unsqueeze(1)


def build_vision(config: ComposedConfig) -> nn.Module:
    """The image encoder named by `config.vision_type` (weights random; loaders fill them)."""
    if config.vision_type == "efficientnet-lite0":
        instance = InstanceFeatures(config.image_mean, config.image_std, config.instance_dim) if config.instance_dim \
            else None
        return EfficientNetFeatures(pixel_stats=config.pixel_stats, instance=instance)
    return TinyCNN(config.vision_channels)


class ComposedVLM(PreTrainedModel, GenerationMixin):
    """LLaVA-style VLM: `vision` -> `projector` -> replaces `<image>` placeholders in `language`'s input."""

    config_class = ComposedConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _no_split_modules = ["LlamaDecoderLayer"]

    def __init__(self, config: ComposedConfig) -> None:
        super().__init__(config)
        self.vision = build_vision(config)
        self.projector = Projector(config.vision_dim, config.text_config.hidden_size, config.image_pool,
                                   config.instance_dim)
        self.language = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()
        self.projector.zero_instance_output()
        self.feature_cache = FeatureCache()
        """The vision features of recently seen images, reused at inference (`ilearn.models.feature_cache`)."""

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # -- plumbing PEFT / TRL rely on -------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module | None:
        return self.language.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language.set_output_embeddings(value)

    @property
    def base_model(self) -> _Backbone:
        """The model without its LM head (TRL's fused LM-head loss calls it and reads `last_hidden_state`)."""
        return _Backbone(self)

    @property
    def generation_config(self):
        """The language model's GenerationConfig (TRL reads and sets it)."""
        return self.language.generation_config

    @generation_config.setter
    def generation_config(self, value) -> None:
        if "language" in self._modules:
            self.language.generation_config = value

    def get_decoder(self) -> nn.Module:
        return self.language.get_decoder()

    def train(self, mode: bool = True) -> ComposedVLM:
        """Like nn.Module.train, but a frozen vision encoder stays in eval mode (BatchNorm statistics kept)."""
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.vision.parameters()):
            self.vision.eval()
        return self

    # -- the model ------------------------------------------------------------------------------------
    def image_tokens(self, pixel_values: torch.Tensor | None = None,
                     image_features: torch.Tensor | None = None) -> torch.Tensor:
        """Projected image tokens (n_images, num_image_tokens, hidden) from pixels or precomputed features."""
        if image_features is None:
            if pixel_values is None:
                raise InvalidInput("pixel_values or image_features is required")
            image_features = self.vision_features(pixel_values)
        image_features = image_features.to(self.projector.fc1.weight.dtype)
        return self.projector(image_features)

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The vision encoder's features of normalised pixels (n, vision_dim, grid, grid); at inference, an image
        seen lately with the same encoder weights is not encoded again (`feature_cache`)."""
        pixels = pixel_values.to(next(self.vision.parameters()).dtype)
        if not self.feature_cache.usable(self.vision, pixels):
            return self.vision(pixels)
        return self.feature_cache.features(self.vision, weights_stamp(self.vision), pixels)

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
              image_features: torch.Tensor | None = None) -> torch.Tensor:
        """Input embeddings with every `<image>` placeholder replaced by the projected image tokens, in order."""
        embeds = self.get_input_embeddings()(input_ids)
        mask = input_ids == self.config.image_token_id
        n_slots = int(mask.sum())
        if pixel_values is None and image_features is None:
            if n_slots:
                raise InvalidInput(f"the input has {n_slots} image placeholder tokens but no pixel_values")
            return embeds
        tokens = self.image_tokens(pixel_values, image_features)
        if tokens.shape[0] * tokens.shape[1] != n_slots:
            raise InvalidInput(f"{tokens.shape[0]} image(s) give {tokens.shape[0] * tokens.shape[1]} image tokens "
                               f"but the text has {n_slots} placeholders")
        return embeds.masked_scatter(mask.unsqueeze(-1), tokens.to(embeds.dtype).reshape(-1, embeds.shape[-1]))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        """The language model's CausalLMOutputWithPast (loss when `labels` are given)."""
        kwargs.pop("token_type_ids", None)
        if inputs_embeds is None:
            if input_ids is None:
                raise InvalidInput("input_ids or inputs_embeds is required")
            inputs_embeds = self.embed(input_ids, pixel_values, image_features)
        return self.language(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 pixel_values: torch.Tensor | None = None, **kwargs: Any):
        """Like a decoder-only HF model's generate: returns the prompt ids followed by the new ids."""
        kwargs.pop("token_type_ids", None)
        if input_ids is None:
            raise InvalidInput("input_ids is required")
        embeds = self.embed(input_ids, pixel_values, kwargs.pop("image_features", None))
        out = self.language.generate(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
        if isinstance(out, torch.Tensor):  # num_return_sequences > 1 gives several rows per prompt
            return torch.cat([input_ids.repeat_interleave(out.shape[0] // input_ids.shape[0], dim=0), out], dim=1)
        out.sequences = torch.cat([input_ids, out.sequences], dim=1)
        return out

    def prepare_inputs_for_generation(self, *args: Any, **kwargs: Any) -> dict:
        """The language model's (PEFT's causal-LM wrapper requires the method; `generate` embeds first)."""
        return self.language.prepare_inputs_for_generation(*args, **kwargs)

    def trainable_state(self, parts: tuple[str, ...] = ("projector",)) -> dict[str, torch.Tensor]:
        """State dict of some parts (vision / projector / language), keys prefixed by the part name."""
        return {f"{p}.{k}": v for p in parts for k, v in getattr(self, p).state_dict().items()}

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        """Load a partial state dict (e.g. the shipped projector); unknown keys are an error."""
        own = self.state_dict()
        unknown = [k for k in state if k not in own]
        if unknown:
            raise InvalidInput(f"weights do not match this model: unknown keys {unknown[:5]}")
        wrong = [k for k, v in state.items() if v.shape != own[k].shape]
        if wrong:
            raise InvalidInput(f"weights do not match this model: {wrong[0]} has shape {tuple(state[wrong[0]].shape)}, "
                               f"the model has {tuple(own[wrong[0]].shape)}")
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v.to(own[k].dtype))


class _Backbone:
    """Callable view of a ComposedVLM without the LM head: returns the language backbone's output."""

    def __init__(self, vlm: ComposedVLM) -> None:
        self.vlm = vlm

    def __call__(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 pixel_values: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                 image_features: torch.Tensor | None = None, **kwargs: Any):
        kwargs.pop("token_type_ids", None)
        if inputs_embeds is None:
            inputs_embeds = self.vlm.embed(input_ids, pixel_values, image_features)
        return self.vlm.language.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)

    def get_input_embeddings(self) -> nn.Module:
        return self.vlm.get_input_embeddings()

    def get_decoder(self) -> nn.Module:
        return self.vlm.language.base_model


AutoConfig.register("ilearn_composed", ComposedConfig, exist_ok=True)


def assemble(config: ComposedConfig, vision: nn.Module, language: nn.Module) -> ComposedVLM:
    """A ComposedVLM around already-built (e.g. pretrained) parts; only the projector is freshly initialised."""
    with torch.device("meta"):
        model = ComposedVLM(config)
    model.vision = vision
    model.language = language
    model.projector = Projector(config.vision_dim, config.text_config.hidden_size, config.image_pool,
                                config.instance_dim)
    for layer in (model.projector.fc1, model.projector.fc2, *(model.projector.instance or [])):
        model._init_weights(layer)
    model.projector.zero_instance_output()
    return model


def make_image_processor(config: ComposedConfig) -> SiglipImageProcessorPil:
    """PIL + numpy image processor: any RGB image -> image_size square, normalised by the config's mean/std."""
    return SiglipImageProcessorPil(
        size={"height": config.image_size, "width": config.image_size}, resample=PILImageResampling.BICUBIC,
        image_mean=config.image_mean, image_std=config.image_std, do_convert_rgb=True,
    )


def add_image_token(tokenizer) -> int:
    """Add `<image>` as a special token (and a pad token distinct from end-of-turn); return its id."""
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        tokenizer.pad_token = "<|endoftext|>" if "<|endoftext|>" in tokenizer.get_vocab() else IMAGE_TOKEN
    return tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)


class ComposedProcessor(ProcessorMixin):
    """Image processor + tokenizer; expands each `<image>` into `num_image_tokens` placeholders."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template: str | None = None,
                 num_image_tokens: int = 9, system_prompt: str = DEFAULT_SYSTEM_PROMPT, **kwargs: Any) -> None:
        self.num_image_tokens = num_image_tokens
        self.system_prompt = system_prompt
        self.image_token = IMAGE_TOKEN
        if chat_template is None:
            chat_template = CHAT_TEMPLATE.replace("__SYSTEM__", system_prompt)
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    def __call__(self, images=None, text: str | list[str] | None = None, **kwargs: Any) -> BatchFeature:
        """Tokenise `text` (one string or a batch) and preprocess `images` (one, a list, or a list per text)."""
        if text is None:
            raise InvalidInput("text is required")
        texts = [text] if isinstance(text, str) else list(text)
        flat = _flatten_images(images)
        n_markers = sum(t.count(IMAGE_TOKEN) for t in texts)
        if n_markers != len(flat):
            raise InvalidInput(f"the text has {n_markers} {IMAGE_TOKEN} marker(s) but {len(flat)} image(s) were given")
        expanded = [t.replace(IMAGE_TOKEN, IMAGE_TOKEN * self.num_image_tokens) for t in texts]
        return_tensors = kwargs.pop("return_tensors", None)
        for unused in ("images_kwargs", "text_kwargs", "videos", "audio"):
            kwargs.pop(unused, None)
        kwargs.setdefault("add_special_tokens", False)
        data = dict(self.tokenizer(expanded, return_tensors=return_tensors, **kwargs))
        if flat:
            data["pixel_values"] = self.image_processor(flat, return_tensors="pt")["pixel_values"]
        return BatchFeature(data=data, tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def _flatten_images(images) -> list:
    if images is None:
        return []
    if not isinstance(images, (list, tuple)):
        return [images]
    flat: list = []
    for item in images:
        flat.extend(_flatten_images(item))
    return flat
