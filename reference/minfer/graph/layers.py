"""The model as readable math: RMSNorm, rotary embeddings, SwiGLU. Each matches the paper and the
Hugging Face reference operation for operation, so fp32 results agree to the last few bits."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """x / sqrt(mean(x², last dim) + eps) * weight, written into `out` when given."""
    ### BEGIN SOLUTION  hint: compute in float32 (x.float()), cast back to x.dtype before scaling by weight
    # normalise in fp32 whatever the storage dtype: the mean of squares loses range in bf16
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return torch.mul(weight, xf.to(x.dtype), out=out)
    ### END SOLUTION


def rope_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """The head_dim / 2 rotation frequencies: theta^(-2i / head_dim) for i = 0 ... head_dim/2 - 1."""
    ### BEGIN SOLUTION  hint: build the exponents 2i / head_dim in float32
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    ### END SOLUTION


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of each position's angles (position x frequency, the head_dim/2 angles repeated
    twice), shaped [T, 1, head_dim] to broadcast over heads."""
    ### BEGIN SOLUTION  hint: angles in float32: positions.float() outer inv_freq, then concatenate with itself
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype)[:, None, :], emb.sin().to(dtype)[:, None, :]
    ### END SOLUTION


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + d/2) of each head by the position's angle (the "rotate half" layout)."""
    ### BEGIN SOLUTION  hint: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), with x1, x2 the two halves
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
    ### END SOLUTION


def swiglu(gate_up: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """[T, 2I] (the gate projection's I columns, then the up projection's) -> silu(gate) * up, [T, I]."""
    ### BEGIN SOLUTION  hint: split the last dimension in two halves
    gate, up = gate_up.chunk(2, dim=-1)
    return torch.mul(F.silu(gate, inplace=True), up, out=out)  # gate_up is a dead temporary: reuse it
    ### END SOLUTION
