"""Attention over the paged KV cache.

New keys and values are written to their slots first; then every query attends to its request's
whole context, gathered from the cache by slot index. Prefill chunks are attended one request at a
time (each is a big matrix product anyway); all single-token decodes are padded to one length and
attended in a single call, with a mask hiding the padding.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PrefillSeg:
    start: int  # first row of this chunk in the flattened batch
    length: int  # rows (new tokens) in this chunk
    ctx_slots: torch.Tensor | None  # cache slots of the whole context; None when the chunk is the context
    mask: torch.Tensor | None  # [length, ctx] causal mask shifted by the cached prefix; None = plain causal


@dataclass
class DecodeGroup:
    rows: torch.Tensor  # [B] rows of the flattened batch that are single-token decodes
    slots: torch.Tensor  # [B, Lmax] cache slots of each context, padded with a valid dummy slot
    mask: torch.Tensor  # [B, 1, 1, Lmax] True where a key is real


@dataclass
class AttnMeta:
    slot_mapping: torch.Tensor  # [T] where each new token's K/V is written
    prefill: list[PrefillSeg]
    decode: DecodeGroup | None


def paged_attention(
    q: torch.Tensor,  # [T, H, D]
    k: torch.Tensor,  # [T, KVH, D]
    v: torch.Tensor,
    k_cache: torch.Tensor,  # [slots, KVH, D]
    v_cache: torch.Tensor,
    meta: AttnMeta,
    out: torch.Tensor | None = None,  # [T, H, D]
) -> torch.Tensor:
    k_cache.index_copy_(0, meta.slot_mapping, k)
    v_cache.index_copy_(0, meta.slot_mapping, v)
    out = torch.empty_like(q) if out is None else out
    for seg in meta.prefill:
        rows = slice(seg.start, seg.start + seg.length)
        if seg.ctx_slots is None:
            kc, vc = k[rows], v[rows]
        else:
            kc, vc = k_cache.index_select(0, seg.ctx_slots), v_cache.index_select(0, seg.ctx_slots)
        o = F.scaled_dot_product_attention(
            q[rows].transpose(0, 1), kc.transpose(0, 1), vc.transpose(0, 1),
            attn_mask=seg.mask, is_causal=seg.mask is None, enable_gqa=True,
        )
        out[rows] = o.transpose(0, 1)
    if meta.decode is not None:
        d = meta.decode
        b, lmax = d.slots.shape
        kc = k_cache.index_select(0, d.slots.view(-1)).view(b, lmax, *k_cache.shape[1:]).transpose(1, 2)
        vc = v_cache.index_select(0, d.slots.view(-1)).view(b, lmax, *v_cache.shape[1:]).transpose(1, 2)
        o = F.scaled_dot_product_attention(q[d.rows].unsqueeze(2), kc, vc, attn_mask=d.mask, enable_gqa=True)
        out[d.rows] = o.squeeze(2)
    return out
