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
    ### BEGIN SOLUTION  hint: names as in transformers' LlamaForCausalLM state_dict; mind cfg.qkv_bias, cfg.qk_norm, cfg.tie_word_embeddings
    h, q, kv, inter, d = cfg.hidden_size, cfg.q_size, cfg.kv_size, cfg.intermediate_size, cfg.head_dim
    embed = take(tensors, "model.embed_tokens.weight", (cfg.vocab_size, h))
    layers = []
    for i in range(cfg.num_layers):
        def w(name: str, *shape: int) -> torch.Tensor:
            return take(tensors, f"model.layers.{i}.{name}", shape)
        t = LayerTensors(
            q=w("self_attn.q_proj.weight", q, h), k=w("self_attn.k_proj.weight", kv, h),
            v=w("self_attn.v_proj.weight", kv, h), o=w("self_attn.o_proj.weight", h, q),
            gate=w("mlp.gate_proj.weight", inter, h), up=w("mlp.up_proj.weight", inter, h),
            down=w("mlp.down_proj.weight", h, inter), attn_norm=w("input_layernorm.weight", h),
            mlp_norm=w("post_attention_layernorm.weight", h))
        if cfg.qkv_bias:
            t.q_bias, t.k_bias, t.v_bias = (w(f"self_attn.{x}_proj.bias", n) for x, n in zip("qkv", (q, kv, kv)))
        if cfg.qk_norm:
            t.q_norm, t.k_norm = w("self_attn.q_norm.weight", d), w("self_attn.k_norm.weight", d)
        layers.append(t)
    final_norm = take(tensors, "model.norm.weight", (h,))
    if cfg.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)  # some tied checkpoints still store a copy
    lm_head = embed if cfg.tie_word_embeddings else take(tensors, "lm_head.weight", (cfg.vocab_size, h))
    if leftover := [n for n in tensors if not n.endswith("rotary_emb.inv_freq")]:
        raise ValueError(f"checkpoint has tensors this architecture does not use: {leftover[:5]}")
    return ModelTensors(embed, layers, final_norm, lm_head)
    ### END SOLUTION
