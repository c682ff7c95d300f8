# GENERATED from reference/minfer/scheduler/batch.py by `minfer lab skeletons`: fill in the parts marked NotImplementedError.
"""Turning a scheduled Batch into the tensors of one forward pass (ids, positions, slots, biases).

All requests' new tokens are laid out as rows of one flat batch. For each row the model needs the
token id, its position (for RoPE), and the KV-cache slot its key and value go to; for each request
that samples this step, the row whose logits it samples from.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from minfer.core import Batch, ScheduledReq
from minfer.graph.attention import AttnMeta, DecodeGroup, PrefillSeg
from minfer.hal import Device
from minfer.memory.kv_cache import KVCache
from minfer.memory.tiers import stage

DECODE_GROUP = 16  # decodes attended together; sorted by length, so a group's padding stays small


@dataclass
class ForwardInput:
    ids: torch.Tensor  # [T] token ids
    positions: torch.Tensor  # [T] position of each token in its sequence
    meta: AttnMeta
    logit_rows: torch.Tensor  # one row per request that samples this step, in batch.sampling order


def slot_ids(block_table: list[int], start: int, end: int, block_size: int) -> list[int]:
    """Cache slots of a request's tokens at positions [start, end): position p lives at offset
    p % block_size of block block_table[p // block_size]; block b's slots are b*block_size ... b*block_size + block_size - 1."""
    # TODO: one slot per position; which block, then where inside it
    raise NotImplementedError('labs/lab3_inference/batch.py: not implemented yet (one slot per position; which block, then where inside it)')


def prepare(batch: Batch, kv: KVCache, device: Device) -> ForwardInput:
    up = partial(stage, device)  # the staging tier: zero-copy on a CPU, pinned + async on a GPU
    # single-token decodes first, shortest context first: each decode group is then a run of
    # consecutive rows, read and written in place, and its padding to the longest context is small
    items = sorted(batch.items, key=lambda it: (not is_decode(it), it.end if is_decode(it) else 0))
    ids: list[int] = []
    positions: list[int] = []
    slots: list[int] = []
    last_row: dict[int, int] = {}  # req_id -> the row of its last new token
    # TODO: item.req.all_ids holds every token; this step computes positions [item.start, item.end)
    raise NotImplementedError('labs/lab3_inference/batch.py: not implemented yet (item.req.all_ids holds every token; this step computes positions [item.start, item.end))')
    prefill, decode = attention_segments(items, kv.block_size)
    return ForwardInput(
        ids=up(torch.tensor(ids, dtype=torch.long)),
        positions=up(torch.tensor(positions, dtype=torch.long)),
        meta=AttnMeta(up(torch.tensor(slots, dtype=torch.long)), kv.block_size,
                      [PrefillSeg(s.start, s.length, up(s.blocks), s.ctx_len) for s in prefill],
                      [DecodeGroup(g.start, up(g.blocks), up(g.bias.to(kv.dtype)), up(g.lengths)) for g in decode],
                      kv.scratch),
        logit_rows=up(torch.tensor(logit_rows, dtype=torch.long)),
    )


def is_decode(item: ScheduledReq) -> bool:
    return item.num_tokens == 1 and item.start > 0


def attention_segments(items: list[ScheduledReq], block_size: int) -> tuple[list[PrefillSeg], list[DecodeGroup]]:
    """Where each request's rows are and which KV blocks they attend to (on the host)."""
    prefill: list[PrefillSeg] = []
    decode_ctx: list[tuple[int, list[int]]] = []
    row = 0
    for item in items:
        blocks = item.req.block_table[:-(-item.end // block_size)]  # the blocks holding tokens [0, end)
        if is_decode(item):
            decode_ctx.append((item.end, blocks))
        else:  # a later chunk also attends to the cached prefix, gathered from its blocks
            prefill.append(PrefillSeg(row, item.num_tokens, torch.tensor(blocks), item.end))
        row += item.num_tokens
    decode = []
    for first in range(0, len(decode_ctx), DECODE_GROUP):
        group = decode_ctx[first:first + DECODE_GROUP]
        nb = len(group[-1][1])
        # pad with the request's own first block: written (or zeroed) values, which the bias hides
        blocks = torch.tensor([b + b[:1] * (nb - len(b)) for _, b in group])
        lengths = torch.tensor([n for n, _ in group])
        decode.append(DecodeGroup(first, blocks, padding_bias(lengths, nb * block_size), lengths))
    return prefill, decode


def padding_bias(lengths: torch.Tensor, keys: int) -> torch.Tensor:
    """[N, 1, keys]: 0 on each of N contexts' first `lengths` keys, -inf on the padding past them."""
    real = torch.arange(keys)[None, :] < lengths[:, None]
    return torch.zeros(real.shape).masked_fill_(~real, float("-inf"))[:, None, :]
