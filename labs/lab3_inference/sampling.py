# GENERATED from reference/minfer/output/sampling.py by `minfer lab skeletons`: fill in the parts marked NotImplementedError.
"""From logits to tokens: greedy, temperature, top-k, top-p, each request with its own generator."""
from __future__ import annotations

import torch

from minfer.core import Req, SamplingParams


def sampling_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The distribution a request samples from: softmax(logits / T) restricted by top-k, then top-p.

    top_k = 0 and top_p = 1.0 mean "off". top-k keeps the k largest logits (ties with the k-th
    included); top-p keeps the smallest set of most likely tokens whose mass reaches top_p. The
    result sums to 1.
    """
    # TODO: divide, mask with -inf, softmax; for top-p sort descending and look at the mass *before* each token
    raise NotImplementedError('labs/lab3_inference/sampling.py: not implemented yet (divide, mask with -inf, softmax; for top-p sort descending and look at the mass *before* each token)')


def make_generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is None:
        g.seed()  # fresh entropy: unseeded requests differ from run to run, as users expect
    else:
        g.manual_seed(seed)
    return g


def sample(logits: torch.Tensor, reqs: list[Req]) -> list[int]:
    """One token per row of `logits` ([len(reqs), vocab])."""
    # TODO: greedy = argmax; otherwise torch.multinomial with the request's own generator
    raise NotImplementedError("labs/lab3_inference/sampling.py: not implemented yet (greedy = argmax; otherwise torch.multinomial with the request's own generator)")
