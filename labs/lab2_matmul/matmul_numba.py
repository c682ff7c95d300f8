# GENERATED from reference/minfer/kernels/matmul_numba.py by `minfer lab skeletons`: fill in the parts marked NotImplementedError.
"""Lab 2: C = A @ B as numba.cuda kernels, from naive to register-blocked.

A is [M, K], B is [K, N], C is [M, N], all row-major. The three kernels compute the same numbers;
they differ in where each thread finds its operands, which is what decides their speed:

- `naive_kernel`: one thread per element of C reads a row of A and a column of B straight from
  global memory: 2K reads for 2K flops.
- `tiled_kernel(tile)`: a block of tile x tile threads copies a tile of A and a tile of B into shared
  memory, waits, and multiplies from there; every value read from global memory serves `tile`
  threads, so each thread reads only 2K/tile values from global memory.
- `regblock_kernel(tile, rb)`: each thread computes rb x rb elements of C, kept in registers, and
  takes every value it reads from shared memory for rb products. A block covers (tile*rb)^2
  elements of C with the same tile x tile threads: 2K*rb/tile global reads per thread for rb^2
  outputs.

Conventions every kernel follows (the tests check them):
- the thread grid's x runs along the columns of C and y along its rows, so neighbouring threads
  of a warp touch neighbouring addresses of B and C (coalesced accesses);
- threads outside C compute nothing and store nothing, but still take part in every barrier;
- sums are float32 whatever the input type (float32 or float16).

Tile sizes are compile-time constants (shared arrays need a constant shape), so each factory
compiles one kernel per size and caches it: tests run 4 x 4 tiles in the simulator, a GPU 16 x 16.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from minfer.hal import Device, get_device
from minfer.hal.cudasim import numba_cuda

cuda = numba_cuda()  # the real numba.cuda where a GPU is visible, else the CUDA simulator (hal/cudasim.py)

KINDS = ("naive", "tiled", "regblock")
TILE = 16  # threads along each side of a block on a GPU: 256 threads
RB = 4  # register blocking: each thread of regblock_kernel computes RB x RB elements of C


@cuda.jit
def naive_kernel(a, b, c):
    """c[row, col] = sum over k of a[row, k] * b[k, col], one thread per element of C."""
    # TODO: (col, row) = cuda.grid(2); skip threads outside C; convert each operand with np.float32 before multiplying
    raise NotImplementedError('labs/lab2_matmul/matmul_numba.py: not implemented yet ((col, row) = cuda.grid(2); skip threads outside C; convert each operand with np.float32 before multiplying)')


@functools.cache
def tiled_kernel(tile: int = TILE) -> Any:
    """The shared-memory tiled kernel for blocks of tile x tile threads (one thread per element of C)."""

    @cuda.jit
    def kernel(a, b, c):
        # TODO: per tile of K: each thread loads one value of A and one of B (0.0 past the edges) into shared memory, syncthreads, accumulate `tile` products, syncthreads
        raise NotImplementedError('labs/lab2_matmul/matmul_numba.py: not implemented yet (per tile of K: each thread loads one value of A and one of B (0.0 past the edges) into shared memory, syncthreads, accumulate `tile` products, syncthreads)')

    return kernel


@functools.cache
def regblock_kernel(tile: int = TILE, rb: int = RB) -> Any:
    """The register-blocked kernel: tile x tile threads, each computing rb x rb elements of C.

    Thread (tx, ty) of block (bx, by) owns rows by*tile*rb + ty + i*tile and columns
    bx*tile*rb + tx + j*tile for i, j < rb: strided, so neighbouring threads still touch neighbouring
    addresses. The K loop steps `tile` at a time through shared tiles of A [tile*rb, tile] and
    B [tile, tile*rb]; each thread loads rb values of each."""
    side = tile * rb  # rows (and columns) of C one block computes

    @cuda.jit
    def kernel(a, b, c):
        # TODO: accumulators in cuda.local.array((rb, rb), np.float32) set to 0; per k of a tile, read rb values of sa and rb of sb into local arrays once, then rb*rb products from those
        raise NotImplementedError('labs/lab2_matmul/matmul_numba.py: not implemented yet (accumulators in cuda.local.array((rb, rb), np.float32) set to 0; per k of a tile, read rb values of sa and rb of sb into local arrays once, then rb*rb products from those)')

    return kernel


def launch_config(kind: str, m: int, n: int, tile: int = TILE, rb: int = RB) -> tuple[tuple[int, int], tuple[int, int]]:
    """(blocks, threads per block) covering C [m, n] for `kind`, each as (x, y): x along columns."""
    # TODO: blocks are tile x tile threads; a block covers tile (regblock: tile*rb) rows and columns; round up
    raise NotImplementedError('labs/lab2_matmul/matmul_numba.py: not implemented yet (blocks are tile x tile threads; a block covers tile (regblock: tile*rb) rows and columns; round up)')


def kernel_for(kind: str, tile: int = TILE, rb: int = RB) -> Any:
    if kind == "naive":
        return naive_kernel
    if kind == "tiled":
        return tiled_kernel(tile)
    if kind == "regblock":
        return regblock_kernel(tile, rb)
    raise ValueError(f"unknown kernel {kind!r}; choose one of {', '.join(KINDS)}")


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None, *, kind: str = "tiled",
           tile: int = TILE, rb: int = RB, device: Device | None = None) -> torch.Tensor:
    """a [M, K] @ b [K, N] by one launch of the `kind` kernel, written into `out` (made when None).

    No copies: the kernel reads and writes the tensors' own memory (`Device.launch`). float16 is read
    as is and summed in float32; numpy and numba have no bfloat16, so bfloat16 goes through float32."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul needs [M, K] @ [K, N], got {tuple(a.shape)} @ {tuple(b.shape)}")
    m, n = a.shape[0], b.shape[1]
    if out is None:
        out = torch.empty((m, n), dtype=a.dtype, device=a.device)
    if tuple(out.shape) != (m, n):
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {(m, n)}")
    if torch.bfloat16 in (a.dtype, b.dtype, out.dtype):
        return out.copy_(matmul(a.float(), b.float(), kind=kind, tile=tile, rb=rb, device=device))
    kernel = kernel_for(kind, tile, rb)
    if m and n:  # an empty C needs no thread (and a grid of zero blocks is invalid)
        grid, block = launch_config(kind, m, n, tile, rb)
        (device or get_device(str(a.device))).launch(kernel, grid, block, a, b, out)
    return out
