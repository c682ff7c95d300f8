"""Shared fixtures: tiny random checkpoints, and the real SmolLM2 loaded once per test session."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """tiny_dir(kind) -> folder of a tiny random model of that kind, built once per session."""
    from tiny_models import build_tiny

    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            made[kind] = build_tiny(kind, tmp_path_factory.mktemp(kind))
        return made[kind]

    return get


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The builtin model from the store (pulled and converted on first use)."""
    from minfer.loader import store

    return store.pull("smollm2-135m")


@pytest.fixture(scope="session")
def smollm2(smollm2_dir):
    from minfer import LLM

    return LLM(str(smollm2_dir))


@pytest.fixture(scope="session")
def hf_smollm2(smollm2_dir):
    """transformers' own model, loaded from the same GGUF file (the oracle); ~25 s, so once."""
    import torch
    import transformers
    from minfer.loader import store

    gguf = store.gguf_path("smollm2-135m")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    model.generation_config.eos_token_id = None  # compare full-length continuations
    model.generation_config.pad_token_id = 0
    return model


@pytest.fixture(scope="session")
def hf_smollm2_tokenizer(smollm2_dir):
    """transformers' tokenizer built from the GGUF metadata (for agreement checks)."""
    import transformers
    from minfer.loader import store

    gguf = store.gguf_path("smollm2-135m")
    return transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
