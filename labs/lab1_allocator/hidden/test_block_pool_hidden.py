"""Lab 1 hidden tests: the KV block pool's corner cases, and the engine on SmolLM2."""
from __future__ import annotations

import pytest

from minfer.memory.errors import DoubleFree, KVPoolExhausted


def test_hash_is_chained(lab):
    h = lab.block_pool.chain_hash
    assert h(None, (1, 2)) == h(None, (1, 2))
    assert h(h(None, (9, 9)), (1, 2)) != h(h(None, (8, 8)), (1, 2))
    assert h(h(None, (9, 9)), (1, 2)) != h(None, (1, 2))


def test_reference_counts_return_every_block(lab):
    bp = lab.block_pool
    pool = bp.BlockPool(4, 2)
    a = pool.allocate()
    h = bp.chain_hash(None, (1, 2))
    pool.register(a, h)
    for _ in range(3):
        assert pool.lookup(h) == a
    for _ in range(4):
        pool.free(a)
    assert pool.num_free == 4
    assert pool.lookup(h) == a  # still cached, and sharable again
    pool.free(a)
    with pytest.raises(DoubleFree):
        pool.free(a)


def test_a_referenced_block_is_never_evicted(lab):
    bp = lab.block_pool
    pool = bp.BlockPool(2, 2)
    a, b = pool.allocate(), pool.allocate()
    h = bp.chain_hash(None, (1, 2))
    pool.register(a, h)
    pool.free(a)  # cached, evictable
    assert pool.lookup(h) == a  # referenced again: no longer evictable
    pool.free(b)
    assert pool.allocate() == b
    with pytest.raises(KVPoolExhausted):
        pool.allocate()
    assert pool.blocks[a].ref_count == 1


def test_least_recently_used_is_evicted_first(lab):
    bp = lab.block_pool
    pool = bp.BlockPool(3, 2)
    blocks = [pool.allocate() for _ in range(3)]
    hashes = [bp.chain_hash(None, (i, i)) for i in range(3)]
    for blk, h in zip(blocks, hashes):
        pool.register(blk, h)
    for blk in blocks:
        pool.free(blk)  # freed in order 0, 1, 2
    pool.free(pool.lookup(hashes[0]))  # block 0 used again: now the most recent
    assert pool.allocate() == blocks[1]
    assert pool.lookup(hashes[1]) is None and pool.lookup(hashes[0]) == blocks[0]


def test_registering_a_duplicate_keeps_the_first(lab):
    bp = lab.block_pool
    pool = bp.BlockPool(3, 2)
    a, b = pool.allocate(), pool.allocate()
    h = bp.chain_hash(None, (4, 4))
    pool.register(a, h)
    pool.register(b, h)
    assert pool.lookup(h) == a


def test_prefix_cache_off_shares_nothing(lab):
    bp = lab.block_pool
    pool = bp.BlockPool(2, 2, enable_prefix_cache=False)
    a = pool.allocate()
    h = bp.chain_hash(None, (1, 1))
    pool.register(a, h)
    assert pool.lookup(h) is None


@pytest.mark.slow
def test_engine_with_prefix_sharing_and_preemption(lab, golden):
    """Many requests sharing a prefix on a KV cache too small for all: same tokens as the reference."""
    from minfer import LLM, SamplingParams

    system = "You are a helpful assistant who answers in one short sentence. " * 3
    prompts = [system + q for q in ["Why is the sea salty?", "What is a CPU?", "Name a prime.", "Who wrote Hamlet?"]]
    params = SamplingParams(temperature=0, max_tokens=20, ignore_eos=True)
    kw = dict(kv_cache_mb=6, block_size=16, max_batch_tokens=64)  # 8 blocks for 4 x 4 needed: preemption
    expected = golden.tokens("prefix_sharing_preemption", prompts, params, **kw)  # the reference's tokens
    yours = LLM("smollm2-135m", labs={"lab1": lab}, **kw)
    assert [o.token_ids for o in yours.generate(prompts, params)] == expected
    assert yours.scheduler.num_preemptions > 0
    assert yours.kv.pool.num_free == yours.kv.pool.num_blocks
