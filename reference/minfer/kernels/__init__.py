"""The kernels the graph can route work through.

- Matrix products for the model's linear layers: `torch` is the default, on a CPU with its weights
  prepacked (`prepack`: in float32 into matmul.c's panels, multiplied in C on numba's threads, else for
  oneDNN), or quantized to int8 for decode steps (`Int8Weight`). The numba kernels are lab 2's
  (matmul_numba.py, or a student's copy of it given as `kernels`).
- Kernels compiled by numba for a CPU (cpu_numba.py, through `cpu_kernels`): paged decode attention,
  which reads the KV cache in place instead of gathering it first; the int8 weights' product for a
  decode step's few rows; RMSNorm, rotation and SwiGLU without PyTorch's per-operation overhead; a
  decode step's layers in one call. Where they cannot run, the graph's PyTorch path does the work.
  Paged attention's arithmetic per request comes in C too (decode_attention.c, built by native.py
  with the machine's compiler; numba's is 2x slower in cache), for prompt chunks as well.
- On a GPU, paged decode attention through PyTorch's fused attention (sdpa_decode.py): a small
  model's GPU step is bound by kernel launches, and this launches about 4 per layer where the reference
  path launches 14.

numba is imported only when one of its kernels is chosen, and then after hal/cudasim.py has decided
GPU or simulator for numba.cuda (numba reads that once, when first imported).
"""
from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch

from ..hal import Device

MATMULS = ("torch", "numba-naive", "numba-tiled", "numba-regblock")


# Up to this many rows plain float32 products on a CPU run swapped (torch_matmul): SmolLM2's 30 layers took
# 16 ms for one row against 28 for x @ W^T, 64 against 77 for 32 rows; from ~100 rows on the swap loses.
SWAP_MAX_ROWS = 64


def torch_matmul(x: torch.Tensor, w: torch.Tensor | Int8Weight, out: torch.Tensor | None = None,
                 int8_rows: Callable[..., torch.Tensor] | None = None,
                 panel_rows: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
    """x [M, in] @ w.T for a weight w [out, in], the layout checkpoints (and nn.Linear) store, for
    that weight prepacked by `prepack` (the engine's default on a CPU: for oneDNN, or in float32 into
    matmul.c's panels, multiplied by `panel_rows`, cpu_numba.panels), or quantized (`Int8Weight`):
    its decode steps go through `int8_rows` when given (cpu_numba.int8_matmul), else torch's int8 kernel.

    Plain float32 weights on a CPU, for at most SWAP_MAX_ROWS rows (decode steps): MKL is asked for
    (w @ x.T).T, as its GEMV and small GEMMs stream a weight at about half this form's speed (one row
    is padded to two: MKL's one-column product is the slow kind again), into a temporary copied to `out`."""
    if isinstance(w, Int8Weight):
        if x.shape[0] > INT8_MAX_ROWS:
            return torch_matmul(x, w.wide, out)
        if int8_rows is not None:
            return int8_rows(x, w.q, w.scale, out)
        y = torch.ops.aten._weight_int8pack_mm(x, w.q, w.scale)
        return y if out is None else out.copy_(y)
    if w.dim() == 3:  # float32 panels (see `prepack`)
        return panel_rows(x, w, out)
    if w.is_mkldnn:  # prepacked (see `prepack`)
        y = torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
        return y if out is None else out.copy_(y)
    m = x.shape[0]
    if m <= SWAP_MAX_ROWS and x.dtype == torch.float32 and x.device.type == "cpu":
        rows = x if m > 1 else torch.cat([x, x])
        y = torch.mm(w, rows.t()).t()[:m]
        return y.contiguous() if out is None else out.copy_(y)
    return torch.matmul(x, w.t(), out=out)


# which layout each kernel wants its weights in: torch the checkpoint's [out, in]; lab 2's numba
# kernels [in, out], so that neighbouring threads read neighbouring columns (coalesced)
torch_matmul.layout = "out_in"  # type: ignore[attr-defined]


def can_prepack(device: Device, dtype: torch.dtype) -> bool:
    """Whether `prepack` works here: a CPU, float32 or bfloat16, and a PyTorch built with oneDNN."""
    return (device.torch_device.type == "cpu" and dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


PANEL = 48  # matmul.c's PANEL: the weight rows a panel holds side by side, three 16-float vectors


def prepack(w: torch.Tensor, panels: bool = False) -> torch.Tensor:
    """A weight [out, in] reordered once into oneDNN's blocked layout, for `torch_matmul`; with `panels`
    (cpu_numba.panels: matmul.c built), a float32 one whose outputs come in 48s into matmul.c's panels
    [out/48, in, 48] instead, a plain tensor: faster than oneDNN at every row count (see matmul.c).

    oneDNN's layout is what torch.compile's CPU backend gives a frozen nn.Linear (the same two PyTorch
    ops), without the compiler: MKL's GEMM re-packs the weight into cache-sized panels on every call, a
    prepacked one skips that (SmolLM2 on this machine's two cores: ~200 GFLOP/s in float32, where x @ W.T
    reaches 90-180; ~400 in bfloat16). The packed copy replaces the plain one, and is an opaque tensor
    (`w.is_mkldnn`): no storage, no views, no data_ptr."""
    if panels and w.dtype == torch.float32 and w.shape[0] % PANEL == 0:
        return w.reshape(w.shape[0] // PANEL, PANEL, w.shape[1]).transpose(1, 2).contiguous()
    return torch.ops.mkldnn._reorder_linear_weight(w.contiguous())


# Up to this many rows (decode steps) an Int8Weight is read as int8. SmolLM2's 30 layers, in ms for 1, 2 and
# 4 rows: the compiled int8 product 5.9, 5.7, 10.3; the prepacked bfloat16 copy 11.7, 13.0, 10.9 (the same
# run); torch's int8 kernel, which computes more than it reads, 7.4, 11.6, 11.2 (against 11.9, 12.2, 10.5).
INT8_MAX_ROWS = 2

QUANTIZE = ("int8",)


@dataclass(frozen=True, eq=False)
class Int8Weight:
    """A weight [out, in] quantized to int8, one scale per output row (symmetric, weight-only: the
    activations stay bfloat16). A decode step streams half the bytes of bfloat16, through the compiled
    int8 product (cpu_numba.int8_matmul) or else torch's int8 kernel (`_weight_int8pack_mm`, the one
    gpt-fast and torchao use on a CPU); steps of more rows use `wide`, the same quantized values
    widened back to bfloat16 (and prepacked), since the int8 kernels are slower than oneDNN once a
    product has a few rows to compute. Both paths compute with the same rounded weights, so prefill
    and decode agree."""

    q: torch.Tensor  # [out, in] int8
    scale: torch.Tensor  # [out], the activations' dtype: row r stands for q[r] * scale[r]
    wide: torch.Tensor  # q * scale in the activations' dtype, prepacked where possible

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.q, self.scale, self.wide))

    @property
    def decode_bytes(self) -> int:  # what a decode step reads
        return self.q.numel() + self.scale.numel() * self.scale.element_size()


def can_quantize(device: Device, dtype: torch.dtype) -> bool:
    """Whether Int8Weight works here: torch's int8 kernel runs on a CPU, and fast only for bfloat16 activations."""
    return (device.torch_device.type == "cpu" and dtype == torch.bfloat16
            and hasattr(torch.ops.aten, "_weight_int8pack_mm"))


def quantize_int8(w: torch.Tensor, dtype: torch.dtype, pack: bool = True) -> Int8Weight:
    """`w` [out, in] as an Int8Weight: each row scaled so its largest magnitude becomes 127, then rounded."""
    if w.shape[1] % 16:  # measured: other widths read past the row (wrong results, or a crash)
        raise ValueError(f"int8 weights need input sizes that are multiples of 16 (torch's int8 kernel); "
                         f"this model has a layer of {w.shape[1]} inputs: run it without quantize")
    wf = w.float()
    # the scale is stored in the activations' dtype (the kernel's contract): quantize with that rounding
    scale = (wf.abs().amax(dim=1) / 127).clamp(min=torch.finfo(dtype).tiny).to(dtype)
    q = torch.round(wf / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
    wide = (q.float() * scale.float()[:, None]).to(dtype)
    return Int8Weight(q, scale, prepack(wide) if pack else wide)


def get_matmul(name: str, device: Device, kernels: ModuleType | None = None):
    """The `(x, w, out=None) -> x @ W^T` callable called `name` (one of MATMULS), running on `device`;
    its `layout` attribute says how it wants W stored: "out_in" ([out, in]) or "in_out" ([in, out])."""
    if name not in MATMULS:
        raise ValueError(f"matmul={name!r} is not a kernel; choose one of {', '.join(MATMULS)}")
    if name == "torch":
        return torch_matmul
    on_gpu = device.torch_device.type == "cuda"
    if kernels is None:
        from ..hal.cudasim import numba_cuda

        numba_cuda(simulate=not on_gpu)  # before matmul_numba imports numba
        from . import matmul_numba as kernels
    # a simulated thread costs ~0.1-1 ms: 4 x 4 blocks keep a tiny model's step to about a thousand
    tile, rb = (16, 4) if on_gpu else (4, 2)
    mm = functools.partial(kernels.matmul, kind=name.removeprefix("numba-"), tile=tile, rb=rb, device=device)
    mm.layout = "in_out"  # type: ignore[attr-defined]
    return mm


# MINFER_COMPILED_KERNELS=0 keeps numba's compiler out of a process: the grading sandbox sets it,
# where every submission starts with an empty compile cache and speed is not what is graded
COMPILED_ENV = "MINFER_COMPILED_KERNELS"


def can_compile(device: Device, dtype: torch.dtype) -> bool:
    """Whether `cpu_kernels` compiles here: a CPU, float32 or bfloat16, numba installed, not switched off."""
    return (device.torch_device.type == "cpu" and dtype in (torch.float32, torch.bfloat16)
            and os.environ.get(COMPILED_ENV) != "0" and importlib.util.find_spec("numba") is not None)


def cpu_kernels(device: Device, dtype: torch.dtype) -> ModuleType | None:
    """cpu_numba.py (compiled paged decode attention, int8 product, RMSNorm, rotation, SwiGLU),
    compiled for `dtype` before it returns, where it can run: a CPU, float32 or bfloat16, numba
    installed, and not switched off by MINFER_COMPILED_KERNELS=0; else None, and the graph runs its
    PyTorch path. Compiling takes ~10-20 s once per checkout; numba caches the result next to the
    source (or in ~/.cache where that is read-only), and later starts load it in about a second."""
    if not can_compile(device, dtype):
        return None
    from ..hal.cudasim import choose

    choose()  # before numba is imported: lab 2 may want numba.cuda's simulator in this process later
    from . import cpu_numba

    cpu_numba.set_threads(torch.get_num_threads())  # the same cores as PyTorch's own threads
    cpu_numba.warm_up(dtype)
    return cpu_numba
