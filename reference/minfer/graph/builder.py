"""From loaded tensors to an execution plan: fuse, transpose once, cast, and pack into the weight tier."""
from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from ..hal import Device
from ..kernels import decode_kernel, lm_head_matmul, torch_matmul
from ..loader.mapping import ModelTensors
from ..loader.config import ModelConfig
from ..memory.tiers import WeightPool
from .model import LayerWeights, Matmul, Model, reference_ops


def build_model(
    cfg: ModelConfig, t: ModelTensors, device: Device, dtype: torch.dtype, matmul: Matmul = torch_matmul,
    ops: SimpleNamespace | None = None,
) -> Model:
    """Fuse q/k/v and gate/up, transpose once to [in, out], then pack everything into the weight tier.

    Every linear layer is one call of `matmul` (see minfer.kernels.get_matmul); the LM head is one
    call of `lm_head_matmul`, which is `matmul` too unless torch has a faster form for it.
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

    def fuse_t(*ws: torch.Tensor) -> int:
        return put(torch.cat(ws, dim=0).t())

    layers = [dict(
        qkv_t=fuse_t(lt.q, lt.k, lt.v),
        qkv_bias=None if lt.q_bias is None else put(torch.cat([lt.q_bias, lt.k_bias, lt.v_bias])),
        o_t=fuse_t(lt.o), gate_up_t=fuse_t(lt.gate, lt.up), down_t=fuse_t(lt.down),
        attn_norm=put(lt.attn_norm), mlp_norm=put(lt.mlp_norm), q_norm=put(lt.q_norm), k_norm=put(lt.k_norm),
    ) for lt in t.layers]
    # embedding and LM head keep the checkpoint's [vocab, hidden] layout: a token's row is contiguous,
    # and it is the layout the head's product is fastest in (kernels.lm_head_matmul)
    embed, final_norm = put(t.embed), put(t.final_norm)
    lm_head = embed if t.lm_head is t.embed else put(t.lm_head)
    pool = WeightPool(device, dtype, [tuple(x.shape) for x in host])
    placed = [pool.place(i, x) for i, x in enumerate(host)]
    get = lambda i: None if i is None else placed[i]  # noqa: E731
    start = time.perf_counter()  # the compiler's time is part of what an optimisation costs: reported by the bench
    kernel = decode_kernel(device, dtype) if ops is None else None
    return Model(cfg, get(embed), [LayerWeights(**{k: get(v) for k, v in d.items()}) for d in layers],
                 get(final_norm), get(lm_head), matmul, lm_head_matmul(matmul, device, dtype), weight_bytes=pool.nbytes,
                 ops=ops or reference_ops(), fused_prefill=ops is None,
                 decode_kernel=kernel, compile_s=time.perf_counter() - start)
