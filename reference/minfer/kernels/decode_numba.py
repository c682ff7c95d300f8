"""Paged decode attention on the CPU, compiled by numba: each key and value is read once, straight
from its cache block.

The PyTorch path (graph/attention.py: `gather_kv`, then `attend`) copies every context into a
scratch buffer before multiplying, so the KV cache crosses memory three times (read, write, read
again); with one query token per request there is little arithmetic to hide that behind, and on
the serving workload decode attention was a third of the run. This kernel walks the block table
itself, one (request, KV head) at a time: scores for the G query heads that share the KV head, a
stable softmax, then the weighted sum of values. Requests run in parallel (numba's `prange`).

bfloat16 caches are read as their raw 16 bits (numpy has no bfloat16) and widened to float32 as
they are loaded: a bfloat16 is the top half of a float32, so the widening is a shift. Scores and
sums are float32 in both cases.

Imported only through `minfer.kernels.decode_kernel`, which decides first whether this process's
numba.cuda is the simulator (numba reads that once, at import) and falls back to the PyTorch path
where numba is missing. Lab 3's `gather_kv` and `attend` remain the engine's teaching path: the
two must agree (tests/test_kernels.py), and a student's lab 3 always runs theirs.
"""
from __future__ import annotations

import numba
import numpy as np
import torch
from numba.core import types
from numba.extending import overload

# fastmath lets the compiler vectorise the dot products' reductions (reassociating the sums)
_JIT = dict(nogil=True, fastmath=True, cache=True)


def _f32(x):
    """A cache element as float32: float32 as is, bfloat16 bits (uint16) shifted into a float32's top half."""
    raise NotImplementedError("compiled code only")


@overload(_f32, inline="always")
def _f32_impl(x):
    if isinstance(x, types.Float):
        return lambda x: np.float32(x)
    if x == types.uint16:
        return lambda x: np.uint32(np.uint32(x) << 16).view(np.float32)
    return None


@numba.njit(**_JIT)
def _one(q, k_cache, v_cache, blocks, length, block_size, scale, h, out, scores):
    """out[g] = softmax(q[g] · keys / sqrt(D)) · values over one request's `length` cached tokens, KV head h."""
    groups, dim = q.shape
    qs = q * scale
    top = np.full(groups, -np.inf, dtype=np.float32)
    for b in range((length + block_size - 1) // block_size):
        first, t0 = blocks[b] * block_size, b * block_size
        for i in range(min(block_size, length - t0)):
            key = k_cache[h, first + i]
            for g in range(groups):
                s = np.float32(0.0)
                for d in range(dim):
                    s += qs[g, d] * _f32(key[d])
                scores[g, t0 + i] = s
                top[g] = max(top[g], s)
    for g in range(groups):  # subtract the row's max before exp: no overflow, however large the scores
        total = np.float32(0.0)
        for t in range(length):
            e = np.exp(scores[g, t] - top[g])
            scores[g, t] = e
            total += e
        for t in range(length):
            scores[g, t] /= total
    acc = np.zeros((groups, dim), dtype=np.float32)
    for b in range((length + block_size - 1) // block_size):
        first, t0 = blocks[b] * block_size, b * block_size
        for i in range(min(block_size, length - t0)):
            value = v_cache[h, first + i]
            for g in range(groups):
                p = scores[g, t0 + i]
                for d in range(dim):
                    acc[g, d] += p * _f32(value[d])
    out[:, :] = acc


@numba.njit(parallel=True, **_JIT)
def _decode(q, k_cache, v_cache, blocks, lengths, block_size, scale, out):
    n, kv_heads = q.shape[0], q.shape[1]
    for job in numba.prange(n * kv_heads):
        r, h = job // kv_heads, job % kv_heads
        scores = np.empty((q.shape[2], lengths[r]), dtype=np.float32)
        _one(q[r, h], k_cache, v_cache, blocks[r], lengths[r], block_size, scale, h, out[r, h], scores)


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, blocks: torch.Tensor,
                 lengths: torch.Tensor, block_size: int, out: torch.Tensor) -> None:
    """q and out [N, H, D] (one token per request), caches [KVH, slots, D] float32 or bfloat16, blocks
    [N, NB] (padding beyond each context is never read), lengths [N]: out = attention over each context."""
    n, h, d = q.shape
    kvh = k_cache.shape[0]
    wide = out if out.dtype == torch.float32 else torch.empty(out.shape, dtype=torch.float32)
    grouped = q.float().reshape(n, kvh, h // kvh, d)  # heads j*G ... j*G+G-1 share KV head j
    result = wide.view(n, kvh, h // kvh, d)
    _decode(grouped.numpy(), _raw(k_cache), _raw(v_cache), blocks.numpy(), lengths.numpy(), block_size,
            np.float32(d ** -0.5), result.numpy())
    if wide is not out:
        out.copy_(wide)


def _raw(cache: torch.Tensor) -> np.ndarray:
    """The cache's memory as numpy sees it, uncopied: bfloat16 as uint16 bits."""
    if cache.dtype == torch.bfloat16:
        return cache.view(torch.int16).numpy().view(np.uint16)
    return cache.numpy()


def set_threads(n: int) -> None:
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def warm_up(dtype: torch.dtype = torch.float32) -> None:
    """Compile for caches of `dtype` now (or load numba's cache), so that no request waits for the compiler."""
    q, cache = torch.zeros(1, 2, 4, dtype=dtype), torch.zeros(1, 4, 4, dtype=dtype)
    paged_decode(q, cache, cache, torch.zeros(1, 1, dtype=torch.long), torch.ones(1, dtype=torch.long), 4,
                 torch.empty_like(q))
