# GENERATED from reference/minfer/memory/allocator.py by `minfer lab skeletons`: fill in the parts marked NotImplementedError.
"""A device-memory allocator over one arena: best fit, splitting, coalescing, size-class caching.

The engine asks the device for one big arena once and carves every temporary compute buffer out
of it, like PyTorch's CUDA caching allocator does with cudaMalloc'd segments: asking the device
for memory is slow and fragments it, carving is cheap.

- Sizes are rounded up to `alignment`, so every buffer starts on an aligned address (vector loads
  and DMA engines want that).
- A request is served from the cache of freed blocks of exactly its size class if one is there
  (O(1), the common case: the same step shapes repeat), otherwise by the best-fitting free block,
  split so that the remainder stays free.
- Freed blocks go to the cache. When nothing fits, the cache is flushed: its blocks return to the
  free list and are coalesced with free neighbours, and the search runs again.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch

from minfer.hal import Device
from minfer.memory.errors import DoubleFree, InvalidFree, OutOfMemory


@dataclass
class AllocatorStats:
    allocated: int  # bytes in blocks handed out and not yet freed
    reserved: int  # allocated + cached: bytes the allocator holds for callers
    peak: int  # highest `allocated` so far
    fragmentation: float  # 1 - largest free extent / all free bytes (0 = one contiguous hole)
    num_allocs: int
    cache_hits: int


class Allocator:
    def __init__(self, capacity: int, alignment: int = 256, caching: bool = True, policy: str = "best",
                 device: Device | None = None) -> None:
        if alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"alignment must be a power of two, got {alignment}")
        if policy not in ("best", "first"):
            raise ValueError(f"policy must be 'best' or 'first', got {policy!r}")
        self.capacity = capacity - capacity % alignment
        self.alignment = alignment
        self.caching = caching
        self.policy = policy
        self.arena = device.allocate((self.capacity,), torch.uint8) if device is not None else None
        # TODO: keep self.used = {offset: size} of live blocks (tensor() reads it); the rest is yours
        raise NotImplementedError('labs/lab1_allocator/allocator.py: not implemented yet (keep self.used = {offset: size} of live blocks (tensor() reads it); the rest is yours)')

    def round_up(self, nbytes: int) -> int:
        """`nbytes` rounded up to a multiple of the alignment (at least one unit)."""
        # TODO: zero bytes still takes one aligned unit
        raise NotImplementedError('labs/lab1_allocator/allocator.py: not implemented yet (zero bytes still takes one aligned unit)')

    def malloc(self, nbytes: int) -> int:
        """Offset of a new block of at least `nbytes` bytes; raises OutOfMemory."""
        if nbytes < 0:
            raise ValueError(f"cannot allocate a negative size ({nbytes})")
        size = self.round_up(nbytes)
        # TODO: cache hit first; then best fit (flush the cache and retry once)
        raise NotImplementedError('labs/lab1_allocator/allocator.py: not implemented yet (cache hit first; then best fit (flush the cache and retry once))')

    def free(self, offset: int) -> None:
        """Return a block; raises DoubleFree or InvalidFree for offsets that are not live blocks."""
        # TODO: check before you trust the offset; then cache or coalesce
        raise NotImplementedError('labs/lab1_allocator/allocator.py: not implemented yet (check before you trust the offset; then cache or coalesce)')

    def empty_cache(self) -> None:
        """Give every cached block back to the free list, merging neighbours."""
        # TODO: your code here
        raise NotImplementedError('labs/lab1_allocator/allocator.py: not implemented yet (your code here)')

    def stats(self) -> AllocatorStats:
        # TODO: fragmentation counts free-list bytes only (cached blocks are reserved)
        raise NotImplementedError('labs/lab1_allocator/allocator.py: not implemented yet (fragmentation counts free-list bytes only (cached blocks are reserved))')

    def tensor(self, offset: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A tensor view of a live block (the arena's memory, no copy)."""
        if self.arena is None:
            raise ValueError("this allocator has no arena (it was built without a device)")
        numel = 1
        for d in shape:
            numel *= d
        nbytes = numel * dtype.itemsize
        if self.used.get(offset, -1) < nbytes:
            raise InvalidFree(f"offset {offset} is not a live block of at least {nbytes} bytes")
        return self.arena[offset:offset + nbytes].view(dtype).view(shape)

    # -- helpers the solution uses ---------------------------------------------------------------
    # TODO: your own helper methods, if you want some (your code here)
