"""Turning a scheduled Batch into the tensors of one forward pass (ids, positions, slots, masks)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core import Batch
from ..graph.attention import AttnMeta, DecodeGroup, PrefillSeg
from ..memory.kv_cache import KVCache


@dataclass
class ForwardInput:
    ids: torch.Tensor
    positions: torch.Tensor
    meta: AttnMeta
    logit_rows: torch.Tensor  # one row per request that samples this step, in batch.sampling order


def prepare(batch: Batch, kv: KVCache, device: torch.device) -> ForwardInput:
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
            prefill.append(PrefillSeg(row, item.num_tokens, kv.slots(req, 0, end).to(device), mask.to(device)))
        row += item.num_tokens
        if item.samples:
            logit_rows.append(row - 1)
    decode = None
    if decode_rows:
        lmax = max(len(c) for c in decode_ctx)
        # pad with each context's own first slot: any valid slot works, the mask hides it
        slots = torch.stack([torch.cat([c, c[:1].expand(lmax - len(c))]) for c in decode_ctx])
        mask = torch.arange(lmax)[None, :] < torch.tensor([len(c) for c in decode_ctx])[:, None]
        decode = DecodeGroup(torch.tensor(decode_rows).to(device), slots.to(device), mask[:, None, None, :].to(device))
    return ForwardInput(
        ids=torch.tensor(ids, dtype=torch.long).to(device),
        positions=torch.cat(positions).to(device),
        meta=AttnMeta(torch.cat(slot_mapping).to(device), prefill, decode),
        logit_rows=torch.tensor(logit_rows, dtype=torch.long).to(device),
    )
