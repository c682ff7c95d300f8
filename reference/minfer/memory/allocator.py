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
        ### BEGIN SOLUTION  hint: keep self.used = {offset: size} of live blocks (tensor() reads it); the rest is yours
        self.free_blocks: list[tuple[int, int]] = [(0, self.capacity)]  # (offset, size), sorted by offset
        self.used: dict[int, int] = {}  # offset -> size of blocks handed out
        self.cache: dict[int, list[int]] = {}  # size -> offsets of freed blocks kept for reuse
        self.peak = 0
        self.num_allocs = 0
        self.cache_hits = 0
        ### END SOLUTION

    def round_up(self, nbytes: int) -> int:
        """`nbytes` rounded up to a multiple of the alignment (at least one unit)."""
        ### BEGIN SOLUTION  hint: zero bytes still takes one aligned unit
        units = max(1, -(-nbytes // self.alignment))
        return units * self.alignment
        ### END SOLUTION

    def malloc(self, nbytes: int) -> int:
        """Offset of a new block of at least `nbytes` bytes; raises OutOfMemory."""
        if nbytes < 0:
            raise ValueError(f"cannot allocate a negative size ({nbytes})")
        size = self.round_up(nbytes)
        ### BEGIN SOLUTION  hint: cache hit first; then best fit (flush the cache and retry once)
        self.num_allocs += 1
        if self.caching and self.cache.get(size):
            offset = self.cache[size].pop()
            self.cache_hits += 1
        else:
            offset = self._carve(size)
            if offset is None and self.cache:
                self.empty_cache()
                offset = self._carve(size)
            if offset is None:
                s = self.stats()
                raise OutOfMemory(
                    f"cannot allocate {nbytes} bytes: {self.capacity - s.allocated} of {self.capacity} bytes are "
                    f"free but the largest free extent is {self._largest_free()} bytes "
                    f"(fragmentation {s.fragmentation:.0%}); free buffers sooner or give the arena more memory"
                )
        self.used[offset] = size
        self.peak = max(self.peak, self._allocated())
        return offset
        ### END SOLUTION

    def free(self, offset: int) -> None:
        """Return a block; raises DoubleFree or InvalidFree for offsets that are not live blocks."""
        ### BEGIN SOLUTION  hint: check before you trust the offset; then cache or coalesce
        if offset not in self.used:
            if any(offset in offs for offs in self.cache.values()) or any(o == offset for o, _ in self.free_blocks):
                raise DoubleFree(f"block at offset {offset} is already free (double free)")
            raise InvalidFree(f"offset {offset} was never returned by malloc on this allocator")
        size = self.used.pop(offset)
        if self.caching:
            self.cache.setdefault(size, []).append(offset)
        else:
            self._release(offset, size)
        ### END SOLUTION

    def empty_cache(self) -> None:
        """Give every cached block back to the free list, merging neighbours."""
        ### BEGIN SOLUTION
        for size, offsets in self.cache.items():
            for offset in offsets:
                self._release(offset, size)
        self.cache.clear()
        ### END SOLUTION

    def stats(self) -> AllocatorStats:
        ### BEGIN SOLUTION  hint: fragmentation counts free-list bytes only (cached blocks are reserved)
        allocated = self._allocated()
        cached = sum(size * len(offs) for size, offs in self.cache.items())
        free = sum(size for _, size in self.free_blocks)
        frag = 0.0 if free == 0 else 1.0 - self._largest_free() / free
        return AllocatorStats(allocated, allocated + cached, self.peak, frag, self.num_allocs, self.cache_hits)
        ### END SOLUTION

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
    ### BEGIN SOLUTION
    def _allocated(self) -> int:
        return sum(self.used.values())

    def _largest_free(self) -> int:
        return max((size for _, size in self.free_blocks), default=0)

    def _carve(self, size: int) -> int | None:
        """Take `size` bytes from the best-fitting (or first-fitting) free block, splitting it."""
        fits = [i for i, (_, s) in enumerate(self.free_blocks) if s >= size]
        if not fits:
            return None
        i = fits[0] if self.policy == "first" else min(fits, key=lambda j: (self.free_blocks[j][1], j))
        offset, have = self.free_blocks[i]
        if have == size:
            del self.free_blocks[i]
        else:
            self.free_blocks[i] = (offset + size, have - size)
        return offset

    def _release(self, offset: int, size: int) -> None:
        """Put a block on the free list, merging it with the free blocks on either side."""
        i = bisect.bisect(self.free_blocks, (offset, size))
        if i < len(self.free_blocks) and offset + size == self.free_blocks[i][0]:
            size += self.free_blocks.pop(i)[1]
        if i > 0 and self.free_blocks[i - 1][0] + self.free_blocks[i - 1][1] == offset:
            offset, size = self.free_blocks[i - 1][0], self.free_blocks[i - 1][1] + size
            del self.free_blocks[i - 1]
            i -= 1
        self.free_blocks.insert(i, (offset, size))
    ### END SOLUTION
