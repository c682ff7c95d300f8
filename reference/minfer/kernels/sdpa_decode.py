"""Paged decode attention through PyTorch's fused attention, for GPUs.

On a GPU a small model's decode step is bound by kernel launches, not by the GPU: on an H100 a
SmolLM2 step kept the GPU busy 6 of its 17.6 ms, and the graph's reference path (graph/attention.py:
two gathers, `attend`'s nine operations, three regrouping copies) launches 14 kernels per layer
for decode attention. Here it is two gathers, one `scaled_dot_product_attention` call and a copy.

Grouped-query attention without copying keys: the G query heads that share a KV head are viewed as
G query rows of that head ([N, KVH, G, D]), so one call serves them all. The padding past each
context is hidden by the additive bias the batch builds once per step for the reference path.
Same contract as cpu_numba.paged_decode.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sdpa_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, blocks: torch.Tensor,
                lengths: torch.Tensor, block_size: int, out: torch.Tensor, bias: torch.Tensor) -> None:
    """q and out [N, H, D] (one token per request), caches [KVH, slots, D], blocks [N, NB], lengths [N]
    (unused: `bias` hides the padding), bias [N, 1, NB * block_size] (the step's DecodeGroup.bias: 0 on
    each context, -inf past it): out = attention over each context."""
    kvh, slots, d = k_cache.shape
    n, keys = blocks.shape[0], blocks.shape[1] * block_size
    ids = blocks.reshape(-1)
    k, v = (cache.view(kvh, slots // block_size, block_size * d).index_select(1, ids)
            .view(kvh, n, keys, d).transpose(0, 1) for cache in (k_cache, v_cache))  # [N, KVH, keys, D]
    o = F.scaled_dot_product_attention(q.view(n, kvh, -1, d), k, v, attn_mask=bias[:, None])
    out.view(n, kvh, -1, d).copy_(o)
