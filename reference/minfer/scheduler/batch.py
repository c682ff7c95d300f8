"""Turning a scheduled Batch into the tensors of one forward pass (ids, positions, slots, masks)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from ..core import Batch, ScheduledReq
from ..graph.attention import AttnMeta, DecodeGroup, PrefillSeg
from ..hal import Device
from ..memory.kv_cache import KVCache
from ..memory.tiers import stage


DECODE_GROUP = 16  # decodes attended together; sorted by length, so a group's padding stays small


@dataclass
class ForwardInput:
    ids: torch.Tensor
    positions: torch.Tensor
    meta: AttnMeta
    logit_rows: torch.Tensor  # one row per request that samples this step, in batch.sampling order


def prepare(batch: Batch, kv: KVCache, device: Device) -> ForwardInput:
    up = partial(stage, device)  # the staging tier: zero-copy on a CPU, pinned + async on a GPU
    # single-token decodes first, shortest context first: each decode group is then a run of
    # consecutive rows, read and written in place, and its padding to the longest context is small
    items = sorted(batch.items, key=lambda it: (not _is_decode(it), it.end if _is_decode(it) else 0))
    ids: list[int] = []
    positions, slot_mapping = [], []
    prefill: list[PrefillSeg] = []
    decode_ctx: list[tuple[int, list[int]]] = []
    last_row: dict[int, int] = {}
    row = 0
    for item in items:
        req, start, end = item.req, item.start, item.end
        ids.extend(req.all_ids[start:end])
        positions.append(torch.arange(start, end))
        slot_mapping.append(kv.slots(req, start, end))
        blocks = req.block_table[:-(-end // kv.block_size)]  # the blocks holding tokens [0, end)
        if _is_decode(item):
            decode_ctx.append((end, blocks))
        elif start == 0:
            prefill.append(PrefillSeg(row, item.num_tokens, None, end, None))
        else:  # a later chunk: attend to the cached prefix too, causally shifted by `start`
            mask = torch.arange(end)[None, :] <= torch.arange(start, end)[:, None]
            prefill.append(PrefillSeg(row, item.num_tokens, up(torch.tensor(blocks)), end, up(mask)))
        row += item.num_tokens
        last_row[req.req_id] = row - 1
    decode = []
    for first in range(0, len(decode_ctx), DECODE_GROUP):
        group = decode_ctx[first:first + DECODE_GROUP]
        nb = len(group[-1][1])
        # pad with block 0: any valid block works, the bias hides it
        blocks = torch.tensor([b + [0] * (nb - len(b)) for _, b in group])
        real = torch.arange(nb * kv.block_size)[None, :] < torch.tensor([n for n, _ in group])[:, None]
        bias = torch.zeros(real.shape).masked_fill_(~real, float("-inf")).to(kv.dtype)
        decode.append(DecodeGroup(first, up(blocks), up(bias.repeat(kv.num_kv_heads, 1)[:, None, :])))
    return ForwardInput(
        ids=up(torch.tensor(ids, dtype=torch.long)),
        positions=up(torch.cat(positions)),
        meta=AttnMeta(up(torch.cat(slot_mapping)), kv.block_size, prefill, decode, kv.scratch),
        # logits come back in batch.sampling order, whatever order the rows were laid out in
        logit_rows=up(torch.tensor([last_row[s.req.req_id] for s in batch.sampling], dtype=torch.long)),
    )


def _is_decode(item: ScheduledReq) -> bool:
    return item.num_tokens == 1 and item.start > 0
