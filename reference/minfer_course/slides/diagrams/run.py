"""One short serving run of the real engine, recorded once per build: most diagrams draw from it.

Four requests arrive at different steps (two share a prefix; one is long enough to be prefilled in
chunks) on an engine with small KV blocks and a small token budget, so one run shows continuous
batching, chunked prefill, prefix sharing, the workspace's allocations and a traced decode step.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from minfer.core import SamplingParams
from minfer_course.tiny_model import write_tiny_llama
from minfer.diagnostics.timeline import Timeline
from minfer.engine import LLM
from minfer.loader import store
from minfer.loader.config import ModelConfig

BLOCK_SIZE = 4  # tokens per KV block: small, so a short request already spans several blocks
MAX_BATCH_TOKENS = 32  # the token budget per step: small, so the long prompt is chunked
PREFIX = "You are a helpful assistant. Paged attention keeps keys and values in fixed-size blocks."
# (arrives before step, name, text, prompt tokens, new tokens); A and B share PREFIX's first 16 tokens
WORKLOAD = [(0, "A", PREFIX + " What is a KV cache?", 22, 8), (0, "C", "Hello! How are you today?", 6, 4),
            (2, "B", PREFIX + " Why are blocks a fixed size?", 22, 8),
            (3, "D", "Summarize: continuous batching lets requests join and leave between any two steps. " * 4, 60, 6)]
SHARED_PREFIX = 16


@dataclass(frozen=True)
class StepItem:
    req: str  # the request's name in WORKLOAD
    tokens: int
    prefill: bool  # tokens of the prompt (else one decode token)


@dataclass(frozen=True)
class MemEvent:
    live: list[tuple[int, int]]  # the allocator's live blocks, (offset, bytes)
    allocated: int
    reserved: int


@dataclass(frozen=True)
class KVSnapshot:
    step: int
    tables: dict[str, list[int]]  # running request -> its block table
    ref_counts: list[int]  # per block of the pool
    cached: list[bool]  # per block: registered in the prefix cache
    tokens: dict[str, int]  # running request -> tokens whose K/V are in the cache


@dataclass
class EngineRun:
    model: str
    config: ModelConfig
    arena: int  # bytes of the workspace arena
    buffer_names: list[str]  # the order a step takes its workspace buffers
    steps: list[list[StepItem]] = field(default_factory=list)
    memory: list[MemEvent] = field(default_factory=list)
    kv: KVSnapshot | None = None
    timeline: Timeline = field(default_factory=Timeline)
    first_logits: torch.Tensor | None = None  # request A's next-token logits after its prompt
    decode: Callable[[list[int]], str] | None = None  # the tokenizer's decode


def model_path(model: str, scratch: Path) -> tuple[str, Path]:
    """("smollm2-135m", its folder) when pulled, else a tiny random Llama (or `model` when given)."""
    if model != "auto":
        return Path(model).name, store.resolve(model)
    try:
        return "smollm2-135m", store.resolve("smollm2-135m", pull_missing=False)
    except FileNotFoundError:
        # wider than the lab 2 default, so the pictures show grouped-query attention and two layers
        tiny = write_tiny_llama(scratch / "tiny-llama", hidden=64, heads=4, kv_heads=2, intermediate=128, layers=2)
        return "tiny random Llama (SmolLM2 not pulled)", tiny


def _fit(ids: list[int], n: int) -> list[int]:
    """Exactly n token ids: the prompt repeated or cut, so every model gets the same shapes."""
    return (ids * (n // max(len(ids), 1) + 1))[:n]


def _watch_memory(llm: LLM, run: EngineRun) -> None:
    """Snapshot the live blocks after every malloc and free of this engine's allocator (this
    instance only: its methods are shadowed by recording wrappers)."""
    alloc = llm.allocator
    malloc, free = alloc.malloc, alloc.free

    def snap() -> None:
        s = alloc.stats()
        run.memory.append(MemEvent(sorted(alloc.used.items()), s.allocated, s.reserved))

    def recording_malloc(nbytes: int) -> int:
        offset = malloc(nbytes)
        snap()
        return offset

    def recording_free(offset: int) -> None:
        free(offset)
        snap()

    alloc.malloc, alloc.free = recording_malloc, recording_free


def _kv_snapshot(llm: LLM, step: int, names: dict[int, str]) -> KVSnapshot:
    pool = llm.kv.pool
    running = llm.scheduler.running
    return KVSnapshot(step, {names[r.req_id]: list(r.block_table) for r in running},
                      [b.ref_count for b in pool.blocks], [b.hash is not None for b in pool.blocks],
                      {names[r.req_id]: r.num_computed for r in running})


def record_run(model: str = "auto") -> EngineRun:
    with tempfile.TemporaryDirectory(prefix="minfer-slides-") as scratch:
        name, path = model_path(model, Path(scratch))
        llm = LLM(str(path), block_size=BLOCK_SIZE, max_batch_tokens=MAX_BATCH_TOKENS, max_running=8, kv_cache_mb=16)
    run = EngineRun(name, llm.config, llm.allocator.capacity, list(llm.model.buffer_plan(1)),
                    decode=llm.tokenizer.tokenizer.decode)
    _watch_memory(llm, run)
    forward = llm.model.forward

    def recording_forward(*args, **kwargs) -> torch.Tensor:
        logits = forward(*args, **kwargs)
        if run.first_logits is None:
            run.first_logits = logits[0].detach().clone()
        return logits

    llm.model.forward = recording_forward
    names: dict[int, str] = {}
    last_arrival = max(w[0] for w in WORKLOAD)
    with llm.tracing(run.timeline):
        step = 0
        while step <= last_arrival or llm.has_unfinished():
            for arrive, label, text, n_prompt, n_new in WORKLOAD:
                if arrive == step:
                    ids = _fit(llm.tokenizer.encode(text), n_prompt)
                    if label == "B":  # the same first SHARED_PREFIX tokens as A, whatever the tokenizer
                        ids[:SHARED_PREFIX] = _fit(llm.tokenizer.encode(PREFIX), SHARED_PREFIX)
                    names[llm.add_request(ids, SamplingParams(temperature=0.0, max_tokens=n_new, ignore_eos=True))] = label
            before = {i: r.num_computed for i, r in llm.reqs.items()}
            llm.step()
            run.steps.append(_step_items(llm, before, names))
            snap = _kv_snapshot(llm, step, names)
            if run.kv is None or sum(map(len, snap.tables.values())) > sum(map(len, run.kv.tables.values())):
                run.kv = snap  # keep the busiest moment
            step += 1
    return run


def _step_items(llm: LLM, before: dict[int, int], names: dict[int, str]) -> list[StepItem]:
    """What each request computed in the step just run (a new request starts after its cached prefix)."""
    items = []
    for i, r in llm.reqs.items():
        start = max(before.get(i, 0), r.num_cached)
        if r.num_computed > start:
            items.append(StepItem(names[i], r.num_computed - start, start < len(r.prompt_ids)))
    return items
