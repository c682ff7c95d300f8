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
        if item.num_tokens == 1 and start > 0:
            decode_rows.append(row)
            decode_ctx.append(kv.slots(req, 0, end))
        elif start == 0:
            prefill.append(PrefillSeg(row, item.num_tokens, None, None))
        else:  # a later chunk: attend to the cached prefix too, causally shifted by `start`
            mask = torch.arange(end)[None, :] <= torch.arange(start, end)[:, None]
            prefill.append(PrefillSeg(row, item.num_tokens, up(kv.slots(req, 0, end)), up(mask)))
        row += item.num_tokens
        if item.samples:
            logit_rows.append(row - 1)
    decode = []
    order = sorted(range(len(decode_rows)), key=lambda i: len(decode_ctx[i]))
    for start in range(0, len(order), DECODE_GROUP):
        group = order[start:start + DECODE_GROUP]
        ctx = [decode_ctx[i] for i in group]
        lmax = len(ctx[-1])
        # pad with each context's own first slot: any valid slot works, the mask hides it
        slots = torch.stack([torch.cat([c, c[:1].expand(lmax - len(c))]) for c in ctx])
        mask = torch.arange(lmax)[None, :] < torch.tensor([len(c) for c in ctx])[:, None]
        decode.append(DecodeGroup(up(torch.tensor([decode_rows[i] for i in group])), up(slots), up(mask)))
    return ForwardInput(
        ids=up(torch.tensor(ids, dtype=torch.long)),
        positions=up(torch.cat(positions)),
        meta=AttnMeta(up(torch.cat(slot_mapping)), prefill, decode),
        logit_rows=up(torch.tensor(logit_rows, dtype=torch.long)),
    )
