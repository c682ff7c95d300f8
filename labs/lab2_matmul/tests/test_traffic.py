"""Lab 2 public tests: what each thread reads from global memory, counted by the tracer.

minfer_course.tracer runs one launch in the simulator and counts every thread's reads; see the
handout. C = A @ B with K = 16 and 4 x 4 tiles: a naive thread reads 2K = 32 values, a tiled one
2K/TILE = 8, a register-blocked one 2K*RB/TILE = 16 for its RB x RB = 4 elements of C."""
from __future__ import annotations

import numpy as np

from minfer_course.tracer import trace_matmul

TILE, RB = 4, 2  # 16 threads per block: cheap to simulate
M, K, N = 8, 16, 8


def traced(kernels, kind: str):
    t, c, expected = trace_matmul(kernels, kind, M, K, N, TILE, RB)
    np.testing.assert_allclose(c, expected, atol=1e-4, rtol=1e-4)
    return t


def test_naive_thread_reads_a_row_and_a_column(kernels):
    t = traced(kernels, "naive")
    assert len(t.active("global_reads")) == M * N, "one thread per element of C"
    assert (t.active("global_reads") == 2 * K).all()


def test_tiled_thread_reads_2k_over_tile_values(kernels):
    t = traced(kernels, "tiled")
    reads = t.active("global_reads")
    assert len(reads) == M * N, "one thread per element of C"
    assert reads.max() <= 2 * K // TILE, f"a thread read {reads.max()} values from global memory"
    assert t.total("global_reads") >= M * K + K * N, "A and B must be read at least once"
    assert t.active("shared_reads").max() == 2 * K, "each product takes both operands from shared memory"


def test_regblock_thread_reads_2k_over_tile_rb_values_per_output(kernels):
    t = traced(kernels, "regblock")
    outputs, reads = t.active("global_writes"), t.active("global_reads")
    assert len(outputs) == M * N // RB**2 and (outputs == RB * RB).all(), "RB x RB elements of C per thread"
    assert reads.max() <= 2 * K * RB // TILE, f"a thread read {reads.max()} values from global memory"
