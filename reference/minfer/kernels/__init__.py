"""The kernels the graph can route work through.

- Matrix products for the model's linear layers: `torch` is the default. The numba kernels are lab
  2's (matmul_numba.py, or a student's copy of it given as `kernels`).
- Paged decode attention on a CPU (decode_numba.py): reads the KV cache in place instead of
  gathering it first; `decode_kernel` gives it where it can run, else None (the PyTorch path).

numba is imported only when one of its kernels is chosen, and then after hal/cudasim.py has decided
GPU or simulator for numba.cuda (numba reads that once, when first imported).
"""
from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from types import ModuleType

import torch

from ..hal import Device

MATMULS = ("torch", "numba-naive", "numba-tiled", "numba-regblock")


def torch_matmul(x: torch.Tensor, w_t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    # x @ W^T with W^T stored contiguous: on CPU this streams weights faster than F.linear
    return torch.matmul(x, w_t, out=out)


def lm_head_matmul(matmul: Callable[..., torch.Tensor], device: Device, dtype: torch.dtype
                   ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The `(x [M, hidden], head [vocab, hidden]) -> logits [M, vocab]` product of the LM head.

    The head stays in the checkpoint's [vocab, hidden] layout (it is the embedding table when tied),
    because MKL multiplies it fastest that way round. In float32, `head @ x.T` beats `x @ head_t`
    2-4x for 2-16 rows (the wide [hidden, vocab] GEMM is slow for few rows), and even one row is
    quicker padded to two: on SmolLM2's 49,152-word head, 4.2 ms for one or two rows against 5.7 ms
    (GEMV, one row) and 10.7 ms (two rows) as `x @ head_t`. In bfloat16 `x @ head.T` is the fast
    form (3.4 vs 5.0 ms for one row). Elsewhere (GPUs, lab 2's kernels) the product is plain."""
    if matmul is not torch_matmul:
        return lambda x, head: matmul(x, head.t())  # a strided view: the kernels index any layout
    if device.torch_device.type == "cpu" and dtype == torch.float32:
        def swapped(x: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
            rows = x if x.shape[0] > 1 else torch.cat([x, x])
            return torch.mm(head, rows.t()).t()[: x.shape[0]].contiguous()

        return swapped
    return lambda x, head: torch.matmul(x, head.t())


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


# MINFER_COMPILED_KERNELS=0 keeps numba's compiler out of a process: the grading sandbox sets it,
# where every submission starts with an empty compile cache and speed is not what is graded
COMPILED_ENV = "MINFER_COMPILED_KERNELS"


def decode_kernel(device: Device, dtype: torch.dtype) -> Callable[..., None] | None:
    """The compiled paged decode attention (decode_numba.paged_decode) for float32 on a CPU with numba
    installed, compiled before it returns; None elsewhere, and the graph then gathers and attends
    with PyTorch. Compiling takes ~5-10 s once per checkout; numba caches the result next to the
    source (or in ~/.cache where that is read-only), and later starts load it in well under a second."""
    if (device.torch_device.type != "cpu" or dtype != torch.float32 or os.environ.get(COMPILED_ENV) == "0"
            or importlib.util.find_spec("numba") is None):
        return None
    from ..hal.cudasim import choose

    choose()  # before numba is imported: lab 2 may want numba.cuda's simulator in this process later
    from . import decode_numba

    decode_numba.set_threads(torch.get_num_threads())  # the same cores as PyTorch's own threads
    decode_numba.warm_up()
    return decode_numba.paged_decode
