"""The matrix products the graph builder can route the model's linear layers through.

`torch` is the default. The numba kernels are lab 2's (matmul_numba.py, or a student's copy of it
given as `kernels`); numba is imported only when one of them is chosen, and then through
hal/cudasim.py, which decides GPU or simulator before numba is loaded.
"""
from __future__ import annotations

import functools
from types import ModuleType

import torch

from ..hal import Device

MATMULS = ("torch", "numba-naive", "numba-tiled", "numba-regblock")


def torch_matmul(x: torch.Tensor, w_t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    # x @ W^T with W^T stored contiguous: on CPU this streams weights faster than F.linear
    return torch.matmul(x, w_t, out=out)


def get_matmul(name: str, device: Device, kernels: ModuleType | None = None):
    """The `(x, w_t, out=None) -> x @ w_t` callable called `name` (one of MATMULS), running on `device`."""
    if name not in MATMULS:
        raise ValueError(f"matmul={name!r} is not a kernel; choose one of {', '.join(MATMULS)}")
    if name == "torch":
        return torch_matmul
    on_gpu = device.torch_device.type == "cuda"
    if kernels is None:
        from ..hal.cudasim import numba_cuda

        numba_cuda(simulate=not on_gpu)  # before matmul_numba imports numba
        from . import matmul_numba as kernels
    # a simulated thread costs ~0.1-1 ms: 4 x 4 blocks keep a tiny model's step to about a thousand
    tile, rb = (16, 4) if on_gpu else (4, 2)
    return functools.partial(kernels.matmul, kind=name.removeprefix("numba-"), tile=tile, rb=rb, device=device)
