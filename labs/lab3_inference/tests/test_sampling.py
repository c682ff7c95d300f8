"""Sampling distributions, checked exactly against their definitions on a small vocabulary."""
from __future__ import annotations

import torch

from minfer.core import Req, SamplingParams

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def probs(lab, **kw) -> torch.Tensor:
    return lab.sampling.sampling_probs(LOGITS.clone(), SamplingParams(**kw))


def test_temperature_scales_logits_before_softmax(lab):
    torch.testing.assert_close(probs(lab, temperature=0.5), torch.softmax(LOGITS / 0.5, -1))
    torch.testing.assert_close(probs(lab, temperature=1.0), torch.softmax(LOGITS, -1))


def test_top_k_keeps_the_k_most_likely(lab):
    p = probs(lab, temperature=1.0, top_k=2)
    expected = torch.softmax(torch.tensor([2.0, 1.0]), -1)
    torch.testing.assert_close(p[:2], expected)
    assert p[2:].sum() == 0


def test_top_p_keeps_the_smallest_set_reaching_p(lab):
    full = torch.softmax(LOGITS, -1)  # [0.56, 0.21, 0.13, 0.08, 0.03, 0.004]
    p = probs(lab, temperature=1.0, top_p=0.7)  # 0.56 < 0.7, 0.56 + 0.21 >= 0.7: two tokens
    torch.testing.assert_close(p[:2], full[:2] / full[:2].sum())
    assert p[2:].sum() == 0


def test_sample_greedy_takes_the_argmax(lab):
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 1.0, 0.0]])
    reqs = [Req(i, [1], SamplingParams(temperature=0)) for i in range(2)]
    assert lab.sampling.sample(logits, reqs) == [1, 0]


def test_sample_uses_each_requests_generator(lab):
    from minfer.output.sampling import make_generator

    logits = torch.zeros(2, 50)
    def draw(seed):
        reqs = [Req(i, [1], SamplingParams(temperature=1.0, seed=seed), generator=make_generator(seed)) for i in range(2)]
        return [lab.sampling.sample(logits, reqs) for _ in range(5)]
    assert draw(7) == draw(7)
    assert draw(7) != draw(8)
