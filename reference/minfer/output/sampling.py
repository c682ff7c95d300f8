"""From logits to tokens: greedy, temperature, top-k, top-p, each request with its own generator."""
from __future__ import annotations

import torch

from ..core import Req, SamplingParams


def sampling_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The distribution a request samples from: softmax(logits / T) restricted by top-k, then top-p."""
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


def make_generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is None:
        g.seed()  # fresh entropy: unseeded requests differ from run to run, as users expect
    else:
        g.manual_seed(seed)
    return g


def sample(logits: torch.Tensor, reqs: list[Req]) -> list[int]:
    """One token per row of `logits` ([len(reqs), vocab])."""
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
