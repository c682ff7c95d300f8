"""Watch an engine from the outside, for tests that compare it with another engine or with transformers."""
from __future__ import annotations

import torch


def record_logits(llm) -> list[torch.Tensor]:
    """From now on, every forward pass of `llm` appends (a copy of) its logits to the returned list:
    one row per request that samples, in order. Only this engine is affected."""
    seen: list[torch.Tensor] = []
    forward = llm.model.forward

    def spy(*args, **kwargs):
        out = forward(*args, **kwargs)
        seen.append(out.clone())
        return out

    llm.model.forward = spy  # an instance attribute shadows the method for this engine only
    return seen
