"""`minfer bench`: minfer and Hugging Face transformers on the same weights, in the same run.

Speed claims are ratios against a peer measured seconds apart on the same machine, never absolute
numbers compared across runs. transformers is a test/bench dependency only (`pip install minfer[test]`).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import random
import statistics
import time
from dataclasses import dataclass

import torch

from minfer.core import SamplingParams
from minfer.engine import LLM
from minfer.graph.model import reference_ops
from minfer.kernels import Int8Weight, can_quantize, torch_matmul
from minfer.loader.config import ModelConfig


@dataclass
class Row:
    metric: str
    minfer: float
    hf: float | None
    higher_is_better: bool
    # for a batch-1 decode on a CPU: the copy bandwidth measured right after it. This shared machine's
    # bandwidth drifts within and between runs (29.7 to 50.0 GB/s), so a decode rate and its bound
    # are taken together
    bandwidth: float | None = None
    note: str | None = None  # a line printed under the table

    def ratio(self) -> str:
        if not self.hf:
            return "-"
        r = self.minfer / self.hf if self.higher_is_better else self.hf / self.minfer
        return f"{r:.2f}x"


def _hf_model(path, dtype: torch.dtype, device: str = "cpu"):
    try:
        import transformers
    except ImportError as e:
        raise RuntimeError("minfer bench compares against transformers: pip install 'minfer[test]'") from e
    return transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device).eval()


def _hf_generate(model, batch: list[list[int]], new_tokens: int) -> None:
    """Static batch, left-padded, exactly `new_tokens` new tokens for every row."""
    width = max(len(ids) for ids in batch)
    ids = torch.tensor([[0] * (width - len(x)) + x for x in batch], device=model.device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in batch], device=model.device)
    with torch.inference_mode():
        model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       do_sample=False, eos_token_id=None, pad_token_id=0)


def _sync() -> None:
    if torch.cuda.is_initialized():  # a GPU's work is queued: wait for it, or the clock stops early
        torch.cuda.synchronize()


def _timed(fn) -> float:
    _sync()
    start = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - start


def _prompt(rng: random.Random, n: int, vocab: int) -> list[int]:
    return [rng.randrange(32, vocab) for _ in range(n)]  # skip the control tokens at the start


def _minfer_run(llm: LLM, prompt: list[int], n: int) -> tuple[float, float]:
    """(time to first token, decode time of the remaining n - 1 tokens) of one request."""
    start = time.perf_counter()
    req_id = llm.add_request(prompt, SamplingParams(temperature=0, max_tokens=n, ignore_eos=True))
    first = None
    while llm.has_unfinished():
        if llm.step() and first is None:
            first = time.perf_counter()
    llm.pop_output(req_id)
    return first - start, time.perf_counter() - first


@contextlib.contextmanager
def _prefix_cache(llm: LLM, enabled: bool):
    """Prefix caching on or off for the block. Off for times to first token: a repeated prompt would
    otherwise be served from the cache, timing a lookup instead of a prefill (transformers caches nothing)."""
    pool = llm.kv.pool
    was, pool.enable_prefix_cache = pool.enable_prefix_cache, enabled
    try:
        yield
    finally:
        pool.enable_prefix_cache = was


def _minfer_decode(llm: LLM, prompt: list[int], n: int) -> float:
    """Decode tokens/s of one request of n new tokens, after its first: the best of two runs (machines are shared)."""
    with _prefix_cache(llm, False):
        _minfer_run(llm, prompt, 4)  # warm-up
        return (n - 1) / min(_minfer_run(llm, prompt, n)[1] for _ in range(2))


def _cpu_bandwidth(llm: LLM) -> float | None:
    return memory_bandwidth() if llm.device.torch_device.type == "cpu" else None


def _hf_decode(hf, prompt: list[int], n: int) -> tuple[float, float]:
    """transformers' (time to first token, decode tokens/s after it) for one request, timed as minfer's."""
    _hf_generate(hf, [prompt], 4)  # warm-up
    ttft = min(_timed(lambda: _hf_generate(hf, [prompt], 1)) for _ in range(3))
    full = min(_timed(lambda: _hf_generate(hf, [prompt], n)) for _ in range(2))
    return ttft, (n - 1) / (full - ttft)


def bench_decode(llm: LLM, hf, prompt: list[int], n: int, long_prompt: list[int]) -> list[Row]:
    with _prefix_cache(llm, False):
        decode, bw = _minfer_decode(llm, prompt, n), _cpu_bandwidth(llm)
        ttft = min(_minfer_run(llm, prompt, 1)[0] for _ in range(3))
        long_ttft = min(_minfer_run(llm, long_prompt, 1)[0] for _ in range(2))
    rows = [Row(f"batch-1 decode, tokens/s ({n} tokens)", decode, None, True, bw),
            Row(f"time to first token, s ({len(prompt)}-token prompt)", ttft, None, False),
            Row(f"time to first token, s ({len(long_prompt)}-token prompt)", long_ttft, None, False)]
    if hf is not None:
        rows[1].hf, rows[0].hf = _hf_decode(hf, prompt, n)
        rows[2].hf = min(_timed(lambda: _hf_generate(hf, [long_prompt], 1)) for _ in range(2))
    return rows


def bench_fast_path(llm: LLM, with_hf: bool, prompt: list[int], n: int, requests: int, seed: int,
                    serve: bool) -> tuple[LLM, list[Row]]:
    """The faster dtype path beside a float32 run: the same model with bfloat16 activations and int8
    decode weights (minfer.kernels.Int8Weight), against transformers in bfloat16: batch-1 decode,
    and with `serve` the serving workload."""
    fast = LLM(llm.path, device=llm.device.name, dtype="bfloat16", quantize="int8")
    rows = [Row(f"batch-1 decode, tokens/s ({n} tokens)", _minfer_decode(fast, prompt, n), None, True,
                _cpu_bandwidth(fast))]
    hf = _hf_model(fast.path, torch.bfloat16, llm.device.name) if with_hf else None
    if hf is not None:
        rows[0].hf = _hf_decode(hf, prompt, n)[1]
    if serve:
        rows += bench_serving(fast, hf, requests, seed)
    del hf
    return fast, rows


@dataclass
class Switch:
    """One optimisation measured with its switch on and off, in the same run."""

    name: str
    on: float
    off: float
    unit: str  # "s": lower is better

    def ratio(self) -> str:
        return f"{self.off / self.on:.2f}x"


def bench_switches(llm: LLM, seed: int, long_prompt: list[int], shared: int = 512, requests: int = 8) -> list[Switch]:
    """Prefix caching on a shared-prefix workload; PyTorch's fused prefill kernel on a long prompt, and
    the paged kernel against it; prepacked (or int8) weights against plain (or bfloat16) ones, for one
    request's decode and a small mixed batch; the compiled decode kernel on a batch of decodes over long
    contexts, and its C version against numba's."""
    vocab = llm.config.vocab_size
    shared = min(shared, llm.max_model_len // 2)  # tiny test models have short context windows

    def prefix_workload(enabled: bool) -> float:
        rng = random.Random(seed * 2 + enabled)  # a fresh prefix each run: nothing cached from before
        common = _prompt(rng, shared, vocab)
        prompts = [common + _prompt(rng, 32, vocab) for _ in range(requests)]
        with _prefix_cache(llm, enabled):
            return _timed(lambda: llm.generate(prompts, SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)))

    paged_prefill = llm.model.prefill_kernel

    def prefill(fused: bool, paged: bool = False) -> float:
        llm.model.fused_prefill, llm.model.prefill_kernel = fused, paged_prefill if paged else None
        try:
            with _prefix_cache(llm, False):
                return min(_minfer_run(llm, long_prompt, 1)[0] for _ in range(2))
        finally:
            llm.model.fused_prefill, llm.model.prefill_kernel = True, paged_prefill

    kernel, fused = llm.model.decode_kernel, llm.model.decode_layers
    contexts = [_prompt(random.Random(seed + i), shared, vocab) for i in range(4 * requests)]

    def decode_batch(compiled: bool, c_kernel: bool = True) -> float:
        # the contexts sit in the prefix cache (warmed below), so this times decoding, not prefill; layer
        # by layer on both sides, since the fused layers (compiled_switches) attend through their own kernel
        llm.model.decode_kernel = (kernel if c_kernel else functools.partial(kernel, c_kernel=False)) if compiled else None
        llm.model.decode_layers = None
        try:
            params = SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)
            return _timed(lambda: llm.generate(contexts, params))
        finally:
            llm.model.decode_kernel, llm.model.decode_layers = kernel, fused

    def mixed(engine: LLM) -> float:  # prompts and decodes of a small batch: every product size
        rng = random.Random(seed)
        prompts = [_prompt(rng, rng.randint(16, shared // 2), vocab) for _ in range(2 * requests)]
        engine.generate(prompts[:1], SamplingParams(temperature=0, max_tokens=2))  # warm-up
        return _timed(lambda: engine.generate(prompts, SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)))

    head = llm.model.lm_head
    panels = isinstance(head, torch.Tensor) and head.dim() == 3  # matmul.c's (kernels.prepack)
    packed = panels or isinstance(head, torch.Tensor) and head.is_mkldnn
    layout = "matmul.c panels" if panels else "oneDNN"
    rows = [Switch(f"prefix caching: {requests} requests sharing {shared} tokens, s", prefix_workload(True),
                   prefix_workload(False), "s"),
            Switch(f"fused SDPA prefill: time to first token, {len(long_prompt)} tokens, s", prefill(True),
                   prefill(False), "s")]
    if paged_prefill is not None:  # a CPU where decode_attention.c was built
        rows.append(Switch(f"paged prefill kernel (vs SDPA): time to first token, {len(long_prompt)} tokens, s",
                           prefill(True, paged=True), prefill(True), "s"))
    dtype = str(llm.dtype).removeprefix("torch.")
    if packed:  # the other engine loads the weights again, unpacked
        unpacked = LLM(llm.path, device=llm.device.name, dtype=dtype, prepack_weights=False)
        rows.append(Switch(f"prepacked weights ({layout}): {2 * requests} requests x 32 tokens, s", mixed(llm),
                           mixed(unpacked), "s"))
        rows.append(Switch(f"prepacked weights ({layout}): batch-1 decode of 32 tokens, s", _decode_32(llm, long_prompt),
                           _decode_32(unpacked, long_prompt), "s"))
        del unpacked
    if isinstance(head, Int8Weight):  # against the same engine with its bfloat16 weights
        wide = LLM(llm.path, device=llm.device.name, dtype=dtype)
        rows.append(Switch("int8 weights: batch-1 decode of 32 tokens, s", _decode_32(llm, long_prompt),
                           _decode_32(wide, long_prompt), "s"))
        rows.append(Switch(f"int8 weights: {2 * requests} requests x 32 tokens, s", mixed(llm), mixed(wide), "s"))
        del wide
    if kernel is not None:  # a CPU with numba installed (float32 or bfloat16), or a GPU
        llm.generate(contexts, SamplingParams(temperature=0, max_tokens=1))
        what = (f"compiled decode kernel ({llm.model.compile_s:.1f} s to compile or load all at start)"
                if llm.device.torch_device.type == "cpu" else "fused decode attention (SDPA)")
        rows.append(Switch(f"{what}: {len(contexts)} x 32 tokens after {shared}, s", decode_batch(True),
                           decode_batch(False), "s"))
        if paged_prefill is not None:  # the same kernel's C version: numba's in its place
            rows.append(Switch(f"C decode attention (vs numba's): {len(contexts)} x 32 tokens after {shared}, s",
                               decode_batch(True), decode_batch(True, c_kernel=False), "s"))
    return rows + compiled_switches(llm, long_prompt)


def _decode_32(engine: LLM, prompt: list[int]) -> float:
    """Seconds for one request's 32 decode steps: each streams all the weights."""
    return 32 / _minfer_decode(engine, prompt[:16], 33)


def compiled_switches(engine: LLM, prompt: list[int]) -> list[Switch]:
    """The compiled kernels of minfer.kernels.cpu_kernels, each against the PyTorch path, on one
    request's decode: every layer in one call (int8 weights, or float32 panels: then on a batch too),
    then, layer by layer where they act, RMSNorm/RoPE/SwiGLU and the int8 product."""
    model = engine.model
    fused = model.decode_layers

    def on_off(attr: str, off, rounds: int = 3, run=lambda: _decode_32(engine, prompt)) -> tuple[float, float]:
        """The model's own `attr`, then `off` in its place, alternating: the medians. A single ~1 s run
        of each swung by 20% on a busy machine (one run printed 0.84x where 8 alternations gave 1.23x)."""
        on = getattr(model, attr)
        times: tuple[list[float], list[float]] = ([], [])
        try:
            for _ in range(rounds):
                for value, sink in ((on, times[0]), (off, times[1])):
                    setattr(model, attr, value)
                    sink.append(run())
        finally:
            setattr(model, attr, on)
        return statistics.median(times[0]), statistics.median(times[1])

    def batch(n: int = 16) -> float:  # decode steps of many rows, as serving runs them
        prompts = [prompt[:16 + i] for i in range(n)]
        return _timed(lambda: engine.generate(prompts, SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)))

    rows = []
    if fused is not None:
        rows.append(Switch("layers in one compiled call: batch-1 decode of 32 tokens, s",
                           *on_off("decode_layers", None), "s"))
        if not fused.int8:  # float32 runs every decode step so (int8: only one or two rows)
            rows.append(Switch("layers in one compiled call: 16 requests x 32 tokens, s",
                               *on_off("decode_layers", None, run=batch), "s"))
    model.decode_layers = None
    try:
        if getattr(model.ops, "compiled", None) is not None:
            rows.append(Switch("compiled RMSNorm/RoPE/SwiGLU: batch-1 decode of 32 tokens, s",
                               *on_off("ops", reference_ops()), "s"))
        if model.matmul is not torch_matmul and isinstance(model.lm_head, Int8Weight):  # vs torch's int8 kernel
            rows.append(Switch("compiled int8 product: batch-1 decode of 32 tokens, s",
                               *on_off("matmul", torch_matmul), "s"))
    finally:
        model.decode_layers = fused
    return rows


def print_switches(rows: list[Switch]) -> None:
    print(f"\n| {'optimisation (same run, switch on / off)':60} | {'on':>8} | {'off':>8} | {'speed-up':>8} |")
    print(f"|{'-' * 62}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    for r in rows:
        print(f"| {r.name:60} | {r.on:8.3f} | {r.off:8.3f} | {r.ratio():>8} |")


def bench_serving(llm: LLM, hf, num: int, seed: int) -> list[Row]:
    """64 requests, prompts of 16-512 tokens, outputs of 16-256 tokens; only requested tokens count."""
    rng = random.Random(seed)
    prompts = [_prompt(rng, rng.randint(16, min(512, llm.max_model_len // 2)), llm.config.vocab_size) for _ in range(num)]
    outs = [rng.randint(16, 256) for _ in range(num)]
    total = sum(outs)
    params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for n in outs]
    secs = _timed(lambda: llm.generate(prompts, params))
    row = Row(f"serving {num} requests, tokens/s ({total} tokens)", total / secs, None, True)
    hf_secs = None
    if hf is not None:
        hf_secs = 0.0
        for i in range(0, num, 16):  # static batches of 16, each run to its longest request
            hf_secs += _timed(lambda: _hf_generate(hf, prompts[i:i + 16], max(outs[i:i + 16])))
        row.hf = total / hf_secs
    if llm.device.torch_device.type == "cpu":
        row.note = serving_bound_line(llm, [len(p) for p in prompts], outs, secs, hf_secs)
    return [row]


def serving_work(cfg: ModelConfig, prompt_lens: list[int], outs: list[int], kv_itemsize: int) -> tuple[float, float]:
    """(FLOPs, bytes of cached K/V read) the serving workload needs at the least, in any engine.

    Every prompt token and every generated token but the last passes through each layer's
    projections once (2 FLOPs per weight); each generated token through the LM head; each of those
    tokens attends to its whole context (q·k and p·v: 4 FLOPs per head dimension per key); and each
    decode step reads its request's cached keys and values once. Prefill's reads of the cache and
    everything else (norms, sampling, Python) are left out: a lower bound on the work."""
    c = cfg
    q, kv = c.q_size, c.kv_size
    per_token = 2 * c.num_layers * c.hidden_size * (2 * q + 2 * kv + 3 * c.intermediate_size)
    flops = kv_bytes = 0.0
    for n, o in zip(prompt_lens, outs):
        rows = n + o - 1  # positions 0 ... n+o-2 run through the model; the last sampled token never does
        keys = rows * (rows + 1) // 2  # position p attends to p + 1 keys
        flops += rows * per_token + o * 2 * c.hidden_size * c.vocab_size + 4 * c.num_layers * q * keys
        decode_keys = keys - n * (n + 1) // 2  # the decode steps: positions n ... n+o-2
        kv_bytes += decode_keys * c.kv_bytes_per_token(kv_itemsize)
    return flops, kv_bytes


def product_rate(llm: LLM, rows: int = 1024, rounds: int = 3) -> float:
    """FLOP/s of the engine's own matrix product at prefill size, on its widest weight (gate/up): what
    this machine's arithmetic reaches in practice, measured now (the best of `rounds`)."""
    w = llm.model.layers[0].gate_up
    x = torch.randn(rows, llm.config.hidden_size, dtype=llm.dtype, device=llm.device.torch_device)
    flops = 2 * rows * llm.config.hidden_size * 2 * llm.config.intermediate_size
    with torch.inference_mode():
        llm.model.matmul(x, w)  # warm-up
        return flops / min(_timed(lambda: llm.model.matmul(x, w)) for _ in range(rounds))


def serving_bound_line(llm: LLM, prompt_lens: list[int], outs: list[int], secs: float, hf_secs: float | None) -> str:
    """How close the serving run came to this machine's bound: its least work (`serving_work`) at the
    engine's measured product rate, then its K/V reads at the measured copy bandwidth (one after the
    other, as a step runs them; all of it, attention too, at the rate of a large product)."""
    flops, kv_bytes = serving_work(llm.config, prompt_lens, outs, llm.dtype.itemsize)
    rows = 1024  # a prefill step's product: the engine's best rate on this machine
    rate, bw = product_rate(llm, rows), memory_bandwidth()
    bound = flops / rate + kv_bytes / bw
    line = (f"serving computes {flops / 1e12:.2f} TFLOP and reads {kv_bytes / 1e9:.1f} GB of cached K/V: a bound of "
            f"{bound:.1f} s at this machine's {rate / 1e9:.0f} GFLOP/s (a {rows}-row product, measured now) and "
            f"{bw / 1e9:.1f} GB/s copy bandwidth; minfer took {secs:.1f} s, {bound / secs:.0%} of the bound's speed")
    if hf_secs:
        line += f"; transformers {hf_secs:.1f} s (the bound allows at most {hf_secs / bound:.1f}x transformers)"
    return line


def print_table(rows: list[Row], title: str) -> None:
    print(f"\n{title}")
    print(f"| {'metric':50} | {'minfer':>10} | {'transformers':>12} | {'ratio':>7} |")
    print(f"|{'-' * 52}|{'-' * 11}:|{'-' * 13}:|{'-' * 8}:|")
    for r in rows:
        hf = f"{r.hf:.3f}" if r.hf is not None else "-"
        print(f"| {r.metric:50} | {r.minfer:10.3f} | {hf:>12} | {r.ratio():>7} |")
    print("ratio > 1 means minfer is better (faster, or sooner)")
    for r in rows:
        if r.note:
            print(r.note)


def memory_bandwidth(nbytes: int = 256 << 20) -> float:
    """Bytes per second this machine streams in a large copy (read + write counted)."""
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)  # fault the pages in first
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(3))
    return 2 * nbytes / best


def bandwidth_line(llm: LLM, decode_tps: float, bw: float) -> str:
    """Batch-1 decode reads every weight once per token: how close is that to the memory bound (`bw`
    bytes/s, measured beside the decode: Row.bandwidth)?"""
    per_token = llm.model.step_bytes
    return (f"batch-1 decode reads {per_token / 2**20:.0f} MiB of weights per token: {per_token * decode_tps / 1e9:.1f} GB/s "
            f"= {per_token * decode_tps / bw:.0%} of this machine's {bw / 1e9:.1f} GB/s copy bandwidth "
            f"(bound: {bw / per_token:.0f} tokens/s)")


def profile_run(llm: LLM, path: str, seed: int) -> None:
    """A short mixed workload under the timeline, memory probe and hardware monitor."""
    from minfer.diagnostics.hardware import HardwareMonitor

    rng = random.Random(seed)
    prompts = [_prompt(rng, rng.randint(16, 256), llm.config.vocab_size) for _ in range(8)]
    params = SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)
    with HardwareMonitor() as hw, llm.tracing(memory=True) as tl:
        llm.generate(prompts, params)
    tl.save_chrome(path)
    total = sum(tl.totals(depth=0).values())
    print(f"\nprofile: 8 requests x 32 tokens, {len(tl.steps())} steps, {total:.2f} s; trace: {path} (ui.perfetto.dev)")
    for name, sec in sorted(tl.totals(depth=2).items(), key=lambda kv: -kv[1]):
        print(f"  {name:10} {sec:7.3f} s {sec / total:6.1%}")
    print("  " + hw.summary())


@dataclass
class SweepPoint:
    kind: str  # "batch": decode throughput at batch size `x`; "prompt": prefill of an `x`-token prompt
    x: int
    tokens_per_s: float
    kv_mib: float  # most KV cache held at once
    workspace_mib: float  # the step allocator's peak


def bench_sweep(llm: LLM, seed: int, batches=(1, 4, 16, 64), lengths=(16, 128, 512, 2048),
                new_tokens: int = 16, prompt: int = 64) -> list[SweepPoint]:
    """How cost grows: decode throughput with the batch size, prefill throughput with the prompt length."""
    rng = random.Random(seed)
    vocab, points = llm.config.vocab_size, []

    def measure(kind: str, x: int, prompts: list[list[int]], n: int, count) -> None:
        llm.kv.peak_blocks, llm.allocator.peak = 0, 0
        ids = [llm.add_request(p, SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)) for p in prompts]
        start, first = time.perf_counter(), None
        while llm.has_unfinished():
            llm.step()
            if first is None and all(llm.reqs[i].output_ids for i in ids):
                first = time.perf_counter()  # every prompt is in: what follows is pure decode
        end = time.perf_counter()
        for i in ids:
            llm.pop_output(i)
        points.append(SweepPoint(kind, x, count(start, first, end), llm.kv.peak_blocks * llm.kv.block_bytes / 2**20,
                                 llm.allocator.stats().peak / 2**20))

    for b in batches:
        measure("batch", b, [_prompt(rng, prompt, vocab) for _ in range(b)], new_tokens,
                lambda s, f, e, b=b: b * (new_tokens - 1) / (e - f))
    for n in sorted({min(n, llm.max_model_len - 1) for n in lengths}):  # capped by the context window
        measure("prompt", n, [_prompt(rng, n, vocab)], 1, lambda s, f, e, n=n: n / (f - s))
    return points


def print_sweep(points: list[SweepPoint], plot: str | None) -> None:
    print(f"\n| {'sweep':34} | {'tokens/s':>9} | {'KV MiB':>8} | {'workspace MiB':>13} |")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 10}|{'-' * 15}|")
    for p in points:
        what = f"decode, batch {p.x}" if p.kind == "batch" else f"prefill, {p.x}-token prompt"
        print(f"| {what:34} | {p.tokens_per_s:9.1f} | {p.kv_mib:8.1f} | {p.workspace_mib:13.1f} |")
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        plot_sweep(points).savefig(plot, dpi=120)
        print(f"sweep plot: {plot}")


def plot_sweep(points: list[SweepPoint]):
    """Two panels: decode tokens/s against batch size, prefill tokens/s against prompt length; memory dashed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for ax, kind, label in zip(axes, ("batch", "prompt"), ("batch size (decode)", "prompt length (prefill)")):
        pts = [p for p in points if p.kind == kind]
        ax.plot([p.x for p in pts], [p.tokens_per_s for p in pts], "o-", label="tokens/s")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(label)
        ax.set_ylabel("tokens/s")
        mem = ax.twinx()
        mem.plot([p.x for p in pts], [p.kv_mib + p.workspace_mib for p in pts], "s--", color="grey")
        mem.set_ylabel("KV + workspace, MiB (dashed)")
    fig.tight_layout()
    return fig


# a fixed text for perplexity: plain English prose the model has not been asked about
PERPLEXITY_TEXT = (
    "The history of computing is a history of memory. Early machines stored their programs on punched cards "
    "and paper tape, and every improvement in speed was followed by a search for somewhere faster to keep the "
    "numbers being worked on. Caches, pages and virtual memory were all invented to hide the distance between "
    "a processor and the data it needs. Today a language model spends most of its time moving weights and "
    "cached keys and values from memory to the arithmetic units, and the engineers who serve such models at "
    "scale think less about multiplication than about where each byte lives and how often it must travel."
)


def accuracy_report(llm: LLM, model: str, device: str, prompts: int = 8, tokens: int = 64,
                    ref: LLM | None = None) -> str:
    """Greedy agreement and perplexity of `llm` (a faster dtype, or int8 weights) against the same model
    in float32 (`ref`, loaded here when not given)."""
    ref = ref or LLM(model, device=device, dtype="float32")
    rng = random.Random(1)
    asks = [f"Tell me something about the number {rng.randint(2, 999)}." for _ in range(prompts)]
    chat = [llm.chat_prompt([{"role": "user", "content": q}]) if llm.tokenizer.chat_template else q for q in asks]
    params = SamplingParams(temperature=0, max_tokens=tokens, ignore_eos=True)
    agree = total = 0
    for ours, theirs in zip(llm.generate(chat, params), ref.generate(chat, params)):
        same = next((i for i, (x, y) in enumerate(zip(ours.token_ids, theirs.token_ids)) if x != y), tokens)
        agree, total = agree + same, total + tokens
    ids = llm.tokenizer.encode(PERPLEXITY_TEXT)[:llm.max_model_len]  # tiny test models have short windows
    ppl = torch.exp(-llm.score(ids).mean()).item()
    ppl_ref = torch.exp(-ref.score(ids).mean()).item()
    int8 = " with int8 weights" if isinstance(llm.model.lm_head, Int8Weight) else ""
    return (f"accuracy of {llm.dtype}{int8} against float32: greedy tokens identical up to the first divergence "
            f"{agree}/{total} ({agree / total:.0%}); perplexity on a fixed {len(ids)}-token text {ppl:.3f} "
            f"vs {ppl_ref:.3f} ({ppl / ppl_ref - 1:+.2%})")


def run_bench(a: argparse.Namespace) -> int:
    torch.manual_seed(a.seed)
    llm = LLM(a.model, device=a.device, dtype=a.dtype, quantize=a.quantize)
    hf = None if a.no_hf else _hf_model(llm.path, llm.dtype, a.device)
    rng = random.Random(a.seed)
    rows: list[Row] = []
    long_prompt = _prompt(rng, min(a.long_prompt_tokens, llm.max_model_len - 1), llm.config.vocab_size)
    decode_prompt = _prompt(rng, a.prompt_tokens, llm.config.vocab_size)
    if "decode" not in a.skip:
        rows += bench_decode(llm, hf, decode_prompt, a.decode_tokens, long_prompt)
    if "serve" not in a.skip:
        rows += bench_serving(llm, hf, a.requests, a.seed)
    where = torch.cuda.get_device_name(a.device) if a.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    weights = f", {a.quantize} weights (decode)" if a.quantize else ""
    print_table(rows, f"minfer bench: {a.model}, {a.dtype}{weights}, {where}")
    if "decode" not in a.skip and rows[0].bandwidth:
        print(bandwidth_line(llm, rows[0].minfer, rows[0].bandwidth))
    if "switches" not in a.skip:
        print_switches(bench_switches(llm, a.seed, long_prompt))
    # beside a float32 run, the faster dtype path too, so that one run prints every ratio
    if ("fast" not in a.skip and "decode" not in a.skip and a.dtype == "float32" and not a.quantize
            and can_quantize(llm.device, torch.bfloat16)):
        fast, rows = bench_fast_path(llm, hf is not None, decode_prompt, a.decode_tokens, a.requests, a.seed,
                                     serve="serve" not in a.skip)
        print_table(rows, f"faster dtype path: {a.model}, bfloat16 with int8 weights (decode), against transformers "
                          f"in bfloat16, {where}")
        if rows[0].bandwidth:
            print(bandwidth_line(fast, rows[0].minfer, rows[0].bandwidth))
        if "switches" not in a.skip:
            print_switches(compiled_switches(fast, long_prompt))
        print(accuracy_report(fast, a.model, a.device, ref=llm))
        del fast
    if a.accuracy:
        print(accuracy_report(llm, a.model, a.device))
    if a.sweep:
        print_sweep(bench_sweep(llm, a.seed), None if a.sweep == "-" else a.sweep)
    if a.profile:
        profile_run(llm, a.profile, a.seed)
    return 0
