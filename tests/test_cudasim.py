"""The cudasim backend (hal/cudasim.py) and the memory tracer built on it (minfer_course/tracer.py)."""
from __future__ import annotations

import numpy as np
import pytest

from minfer_course.tracer import trace
from minfer.hal.cudasim import launch, numba_cuda

cuda = numba_cuda(simulate=True)


@cuda.jit
def copy_strided(src, dst, stride):
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] = src[i * stride]


@cuda.jit
def reverse(x):
    s = cuda.shared.array(8, np.float32)
    i = cuda.threadIdx.x
    s[i] = x[i]
    cuda.syncthreads()
    x[i] = s[7 - i]


@cuda.jit
def reverse_without_barrier(x):
    s = cuda.shared.array(8, np.float32)
    i = cuda.threadIdx.x
    s[i] = x[i]
    x[i] = s[7 - i]


@cuda.jit
def reverse_with_early_exit(x):
    s = cuda.shared.array(8, np.float32)
    i = cuda.threadIdx.x
    if i >= 6:
        return
    s[i] = x[i]
    cuda.syncthreads()
    x[i] = s[7 - i]


@cuda.jit
def two_shared_arrays_on_one_line(x):
    s, t = cuda.shared.array(4, np.float32), cuda.shared.array(4, np.float32)
    s[0] = t[0] = x[0]


@cuda.jit
def out_of_bounds(x):
    x[cuda.threadIdx.x + 100] = 1.0


def test_kernels_write_into_the_callers_arrays():
    src, dst = np.arange(30, dtype=np.float32), np.zeros(10, np.float32)
    launch(copy_strided, 3, 4, [src, dst, 3])  # 12 threads for 10 elements
    np.testing.assert_array_equal(dst, src[::3])


def test_barrier_and_per_block_shared_memory():
    x = np.arange(16, dtype=np.float32)
    launch(reverse, 1, 8, [x[:8]])
    launch(reverse, 1, 8, [x[8:]])
    np.testing.assert_array_equal(x, [7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8])


def test_unwritten_shared_memory_reads_as_nan_and_early_exits_do_not_hang():
    x = np.arange(8, dtype=np.float32)
    launch(reverse_with_early_exit, 1, 8, [x])  # threads 6 and 7 leave before the barrier
    assert np.isnan(x[:2]).all() and (x[2:6] == [5, 4, 3, 2]).all()


def test_errors_name_the_thread():
    with pytest.raises(IndexError, match=r"thread \(\d, 0, 0\) of block \(0, 0, 0\)"):
        launch(out_of_bounds, 1, 4, [np.zeros(4, np.float32)])


def test_two_shared_arrays_on_one_line_are_refused():
    with pytest.raises(SyntaxError, match="own line"):
        launch(two_shared_arrays_on_one_line, 1, 1, [np.zeros(1, np.float32)])


def test_the_choice_is_made_once_per_process():
    with pytest.raises(RuntimeError, match="fresh process"):
        numba_cuda(simulate=False)


def test_tracer_counts_each_threads_traffic():
    t = trace(reverse, 1, 8, x=np.arange(8, dtype=np.float32))
    for what in ("global_reads", "global_writes", "shared_reads", "shared_writes", "barriers"):
        assert set(t.per_thread(what)) == {1}, what
    assert not t.hazards


def test_tracer_finds_a_missing_barrier_whatever_the_thread_order():
    t = trace(reverse_without_barrier, 1, 8, x=np.arange(8, dtype=np.float32))
    assert {h.kind for h in t.hazards} >= {"race"}


def test_tracer_finds_divergent_barriers_and_unwritten_reads():
    t = trace(reverse_with_early_exit, 1, 8, x=np.arange(8, dtype=np.float32))
    assert {h.kind for h in t.hazards} == {"barrier divergence", "uninitialized read"}


def test_tracer_measures_how_far_apart_neighbours_read():
    src, dst = np.arange(30, dtype=np.float32), np.zeros(10, np.float32)
    t = trace(copy_strided, 1, 10, src=src, dst=dst, stride=3)
    assert t.max_stride("src") == 3 and t.max_stride("dst") == 1
