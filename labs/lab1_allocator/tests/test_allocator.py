"""Lab 1 public tests: the allocator. Run: pytest labs/lab1_allocator/tests"""
from __future__ import annotations

import pytest

from minfer.memory.errors import InvalidFree, OutOfMemory

KB = 1024


def make(lab, capacity=64 * KB, alignment=256, caching=True, policy="best"):
    return lab.allocator.Allocator(capacity, alignment=alignment, caching=caching, policy=policy)


@pytest.mark.parametrize("nbytes", [1, 255, 256, 257, 1000, 4096])
def test_blocks_are_aligned_and_rounded(lab, nbytes):
    a = make(lab)
    offsets = [a.malloc(nbytes) for _ in range(3)]
    assert all(o % 256 == 0 for o in offsets)
    assert a.round_up(nbytes) % 256 == 0 and a.round_up(nbytes) >= nbytes
    assert a.stats().allocated == 3 * a.round_up(nbytes)


def test_blocks_do_not_overlap(lab):
    a = make(lab)
    sizes = [300, 1000, 256, 5000, 1]
    spans = sorted((a.malloc(s), a.round_up(s)) for s in sizes)
    for (o1, s1), (o2, _) in zip(spans, spans[1:]):
        assert o1 + s1 <= o2
    assert spans[-1][0] + spans[-1][1] <= 64 * KB


def test_out_of_memory_is_a_clear_error(lab):
    a = make(lab, capacity=4 * KB)
    a.malloc(3 * KB)
    with pytest.raises(OutOfMemory, match="bytes"):
        a.malloc(2 * KB)


def test_freed_block_is_reused_from_the_cache(lab):
    a = make(lab)
    first = a.malloc(3000)
    a.malloc(100)
    a.free(first)
    assert a.malloc(3000) == first
    assert a.stats().cache_hits == 1


def test_neighbours_coalesce_without_caching(lab):
    a = make(lab, capacity=8 * KB, caching=False)
    blocks = [a.malloc(2 * KB) for _ in range(4)]
    for b in blocks:
        a.free(b)
    assert a.malloc(8 * KB) == 0  # only possible if the four blocks merged back into one


def test_best_fit_picks_the_smallest_hole(lab):
    a = make(lab, capacity=16 * KB, caching=False)
    big, _, small, _ = a.malloc(3 * KB), a.malloc(KB), a.malloc(KB), a.malloc(KB)
    a.free(big)  # a 3 KB hole
    a.free(small)  # a 1 KB hole
    assert a.malloc(KB) == small


def test_stats_count_allocated_and_reserved(lab):
    a = make(lab)
    x, y = a.malloc(1000), a.malloc(2000)
    s = a.stats()
    assert s.allocated == a.round_up(1000) + a.round_up(2000)
    a.free(x)
    s = a.stats()
    assert s.allocated == a.round_up(2000)
    assert s.reserved == a.round_up(1000) + a.round_up(2000)  # the freed block is cached, still reserved


def test_bad_frees_raise(lab):
    a = make(lab, caching=False)
    x = a.malloc(1000)
    a.free(x)
    with pytest.raises(InvalidFree):
        a.free(x)
    with pytest.raises(InvalidFree):
        a.free(12345)
