# GENERATED from reference/minfer/loader/mapping.py by `minfer lab skeletons`: fill in the parts marked NotImplementedError.
"""Hugging Face tensor names -> the engine's per-layer weights (in Hugging Face layout, [out, in])."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from minfer.loader.config import ModelConfig
from minfer.loader.weights import take


@dataclass
class LayerTensors:
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    o: torch.Tensor
    gate: torch.Tensor
    up: torch.Tensor
    down: torch.Tensor
    attn_norm: torch.Tensor
    mlp_norm: torch.Tensor
    q_bias: torch.Tensor | None = None
    k_bias: torch.Tensor | None = None
    v_bias: torch.Tensor | None = None
    q_norm: torch.Tensor | None = None  # Qwen3: RMSNorm over each head's vector before RoPE
    k_norm: torch.Tensor | None = None


@dataclass
class ModelTensors:
    embed: torch.Tensor  # [vocab, hidden]
    layers: list[LayerTensors]
    final_norm: torch.Tensor
    lm_head: torch.Tensor  # [vocab, hidden]; the embedding itself when tied


def map_hf_tensors(cfg: ModelConfig, tensors: dict[str, torch.Tensor]) -> ModelTensors:
    """Take every tensor the model needs out of `tensors`, checking names and shapes.

    `take(tensors, name, shape)` pops one tensor and checks its shape; every tensor must be used:
    a leftover means the checkpoint is not the architecture the config claims.
    """
    # TODO: names as in transformers' LlamaForCausalLM state_dict; mind cfg.qkv_bias, cfg.qk_norm, cfg.tie_word_embeddings
    raise NotImplementedError("labs/lab3_inference/mapping.py: not implemented yet (names as in transformers' LlamaForCausalLM state_dict; mind cfg.qkv_bias, cfg.qk_norm, cfg.tie_word_embeddings)")
