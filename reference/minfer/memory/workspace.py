"""The workspace tier: a step's temporary compute buffers, carved from the allocator's arena.

Buffers live for one forward pass. Every layer reuses the same few buffers (a layer's temporaries
are dead before the next layer starts), so a step needs one set, whatever the model depth. The
sequence of mallocs and frees is kept as a trace: lab 1 replays it against other policies.
"""
from __future__ import annotations

import math

import torch


class Workspace:
    def __init__(self, allocator, record: bool = False) -> None:
        self.allocator = allocator
        self.live: list[int] = []
        self.shape_key: object = None
        self.trace: list[tuple[str, int]] | None = [] if record else None  # ("malloc", bytes) | ("free", offset)

    def begin(self, shape_key: object) -> None:
        """Start a step. When the step's shapes change, cached blocks of the old sizes are useless:
        flush them so the arena is one hole again and the new set fits without fragmentation."""
        if shape_key != self.shape_key:
            self.allocator.empty_cache()
            self.shape_key = shape_key

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        nbytes = math.prod(shape) * dtype.itemsize
        offset = self.allocator.malloc(nbytes)
        self.live.append(offset)
        if self.trace is not None:
            self.trace.append(("malloc", nbytes))
        return self.allocator.tensor(offset, shape, dtype)

    def release(self) -> None:
        """End of step: every buffer goes back (to the allocator's cache, for the next step)."""
        for offset in reversed(self.live):
            self.allocator.free(offset)
            if self.trace is not None:
                self.trace.append(("free", offset))
        self.live.clear()
