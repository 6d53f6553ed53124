"""Trainable parts of a VLM (vision, projector, language): locate them, freeze the rest, add LoRA, save, load.

One mapping (`PART_PATHS`) names where each part lives in every supported family; the first path that exists
wins, so no family is special-cased in code:

| family | vision | projector | language |
| --- | --- | --- | --- |
| ilearn composed (`small`, `tiny`) | `vision` | `projector` | `language` |
| LLaVA / LLaVA-NeXT, PaliGemma | `model.vision_tower` | `model.multi_modal_projector` | `model.language_model` |
| Qwen2-VL / Qwen2.5-VL | `model.visual` (without `merger`) | `model.visual.merger` | `model.language_model` |
| Idefics3 / SmolVLM | `model.vision_model` | `model.connector` | `model.text_model` |

A part is trained either with LoRA (PEFT adapters; on the language model only the attention projections q/k/v/o,
through a `target_modules` regex restricted to the language stack) or in full. A trained version is a folder
holding the PEFT adapter (`adapter_config.json` + `adapter_model.safetensors`, when some part had LoRA) and the
fully trained parts' tensors (`weights.safetensors`, when some part was trained in full), never a full model;
`apply_trained` puts both onto a fresh base model.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ilearn.errors import InvalidInput, NotFound

logger = logging.getLogger(__name__)

PARTS = ("vision", "projector", "language")

PART_PATHS: dict[str, tuple[str, ...]] = {
    "vision": ("vision", "model.vision_tower", "model.visual", "model.vision_model",
               "vision_tower", "visual", "vision_model"),
    "projector": ("projector", "model.multi_modal_projector", "model.visual.merger", "model.connector",
                  "multi_modal_projector", "visual.merger", "connector"),
    "language": ("language", "model.language_model", "model.text_model", "language_model", "text_model"),
}
"""Where each part lives, first match wins (see the module docstring for the families)."""

LANGUAGE_EXTRAS = ("lm_head",)
"""Top-level modules trained with the language model when it is trained in full (the LM head of hf VLMs)."""

ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
"""The language model's modules that get LoRA adapters."""

WEIGHTS_FILE = "weights.safetensors"
PARTS_FILE = "parts.json"


def locate_parts(model: nn.Module) -> dict[str, str]:
    """Part name -> module path inside `model` (a transformers VLM, not a PEFT wrapper); all three must exist."""
    found: dict[str, str] = {}
    for part, paths in PART_PATHS.items():
        for path in paths:
            try:
                model.get_submodule(path)
            except AttributeError:
                continue
            found[part] = path
            break
        else:
            raise InvalidInput(f"cannot find the {part} part of {type(model).__name__}; tried {list(paths)}")
    return found


def canonical_name(name: str) -> str:
    """A parameter name as in the plain model: PEFT's prefixes and wrapper segments removed."""
    name = name.removeprefix("base_model.model.")
    for segment in (".modules_to_save.default", ".original_module", ".base_layer"):
        name = name.replace(segment, "")
    return name


def part_of(name: str, located: dict[str, str]) -> str | None:
    """The part a (canonical) parameter name belongs to: the most specific located path that holds it."""
    best, best_len = None, -1
    for part, path in located.items():
        if (name == path or name.startswith(path + ".")) and len(path) > best_len:
            best, best_len = part, len(path)
    if best is None and name.split(".")[0] in LANGUAGE_EXTRAS:
        return "language"
    return best


@dataclass
class PreparedModel:
    """A model made ready for training: frozen except the chosen parts."""

    model: nn.Module
    """The model to hand to the trainer (a PeftModel when some part has LoRA adapters)."""
    located: dict[str, str]
    full: tuple[str, ...]
    lora: tuple[str, ...]
    trainable_names: list[str] = field(default_factory=list)
    frozen_names: list[str] = field(default_factory=list)

    @property
    def is_peft(self) -> bool:
        return bool(self.lora)

    def count(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return trainable, sum(p.numel() for p in self.model.parameters())


def _lora_targets(model: nn.Module, located: dict[str, str], lora: tuple[str, ...]) -> str:
    """A fullmatch regex over module names: attention projections of the language stack, every Linear/Conv2d of
    the other LoRA parts (minus nested parts, e.g. Qwen2-VL's merger inside the vision tower)."""
    alternatives: list[str] = []
    for part in lora:
        path = located[part]
        if part == "language":
            alternatives.append(rf"{re.escape(path)}\..*\.(?:{'|'.join(ATTENTION_PROJECTIONS)})")
            continue
        names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))
                 and part_of(n, located) == part]
        if not names:
            raise InvalidInput(f"the {part} part has no Linear or Conv2d layer for LoRA; train it in full")
        alternatives.extend(re.escape(n) for n in names)
    return "^(?:" + "|".join(alternatives) + ")$"


def prepare(model: nn.Module, trainable: tuple[str, ...], lora: tuple[str, ...] = ("language",), *,
            lora_r: int = 16, lora_alpha: int = 32, lora_dropout: float = 0.0) -> PreparedModel:
    """Freeze `model` except the `trainable` parts: those in `lora` get PEFT LoRA adapters, the others train in full."""
    unknown = set(trainable) - set(PARTS)
    if unknown or not trainable:
        raise InvalidInput(f"trainable parts must be a non-empty subset of {PARTS}, not {tuple(trainable)}")
    located = locate_parts(model)
    lora_parts = tuple(p for p in PARTS if p in trainable and p in lora)
    full_parts = tuple(p for p in PARTS if p in trainable and p not in lora)
    model.requires_grad_(False)
    if lora_parts:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, bias="none",
                            target_modules=_lora_targets(model, located, lora_parts))
        model = get_peft_model(model, config)
    prepared = PreparedModel(model=model, located=located, full=full_parts, lora=lora_parts)
    for name, param in model.named_parameters():
        if "lora_" in name:
            train = True
        else:
            train = part_of(canonical_name(name), located) in full_parts
        param.requires_grad_(train)
        (prepared.trainable_names if train else prepared.frozen_names).append(name)
    n_train, n_total = prepared.count()
    logger.info("training %s (LoRA: %s, full: %s): %d of %d parameters", "+".join(trainable),
                ",".join(lora_parts) or "-", ",".join(full_parts) or "-", n_train, n_total)
    return prepared


def save_trained(prepared: PreparedModel, out_dir: str | Path) -> Path:
    """Write what was trained into `out_dir`: the PEFT adapter and/or the fully trained parts' weights.safetensors."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("adapter_config.json", "adapter_model.safetensors", WEIGHTS_FILE):  # one format per folder
        (out / stale).unlink(missing_ok=True)
    if prepared.is_peft:
        # only the trained adapter (DPO adds a frozen "ref" copy beside it)
        prepared.model.save_pretrained(str(out), selected_adapters=["default"])
    if prepared.full:
        base = prepared.model.get_base_model() if prepared.is_peft else prepared.model
        state = {k: v.detach().to("cpu").clone().contiguous() for k, v in base.state_dict().items()
                 if "lora_" not in k and part_of(canonical_name(k), prepared.located) in prepared.full}
        save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    (out / PARTS_FILE).write_text(json.dumps({"full": list(prepared.full), "lora": list(prepared.lora),
                                              "located": prepared.located}, indent=2))
    return out


def apply_trained(model: nn.Module, path: str | Path) -> nn.Module:
    """Apply a saved version onto a fresh base `model`: its trained parts' tensors, then its LoRA adapter.

    Returns a PeftModel when the version has an adapter, else `model` itself.
    """
    path = Path(path)
    has_adapter = (path / "adapter_config.json").is_file()
    if not has_adapter and not (path / WEIGHTS_FILE).is_file():
        raise NotFound(f"{path} holds neither a PEFT adapter nor {WEIGHTS_FILE}")
    if (path / WEIGHTS_FILE).is_file():
        load_weights(model, path / WEIGHTS_FILE)
    if has_adapter:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(path), is_trainable=False)
    return model


def stack_onto(out_dir: str | Path, start_dir: str | Path) -> Path:
    """Make the version saved in `out_dir`, trained on top of the version saved in `start_dir` (its LoRA merged
    into the weights before a new one was added), whole: `apply_trained` on the base then gives what trained.

    Full parts: the start version's tensors of the parts this training left alone join this one's. LoRA: the two
    adapters side by side in one, exactly (rank r1 + r2, scale 1: A = [A1; A2], B = [s1 B1, s2 B2], zeros where
    one adapter has no such module), minus the start adapter's modules in parts this training trained in full
    (their saved tensors hold that adapter merged already). So a stacked version loads, and is published to vLLM,
    as one adapter; its rank is the sum of the two."""
    from safetensors.torch import load_file, save_file

    out, start = Path(out_dir), Path(start_dir)
    mine, theirs = (json.loads((d / PARTS_FILE).read_text()) for d in (out, start))
    full = [p for p in PARTS if p in mine["full"] or p in theirs["full"]]
    if (start / WEIGHTS_FILE).is_file():
        state = load_file(str(start / WEIGHTS_FILE))
        if (out / WEIGHTS_FILE).is_file():  # this training's tensors of the parts it trained in full win
            state.update(load_file(str(out / WEIGHTS_FILE)))
        save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    start_lora = [p for p in theirs["lora"] if p not in mine["full"]]  # the others are merged into saved tensors
    if start_lora and (start / "adapter_config.json").is_file():
        adapters = [d for d in (start, out) if (d / "adapter_config.json").is_file()]
        _stack_adapters(adapters, start, mine["located"], set(mine["full"]), out)
    lora = [p for p in PARTS if p in mine["lora"] or p in start_lora]
    (out / PARTS_FILE).write_text(json.dumps({"full": full, "lora": lora, "located": mine["located"]}, indent=2))
    return out


def _stack_adapters(folders: list[Path], start: Path, located: dict[str, str], merged: set[str], out: Path) -> None:
    """Write into `out` the PEFT adapters in `folders` side by side (`stack_onto`), leaving out `start`'s modules
    in the `merged` parts."""
    from safetensors.torch import load_file, save_file

    configs, states, scales, modules = [], [], [], []
    for folder in folders:
        config = json.loads((folder / "adapter_config.json").read_text())
        if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("modules_to_save"):
            raise InvalidInput(f"the adapter in {folder} has per-module ranks or saved modules: it cannot be stacked")
        r = int(config["r"])
        configs.append(config)
        scales.append(config["lora_alpha"] / (r ** 0.5 if config.get("use_rslora") else r))
        state = load_file(str(folder / "adapter_model.safetensors"))
        if folder == start:
            state = {k: v for k, v in state.items() if part_of(canonical_name(k), located) not in merged}
        states.append(state)
        modules.append({k.rsplit(".lora_", 1)[0] for k in state if ".lora_" in k})
    for state in states:
        odd = [k for k in state if ".lora_A." not in k and ".lora_B." not in k]
        if odd:
            raise InvalidInput(f"adapter tensors other than LoRA A and B cannot be stacked: {odd[:3]}")
    names = sorted(set().union(*modules))
    ranks = [int(c["r"]) for c in configs]
    stacked: dict[str, torch.Tensor] = {}
    for name in names:
        a_key, b_key = f"{name}.lora_A.weight", f"{name}.lora_B.weight"
        shape_a = next(s[a_key] for s in states if a_key in s)
        shape_b = next(s[b_key] for s in states if b_key in s)
        a_parts, b_parts = [], []
        for state, r, scale in zip(states, ranks, scales, strict=True):
            if a_key in state:
                a_parts.append(state[a_key])
                b_parts.append(state[b_key] * scale)
            else:  # this adapter leaves the module alone
                a_parts.append(shape_a.new_zeros((r, *shape_a.shape[1:])))
                b_parts.append(shape_b.new_zeros((shape_b.shape[0], r, *shape_b.shape[2:])))
        stacked[a_key] = torch.cat(a_parts, dim=0).contiguous()
        stacked[b_key] = torch.cat(b_parts, dim=1).contiguous()
    config = dict(configs[-1])
    rank = sum(ranks)
    targets = sorted({n.removeprefix("base_model.model.") for n in names})
    config.update(r=rank, lora_alpha=rank, use_rslora=False, target_modules=targets)
    save_file(stacked, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))


def load_weights(model: nn.Module, file: Path) -> None:
    """Copy a (partial) state dict file into `model`; unknown keys are an error."""
    from safetensors.torch import load_file

    state = load_file(str(file))
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise InvalidInput(f"weights in {file} do not match this model: unknown keys {unknown[:5]}")
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value.to(device=own[key].device, dtype=own[key].dtype))


def make_trl_compatible(model: nn.Module) -> nn.Module:
    """Give a model what TRL's trainers read and set: a `generation_config` (a bare GenerationConfig if none)."""
    if getattr(model, "generation_config", None) is None:
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig()
    return model
