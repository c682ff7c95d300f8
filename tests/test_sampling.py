"""Sampling against its definitions, SamplingParams validation, seeded reproducibility."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from minfer import SamplingParams
from minfer.core import Req
from minfer.output.sampling import make_generator, sample, sampling_probs

LOGITS = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0])


def reference_probs(logits: np.ndarray, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """The textbook definitions, written independently of the engine (numpy, explicit loops)."""
    z = logits / temperature
    order = np.argsort(-z, kind="stable")
    keep = np.zeros(len(z), dtype=bool)
    keep[order[: top_k if top_k > 0 else len(z)]] = True
    p = np.where(keep, np.exp(z - z.max()), 0.0)
    p /= p.sum()
    if top_p < 1.0:
        mass, kept = 0.0, np.zeros(len(z), dtype=bool)
        for i in order:  # smallest set of most likely tokens whose mass reaches top_p
            if mass >= top_p or p[i] == 0:
                break
            kept[i] = True
            mass += p[i]
        p = np.where(kept, p, 0.0)
        p /= p.sum()
    return p


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, -1, 1.0), (0.7, -1, 1.0), (1.0, 3, 1.0), (1.0, -1, 0.8),
                                                     (1.3, 5, 0.9), (1.0, -1, 0.5), (1.0, 1, 1.0)])
def test_probs_match_definition(temperature, top_k, top_p):
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    got = sampling_probs(LOGITS, params).numpy()
    np.testing.assert_allclose(got, reference_probs(LOGITS.numpy().astype(np.float64), temperature, top_k, top_p), atol=1e-6)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, -1, 1.0), (1.0, 3, 1.0), (0.8, -1, 0.75), (1.2, 4, 0.9)])
def test_sampled_frequencies_match_definition(temperature, top_k, top_p):
    """Chi-square goodness of fit of 20,000 draws through the engine's own sampling path."""
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, seed=123)
    req = Req(0, [0], params, generator=make_generator(123))
    n = 20_000
    draws = [sample(LOGITS[None], [req])[0] for _ in range(n)]
    counts = np.bincount(draws, minlength=len(LOGITS))
    expected = reference_probs(LOGITS.numpy().astype(np.float64), temperature, top_k, top_p) * n
    assert counts[expected == 0].sum() == 0, "sampled a token the filters exclude"
    live = expected > 0
    chi2 = float((((counts - expected) ** 2)[live] / expected[live]).sum())
    # 99.9th percentile of chi-square with <= 7 degrees of freedom is 24.3
    assert chi2 < 24.3, (chi2, counts, expected.round())


def test_top_p_keeps_token_that_crosses_threshold():
    # probs ~ [0.5, 0.3, 0.2]: top_p=0.6 must keep the first two (0.5 < 0.6), not one
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    p = sampling_probs(logits, SamplingParams(top_p=0.6))
    assert (p > 0).tolist() == [True, True, False]


def test_greedy_ignores_generator():
    req = Req(0, [0], SamplingParams(temperature=0))
    assert sample(LOGITS[None], [req]) == [0]


def test_seed_reproducible_and_distinct():
    def run(seed):
        req = Req(0, [0], SamplingParams(seed=seed), generator=make_generator(seed))
        return [sample(LOGITS[None], [req])[0] for _ in range(50)]

    assert run(7) == run(7)
    assert run(7) != run(8)


@pytest.mark.parametrize("field,value", [("temperature", -1), ("temperature", float("nan")), ("top_k", -2),
                                         ("top_k", 1.5), ("top_p", 0.0), ("top_p", 1.5), ("max_tokens", 0),
                                         ("seed", "x"), ("stop", [""]), ("ignore_eos", "yes")])
def test_invalid_params_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})


def test_unknown_field_rejected():
    with pytest.raises(ValueError, match="temprature"):
        SamplingParams.from_dict({"temprature": 0.5})
