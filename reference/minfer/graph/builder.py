"""From loaded tensors to an execution plan: fuse, lay out for the matmul kernel, cast, and pack into the weight tier."""
from __future__ import annotations

import functools
import time
from types import SimpleNamespace

import torch

from ..hal import Device
from ..kernels import QUANTIZE, Int8Weight, can_prepack, can_quantize, cpu_kernels, prepack, quantize_int8, torch_matmul
from ..kernels.sdpa_decode import sdpa_decode
from ..loader.mapping import ModelTensors
from ..loader.config import ModelConfig
from ..memory.tiers import WeightPool
from .model import LayerWeights, Matmul, Model, reference_ops


def build_model(
    cfg: ModelConfig, t: ModelTensors, device: Device, dtype: torch.dtype, matmul: Matmul = torch_matmul,
    ops: SimpleNamespace | None = None, prepack_weights: bool = True, quantize: str | None = None,
) -> Model:
    """Fuse q/k/v and gate/up, lay every weight out as `matmul` wants it, then pack everything into
    the weight tier.

    Every linear layer and the LM head is one call of `matmul` (see minfer.kernels.get_matmul).
    Its `layout` decides the weights' layout: torch takes the checkpoint's [out, in] as it is; lab
    2's kernels get [in, out], transposed once here. The embedding table stays [vocab, hidden] (a
    token's embedding is a row); tied to the head, a kernel wanting [in, out] reads it transposed.
    `ops` (.layers, .attention) are the modules the forward pass calls: a student's (lab 3) replace
    the reference ones, and then their `gather_kv` and `attend` serve prefill and decode too, rather
    than PyTorch's SDPA and the compiled kernels.

    With `prepack_weights` on a CPU, the projections and the head are prepacked (kernels.prepack: into
    matmul.c's panels in float32 where it was built, else oneDNN's layout) outside the arena, which keeps
    the embedding, norms and biases (a tied head: a second copy). `quantize="int8"` (a CPU, bfloat16)
    makes them minfer.kernels.Int8Weight: int8 for decode steps, their bfloat16 widening for the rest.
    """
    if quantize is not None and quantize not in QUANTIZE:
        raise ValueError(f"quantize={quantize!r} is not supported; choose one of {', '.join(QUANTIZE)} or None")
    if quantize is not None and (matmul is not torch_matmul or not can_quantize(device, dtype)):
        raise ValueError(f"quantize={quantize!r} runs torch's int8 kernel, which needs matmul='torch', a CPU and "
                         f"dtype bfloat16 (this engine: {device.name}, {str(dtype).removeprefix('torch.')}); "
                         f"use dtype='bfloat16' (--dtype bfloat16) on a CPU")
    host: list[torch.Tensor] = []

    def put(x: torch.Tensor | None) -> int | None:  # queue a host tensor; its index is its slot
        if x is None:
            return None
        host.append(x.contiguous())
        return len(host) - 1

    out_in = getattr(matmul, "layout", "in_out") == "out_in"
    packing = prepack_weights and matmul is torch_matmul and can_prepack(device, dtype)
    start = time.perf_counter()  # the compilers' time is part of what an optimisation costs: reported by the bench
    compiled = cpu_kernels(device, dtype) if ops is None else None  # never in place of a student's ops (lab 3)
    panel_rows = compiled.panels(dtype) if compiled is not None and packing else None  # builds matmul.c if need be
    compile_s = time.perf_counter() - start
    packs: list[torch.Tensor | Int8Weight] = []  # slots -1, -2, ...: outside the arena

    def linear(w: torch.Tensor) -> int:  # [out, in]
        if quantize == "int8":
            packs.append(quantize_int8(w, dtype, pack=packing))
            return -len(packs)
        if packing:
            packs.append(prepack(w.to(dtype), panels=bool(panel_rows)))
            return -len(packs)
        return put(w if out_in else w.t())

    def fuse(*ws: torch.Tensor) -> int:  # [out, in] pieces stacked along out, in the kernel's layout
        return linear(torch.cat(ws, dim=0))

    layers = [dict(
        qkv=fuse(lt.q, lt.k, lt.v),
        qkv_bias=None if lt.q_bias is None else put(torch.cat([lt.q_bias, lt.k_bias, lt.v_bias])),
        o=fuse(lt.o), gate_up=fuse(lt.gate, lt.up), down=fuse(lt.down),
        attn_norm=put(lt.attn_norm), mlp_norm=put(lt.mlp_norm), q_norm=put(lt.q_norm), k_norm=put(lt.k_norm),
    ) for lt in t.layers]
    embed, final_norm = put(t.embed), put(t.final_norm)
    # a plain head stays [vocab, hidden] (tied: it is the table), transposed below for [in, out] kernels
    lm_head = linear(t.lm_head) if packing or quantize else embed if t.lm_head is t.embed else put(t.lm_head)
    pool = WeightPool(device, dtype, [tuple(x.shape) for x in host])
    placed = [pool.place(i, x) for i, x in enumerate(host)]
    get = lambda i: None if i is None else placed[i] if i >= 0 else packs[-i - 1]  # noqa: E731
    weight_bytes = pool.nbytes + sum(_nbytes(w) for w in packs)
    if compiled is not None and (quantize == "int8" or panel_rows):  # compiled products: int8 decode steps, panels
        matmul = functools.partial(torch_matmul, int8_rows=compiled.int8_matmul, panel_rows=panel_rows)
        matmul.layout = torch_matmul.layout  # type: ignore[attr-defined]
    start = time.perf_counter()
    head = get(lm_head) if out_in else get(lm_head).t()  # [vocab, hidden]; [in, out] kernels read it transposed
    layer_weights = [LayerWeights(**{k: get(v) for k, v in d.items()}) for d in layers]
    llama = all(lt.q_bias is None and lt.q_norm is None for lt in t.layers)  # what DecodeLayers runs
    panels = panel_rows is not None and all(w.dim() == 3 for lw in layer_weights for w in (lw.qkv, lw.o, lw.gate_up, lw.down))
    fused = (compiled.DecodeLayers(layer_weights, cfg.rms_norm_eps, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim)
             if (quantize == "int8" or panels) and compiled is not None and llama else None)
    # decode attention: the compiled kernel on a CPU (C, else numba's); on a GPU, where a step is bound by
    # kernel launches, one SDPA call
    decode_kernel = (compiled.paged_decode if compiled is not None
                     else sdpa_decode if ops is None and device.torch_device.type == "cuda" else None)
    # what a decode step reads: every weight once, of the embedding table only a row (unless it is the head)
    step = [head, get(final_norm)] + [w for lw in layer_weights for w in vars(lw).values() if w is not None]
    step_bytes = sum(_nbytes(w, decode=True) for w in step)
    return Model(cfg, get(embed), layer_weights, get(final_norm), head, matmul, weight_bytes=weight_bytes,
                 step_bytes=step_bytes, ops=ops or reference_ops(compiled), fused_prefill=ops is None,
                 decode_kernel=decode_kernel, prefill_kernel=compiled and compiled.prefill_kernel(dtype, cfg.head_dim),
                 decode_layers=fused, compile_s=compile_s + time.perf_counter() - start)


def _nbytes(w: torch.Tensor | Int8Weight, decode: bool = False) -> int:
    """Bytes `w` holds, or with `decode` the bytes a one-row product reads (an Int8Weight's int8 part)."""
    if isinstance(w, Int8Weight):
        return w.decode_bytes if decode else w.nbytes
    return w.numel() * w.element_size()
