"""The KV cache: one tensor pair per layer, addressed through each request's block table.

Slot s of a layer's cache holds one token's keys (and values), for every KV head. Token p of a
request lives in slot `block_table[p // block_size] * block_size + p % block_size`.
"""
from __future__ import annotations

import torch

from ..core import Req
from ..hal import Device
from ..loader.config import ModelConfig
from .block_pool import BlockPool, chain_hash


class KVCache:
    def __init__(
        self, cfg: ModelConfig, device: Device, dtype: torch.dtype, num_blocks: int, block_size: int,
        enable_prefix_cache: bool = True, pool_cls: type = BlockPool, hash_fn=chain_hash,
    ) -> None:
        self.pool = pool_cls(num_blocks, block_size, enable_prefix_cache)
        self.chain_hash = hash_fn  # from the same module as pool_cls: a lab's pool comes with its own hash
        self.block_size = block_size
        self.block_bytes = cfg.kv_bytes_per_token(dtype.itemsize) * block_size
        self.peak_blocks = 0  # most blocks referenced at once (cached-but-free ones not counted)
        slots = num_blocks * block_size
        # head-major ([KV heads, slots, head_dim]): a gather of context slots is then already in the
        # layout attention multiplies with, so it is the only copy the KV cache costs per step
        shape = (cfg.num_kv_heads, slots, cfg.head_dim)
        # the KV tier: allocated once up front, so serving never allocates on the hot path; one tensor
        # [layers, K/V, ...] viewed per layer, so that clear_fresh zeroes a block in every layer at once
        self._all = device.allocate((cfg.num_layers, 2) + shape, dtype)
        self.layers = [(self._all[i, 0], self._all[i, 1]) for i in range(cfg.num_layers)]
        self.device, self.dtype = device, dtype
        self._scratch = device.allocate((0,), dtype)
        self._fresh: list[int] = []  # blocks handed out since the last clear_fresh()

    @property
    def scratch_bytes(self) -> int:
        return self._scratch.numel() * self._scratch.element_size()

    def scratch(self, numel: int) -> torch.Tensor:
        """A flat buffer of at least `numel` values that attention gathers context blocks into.

        One buffer, grown geometrically and reused by every layer and step: its contents are dead as
        soon as a layer's attention is done, and reusing warm pages is what makes the gather cheap.
        """
        if self._scratch.numel() < numel:
            self._scratch = self.device.allocate((max(numel, 2 * self._scratch.numel()),), self.dtype)
        return self._scratch[:numel]

    def blocks_needed(self, req: Req, num_tokens: int) -> int:
        """Extra blocks `req` needs to hold `num_tokens` tokens in all."""
        return max(0, -(-num_tokens // self.block_size) - len(req.block_table))

    def can_allocate(self, req: Req, num_tokens: int) -> bool:
        return self.blocks_needed(req, num_tokens) <= self.pool.num_free

    def allocate(self, req: Req, num_tokens: int) -> None:
        """Grow `req`'s block table to hold `num_tokens` tokens (raises KVPoolExhausted)."""
        for _ in range(self.blocks_needed(req, num_tokens)):
            req.block_table.append(self.pool.allocate())
            self._fresh.append(req.block_table[-1])
        self.peak_blocks = max(self.peak_blocks, self.pool.num_blocks - self.pool.num_free)

    def clear_fresh(self) -> None:
        """Zero the blocks handed out since the last call, in every layer.

        Attention reads whole blocks, and a slot past a request's last token was never written: on a
        fresh device allocation it may hold NaN, which the -inf bias cannot hide (NaN - inf is NaN,
        0 x NaN is NaN). Zeroing a block once when it is handed out is far cheaper than masking
        every gathered block at every layer of every step; stale values of a reused block are finite.
        """
        if not self._fresh:
            return
        layers, _, kvh, slots, d = self._all.shape
        blocks = self._all.view(layers * 2 * kvh, slots // self.block_size, self.block_size * d)
        for block_id in self._fresh:  # one call per block for every layer's K and V (was 60 a block)
            blocks[:, block_id].zero_()
        self._fresh.clear()

    def match_prefix(self, req: Req) -> None:
        """Point a new request's first blocks at cached blocks with the same tokens.

        At least one prompt token is always left to compute: its logits give the first new token.
        """
        bs, ids = self.block_size, req.all_ids
        parent = None
        for i in range((len(ids) - 1) // bs):
            h = self.chain_hash(parent, tuple(ids[i * bs:(i + 1) * bs]))
            block_id = self.pool.lookup(h)
            if block_id is None:
                break
            req.block_table.append(block_id)
            req.block_hashes.append(h)
            parent = h
        req.num_computed = req.num_cached = len(req.block_table) * bs

    def commit(self, req: Req) -> None:
        """Register the blocks that became full (and computed) so later requests can share them."""
        bs, ids = self.block_size, req.all_ids
        while (len(req.block_hashes) + 1) * bs <= req.num_computed:
            i = len(req.block_hashes)
            parent = req.block_hashes[-1] if req.block_hashes else None
            h = self.chain_hash(parent, tuple(ids[i * bs:(i + 1) * bs]))
            self.pool.register(req.block_table[i], h)
            req.block_hashes.append(h)

    def release(self, req: Req) -> None:
        for block_id in reversed(req.block_table):  # tail first: it is the least likely to be shared
            self.pool.free(block_id)
        req.block_table.clear()
        req.block_hashes.clear()
