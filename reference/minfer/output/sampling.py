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
    ### BEGIN SOLUTION  hint: divide, mask with -inf, softmax; for top-p sort descending and look at the mass *before* each token
    logits = logits.float() / params.temperature
    if params.top_k > 0 and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p: a token stays if the mass before it is < top_p
        mass_before = sorted_probs.cumsum(-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(mass_before >= params.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs
    ### END SOLUTION


def make_generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is None:
        g.seed()  # fresh entropy: unseeded requests differ from run to run, as users expect
    else:
        g.manual_seed(seed)
    return g


def sample(logits: torch.Tensor, reqs: list[Req]) -> list[int]:
    """One token per row of `logits` ([len(reqs), vocab])."""
    ### BEGIN SOLUTION  hint: greedy = argmax; otherwise torch.multinomial with the request's own generator
    logits = logits.cpu()
    greedy = logits.argmax(dim=-1).tolist()
    out = []
    for i, req in enumerate(reqs):
        if req.params.greedy:
            out.append(greedy[i])
        else:
            probs = sampling_probs(logits[i], req.params)
            out.append(int(torch.multinomial(probs, 1, generator=req.generator)))
    return out
    ### END SOLUTION
