"""The weight tier and the host staging tier (the workspace tier is workspace.py).

Weights: every parameter is packed into one persistent allocation, made once at load time and
never freed, so weights can never fragment the memory the engine uses per step.
Staging: per-step inputs (token ids, positions, slot tables) are built on the host; on a GPU they
go through page-locked buffers with non-blocking copies, and on a CPU they are used where they
are, with no copy at all.
"""
from __future__ import annotations

import math

import torch

from ..hal import Device


class WeightPool:
    ALIGN = 64  # elements: each tensor starts on a 256-byte boundary for fp32

    def __init__(self, device: Device, dtype: torch.dtype, shapes: list[tuple[int, ...]]) -> None:
        self.offsets, total = [], 0
        for shape in shapes:
            self.offsets.append(total)
            total += -(-math.prod(shape) // self.ALIGN) * self.ALIGN
        self.storage = device.allocate((total,), dtype)
        self.device = device
        self.shapes = shapes

    @property
    def nbytes(self) -> int:
        return self.storage.numel() * self.storage.element_size()

    def place(self, i: int, host: torch.Tensor) -> torch.Tensor:
        """Copy the i-th tensor into its slot and return the device view."""
        view = self.storage[self.offsets[i]:self.offsets[i] + host.numel()].view(self.shapes[i])
        return self.device.copy(view, host.to(view.dtype))


def stage(device: Device, host: torch.Tensor) -> torch.Tensor:
    """A host tensor, ready for `device`: itself on a CPU, a pinned non-blocking upload on a GPU."""
    if device.torch_device.type == "cpu":
        return host
    pinned = device.allocate_host(tuple(host.shape), host.dtype)
    pinned.copy_(host)
    return device.copy(device.allocate(tuple(host.shape), host.dtype), pinned)
