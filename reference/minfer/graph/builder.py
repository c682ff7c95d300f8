"""From loaded tensors to an execution plan: fuse, lay out for the matmul kernel, cast, and pack into the weight tier."""
from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from ..hal import Device
from ..kernels import decode_kernel, torch_matmul
from ..loader.mapping import ModelTensors
from ..loader.config import ModelConfig
from ..memory.tiers import WeightPool
from .model import LayerWeights, Matmul, Model, reference_ops


def build_model(
    cfg: ModelConfig, t: ModelTensors, device: Device, dtype: torch.dtype, matmul: Matmul = torch_matmul,
    ops: SimpleNamespace | None = None,
) -> Model:
    """Fuse q/k/v and gate/up, lay every weight out as `matmul` wants it, then pack everything into
    the weight tier.

    Every linear layer and the LM head is one call of `matmul` (see minfer.kernels.get_matmul).
    Its `layout` decides the weights' layout: torch takes the checkpoint's [out, in] as it is; lab
    2's kernels get [in, out], transposed once here. The embedding table stays [vocab, hidden] (a
    token's embedding is a row); tied to the head, a kernel wanting [in, out] reads it transposed.
    `ops` (.layers, .attention) are the modules the forward pass calls: a student's (lab 3) replace
    the reference ones, and then their `gather_kv` and `attend` serve prefill and decode too, rather
    than PyTorch's SDPA and the compiled decode kernel.
    """
    host: list[torch.Tensor] = []

    def put(x: torch.Tensor | None) -> int | None:  # queue a host tensor; its index is its slot
        if x is None:
            return None
        host.append(x.contiguous())
        return len(host) - 1

    out_in = getattr(matmul, "layout", "in_out") == "out_in"

    def fuse(*ws: torch.Tensor) -> int:  # [out, in] pieces stacked along out, in the kernel's layout
        w = torch.cat(ws, dim=0)
        return put(w if out_in else w.t())

    layers = [dict(
        qkv=fuse(lt.q, lt.k, lt.v),
        qkv_bias=None if lt.q_bias is None else put(torch.cat([lt.q_bias, lt.k_bias, lt.v_bias])),
        o=fuse(lt.o), gate_up=fuse(lt.gate, lt.up), down=fuse(lt.down),
        attn_norm=put(lt.attn_norm), mlp_norm=put(lt.mlp_norm), q_norm=put(lt.q_norm), k_norm=put(lt.k_norm),
    ) for lt in t.layers]
    embed, final_norm = put(t.embed), put(t.final_norm)
    lm_head = embed if t.lm_head is t.embed else put(t.lm_head)
    pool = WeightPool(device, dtype, [tuple(x.shape) for x in host])
    placed = [pool.place(i, x) for i, x in enumerate(host)]
    get = lambda i: None if i is None else placed[i]  # noqa: E731
    start = time.perf_counter()  # the compiler's time is part of what an optimisation costs: reported by the bench
    kernel = decode_kernel(device, dtype) if ops is None else None
    head = get(lm_head)  # [vocab, hidden] = [out, in]; a kernel wanting [in, out] reads it transposed, uncopied
    return Model(cfg, get(embed), [LayerWeights(**{k: get(v) for k, v in d.items()}) for d in layers],
                 get(final_norm), head if out_in else head.t(), matmul, weight_bytes=pool.nbytes,
                 ops=ops or reference_ops(), fused_prefill=ops is None,
                 decode_kernel=kernel, compile_s=time.perf_counter() - start)
