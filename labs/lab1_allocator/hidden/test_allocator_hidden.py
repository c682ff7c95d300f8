"""Lab 1 hidden tests: the allocator's corner cases (not released to students)."""
from __future__ import annotations

import pytest

from minfer.memory.errors import DoubleFree, InvalidFree, OutOfMemory

KB = 1024


def make(lab, capacity=64 * KB, alignment=256, caching=True, policy="best"):
    return lab.allocator.Allocator(capacity, alignment=alignment, caching=caching, policy=policy)


def test_split_leaves_exactly_the_remainder(lab):
    a = make(lab, capacity=8 * KB, caching=False)
    x = a.malloc(1000)  # 1024 after rounding
    assert a.malloc(7 * KB) == x + 1024  # the remainder starts right after, and is all there


def test_coalesce_with_both_neighbours(lab):
    a = make(lab, capacity=6 * KB, caching=False)
    left, mid, right = a.malloc(2 * KB), a.malloc(2 * KB), a.malloc(2 * KB)
    a.free(left)
    a.free(right)
    a.free(mid)  # merges with the hole on its left and on its right
    assert a.malloc(6 * KB) == 0


def test_cache_is_flushed_and_coalesced_before_out_of_memory(lab):
    a = make(lab, capacity=8 * KB, caching=True)
    blocks = [a.malloc(KB) for _ in range(8)]
    for b in blocks:
        a.free(b)  # all cached, none of them 8 KB
    assert a.malloc(8 * KB) == 0
    with pytest.raises(OutOfMemory):
        a.malloc(1)


def test_double_free_of_a_cached_block(lab):
    a = make(lab, caching=True)
    x = a.malloc(500)
    a.free(x)
    with pytest.raises(DoubleFree):
        a.free(x)


def test_double_free_is_distinguished_from_a_foreign_free(lab):
    a = make(lab, caching=False)
    x, _ = a.malloc(500), a.malloc(500)
    a.free(x)
    with pytest.raises(DoubleFree):
        a.free(x)
    with pytest.raises(InvalidFree) as info:
        a.free(x + 256)  # inside the arena, but never handed out
    assert not isinstance(info.value, DoubleFree)


def test_peak_remembers_the_high_water_mark(lab):
    a = make(lab)
    x, y = a.malloc(4 * KB), a.malloc(4 * KB)
    a.free(x)
    a.free(y)
    a.malloc(KB)
    s = a.stats()
    assert s.peak == 8 * KB and s.allocated == KB


def test_fragmentation_metric(lab):
    a = make(lab, capacity=8 * KB, caching=False)
    blocks = [a.malloc(KB) for _ in range(8)]
    for b in blocks[::2]:
        a.free(b)  # four separate 1 KB holes
    assert a.stats().fragmentation == pytest.approx(0.75)
    for b in blocks[1::2]:
        a.free(b)
    assert a.stats().fragmentation == 0.0


def test_alignment_is_respected_for_other_powers_of_two(lab):
    a = make(lab, alignment=1024)
    offsets = [a.malloc(n) for n in (1, 1025, 3000, 1)]
    assert all(o % 1024 == 0 for o in offsets)
    assert a.stats().allocated == 1024 + 2048 + 3072 + 1024


def test_best_fit_prefers_exact_fit_over_an_earlier_larger_hole(lab):
    a = make(lab, capacity=32 * KB, caching=False, policy="best")
    holes = [a.malloc(n * KB) for n in (4, 1, 2, 1)] + [a.malloc(KB)]
    a.free(holes[0]), a.free(holes[2])  # holes of 4 KB (first) and 2 KB (later)
    assert a.malloc(2 * KB) == holes[2]


def test_first_fit_policy_takes_the_first_hole(lab):
    a = make(lab, capacity=32 * KB, caching=False, policy="first")
    holes = [a.malloc(n * KB) for n in (4, 1, 2, 1)] + [a.malloc(KB)]
    a.free(holes[0]), a.free(holes[2])
    assert a.malloc(2 * KB) == holes[0]


def test_random_workload_never_overlaps_and_conserves_bytes(lab):
    import random

    rng = random.Random(0)
    a = make(lab, capacity=256 * KB)
    live: dict[int, int] = {}
    for _ in range(600):
        if live and rng.random() < 0.45:
            off = rng.choice(list(live))
            a.free(off)
            del live[off]
        else:
            n = rng.choice([1, 100, 300, 1024, 5000, 12000])
            try:
                off = a.malloc(n)
            except Exception:
                continue
            live[off] = a.round_up(n)
        spans = sorted(live.items())
        assert all(o1 + s1 <= o2 for (o1, s1), (o2, _) in zip(spans, spans[1:]))
        assert a.stats().allocated == sum(live.values())
    for off in list(live):
        a.free(off)
    a.empty_cache()
    assert a.malloc(256 * KB) == 0  # everything came back and merged
