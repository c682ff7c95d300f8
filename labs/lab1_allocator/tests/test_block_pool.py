"""Lab 1 public tests: the paged KV block pool, and your code serving a real LLM."""
from __future__ import annotations

import pytest

from minfer.memory.errors import KVPoolExhausted


def test_allocate_until_exhausted(lab):
    pool = lab.block_pool.BlockPool(4, 16)
    ids = {pool.allocate() for _ in range(4)}
    assert ids == {0, 1, 2, 3} and pool.num_free == 0
    with pytest.raises(KVPoolExhausted):
        pool.allocate()
    pool.free(2)
    assert pool.allocate() == 2


def test_prefix_blocks_are_shared(lab):
    bp = lab.block_pool
    pool = bp.BlockPool(4, 2)
    h = bp.chain_hash(None, (5, 6))
    b = pool.allocate()
    pool.register(b, h)
    assert pool.lookup(h) == b
    assert pool.blocks[b].ref_count == 2
    assert pool.lookup(bp.chain_hash(None, (6, 5))) is None


def test_unreferenced_cached_blocks_are_reused_when_needed(lab):
    bp = lab.block_pool
    pool = bp.BlockPool(2, 2)
    a, b = pool.allocate(), pool.allocate()
    pool.register(a, bp.chain_hash(None, (1, 2)))
    pool.free(a), pool.free(b)
    assert pool.num_free == 2
    assert {pool.allocate(), pool.allocate()} == {a, b}  # the cached block was evicted to make room


@pytest.mark.slow
def test_your_memory_manager_serves_smollm2(lab, golden):
    """The real engine, with your allocator and block pool, generates what the reference does."""
    from minfer import LLM, SamplingParams

    params = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    prompts = ["The capital of France is", "def add(a, b):"]
    expected = golden.tokens("serves_smollm2", prompts, params, max_batch_tokens=64)  # the reference's tokens
    yours = LLM("smollm2-135m", labs={"lab1": lab}, max_batch_tokens=64).generate(prompts, params)
    assert [o.token_ids for o in yours] == expected
