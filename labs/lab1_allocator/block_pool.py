# GENERATED from reference/minfer/memory/block_pool.py by `minfer lab skeletons`: fill in the parts marked NotImplementedError.
"""The paged KV block pool: fixed-size blocks, reference counts, and a prefix cache.

A block holds the K/V of `block_size` consecutive tokens. A full block is named by a chained hash
(its tokens plus its parent's hash), so two requests with the same prefix share the same blocks.
Freed blocks that carry a hash stay cached until their space is needed: least recently used first.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from minfer.memory.errors import DoubleFree, KVPoolExhausted  # absolute: the lab copy imports it too


def chain_hash(parent: int | None, tokens: tuple[int, ...]) -> int:
    """A block's identity depends on every token before it, not just its own."""
    # TODO: hash the parent's hash together with this block's tokens
    raise NotImplementedError("labs/lab1_allocator/block_pool.py: not implemented yet (hash the parent's hash together with this block's tokens)")


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None  # set once the block is full and registered in the prefix cache


class BlockPool:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_cache: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"need at least one block of at least one token, got {num_blocks} x {block_size}")
        self.block_size = block_size
        self.enable_prefix_cache = enable_prefix_cache
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free_ids: list[int] = list(range(num_blocks - 1, -1, -1))  # pop() hands out block 0 first
        self.cached: dict[int, int] = {}  # hash -> block id, for every registered block
        self.evictable: OrderedDict[int, None] = OrderedDict()  # unreferenced cached blocks, LRU first

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free(self) -> int:
        """Blocks that can be handed out now (free, or cached but unreferenced)."""
        return len(self.free_ids) + len(self.evictable)

    def allocate(self) -> int:
        """A block for one owner (ref_count 1): a free one, else the least recently used cached one."""
        # TODO: never hand out a block someone still references
        raise NotImplementedError('labs/lab1_allocator/block_pool.py: not implemented yet (never hand out a block someone still references)')

    def free(self, block_id: int) -> None:
        """Drop one reference; an unreferenced block becomes free, or evictable if it is cached."""
        # TODO: your code here
        raise NotImplementedError('labs/lab1_allocator/block_pool.py: not implemented yet (your code here)')

    def lookup(self, h: int) -> int | None:
        """A cached block with this hash, now shared by the caller (ref_count + 1), or None."""
        # TODO: a shared block must not stay evictable
        raise NotImplementedError('labs/lab1_allocator/block_pool.py: not implemented yet (a shared block must not stay evictable)')

    def register(self, block_id: int, h: int) -> None:
        """Name a full block by its hash so later requests with the same prefix can reuse it."""
        # TODO: your code here
        raise NotImplementedError('labs/lab1_allocator/block_pool.py: not implemented yet (your code here)')
