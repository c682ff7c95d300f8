"""The decoder as an execution plan: fused weights laid out for the matmul kernel, and one forward over a flat batch.

All requests' new tokens are concatenated into one [T, hidden] matrix, so every projection is one
matrix product for the whole batch; only attention needs to know where one request ends.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Callable

import torch

from ..diagnostics.timeline import Timeline, no_span
from ..loader.config import ModelConfig
from ..memory.workspace import Workspace
from . import attention, layers
from .attention import AttnMeta

# (x [T, in], w, out [T, out] | None) -> x @ W^T, written into `out` when given; w is stored as the
# kernel's `layout` attribute says: [out, in] (torch) or [in, out] (lab 2's kernels)
Matmul = Callable[..., torch.Tensor]


def reference_ops(compiled: ModuleType | None = None) -> SimpleNamespace:
    """The modules whose functions the forward pass calls; lab 3 swaps in a student's. `compiled`
    (minfer.kernels.cpu_kernels) stands in for the per-token operations of `layers`, under the same contracts."""
    if compiled is None:
        return SimpleNamespace(layers=layers, attention=attention)
    tables = {name: getattr(layers, name) for name in ("rope_inv_freq", "rope_cos_sin")}  # once per step
    ops = {name: getattr(compiled, name) for name in ("rms_norm", "apply_rope", "swiglu")}
    return SimpleNamespace(layers=SimpleNamespace(**tables, **ops), attention=attention, compiled=compiled)


@dataclass
class LayerWeights:
    # projections as [out, in] (or [in, out]: see Matmul), prepacked (minfer.kernels.prepack) or
    # quantized (minfer.kernels.Int8Weight): whatever the model's `matmul` takes
    qkv: torch.Tensor  # [q + 2 kv, hidden]: q, k and v projections fused into one product
    qkv_bias: torch.Tensor | None
    o: torch.Tensor  # [hidden, q]
    gate_up: torch.Tensor  # [2 * intermediate, hidden]: gate and up fused
    down: torch.Tensor  # [hidden, intermediate]
    attn_norm: torch.Tensor
    mlp_norm: torch.Tensor
    q_norm: torch.Tensor | None
    k_norm: torch.Tensor | None


@dataclass
class Model:
    cfg: ModelConfig
    embedding: torch.Tensor  # [vocab, hidden]: a token's embedding is its row
    layers: list[LayerWeights]
    final_norm: torch.Tensor
    lm_head: torch.Tensor  # in the matmul's layout, prepacked or quantized like the projections; the table when tied
    matmul: Matmul
    weight_bytes: int = 0  # size of the weight tier
    step_bytes: int = 0  # bytes of weights a one-row decode step reads (the bench's bandwidth bound)
    ops: SimpleNamespace = field(default_factory=reference_ops)  # .layers and .attention modules
    fused_prefill: bool = True  # prefill through PyTorch's SDPA instead of ops.attention.attend
    # decode through a paged-attention kernel (kernels/cpu_numba.py on a CPU, kernels/sdpa_decode.py on a GPU); None: ops.attention
    decode_kernel: Callable[..., None] | None = None
    prefill_kernel: Callable[..., None] | None = None  # prompt chunks through a paged kernel (AttnMeta's)
    # a decode-only step's layers in one compiled call (kernels/cpu_numba.py's DecodeLayers); None: run_layers
    decode_layers: Callable[..., None] | None = None
    compile_s: float = 0.0  # seconds spent compiling (or loading from numba's cache) the compiled kernels
    timeline: Timeline | None = None  # when set, every operator of every layer is timed

    def __post_init__(self) -> None:
        self.inv_freq = self.ops.layers.rope_inv_freq(self.cfg.head_dim, self.cfg.rope_theta).to(self.embedding.device)

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.dtype

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding.index_select(0, ids)

    def buffer_plan(self, t: int) -> dict[str, tuple[int, ...]]:
        """The step's buffers for `t` tokens; each is reused by every layer."""
        c = self.cfg
        return {"x": (t, c.hidden_size), "h": (t, c.hidden_size), "qkv": (t, c.q_size + 2 * c.kv_size),
                "attn": (t, c.num_heads, c.head_dim), "proj": (t, c.hidden_size),
                "gate_up": (t, 2 * c.intermediate_size), "act": (t, c.intermediate_size)}

    def workspace_bytes(self, t: int) -> int:
        return sum(math.prod(shape) for shape in self.buffer_plan(t).values()) * self.dtype.itemsize

    def forward(
        self,
        ids: torch.Tensor,  # [T]
        positions: torch.Tensor,  # [T]
        meta: AttnMeta,
        kv_cache: list[tuple[torch.Tensor, torch.Tensor]],  # per layer (k, v), each [KVH, slots, D]
        logit_rows: torch.Tensor,  # rows whose next-token logits are wanted
        ws: Workspace,
    ) -> torch.Tensor:
        mm, eps, L = self.matmul, self.cfg.rms_norm_eps, self.ops.layers
        meta.fused_prefill = self.fused_prefill  # the model, not the batch, picks the attention kernels
        meta.decode_kernel, meta.prefill_kernel = self.decode_kernel, self.prefill_kernel
        t = ids.shape[0]
        b = {name: ws.take(shape, self.dtype) for name, shape in self.buffer_plan(t).items()}
        x = b["x"]
        span = self.timeline.span if self.timeline else no_span
        with span("embed"):
            x.copy_(self.embed(ids))
            cos, sin = L.rope_cos_sin(positions, self.inv_freq, x.dtype)
        if self.decode_layers is not None and self.decode_layers.takes(meta, t):
            with span("layers (compiled)"):  # every layer in one call, the same kernels as below
                self.decode_layers(x, cos, sin, meta, kv_cache, b)
        else:
            self.run_layers(x, cos, sin, meta, kv_cache, b, span)
        with span("lm_head"):
            last = L.rms_norm(x.index_select(0, logit_rows), self.final_norm, eps)
            return mm(last, self.lm_head).float()

    def run_layers(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, meta: AttnMeta,
                   kv_cache: list[tuple[torch.Tensor, torch.Tensor]], b: dict[str, torch.Tensor], span) -> None:
        """The decoder layers, one after another, on x [T, hidden] in place."""
        cfg, mm, eps, t = self.cfg, self.matmul, self.cfg.rms_norm_eps, x.shape[0]
        L: ModuleType = self.ops.layers
        rms_norm, apply_rope, swiglu = L.rms_norm, L.apply_rope, L.swiglu
        h, attn, proj = b["h"], b["attn"], b["proj"]
        for w, (k_cache, v_cache) in zip(self.layers, kv_cache):
            with span("attn_norm"):
                rms_norm(x, w.attn_norm, eps, out=h)
            with span("qkv_proj"):
                qkv = mm(h, w.qkv, b["qkv"])
                if w.qkv_bias is not None:
                    qkv += w.qkv_bias
            q, k, v = qkv.split([cfg.q_size, cfg.kv_size, cfg.kv_size], dim=-1)
            q = q.view(t, cfg.num_heads, cfg.head_dim)
            k = k.view(t, cfg.num_kv_heads, cfg.head_dim)
            v = v.view(t, cfg.num_kv_heads, cfg.head_dim)
            with span("rope"):
                if w.q_norm is not None:
                    q, k = rms_norm(q, w.q_norm, eps), rms_norm(k, w.k_norm, eps)
                q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            with span("attention"):
                self.ops.attention.paged_attention(q, k, v, k_cache, v_cache, meta, out=attn)
            with span("o_proj"):
                x += mm(attn.view(t, cfg.q_size), w.o, proj)
            with span("mlp_norm"):
                rms_norm(x, w.mlp_norm, eps, out=h)
            with span("mlp"):
                x += mm(swiglu(mm(h, w.gate_up, b["gate_up"]), out=b["act"]), w.down, proj)
