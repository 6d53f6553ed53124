"""Fixtures of the learning tests: tiny models built locally (no network)."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_vlm():
    from ilearn.config import ModelConfig
    from ilearn.models import load_model

    return load_model(ModelConfig(backend="tiny"))


@pytest.fixture(scope="session")
def tiny_hf_dirs(tmp_path_factory):
    """Folders of tiny LLaVA, Qwen2-VL and Idefics3 models, built once per session."""
    from ilearn.models.tiny_hf import build_tiny_hf

    root = tmp_path_factory.mktemp("tiny_hf")
    return {kind: build_tiny_hf(kind, root / kind) for kind in ("llava", "qwen2_vl", "idefics3")}
