"""Attention over the paged KV cache.

New keys and values are written to their slots first; then every query attends to its request's
whole context, gathered from the cache by slot index. Prefill chunks are attended one request at a
time (each is a big matrix product anyway). Single-token decodes are sorted by context length and
attended in groups padded to the group's longest context, with a mask hiding the padding: sorting
keeps the padding (gathered and multiplied for nothing) small when lengths differ widely.
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
    mask: torch.Tensor  # [B, Lmax] True where a key is real


@dataclass
class AttnMeta:
    slot_mapping: torch.Tensor  # [T] where each new token's K/V is written
    prefill: list[PrefillSeg]
    decode: list[DecodeGroup]


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
    for d in meta.decode:
        out[d.rows] = decode_attention(q[d.rows], k_cache, v_cache, d.slots, d.mask)
    return out


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slots: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """One query token per request: q [B, H, D], slots and mask [B, L] -> [B, H, D].

    The query heads that share a KV head are stacked as rows of one matrix, so each gathered key is
    read once per KV head instead of being copied out to every query head (what GQA is for).
    """
    b, h, d = q.shape
    kvh = k_cache.shape[1]
    k = k_cache.index_select(0, slots.view(-1)).view(b, -1, kvh, d).transpose(1, 2)  # [B, KVH, L, D]
    v = v_cache.index_select(0, slots.view(-1)).view(b, -1, kvh, d).transpose(1, 2)
    scores = torch.matmul(q.view(b, kvh, h // kvh, d), k.transpose(-1, -2)) * d ** -0.5  # [B, KVH, G, L]
    scores.masked_fill_(~mask[:, None, None, :], float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v).view(b, h, d)
