"""The engine's CPU kernels, compiled by numba. One file, because numba's on-disk cache is checked
against each kernel's own file only: a helper changed in another file would leave stale code behind.

Paged decode attention. The PyTorch path (graph/attention.py: `gather_kv`, then `attend`) copies
every context into a scratch buffer before multiplying, so the KV cache crosses memory three times;
with one query token per request there is little arithmetic to hide that behind (on the serving
workload decode attention was a third of the run). This kernel walks the block table itself, one
request at a time, its KV heads side by side: scores for the G query heads sharing each KV head, a
stable softmax, the weighted sum of values. Requests run in parallel (numba's `prange`), each
through decode_attention.c's version of `_one` where native.py built it (`_call_c`), else `_one`.

The int8 product (`int8_matmul`) streams an int8 weight once for a decode step's one or two rows:
SmolLM2's 30 layers in 5.9 ms for one row against 9.5 ms for torch's `_weight_int8pack_mm`. It asks
for the weight 4 KB ahead of its arithmetic (`_prefetch`; left to the hardware's prefetcher, reads
and arithmetic took turns: a bfloat16 + int8 decode step 8.65 -> 7.04 ms), and multiplies integers,
the activations rounded to int16 (30 layers' product 17% faster, 4.37 -> 3.73 ms for one row).

A decode step's layers can run in one compiled call (`DecodeLayers`), without a Python-level call per
kernel and layer: for int8 weights, and for float32 in matmul.c's panels.

Per-token operations (graph/layers.py's RMSNorm, rotation and SwiGLU, same contracts). At decode
time a token's vectors are short (576 values for SmolLM2), and each PyTorch operation's fixed cost
outweighs its arithmetic: a bfloat16 RMSNorm of one row took ~18 µs, and a step runs 60 of them
and 60 rotations. Here each is one pass in float32 that rounds where PyTorch's bfloat16 operations
round, without fastmath (a fused multiply-add rounds differently): bit for bit the reference in
bfloat16, up to summation order in float32. The rotation works in place on the step's q/k/v buffer.

bfloat16 tensors are read as their raw 16 bits (numpy has no bfloat16) and widened as they are
loaded: a bfloat16 is the top half of a float32, so the widening is a shift.

Imported only through `minfer.kernels.cpu_kernels`, which decides first whether this process's
numba.cuda is the simulator (numba reads that once, at import), and falls back to the PyTorch path
where numba is missing. The PyTorch path stays the teaching path: the two must agree
(tests/test_kernels.py), and a student's lab 3 always runs theirs.
"""
from __future__ import annotations

import functools

import numba
import numpy as np
import torch
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

from . import native

# fastmath lets the compiler vectorise the dot products' reductions (reassociating the sums).
# error_model="numpy": a float division by zero gives inf or nan, as in numpy, instead of raising
# ZeroDivisionError; the check Python's rule needs is a branch per division, and a loop with a
# branch does not vectorise (a SwiGLU of 1,000 rows took 3x torch's time with it)
_JIT = dict(nogil=True, fastmath=True, cache=True, error_model="numpy")
_EXACT = dict(nogil=True, cache=True, error_model="numpy")  # the per-token operations: results round where PyTorch's do


def _f32(x):
    """An element as float32: float32 as is, bfloat16 bits (uint16) shifted into a float32's top half."""
    raise NotImplementedError("compiled code only")


def _bf16(x):
    """A float32 as bfloat16 bits (uint16), rounded to nearest even, as PyTorch rounds."""
    raise NotImplementedError("compiled code only")


@overload(_f32, inline="always")
def _f32_impl(x):
    if isinstance(x, types.Float):
        return lambda x: np.float32(x)
    if x == types.uint16:
        return lambda x: np.uint32(np.uint32(x) << 16).view(np.float32)
    return None


@overload(_bf16, inline="always")
def _bf16_impl(x):
    def impl(x):
        bits = np.float32(x).view(np.uint32)
        return np.uint16((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
    return impl


def _like(out, x):
    """`x` (float32) as `out`'s elements are stored: float32 as is, bfloat16 bits rounded;
    `_f32(_like(out, x))` is x rounded as a PyTorch operation producing `out`'s dtype rounds."""
    raise NotImplementedError("compiled code only")


@overload(_like, inline="always")
def _like_impl(out, x):
    if out.dtype == types.uint16:
        return lambda out, x: _bf16(x)
    return lambda out, x: np.float32(x)


@intrinsic
def _prefetch(typingctx, array, index):
    """Ask for the cache line holding array.flat[index] ahead of use (x86's prefetcht0; a hint that never faults)."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        address = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)  # arguments: read, keep in all cache levels, data (not instructions)
        name = "llvm.prefetch.p0" if str(address.type) == "ptr" else "llvm.prefetch.p0i8"  # LLVM's opaque pointers, or not
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [address.type] + [i32] * 3), name)
        builder.call(fn, [address, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(array, index), codegen


@intrinsic
def _call_c(typingctx, fn, args):
    """Call the C function at address `fn` (native.py) with the tuple `args`: an array passes its data
    pointer, an integer passes as int64, a float as float32; the C side declares the same (void result)."""
    def codegen(context, builder, signature, llargs):
        values = []
        for i, ty in enumerate(signature.args[1].types):
            value = builder.extract_value(llargs[1], i)
            if isinstance(ty, types.Array):
                value = builder.bitcast(context.make_array(ty)(context, builder, value).data, ir.IntType(8).as_pointer())
            else:
                value = context.cast(builder, value, ty, types.int64 if isinstance(ty, types.Integer) else types.float32)
            values.append(value)
        pointer = builder.inttoptr(llargs[0], ir.FunctionType(ir.VoidType(), [v.type for v in values]).as_pointer())
        builder.call(pointer, values)
        return context.get_dummy_value()
    if not isinstance(fn, types.Integer) or not all(isinstance(t, (types.Array, types.Integer, types.Float)) for t in args):
        return None
    return types.void(fn, args), codegen


@numba.njit(inline="always", **_EXACT)
def _exp_parts(x):
    """exp(x) = p * 2^n for float32 x in [-87, 88.72]: n = round(x / ln 2), p a polynomial of the rest
    (Cephes' expf). Inlined, it takes the caller's compile flags."""
    n = np.floor(x * np.float32(1.44269504) + np.float32(0.5))
    r = x - n * np.float32(0.693359375) + n * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)
    p = ((((p * r + np.float32(8.3334519073e-3)) * r + np.float32(4.1665795894e-2)) * r
          + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1)) * r * r + r + np.float32(1.0)
    return n, p


@numba.njit(inline="always", **_JIT)
def _exp(x):
    """exp(x) for float32 x <= 0 (a softmax's shifted scores), to ~1e-7 relative: 2^n from the exponent
    bits times a polynomial for the rest (Cephes' expf). numba's np.exp calls libm one value at a time
    (~4 ns each); this one vectorises: 64 decodes of 50-770 tokens took 4.7 ms with np.exp, 4.1 with this."""
    n, p = _exp_parts(max(x, np.float32(-87.0)))  # below that exp underflows: 2^-126 instead of 0 is as good for a softmax
    return p * np.uint32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)


@numba.njit(**_JIT)
def _one(q, k_cache, v_cache, blocks, length, block_size, scale, h0, h1, out, scores):
    """out[j] = softmax(q[j] · keys / sqrt(D)) · values over one request's `length` cached tokens, for
    the query heads j that read KV heads h0 ... h1-1; q and out [H, D], scores [H, length].

    decode_attention.c does the same ~2x faster in cache (numba keeps no vector sums in registers);
    this is the version that runs wherever numba does. The KV heads advance together, token by
    token: each is its own stream through memory, and a thread that walks every head's stream at
    once keeps more reads in flight than one that finishes a head before the next (a replayed
    serving decode step, 47 requests and 795 MB of K/V: 40.7 ms against 42.7). Values come four at
    a time: the running sums live in memory (a numba array, not registers), and four weighted values
    summed first load and store each sum once per four tokens (in L2, the value pass 18.7 -> 12.4 ns
    a token and head in float32). Past the context's end the last value stands in, weighted by zero."""
    heads, dim = q.shape
    groups = heads // k_cache.shape[0]  # heads h*G ... h*G+G-1 share KV head h
    qs = np.empty((heads, dim), dtype=np.float32)
    for j in range(h0 * groups, h1 * groups):
        for d in range(dim):
            qs[j, d] = _f32(q[j, d]) * scale
    for b in range((length + block_size - 1) // block_size):
        first, t0 = blocks[b] * block_size, b * block_size
        for i in range(min(block_size, length - t0)):
            for h in range(h0, h1):
                key = k_cache[h, first + i]
                for j in range(h * groups, (h + 1) * groups):
                    s = np.float32(0.0)
                    for d in range(dim):
                        s += qs[j, d] * _f32(key[d])
                    scores[j, t0 + i] = s
    for j in range(h0 * groups, h1 * groups):
        top = np.float32(-np.inf)  # subtract the row's max before exp: no overflow, however large the scores
        for t in range(length):
            top = max(top, scores[j, t])
        total = np.float32(0.0)
        for t in range(length):
            e = _exp(scores[j, t] - top)
            scores[j, t] = e
            total += e
        for t in range(length):
            scores[j, t] /= total
    acc = np.zeros((heads, dim), dtype=np.float32)
    for b in range((length + block_size - 1) // block_size):  # values four at a time (see the docstring)
        first, t0 = blocks[b] * block_size, b * block_size
        last = min(block_size, length - t0) - 1
        for i in range(0, last + 1, 4):
            i1, i2, i3 = min(i + 1, last), min(i + 2, last), min(i + 3, last)
            for h in range(h0, h1):
                v0, v1 = v_cache[h, first + i], v_cache[h, first + i1]
                v2, v3 = v_cache[h, first + i2], v_cache[h, first + i3]
                for j in range(h * groups, (h + 1) * groups):
                    p0 = scores[j, t0 + i]
                    p1 = scores[j, t0 + i1] if i + 1 <= last else np.float32(0.0)
                    p2 = scores[j, t0 + i2] if i + 2 <= last else np.float32(0.0)
                    p3 = scores[j, t0 + i3] if i + 3 <= last else np.float32(0.0)
                    for d in range(dim):
                        acc[j, d] += (p0 * _f32(v0[d]) + p1 * _f32(v1[d])) + (p2 * _f32(v2[d]) + p3 * _f32(v3[d]))
    for j in range(h0 * groups, h1 * groups):
        for d in range(dim):
            out[j, d] = _like(out, acc[j, d])


@numba.njit(parallel=True, **_JIT)
def _decode(q, k_cache, v_cache, blocks, lengths, block_size, scale, out, threads, native):
    n, kv_heads = q.shape[0], k_cache.shape[0]
    # a job is one request's KV heads, all of them (see _one); with fewer requests than two per
    # thread, one head each, so that a lone long decode still uses every thread
    split = kv_heads if n < 2 * threads else 1
    for job in numba.prange(n * split):  # prange hands each thread one contiguous range of jobs:
        i, part = job // split, job % split
        r = i // 2 if i % 2 == 0 else n - 1 - i // 2  # requests sorted by length come interleaved, long with short
        h0, h1 = part * kv_heads // split, (part + 1) * kv_heads // split
        scores = np.empty((q.shape[1], lengths[r]), dtype=np.float32)
        if native:  # decode_attention.c's version of _one, where native.py could build it
            _call_c(native, (q[r], k_cache, v_cache, blocks[r], out[r], scores, k_cache.shape[1], lengths[r],
                             block_size, scale, h0, h1, q.shape[1], kv_heads))
        else:
            _one(q[r], k_cache, v_cache, blocks[r], lengths[r], block_size, scale, h0, h1, out[r], scores)


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, blocks: torch.Tensor,
                 lengths: torch.Tensor, block_size: int, out: torch.Tensor, bias: torch.Tensor | None = None,
                 c_kernel: bool = True) -> None:
    """q and out [N, H, D] (one token per request), caches [KVH, slots, D], all float32 or all bfloat16,
    blocks [N, NB] (padding beyond each context is never read), lengths [N]: out = attention over each
    context. `bias`, the reference path's padding mask, is not needed: only `lengths` tokens are read.
    Each request runs through decode_attention.c where it was built (`c_kernel=False`: numba's `_one`)."""
    _decode(_raw(q), _raw(k_cache), _raw(v_cache), blocks.numpy(), lengths.numpy(), block_size,
            np.float32(q.shape[-1] ** -0.5), _raw(out), numba.get_num_threads(),
            c_attend(q, k_cache, v_cache, blocks, out) if c_kernel else 0)


def prefill_kernel(dtype: torch.dtype, head_dim: int):
    """`paged_decode` for prompt chunks too (graph/attention.py's AttnMeta.prefill_kernel) where its C
    version was built for this dtype and head size: numba's is no faster than SDPA there; else None."""
    return paged_decode if native.attend_fn("bf16" if dtype == torch.bfloat16 else "f32", head_dim) else None


def c_attend(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, blocks: torch.Tensor,
             out: torch.Tensor) -> int:
    """The address of decode_attention.c's kernel for these tensors, or 0 (numba's kernel then): it
    takes one dtype throughout, int64 block tables, and whole caches, block tables and each request's
    heads [H, D] as contiguous memory."""
    heads = lambda t: t.stride(-1) == 1 and t.stride(-2) == t.shape[-1]  # noqa: E731
    if not (q.dtype == k_cache.dtype == v_cache.dtype == out.dtype and blocks.dtype == torch.int64
            and k_cache.is_contiguous() and v_cache.is_contiguous() and blocks.is_contiguous() and heads(q) and heads(out)):
        return 0
    return native.attend_fn("bf16" if q.dtype == torch.bfloat16 else "f32", q.shape[-1])


# The int8 product multiplies integers: each activation row is scaled to int16 (its largest
# magnitude to `_int16_limit`), so the inner loop is int8 x int16 -> int32, which the compiler
# turns into vpmaddwd (32 products an instruction) where float32 took a widening per element.
# The int32 sums stay exact over _CHUNK elements, then move to float32.
_CHUNK = 2048


@numba.njit(inline="always", **_JIT)
def _int16_limit(k):
    """The largest int16 activation for which 127 * limit * min(k, _CHUNK) fits an int32."""
    return min(32767, 2147483647 // (127 * min(k, _CHUNK)))


@numba.njit(parallel=True, **_JIT)
def _int8_rows(x, q, scale, out):
    m, k = x.shape
    xi, xs = np.empty((m, k), dtype=np.int16), np.empty(m, dtype=np.float32)
    limit = np.float32(_int16_limit(k))
    for j in range(m):  # quantized once, not once per weight row
        top = np.float32(0.0)
        for i in range(k):
            top = max(top, abs(_f32(x[j, i])))
        xs[j] = top / limit if top > 0 else np.float32(1.0)
        inv = np.float32(1.0) / xs[j]
        for i in range(k):
            xi[j, i] = np.int16(np.rint(_f32(x[j, i]) * inv))
    flat, ahead = q.reshape(-1), 4096  # bytes (int8): each row asks for the lines 4 KB past its own
    for r in numba.prange(q.shape[0]):  # each weight row is read once, for all the step's rows
        for i in range(r * k + ahead, min((r + 1) * k + ahead, flat.size), 64):
            _prefetch(flat, i)
        s = _f32(scale[r])
        for j in range(m):
            acc = np.float32(0.0)
            for c in range(0, k, _CHUNK):
                # over slices, not an index range: with range(c, c + _CHUNK) LLVM vectorised 6x less well
                wc, xc, part = q[r, c:c + _CHUNK], xi[j, c:c + _CHUNK], np.int32(0)
                for i in range(wc.shape[0]):  # written so that numba keeps the sum in int32
                    part = np.int32(part + np.int32(np.int32(wc[i]) * np.int32(xc[i])))
                acc += np.float32(part)
            out[j, r] = _bf16(acc * (s * xs[j]))


def int8_matmul(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """x [M, in] bfloat16 @ (q [out, in] int8 * scale [out] bfloat16).T -> [M, out] bfloat16 (into
    `out` when given), for a few rows. Each row of x is first rounded to int16 on its own scale (see
    `_int16_limit`: 29,000 steps a side for SmolLM2's 576 inputs, 11,000 for its 1,536), far finer
    than x's own bfloat16; torch's `_weight_int8pack_mm` multiplies in float32 instead."""
    out = torch.empty(x.shape[0], q.shape[0], dtype=torch.bfloat16) if out is None else out
    _int8_rows(_raw(x.contiguous()), q.numpy(), _raw(scale), _raw(out))
    return out


@numba.njit(parallel=True, **_JIT)
def _panels(fn, x, w, y, threads):
    n = w.shape[0]
    for t in numba.prange(threads):  # a contiguous range of panels each: each weight is read by one thread
        _call_c(fn, (x, w, y, x.shape[0], x.shape[1], y.shape[1], n * t // threads, n * (t + 1) // threads))


def panel_matmul(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor | None = None, fn: int = 0) -> torch.Tensor:
    """x [M, in] float32 @ W.T for W in matmul.c's panels [out/48, in, 48] (kernels.prepack), written
    into `out` when given; `fn` is matmul.c's address (`panels`)."""
    y = out if out is not None and out.is_contiguous() else x.new_empty(x.shape[0], w.shape[0] * w.shape[2])
    _panels(fn, _raw(x.contiguous()), _raw(w), _raw(y), numba.get_num_threads())
    return y if out is None or y is out else out.copy_(y)


def panels(dtype: torch.dtype):
    """`panel_matmul` for float32 where native.py built matmul.c, else None: weights are then prepacked
    for oneDNN (kernels.prepack)."""
    fn = native.address("minfer_matmul_f32") if dtype == torch.float32 else 0
    return functools.partial(panel_matmul, fn=fn) if fn else None


# Each per-token operation is written for one row, and run over a step's rows in parallel below; one or
# two rows (a lone request's decode step) on the calling thread instead: waking the pool costs more than
# their arithmetic (120 such calls a bfloat16 + int8 step: 170 tokens/s against 164, medians of 5 runs)
@numba.njit(**{**_EXACT, "fastmath": {"reassoc"}})  # the sum of squares in vector lanes: PyTorch's order differs too
def _rms_norm_row(x, w, eps, out):
    n = x.shape[0]
    squares = np.float32(0.0)
    for i in range(n):
        squares += _f32(x[i]) * _f32(x[i])
    inv = np.float32(1.0) / np.sqrt(squares / np.float32(n) + eps)
    for i in range(n):  # normalised in float32, rounded to the storage dtype, then scaled
        normed = _f32(_like(out, _f32(x[i]) * inv))
        out[i] = _like(out, _f32(w[i]) * normed)


@numba.njit(**_EXACT)
def _rope_row(x, cos, sin):  # x [heads, D], cos and sin [D]: one token's heads
    heads, dim = x.shape
    half = dim // 2
    for h in range(heads):
        for i in range(half):  # x * cos + rotate_half(x) * sin: each product, and the sum, rounded
            a, b = _f32(x[h, i]), _f32(x[h, i + half])
            a_cos, b_sin = _f32(_like(x, a * _f32(cos[i]))), _f32(_like(x, -b * _f32(sin[i])))
            b_cos = _f32(_like(x, b * _f32(cos[i + half])))
            a_sin = _f32(_like(x, a * _f32(sin[i + half])))
            x[h, i], x[h, i + half] = _like(x, a_cos + b_sin), _like(x, b_cos + a_sin)


@numba.njit(inline="always", **_EXACT)
def _expf(x):
    """exp(x) for any float32 x, to ~1 ulp like libm's expf (inf above ~88.72, where it overflows), but
    vectorisable: `_exp`'s polynomial, its power of two applied in two halves so that 2^128 does not
    overflow first. np.exp is a libm call per value, which does not vectorise."""
    top = np.float32(88.72283)  # the largest float32 whose exp is finite (libm's expf overflows above)
    n, p = _exp_parts(min(max(x, np.float32(-87.0)), top))
    half = np.uint32((np.int32(n) + np.int32(126)) << np.int32(23)).view(np.float32)  # 2^(n-1)
    return np.float32(np.inf) if x > top else p * half * np.float32(2.0)


@numba.njit(**_EXACT)
def _swiglu_row(gate_up, out):
    n = out.shape[0]
    for i in range(n):
        g = _f32(gate_up[i])
        silu = _f32(_like(out, g / (np.float32(1.0) + _expf(-g))))
        out[i] = _like(out, silu * _f32(gate_up[n + i]))


@numba.njit(parallel=True, **_EXACT)
def _rms_norm(x, w, eps, out):
    if x.shape[0] <= 2:
        for r in range(x.shape[0]):
            _rms_norm_row(x[r], w, eps, out[r])
        return
    for r in numba.prange(x.shape[0]):
        _rms_norm_row(x[r], w, eps, out[r])


@numba.njit(parallel=True, **_EXACT)
def _rope(x, cos, sin):
    if x.shape[0] <= 2:
        for t in range(x.shape[0]):
            _rope_row(x[t], cos[t, 0], sin[t, 0])
        return
    for t in numba.prange(x.shape[0]):
        _rope_row(x[t], cos[t, 0], sin[t, 0])


@numba.njit(parallel=True, **_EXACT)
def _swiglu(gate_up, out):
    if out.shape[0] <= 2:
        for r in range(out.shape[0]):
            _swiglu_row(gate_up[r], out[r])
        return
    for r in numba.prange(out.shape[0]):
        _swiglu_row(gate_up[r], out[r])


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """graph.layers.rms_norm, compiled."""
    shape = x.shape
    x = x.reshape(-1, shape[-1])  # q/k norms (Qwen3) pass [T, heads, D]
    out = torch.empty(shape, dtype=x.dtype) if out is None else out
    _rms_norm(_raw(x), _raw(weight), np.float32(eps), _raw(out.view(-1, shape[-1])))
    return out


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """graph.layers.apply_rope, compiled, rotating `x` in place (and returning it)."""
    _rope(_raw(x), _raw(cos), _raw(sin))
    return x


def swiglu(gate_up: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """graph.layers.swiglu, compiled."""
    out = torch.empty(gate_up.shape[0], gate_up.shape[1] // 2, dtype=gate_up.dtype) if out is None else out
    _swiglu(_raw(gate_up), _raw(out))
    return out


@numba.njit(**_EXACT)
def _add(x, y):  # x += y, rounded as x's dtype rounds
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            x[r, i] = _like(x, _f32(x[r, i]) + _f32(y[r, i]))


def _product(x, w, scale, out, fn, threads):
    """x @ w.T into `out`, compiled: w in matmul.c's panels (`fn` its address), or int8 [out, in] * scale."""
    raise NotImplementedError("compiled code only")


@overload(_product, inline="always")
def _product_impl(x, w, scale, out, fn, threads):
    if w.ndim == 3:
        return lambda x, w, scale, out, fn, threads: _panels(fn, x, w, out, threads)
    return lambda x, w, scale, out, fn, threads: _int8_rows(x, w, scale, out)


@numba.njit(**_EXACT)
def _layers(x, cos, sin, slots, blocks, lengths, block_size, eps, weights, k_caches, v_caches,
            h, qkv, attn, proj, gate_up, act, threads, c_attend, c_matmul):
    """Every decoder layer of a decode step, as graph/model.py's forward runs them, kernel for kernel."""
    (m, heads, dim), kv_heads = attn.shape, k_caches[0].shape[0]
    heads3, scale = qkv.reshape(m, heads + 2 * kv_heads, dim), np.float32(dim ** -0.5)  # q heads, k heads, v heads
    for layer in range(len(weights)):
        qkv_w, qkv_s, o_w, o_s, gate_up_w, gate_up_s, down_w, down_s, attn_norm, mlp_norm = weights[layer]
        k_cache, v_cache = k_caches[layer], v_caches[layer]
        _rms_norm(x, attn_norm, eps, h)
        _product(h, qkv_w, qkv_s, qkv, c_matmul, threads)
        _rope(heads3[:, :heads + kv_heads], cos, sin)  # the q and k heads, each as apply_rope rotates it
        for r in range(m):
            k_cache[:, slots[r]] = heads3[r, heads:heads + kv_heads]  # graph/attention.py's write_kv
            v_cache[:, slots[r]] = heads3[r, heads + kv_heads:]
        _decode(heads3[:, :heads], k_cache, v_cache, blocks, lengths, block_size, scale, attn, threads, c_attend)
        _product(attn.reshape(m, heads * dim), o_w, o_s, proj, c_matmul, threads)
        _add(x, proj)
        _rms_norm(x, mlp_norm, eps, h)
        _product(h, gate_up_w, gate_up_s, gate_up, c_matmul, threads)
        _swiglu(gate_up, act)
        _product(act, down_w, down_s, proj, c_matmul, threads)
        _add(x, proj)


class DecodeLayers:
    """All decoder layers of a decode step in one compiled call, on a Llama-shaped model (no q/k/v bias,
    no q/k norms) whose projections are all int8 (Int8Weight) or all float32 in matmul.c's panels. The
    same kernels run in the same order as in graph/model.py's layer-by-layer forward, so the results are
    the same bits; what goes is the ~30 Python-level calls per layer, each converting its tensors for
    numba: ~4 ms of a 12 ms bfloat16 SmolLM2 step, ~10 of a 64-request float32 one. Steps with a prompt
    chunk run layer by layer; so do int8 steps of more rows than its product takes."""

    def __init__(self, layers: list, eps: float, heads: int, kv_heads: int, head_dim: int) -> None:
        self.eps = np.float32(eps)
        self.int8 = hasattr(layers[0].qkv, "q")  # else panels, which have no scale: an empty stand-in
        parts = lambda w: (w.q.numpy(), _raw(w.scale)) if self.int8 else (w.numpy(), np.empty(0, np.float32))  # noqa: E731
        self.weights = numba.typed.List([(*parts(w.qkv), *parts(w.o), *parts(w.gate_up), *parts(w.down),
                                          _raw(w.attn_norm), _raw(w.mlp_norm)) for w in layers])  # views: weights never move
        self.c_matmul, self.c_attend = (0 if self.int8 else native.address("minfer_matmul_f32"),
                                        native.attend_fn("bf16" if self.int8 else "f32", head_dim))
        self._caches: tuple | None = None  # (the engine's KV cache list, its numpy views, all contiguous?), on first use
        # compile now (or load numba's cache): one step of one token over a one-slot cache, all zeros
        dt, zeros = np.uint16 if self.int8 else np.float32, np.zeros  # bfloat16 as its bits
        hidden, inter = layers[0].attn_norm.numel(), self.weights[0][6].shape[1]  # down's inputs, in either layout
        caches = numba.typed.List([zeros((kv_heads, 1, head_dim), dt) for _ in layers])
        _layers(zeros((1, hidden), dt), *[zeros((1, 1, head_dim), dt)] * 2, zeros(1, np.int64), zeros((1, 1), np.int64),
                np.ones(1, np.int64), 1, self.eps, self.weights, caches, caches, zeros((1, hidden), dt),
                zeros((1, (heads + 2 * kv_heads) * head_dim), dt), zeros((1, heads, head_dim), dt), zeros((1, hidden), dt),
                zeros((1, 2 * inter), dt), zeros((1, inter), dt), numba.get_num_threads(), 0, self.c_matmul)

    def takes(self, meta, rows: int) -> bool:
        """Whether this step is one this runs: decodes only, for int8 no more rows than its product takes."""
        from . import INT8_MAX_ROWS  # read per step: a test may change it

        return not meta.prefill and (rows <= INT8_MAX_ROWS or not self.int8)

    def __call__(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, meta, kv_cache: list,
                 buffers: dict[str, torch.Tensor]) -> None:
        """Run every layer on x [rows, hidden] in place; `buffers` are the step's (Model.buffer_plan)."""
        if self._caches is None or self._caches[0] is not kv_cache:
            self._caches = (kv_cache, numba.typed.List([_raw(k) for k, _ in kv_cache]),
                            numba.typed.List([_raw(v) for _, v in kv_cache]),
                            all(k.is_contiguous() and v.is_contiguous() for k, v in kv_cache))
        # the decode groups (scheduler/batch.py) as one: the kernel reads each context's length, never padding
        width = max(g.blocks.shape[1] for g in meta.decode)
        blocks = torch.cat([torch.nn.functional.pad(g.blocks, (0, width - g.blocks.shape[1])) for g in meta.decode])
        lengths, b = torch.cat([g.lengths for g in meta.decode]), {n: _raw(t) for n, t in buffers.items() if n != "x"}
        _layers(_raw(x), _raw(cos), _raw(sin), meta.slot_mapping.numpy(), blocks.numpy(), lengths.numpy(),
                meta.block_size, self.eps, self.weights, self._caches[1], self._caches[2],
                b["h"], b["qkv"], b["attn"], b["proj"], b["gate_up"], b["act"], numba.get_num_threads(),
                self.c_attend if self._caches[3] else 0, self.c_matmul)


def _raw(t: torch.Tensor) -> np.ndarray:
    """The tensor's memory as numpy sees it, uncopied: bfloat16 as uint16 bits."""
    return (t.view(torch.uint16) if t.dtype == torch.bfloat16 else t).numpy()


def set_threads(n: int) -> None:
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def warm_up(dtype: torch.dtype = torch.float32) -> None:
    """Compile for `dtype` now (or load numba's cache), so that no request waits for the compiler."""
    q, cache = torch.zeros(1, 2, 4, dtype=dtype), torch.zeros(1, 4, 4, dtype=dtype)
    paged_decode(q, cache, cache, torch.zeros(1, 1, dtype=torch.long), torch.ones(1, dtype=torch.long), 4,
                 torch.empty_like(q))
    x, qkv = torch.ones(2, 4, dtype=dtype), torch.ones(2, 3, 4, dtype=dtype)  # as the forward pass has them
    rms_norm(x, x[0], 1e-6, out=torch.empty_like(x))
    apply_rope(qkv[:, :2], qkv[:, :1], qkv[:, :1].contiguous())
    swiglu(x, out=torch.empty(2, 2, dtype=dtype))
    if dtype == torch.bfloat16:
        int8_matmul(torch.zeros(1, 4, dtype=dtype), torch.zeros(2, 4, dtype=torch.int8), torch.ones(2, dtype=dtype))
