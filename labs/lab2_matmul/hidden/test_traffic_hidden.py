"""Lab 2 hidden tests: exact traffic, races, barriers and coalescing, seen by the tracer (not released)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from minfer_course.tracer import trace_matmul

TILE, RB = 4, 2
SYNCING = ["tiled", "regblock"]


def traced(kernels, kind: str, m: int, k: int, n: int):
    t, c, expected = trace_matmul(kernels, kind, m, k, n, TILE, RB)
    np.testing.assert_allclose(c, expected, atol=1e-4, rtol=1e-4)
    return t


@pytest.mark.parametrize("shape", [(8, 16, 8), (9, 13, 11)], ids=["whole tiles", "cut tiles"])
@pytest.mark.parametrize("kind", SYNCING)
def test_no_shared_memory_hazard(kernels, kind, shape):
    t = traced(kernels, kind, *shape)
    assert not t.hazards, "\n".join(map(str, t.hazards[:5]))


@pytest.mark.parametrize("kind", SYNCING)
def test_every_thread_passes_two_barriers_per_tile(kernels, kind):
    t = traced(kernels, kind, 9, 13, 11)  # threads outside C too: they load zeros and must sync
    assert set(t.per_thread("barriers")) == {2 * math.ceil(13 / TILE)}


def test_tiled_traffic_is_exactly_one_load_per_tile(kernels):
    m, k, n = 8, 16, 8
    t = traced(kernels, "tiled", m, k, n)
    assert set(t.per_thread("global_reads")) == {2 * k // TILE}
    assert set(t.per_thread("shared_writes")) == {2 * k // TILE}
    assert set(t.per_thread("shared_reads")) == {2 * k}


def test_regblock_reuses_each_shared_value_from_registers(kernels):
    """RB values of A and RB of B from shared memory per step of k give RB x RB products."""
    m, k, n = 8, 16, 8
    t = traced(kernels, "regblock", m, k, n)
    assert set(t.per_thread("global_reads")) == {2 * RB * k // TILE}
    assert set(t.per_thread("shared_reads")) == {2 * RB * k}, "each shared value is read once per step of k"


@pytest.mark.parametrize("kind", ["naive", "tiled", "regblock"])
def test_neighbouring_threads_touch_neighbouring_addresses(kernels, kind):
    """threadIdx.x runs along the columns of C: at each step threads x and x + 1 read or write
    elements at most one apart (a warp's accesses coalesce into few memory transactions)."""
    t = traced(kernels, kind, 8, 16, 8)
    strides = {name: t.max_stride(name) for name in "abc"}
    assert max(strides.values()) <= 1, f"largest distance between neighbouring threads, in elements: {strides}"


@pytest.mark.parametrize("kind", ["naive", "tiled", "regblock"])
def test_each_element_of_c_is_written_once(kernels, kind):
    m, n = 9, 11
    t = traced(kernels, kind, m, 5, n)
    written = sorted(i for traffic in t.threads.values() for name, i, w in traffic.accesses if name == "c" and w)
    assert written == list(range(m * n))
    assert t.total("global_reads") > 0
