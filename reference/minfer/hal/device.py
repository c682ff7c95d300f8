"""A device is where tensors live and kernels run. The engine asks it for exactly six things.

Keeping the interface this small is the point: a new backend (the CUDA simulator used by lab 2,
a real GPU) is a page of code, and nothing above this layer says "cuda" or "cpu".
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Device:
    """Base device; subclasses override what differs. `torch_device` names where tensors go."""

    name: str
    torch_device: torch.device

    # 1. persistent and workspace memory: one call, so every byte the engine holds is counted here
    def allocate(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, device=self.torch_device)

    # 2. host staging memory: page-locked where that enables asynchronous copies
    def allocate_host(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype)

    # 3. host -> device (or device -> host) copy; asynchronous where the hardware allows
    def copy(self, dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        return dst.copy_(src, non_blocking=False)

    # 4. wait for all queued work (so timings measure work, not queueing)
    def synchronize(self) -> None:
        pass

    # 5. (free, total) bytes, so the KV pool can be sized to what is really there
    def memory_info(self) -> tuple[int, int]:
        import os

        pages, page = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page
        return pages * page, total

    # 6. run a numba.cuda kernel (lab 2) on tensors of this device, in place: a CPU has no CUDA, so
    #    the CUDA simulator runs it (hal/cudasim.py), on numpy views of the tensors' own memory
    def launch(self, kernel: Any, grid: Sequence[int], block: Sequence[int], *tensors: torch.Tensor) -> None:
        from .cudasim import launch

        launch(kernel, grid, block, [t.detach().numpy() for t in tensors])


@dataclass(frozen=True)
class CudaDevice(Device):
    def allocate_host(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        # pinned pages let the DMA engine copy while the GPU computes (zero-copy staging)
        return torch.empty(shape, dtype=dtype, pin_memory=True)

    def copy(self, dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        return dst.copy_(src, non_blocking=src.is_pinned() or src.is_cuda)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.torch_device)

    def memory_info(self) -> tuple[int, int]:
        return torch.cuda.mem_get_info(self.torch_device)

    def launch(self, kernel: Any, grid: Sequence[int], block: Sequence[int], *tensors: torch.Tensor) -> None:
        from .cudasim import numba_cuda

        cuda = numba_cuda(simulate=False)
        # torch's current stream, so the kernel is ordered with the torch work around it; no copies
        stream = cuda.external_stream(torch.cuda.current_stream(self.torch_device).cuda_stream)
        kernel[tuple(grid), tuple(block), stream](*(cuda.as_cuda_array(t.detach()) for t in tensors))


def get_device(name: str = "cpu") -> Device:
    """`cpu`, `cuda` or `cuda:N`."""
    if name == "cpu":
        return Device("cpu", torch.device("cpu"))
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but no CUDA GPU is visible; use --device cpu")
        return CudaDevice(name, torch.device(name))
    raise ValueError(f"unknown device {name!r}; use 'cpu' or 'cuda[:N]'")
