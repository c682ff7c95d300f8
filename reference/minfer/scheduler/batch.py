"""Turning a scheduled Batch into the tensors of one forward pass (ids, positions, slots, masks)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from ..core import Batch
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
    ids: list[int] = []
    positions, slot_mapping, logit_rows = [], [], []
    prefill: list[PrefillSeg] = []
    decode_rows, decode_ctx = [], []
    row = 0
    for item in batch.items:
        req, start, end = item.req, item.start, item.end
        ids.extend(req.all_ids[start:end])
        positions.append(torch.arange(start, end))
        slot_mapping.append(kv.slots(req, start, end))
        blocks = req.block_table[:-(-end // kv.block_size)]  # the blocks holding tokens [0, end)
        if item.num_tokens == 1 and start > 0:
            decode_rows.append(row)
            decode_ctx.append((end, blocks))
        elif start == 0:
            prefill.append(PrefillSeg(row, item.num_tokens, None, end, None))
        else:  # a later chunk: attend to the cached prefix too, causally shifted by `start`
            mask = torch.arange(end)[None, :] <= torch.arange(start, end)[:, None]
            prefill.append(PrefillSeg(row, item.num_tokens, up(torch.tensor(blocks)), end, up(mask)))
        row += item.num_tokens
        if item.samples:
            logit_rows.append(row - 1)
    decode = []
    order = sorted(range(len(decode_rows)), key=lambda i: decode_ctx[i][0])
    for first in range(0, len(order), DECODE_GROUP):
        group = order[first:first + DECODE_GROUP]
        nb = len(decode_ctx[group[-1]][1])
        # pad with block 0: any valid block works, the mask hides it
        blocks = torch.tensor([decode_ctx[i][1] + [0] * (nb - len(decode_ctx[i][1])) for i in group])
        mask = torch.arange(nb * kv.block_size)[None, :] < torch.tensor([decode_ctx[i][0] for i in group])[:, None]
        decode.append(DecodeGroup(up(torch.tensor([decode_rows[i] for i in group])), up(blocks), up(mask)))
    return ForwardInput(
        ids=up(torch.tensor(ids, dtype=torch.long)),
        positions=up(torch.cat(positions)),
        meta=AttnMeta(up(torch.cat(slot_mapping)), kv.block_size, prefill, decode),
        logit_rows=up(torch.tensor(logit_rows, dtype=torch.long)),
    )
