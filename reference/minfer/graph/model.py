"""The decoder as an execution plan: fused, pre-transposed weights and one forward over a flat batch.

All requests' new tokens are concatenated into one [T, hidden] matrix, so every projection is one
matrix product for the whole batch; only attention needs to know where one request ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..loader.config import ModelConfig
from .attention import AttnMeta, paged_attention
from .layers import apply_rope, rms_norm, rope_cos_sin, rope_inv_freq, swiglu

Matmul = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [T, in], w_t [in, out]) -> [T, out]


@dataclass
class LayerWeights:
    qkv_t: torch.Tensor  # [hidden, q + 2 kv]: q, k and v projections fused into one product
    qkv_bias: torch.Tensor | None
    o_t: torch.Tensor  # [q, hidden]
    gate_up_t: torch.Tensor  # [hidden, 2 * intermediate]: gate and up fused
    down_t: torch.Tensor  # [intermediate, hidden]
    attn_norm: torch.Tensor
    mlp_norm: torch.Tensor
    q_norm: torch.Tensor | None
    k_norm: torch.Tensor | None


@dataclass
class Model:
    cfg: ModelConfig
    embed_t: torch.Tensor  # [hidden, vocab]; rows are looked up as columns, logits are x @ embed_t
    layers: list[LayerWeights]
    final_norm: torch.Tensor
    lm_head_t: torch.Tensor  # [hidden, vocab]; the same tensor as embed_t when tied
    matmul: Matmul

    def __post_init__(self) -> None:
        self.inv_freq = rope_inv_freq(self.cfg.head_dim, self.cfg.rope_theta).to(self.embed_t.device)

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_t.dtype

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed_t.index_select(1, ids).t()

    def forward(
        self,
        ids: torch.Tensor,  # [T]
        positions: torch.Tensor,  # [T]
        meta: AttnMeta,
        kv_cache: list[tuple[torch.Tensor, torch.Tensor]],  # per layer (k, v), each [slots, KVH, D]
        logit_rows: torch.Tensor,  # rows whose next-token logits are wanted
    ) -> torch.Tensor:
        cfg, mm = self.cfg, self.matmul
        x = self.embed(ids)
        cos, sin = rope_cos_sin(positions, self.inv_freq, x.dtype)
        t = ids.shape[0]
        for w, (k_cache, v_cache) in zip(self.layers, kv_cache):
            h = rms_norm(x, w.attn_norm, cfg.rms_norm_eps)
            qkv = mm(h, w.qkv_t)
            if w.qkv_bias is not None:
                qkv = qkv + w.qkv_bias
            q, k, v = qkv.split([cfg.q_size, cfg.kv_size, cfg.kv_size], dim=-1)
            q = q.view(t, cfg.num_heads, cfg.head_dim)
            k = k.view(t, cfg.num_kv_heads, cfg.head_dim)
            v = v.view(t, cfg.num_kv_heads, cfg.head_dim)
            if w.q_norm is not None:
                q, k = rms_norm(q, w.q_norm, cfg.rms_norm_eps), rms_norm(k, w.k_norm, cfg.rms_norm_eps)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            attn = paged_attention(q, k, v, k_cache, v_cache, meta)
            x = x + mm(attn.view(t, cfg.q_size), w.o_t)
            h = rms_norm(x, w.mlp_norm, cfg.rms_norm_eps)
            x = x + mm(swiglu(mm(h, w.gate_up_t)), w.down_t)
        x = rms_norm(x.index_select(0, logit_rows), self.final_norm, cfg.rms_norm_eps)
        return mm(x, self.lm_head_t).float()
