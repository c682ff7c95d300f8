"""Logits of every architecture we support match transformers at prefill and at every decode step."""
from __future__ import annotations

import pytest
import torch

from minfer import LLM, SamplingParams
from minfer_course.spy import record_logits

KINDS = ["llama", "llama-untied", "qwen2", "qwen3"]


def hf_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].float()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk", [512, 7])  # whole-prompt prefill, and chunked prefill over cached blocks
@pytest.mark.parametrize("prefill", ["sdpa", "plain"])  # PyTorch's fused kernel, or the lab's own `attend`
def test_logits_match_transformers(tiny_dir, kind, chunk, prefill):
    import transformers

    from minfer_course.labs import load

    path = tiny_dir(kind)
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    labs = {"lab3": load("lab3", "reference")} if prefill == "plain" else None
    llm = LLM(str(path), kv_cache_mb=8, block_size=4, max_batch_tokens=chunk, max_running=4, labs=labs)
    assert llm.model.fused_prefill == (prefill == "sdpa")
    seen = record_logits(llm)
    prompt = [(7 * i + 3) % 256 for i in range(37)]
    out = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))[0]
    assert len(out.token_ids) == 12
    ids = list(prompt)
    sampled = [s for s in seen if s.shape[0] == 1]  # chunks that end mid-prompt give no logits rows
    assert len(sampled) == 12
    for step, ours in enumerate(sampled):
        ref = hf_logits(hf, ids)
        torch.testing.assert_close(ours[0], ref, atol=1e-4, rtol=1e-4, msg=f"{kind}: step {step}")
        ids.append(out.token_ids[step])


@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_batched_requests_match_alone(tiny_dir, kind):
    """Requests of different lengths in one continuous batch give the same tokens as alone."""
    llm = LLM(str(tiny_dir(kind)), kv_cache_mb=8, block_size=4, max_batch_tokens=16, max_running=8)
    prompts = [[(i * 13 + j * 5) % 256 for j in range(n)] for i, n in enumerate([3, 17, 40, 1, 9, 64])]
    params = [SamplingParams(temperature=0, max_tokens=m, ignore_eos=True) for m in [5, 20, 3, 11, 8, 6]]
    together = llm.generate(prompts, params)
    for p, sp, got in zip(prompts, params, together):
        alone = llm.generate([p], sp)[0]
        assert got.token_ids == alone.token_ids
        assert len(got.token_ids) == sp.max_tokens


@pytest.mark.parametrize("chunk", [512, 16])
def test_score_matches_transformers_logprobs(tiny_dir, chunk):
    """LLM.score: every position's log-probability, whole or in chunks over cached blocks."""
    import transformers

    path = tiny_dir("qwen2")
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    llm = LLM(str(path), kv_cache_mb=8, block_size=4, max_batch_tokens=chunk, max_running=4)
    ids = [(5 * i + 1) % 256 for i in range(50)]
    with torch.no_grad():
        ref = torch.log_softmax(hf(torch.tensor([ids])).logits[0, :-1].float(), -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    torch.testing.assert_close(llm.score(ids), ref, atol=1e-4, rtol=1e-4)
    assert llm.kv.pool.num_free == llm.kv.pool.num_blocks, "score() gives its KV blocks back"
    llm.add_request([1, 2, 3])
    with pytest.raises(RuntimeError, match="idle engine"):
        llm.score(ids)


def test_nan_garbage_in_unwritten_kv_memory_never_leaks(tiny_dir):
    """Fresh device memory may hold NaN. Attention reads whole blocks (a context's last block past
    its end, and the padding of a decode group), so blocks are zeroed when handed out."""
    path = str(tiny_dir("llama"))
    prompts = [[(i * 13 + j * 5) % 256 for j in range(n)] for i, n in enumerate([3, 17, 40, 9])]
    params = [SamplingParams(temperature=0, max_tokens=m, ignore_eos=True) for m in [9, 5, 7, 11]]
    clean = LLM(path, kv_cache_mb=8, block_size=4, max_batch_tokens=64, max_running=8).generate(prompts, params)
    llm = LLM(path, kv_cache_mb=8, block_size=4, max_batch_tokens=64, max_running=8)
    for k, v in llm.kv.layers:
        k.fill_(float("nan"))
        v.fill_(float("nan"))
    seen = record_logits(llm)
    dirty = llm.generate(prompts, params)
    assert all(torch.isfinite(x).all() for x in seen)
    assert [o.token_ids for o in dirty] == [o.token_ids for o in clean]
