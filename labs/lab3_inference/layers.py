# GENERATED from reference/minfer/graph/layers.py by `minfer lab skeletons`: fill in the parts marked NotImplementedError.
"""The model as readable math: RMSNorm, rotary embeddings, SwiGLU. Each matches the paper and the
Hugging Face reference operation for operation, so fp32 results agree to the last few bits."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """x / sqrt(mean(x², last dim) + eps) * weight, written into `out` when given."""
    # TODO: compute in float32 (x.float()), cast back to x.dtype before scaling by weight
    raise NotImplementedError('labs/lab3_inference/layers.py: not implemented yet (compute in float32 (x.float()), cast back to x.dtype before scaling by weight)')


def rope_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """The head_dim / 2 rotation frequencies: theta^(-2i / head_dim) for i = 0 ... head_dim/2 - 1."""
    # TODO: build the exponents 2i / head_dim in float32
    raise NotImplementedError('labs/lab3_inference/layers.py: not implemented yet (build the exponents 2i / head_dim in float32)')


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of each position's angles (position x frequency, the head_dim/2 angles repeated
    twice), shaped [T, 1, head_dim] to broadcast over heads."""
    # TODO: angles in float32: positions.float() outer inv_freq, then concatenate with itself
    raise NotImplementedError('labs/lab3_inference/layers.py: not implemented yet (angles in float32: positions.float() outer inv_freq, then concatenate with itself)')


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + d/2) of each head by the position's angle (the "rotate half" layout)."""
    # TODO: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), with x1, x2 the two halves
    raise NotImplementedError('labs/lab3_inference/layers.py: not implemented yet ((x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), with x1, x2 the two halves)')


def swiglu(gate_up: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """[T, 2I] (the gate projection's I columns, then the up projection's) -> silu(gate) * up, [T, I]."""
    # TODO: split the last dimension in two halves
    raise NotImplementedError('labs/lab3_inference/layers.py: not implemented yet (split the last dimension in two halves)')
