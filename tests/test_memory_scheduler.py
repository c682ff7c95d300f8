"""The KV block pool and the continuous-batching scheduler, on a tiny model."""
from __future__ import annotations

import pytest

from minfer import LLM, SamplingParams
from minfer.memory.block_pool import BlockPool, chain_hash
from minfer.memory.errors import KVPoolExhausted


def test_pool_allocate_free_and_exhaustion():
    pool = BlockPool(3, 4)
    ids = [pool.allocate() for _ in range(3)]
    assert sorted(ids) == [0, 1, 2] and pool.num_free == 0
    with pytest.raises(KVPoolExhausted, match="kv_cache_mb"):
        pool.allocate()
    pool.free(ids[1])
    assert pool.num_free == 1 and pool.allocate() == ids[1]
    pool.free(ids[0])
    with pytest.raises(ValueError, match="freed twice"):
        pool.free(ids[0])


def test_pool_prefix_sharing_and_lru_eviction():
    pool = BlockPool(3, 2)
    h1 = chain_hash(None, (1, 2))
    h2 = chain_hash(h1, (3, 4))
    assert h2 != chain_hash(None, (3, 4)), "a block's hash must depend on its prefix"
    a, b = pool.allocate(), pool.allocate()
    pool.register(a, h1)
    pool.register(b, h2)
    assert pool.lookup(h1) == a and pool.blocks[a].ref_count == 2  # shared, not copied
    pool.free(a), pool.free(a), pool.free(b)
    assert pool.num_free == 3  # cached blocks count as free: they can be evicted
    assert pool.lookup(h2) == b  # still cached after its owner finished
    pool.free(b)
    pool.allocate()  # the never-used block first
    evicted = pool.allocate()
    assert evicted == a  # least recently used cached block goes first
    assert pool.lookup(h1) is None and pool.lookup(h2) == b


def greedy(n: int) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)


PROMPTS = [[(i * 31 + j * 7) % 256 for j in range(n)] for i, n in enumerate([30, 5, 21, 44, 12, 2, 37, 9])]
LENGTHS = [25, 40, 7, 16, 33, 12, 5, 20]


@pytest.fixture(scope="module")
def alone(tiny_dir):
    llm = LLM(str(tiny_dir("llama")), kv_cache_mb=8, block_size=4)
    return [llm.generate([p], greedy(n))[0].token_ids for p, n in zip(PROMPTS, LENGTHS)]


def test_preemption_under_a_tiny_kv_pool_gives_same_tokens(tiny_dir, alone):
    llm = LLM(str(tiny_dir("llama")), block_size=4, max_batch_tokens=16, max_running=8)
    # rebuild with 24 blocks of 4 tokens: far less than the 8 requests need at once
    from minfer.memory.kv_cache import KVCache
    from minfer.scheduler.scheduler import Scheduler

    llm.kv = KVCache(llm.config, llm.device, llm.dtype, 24, 4)
    llm.scheduler = Scheduler(llm.kv, 16, 8)
    outs = llm.generate(PROMPTS, [greedy(n) for n in LENGTHS])
    assert llm.scheduler.num_preemptions > 0, "the pool was meant to run dry"
    assert [o.token_ids for o in outs] == alone
    assert llm.kv.pool.num_free == 24, "every block must come back"


def test_requests_join_and_leave_between_steps(tiny_dir, alone):
    llm = LLM(str(tiny_dir("llama")), kv_cache_mb=8, block_size=4, max_batch_tokens=8, max_running=8)
    ids, batch_sizes = [], []
    pending = list(zip(PROMPTS, LENGTHS))
    while pending or llm.has_unfinished():
        if pending and len(batch_sizes) % 3 == 0:  # a new request arrives every third step
            p, n = pending.pop(0)
            ids.append(llm.add_request(p, greedy(n)))
        batch = llm.scheduler.running[:]
        llm.step()
        batch_sizes.append(len(batch))
    assert max(batch_sizes) > 2, "requests should overlap in the running batch"
    assert [llm.pop_output(i).token_ids for i in ids] == alone


def test_prefix_cache_reuses_blocks_and_keeps_tokens(tiny_dir):
    llm = LLM(str(tiny_dir("qwen3")), kv_cache_mb=8, block_size=4)
    shared = [(j * 11) % 256 for j in range(40)]
    first = llm.generate([shared + [1, 2, 3]], greedy(10))[0]
    rid = llm.add_request(shared + [1, 2, 3], greedy(10))
    req = llm.reqs[rid]
    llm.step()
    assert req.num_cached == 40, "the 10 full prompt blocks should come from the cache"
    while llm.has_unfinished():
        llm.step()
    assert llm.pop_output(rid).token_ids == first.token_ids
    off = LLM(str(tiny_dir("qwen3")), kv_cache_mb=8, block_size=4, enable_prefix_cache=False)
    rid = off.add_request(shared + [1, 2, 3], greedy(10))
    off.step()
    assert off.reqs[rid].num_cached == 0


def test_abort_frees_blocks(tiny_dir):
    llm = LLM(str(tiny_dir("llama")), kv_cache_mb=8, block_size=4, enable_prefix_cache=False)
    free = llm.kv.pool.num_free
    rid = llm.add_request(PROMPTS[0], greedy(50))
    llm.step(), llm.step()
    assert llm.kv.pool.num_free < free
    llm.abort(rid)
    assert llm.kv.pool.num_free == free and llm.pop_output(rid).finish_reason == "abort"
