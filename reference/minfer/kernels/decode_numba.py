"""Paged decode attention on the CPU, compiled by numba: each key and value is read once, straight
from its cache block.

The PyTorch path (graph/attention.py: `gather_kv`, then `attend`) copies every context into a
scratch buffer before multiplying, so the KV cache crosses memory three times (read, write, read
again); with one query token per request there is little arithmetic to hide that behind, and on
the serving workload decode attention was a third of the run. This kernel walks the block table
itself, one (request, KV head) at a time: scores for the G query heads that share the KV head, a
stable softmax, then the weighted sum of values. Requests run in parallel (numba's `prange`).

Imported only through `minfer.kernels.decode_kernel`, which decides first whether this process's
numba.cuda is the simulator (numba reads that once, at import) and falls back to the PyTorch path
where numba is missing. Lab 3's `gather_kv` and `attend` remain the engine's teaching path: the
two must agree (tests/test_kernels.py), and a student's lab 3 always runs theirs.
"""
from __future__ import annotations

import numba
import numpy as np
import torch

# fastmath lets the compiler vectorise the dot products' reductions (reassociating the sums)
_JIT = dict(nogil=True, fastmath=True, cache=True)


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
                    s += qs[g, d] * key[d]
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
                    acc[g, d] += p * value[d]
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
    """q and out [N, H, D] (one token per request), caches [KVH, slots, D] float32, blocks [N, NB]
    (padding beyond each context is never read), lengths [N]: out = attention over each context."""
    n, h, d = q.shape
    kvh = k_cache.shape[0]
    grouped = q.reshape(n, kvh, h // kvh, d)  # heads j*G ... j*G+G-1 share KV head j
    result = out.view(n, kvh, h // kvh, d)
    _decode(grouped.numpy(), k_cache.numpy(), v_cache.numpy(), blocks.numpy(), lengths.numpy(), block_size,
            np.float32(d ** -0.5), result.numpy())


def set_threads(n: int) -> None:
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def warm_up() -> None:
    """Compile now (or load numba's cache), so that no request waits for the compiler."""
    q, cache = torch.zeros(1, 2, 4), torch.zeros(1, 4, 4)
    paged_decode(q, cache, cache, torch.zeros(1, 1, dtype=torch.long), torch.ones(1, dtype=torch.long), 4,
                 torch.empty_like(q))
