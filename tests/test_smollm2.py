"""The real model: SmolLM2-135M greedy output token-identical to transformers on the same GGUF."""
from __future__ import annotations

import pytest
import torch

from minfer import SamplingParams

pytestmark = pytest.mark.slow

PROMPTS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain what a hash table is to a child.",
    "def fibonacci(n):",
    "Translate to French: The weather is nice today.",
    "List three uses of copper.",
    "Why is the sky blue? Answer briefly.",
    "Once upon a time, in a small village,",
]
NEW_TOKENS = 64


@pytest.fixture(scope="module")
def prompt_ids(smollm2):
    # half through the chat template, half raw: both are ways users drive the model
    return [smollm2.tokenizer.encode(smollm2.chat_prompt([{"role": "user", "content": p}]) if i % 2 == 0 else p)
            for i, p in enumerate(PROMPTS)]


@pytest.fixture(scope="module")
def hf_tokens(hf_smollm2, prompt_ids):
    outs = []
    for ids in prompt_ids:
        with torch.no_grad():
            g = hf_smollm2.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False,
                                    attention_mask=torch.ones(1, len(ids), dtype=torch.long))
        outs.append(g[0, len(ids):].tolist())
    return outs


GREEDY = SamplingParams(temperature=0, max_tokens=NEW_TOKENS, ignore_eos=True)


def test_tokenizer_agrees_with_transformers(smollm2, hf_smollm2_tokenizer, prompt_ids):
    for p in PROMPTS:
        assert smollm2.tokenizer.encode(p) == hf_smollm2_tokenizer.encode(p, add_special_tokens=False)


def test_each_prompt_alone_matches_transformers(smollm2, prompt_ids, hf_tokens):
    for i, ids in enumerate(prompt_ids):
        out = smollm2.generate([ids], GREEDY)[0]
        assert out.token_ids == hf_tokens[i], f"prompt {i}: {PROMPTS[i]!r}"


def test_all_prompts_in_one_batch_match_transformers(smollm2, prompt_ids, hf_tokens):
    outs = smollm2.generate(prompt_ids, GREEDY)
    for i, out in enumerate(outs):
        assert out.token_ids == hf_tokens[i], f"prompt {i}: {PROMPTS[i]!r}"


def test_generated_text_is_sensible(smollm2):
    prompt = smollm2.chat_prompt([{"role": "user", "content": "What is the capital of France?"}])
    out = smollm2.generate([prompt], SamplingParams(temperature=0, max_tokens=32))[0]
    assert "Paris" in out.text
    assert out.finish_reason in ("stop", "length")


def test_seeded_sampling_reproducible_across_batches(smollm2):
    p = SamplingParams(temperature=0.9, top_p=0.9, top_k=50, seed=1234, max_tokens=24)
    alone = smollm2.generate(["Tell me a story about a robot."], p)[0]
    batched = smollm2.generate(["Tell me a story about a robot.", "Hello!", "Count to five."],
                               [p, SamplingParams(temperature=1.0, max_tokens=30), SamplingParams(temperature=0, max_tokens=8)])[0]
    assert alone.token_ids == batched.token_ids
    other = smollm2.generate(["Tell me a story about a robot."], SamplingParams(temperature=0.9, top_p=0.9, top_k=50, seed=99, max_tokens=24))[0]
    assert other.token_ids != alone.token_ids
