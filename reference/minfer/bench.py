"""`minfer bench`: minfer and Hugging Face transformers on the same weights, in the same run.

Speed claims are ratios against a peer measured seconds apart on the same machine, never absolute
numbers compared across runs. transformers is a test/bench dependency only (`pip install minfer[test]`).
"""
from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass

import torch

from .core import SamplingParams
from .engine import LLM


@dataclass
class Row:
    metric: str
    minfer: float
    hf: float | None
    higher_is_better: bool

    def ratio(self) -> str:
        if not self.hf:
            return "-"
        r = self.minfer / self.hf if self.higher_is_better else self.hf / self.minfer
        return f"{r:.2f}x"


def _hf_model(path, dtype: torch.dtype):
    try:
        import transformers
    except ImportError as e:
        raise RuntimeError("minfer bench compares against transformers: pip install 'minfer[test]'") from e
    return transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).eval()


def _hf_generate(model, batch: list[list[int]], new_tokens: int) -> None:
    """Static batch, left-padded, exactly `new_tokens` new tokens for every row."""
    width = max(len(ids) for ids in batch)
    ids = torch.tensor([[0] * (width - len(x)) + x for x in batch])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in batch])
    with torch.inference_mode():
        model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       do_sample=False, eos_token_id=None, pad_token_id=0)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
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


def bench_decode(llm: LLM, hf, prompt: list[int], n: int) -> list[Row]:
    _minfer_run(llm, prompt, 4)  # warm-up
    ttft = min(_minfer_run(llm, prompt, 1)[0] for _ in range(3))
    decode = _minfer_run(llm, prompt, n)[1]
    rows = [Row(f"batch-1 decode, tokens/s ({n} tokens)", (n - 1) / decode, None, True),
            Row(f"time to first token, s ({len(prompt)}-token prompt)", ttft, None, False)]
    if hf is not None:
        _hf_generate(hf, [prompt], 4)
        hf_ttft = min(_timed(lambda: _hf_generate(hf, [prompt], 1)) for _ in range(3))
        hf_full = _timed(lambda: _hf_generate(hf, [prompt], n))
        rows[0].hf, rows[1].hf = (n - 1) / (hf_full - hf_ttft), hf_ttft
    return rows


def bench_serving(llm: LLM, hf, num: int, seed: int) -> list[Row]:
    """64 requests, prompts of 16-512 tokens, outputs of 16-256 tokens; only requested tokens count."""
    rng = random.Random(seed)
    prompts = [_prompt(rng, rng.randint(16, min(512, llm.max_model_len // 2)), llm.config.vocab_size) for _ in range(num)]
    outs = [rng.randint(16, 256) for _ in range(num)]
    total = sum(outs)
    params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for n in outs]
    secs = _timed(lambda: llm.generate(prompts, params))
    row = Row(f"serving {num} requests, tokens/s ({total} tokens)", total / secs, None, True)
    if hf is not None:
        hf_secs = 0.0
        for i in range(0, num, 16):  # static batches of 16, each run to its longest request
            hf_secs += _timed(lambda: _hf_generate(hf, prompts[i:i + 16], max(outs[i:i + 16])))
        row.hf = total / hf_secs
    return [row]


def print_table(rows: list[Row], title: str) -> None:
    print(f"\n{title}")
    print(f"| {'metric':50} | {'minfer':>10} | {'transformers':>12} | {'ratio':>7} |")
    print(f"|{'-' * 52}|{'-' * 11}:|{'-' * 13}:|{'-' * 8}:|")
    for r in rows:
        hf = f"{r.hf:.3f}" if r.hf is not None else "-"
        print(f"| {r.metric:50} | {r.minfer:10.3f} | {hf:>12} | {r.ratio():>7} |")
    print("ratio > 1 means minfer is better (faster, or sooner)")


def memory_bandwidth(nbytes: int = 256 << 20) -> float:
    """Bytes per second this machine streams in a large copy (read + write counted)."""
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)  # fault the pages in first
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(3))
    return 2 * nbytes / best


def bandwidth_line(llm: LLM, decode_tps: float) -> str:
    """Batch-1 decode reads every weight once per token: how close is that to the memory bound?"""
    bw = memory_bandwidth()
    per_token = llm.model.weight_bytes
    return (f"batch-1 decode reads {per_token / 2**20:.0f} MiB of weights per token: {per_token * decode_tps / 1e9:.1f} GB/s "
            f"= {per_token * decode_tps / bw:.0%} of this machine's {bw / 1e9:.1f} GB/s copy bandwidth "
            f"(bound: {bw / per_token:.0f} tokens/s)")


def profile_run(llm: LLM, path: str, seed: int) -> None:
    """A short mixed workload under the timeline, memory probe and hardware monitor."""
    from .diagnostics.hardware import HardwareMonitor

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


def run_bench(a: argparse.Namespace) -> int:
    torch.manual_seed(a.seed)
    llm = LLM(a.model, device=a.device, dtype=a.dtype)
    hf = None if a.no_hf else _hf_model(llm.path, llm.dtype)
    rng = random.Random(a.seed)
    rows: list[Row] = []
    if "decode" not in a.skip:
        rows += bench_decode(llm, hf, _prompt(rng, a.prompt_tokens, llm.config.vocab_size), a.decode_tokens)
    if "serve" not in a.skip:
        rows += bench_serving(llm, hf, a.requests, a.seed)
    print_table(rows, f"minfer bench: {a.model}, {a.dtype}, {torch.get_num_threads()} threads")
    if "decode" not in a.skip and a.device == "cpu":
        print(bandwidth_line(llm, rows[0].minfer))
    if a.profile:
        profile_run(llm, a.profile, a.seed)
    return 0
