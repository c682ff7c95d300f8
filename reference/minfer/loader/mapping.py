"""Hugging Face tensor names -> the engine's per-layer weights (in Hugging Face layout, [out, in])."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import ModelConfig
from .weights import take


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
    """Take every tensor the model needs out of `tensors`, checking names and shapes."""
    h, q, kv, inter = cfg.hidden_size, cfg.q_size, cfg.kv_size, cfg.intermediate_size
    embed = take(tensors, "model.embed_tokens.weight", (cfg.vocab_size, h))
    layers = []
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}."
        t = LayerTensors(
            q=take(tensors, p + "self_attn.q_proj.weight", (q, h)),
            k=take(tensors, p + "self_attn.k_proj.weight", (kv, h)),
            v=take(tensors, p + "self_attn.v_proj.weight", (kv, h)),
            o=take(tensors, p + "self_attn.o_proj.weight", (h, q)),
            gate=take(tensors, p + "mlp.gate_proj.weight", (inter, h)),
            up=take(tensors, p + "mlp.up_proj.weight", (inter, h)),
            down=take(tensors, p + "mlp.down_proj.weight", (h, inter)),
            attn_norm=take(tensors, p + "input_layernorm.weight", (h,)),
            mlp_norm=take(tensors, p + "post_attention_layernorm.weight", (h,)),
        )
        if cfg.qkv_bias:
            t.q_bias = take(tensors, p + "self_attn.q_proj.bias", (q,))
            t.k_bias = take(tensors, p + "self_attn.k_proj.bias", (kv,))
            t.v_bias = take(tensors, p + "self_attn.v_proj.bias", (kv,))
        if cfg.qk_norm:
            t.q_norm = take(tensors, p + "self_attn.q_norm.weight", (cfg.head_dim,))
            t.k_norm = take(tensors, p + "self_attn.k_norm.weight", (cfg.head_dim,))
        layers.append(t)
    final_norm = take(tensors, "model.norm.weight", (h,))
    if cfg.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)  # some tied checkpoints still store a copy
        lm_head = embed
    else:
        lm_head = take(tensors, "lm_head.weight", (cfg.vocab_size, h))
    leftover = [n for n in tensors if not n.endswith("rotary_emb.inv_freq")]
    if leftover:
        raise ValueError(f"checkpoint has tensors this architecture does not use: {leftover[:5]}")
    return ModelTensors(embed, layers, final_norm, lm_head)
