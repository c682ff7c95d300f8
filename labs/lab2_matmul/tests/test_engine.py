"""Lab 2 public test: a (tiny, random) Llama generates through your kernels, as through torch.

Every linear layer of the model and its LM head become one launch of your kernel (see
minfer/kernels/__init__.py). Simulated threads are slow, so the model is tiny: hidden size 16."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

KINDS = ["naive", "tiled", "regblock"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from minfer_course.tiny_model import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def generate_with_logits(llm, prompt: list[int], n: int):
    from minfer import SamplingParams
    from minfer_course.spy import record_logits

    seen = record_logits(llm)
    out = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=n, ignore_eos=True))[0]
    return out.token_ids, torch.cat(seen)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_tiny_llama_generates_through_your_kernel(kernels, tiny, kind):
    from minfer import LLM

    prompt, kw = [5, 77, 130, 200, 9], dict(kv_cache_mb=1, block_size=4)
    yours = LLM(str(tiny), matmul=f"numba-{kind}", labs={"lab2": SimpleNamespace(matmul_numba=kernels)}, **kw)
    tokens, logits = generate_with_logits(yours, prompt, 3)
    ref_tokens, ref_logits = generate_with_logits(LLM(str(tiny), **kw), prompt, 3)
    assert tokens == ref_tokens
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)
