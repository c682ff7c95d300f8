"""From loaded tensors to an execution plan: fuse, lay out for the matmul kernel, cast, and pack into the weight tier."""
from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from ..hal import Device
from ..kernels import Prepacked, can_prepack, decode_kernel, prepack, torch_matmul
from ..loader.mapping import ModelTensors
from ..loader.config import ModelConfig
from ..memory.tiers import WeightPool
from .model import LayerWeights, Matmul, Model, reference_ops


def build_model(
    cfg: ModelConfig, t: ModelTensors, device: Device, dtype: torch.dtype, matmul: Matmul = torch_matmul,
    ops: SimpleNamespace | None = None, prepack_weights: bool = True,
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

    With `prepack_weights`, torch's matmul on a CPU gets the projections and the head prepacked for
    oneDNN as well (minfer.kernels.Prepacked): in float32 beside their plain copies in the arena
    (decode steps of 1-2 rows stream those faster), in bfloat16 instead of them. The packed copies
    live outside the arena, and count in `weight_bytes`; a tied head gets its own.
    """
    host: list[torch.Tensor] = []

    def put(x: torch.Tensor | None) -> int | None:  # queue a host tensor; its index is its slot
        if x is None:
            return None
        host.append(x.contiguous())
        return len(host) - 1

    out_in = getattr(matmul, "layout", "in_out") == "out_in"
    packing = prepack_weights and matmul is torch_matmul and can_prepack(device, dtype)
    keep_plain = not packing or dtype == torch.float32
    packs: list[torch.Tensor] = []

    def pack(w: torch.Tensor) -> int:
        packs.append(prepack(w.to(dtype)))
        return len(packs) - 1

    def fuse(*ws: torch.Tensor) -> int | tuple:  # [out, in] pieces stacked along out, in the kernel's layout
        w = torch.cat(ws, dim=0)
        plain = put(w if out_in else w.t()) if keep_plain else None
        return (pack(w), plain) if packing else plain

    layers = [dict(
        qkv=fuse(lt.q, lt.k, lt.v),
        qkv_bias=None if lt.q_bias is None else put(torch.cat([lt.q_bias, lt.k_bias, lt.v_bias])),
        o=fuse(lt.o), gate_up=fuse(lt.gate, lt.up), down=fuse(lt.down),
        attn_norm=put(lt.attn_norm), mlp_norm=put(lt.mlp_norm), q_norm=put(lt.q_norm), k_norm=put(lt.k_norm),
    ) for lt in t.layers]
    embed, final_norm = put(t.embed), put(t.final_norm)
    # the head's plain copy stays [vocab, hidden] (tied: it is the table), transposed below if need be
    head_plain = embed if t.lm_head is t.embed else put(t.lm_head) if keep_plain else None
    lm_head = (pack(t.lm_head), head_plain) if packing else head_plain
    pool = WeightPool(device, dtype, [tuple(x.shape) for x in host])
    placed = [pool.place(i, x) for i, x in enumerate(host)]

    def get(i: int | tuple | None) -> torch.Tensor | Prepacked | None:
        if isinstance(i, tuple):
            return Prepacked(packs[i[0]], get(i[1]))
        return None if i is None else placed[i]

    weight_bytes = pool.nbytes + sum(w.numel() * w.element_size() for w in packs)
    start = time.perf_counter()  # the compiler's time is part of what an optimisation costs: reported by the bench
    kernel = decode_kernel(device, dtype) if ops is None else None
    head = get(lm_head)  # [vocab, hidden] = [out, in]; a kernel wanting [in, out] reads it transposed, uncopied
    head = head if out_in else head.t()
    layer_weights = [LayerWeights(**{k: get(v) for k, v in d.items()}) for d in layers]
    # what a one-row decode step reads: every weight as the matmul streams it, one embedding row aside
    step = [head, get(final_norm)] + [w for lw in layer_weights for w in vars(lw).values() if w is not None]
    step = [w.one_row if isinstance(w, Prepacked) else w for w in step]
    step_bytes = sum(w.numel() * w.element_size() for w in step)
    return Model(cfg, get(embed), layer_weights, get(final_norm), head, matmul, weight_bytes=weight_bytes,
                 step_bytes=step_bytes,
                 ops=ops or reference_ops(), fused_prefill=ops is None,
                 decode_kernel=kernel, compile_s=time.perf_counter() - start)
