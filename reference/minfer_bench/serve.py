"""`minfer bench serve`: load the HTTP server at several concurrencies and print what users feel.

At concurrency c, `requests` streamed completions are sent with at most c in flight. Each has a
fixed length (ignore_eos), so every level does the same work. Time to first token (TTFT) runs from
sending the request to the first chunk of text; time between tokens (TBT) is the gap between
successive text chunks (a chunk is one token, unless the detokenizer held a partial character back).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import httpx

from minfer.engine import LLM
from minfer.server.runner import BackgroundServer

QUANTILES = (0.5, 0.9, 0.99)


@dataclass
class Trace:
    start: float
    chunks: list[float]  # arrival time of each chunk that carried text
    tokens: int  # completion tokens, from the final usage chunk


@dataclass
class Level:
    concurrency: int
    seconds: float
    traces: list[Trace]

    @property
    def ttft(self) -> list[float]:
        return [t.chunks[0] - t.start for t in self.traces if t.chunks]

    @property
    def tbt(self) -> list[float]:
        return [b - a for t in self.traces for a, b in zip(t.chunks, t.chunks[1:])]


def percentile(xs: list[float], q: float) -> float:
    """Nearest rank; nan for no data (a 1-token output has no time between tokens)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def _one(client: httpx.AsyncClient, url: str, model: str, i: int, max_tokens: int) -> Trace:
    # a different first block per request, so the prefix cache cannot serve one request from another
    prompt = f"Request {i}: tell me a long story about a lighthouse keeper and the sea."
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    trace = Trace(time.perf_counter(), [], 0)
    async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if chunk.get("usage"):
                trace.tokens = chunk["usage"]["completion_tokens"]
            elif chunk["choices"][0]["text"]:
                trace.chunks.append(time.perf_counter())
    return trace


async def run_level(url: str, model: str, concurrency: int, requests: int, max_tokens: int) -> Level:
    gate = asyncio.Semaphore(concurrency)

    async def gated(client: httpx.AsyncClient, i: int) -> Trace:
        async with gate:
            return await _one(client, url, model, i, max_tokens)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        start = time.perf_counter()
        traces = await asyncio.gather(*(gated(client, i) for i in range(requests)))
        return Level(concurrency, time.perf_counter() - start, list(traces))


def print_table(levels: list[Level], title: str) -> None:
    print(f"\n{title}")
    print("| concurrency | requests/s | output tok/s | TTFT p50 / p90 / p99 (ms) | TBT p50 / p90 / p99 (ms) |")
    print("|------------:|-----------:|-------------:|--------------------------:|-------------------------:|")
    def ms(xs: list[float]) -> str:
        return " / ".join(f"{1000 * percentile(xs, q):.1f}" for q in QUANTILES)

    for lv in levels:
        tokens = sum(t.tokens for t in lv.traces)
        print(f"| {lv.concurrency:11} | {len(lv.traces) / lv.seconds:10.2f} | {tokens / lv.seconds:12.1f} "
              f"| {ms(lv.ttft):>25} | {ms(lv.tbt):>24} |")


def run_load_bench(a: argparse.Namespace, make_llm: Callable[[], LLM]) -> int:
    """Against `--url`, or else a server started here on a free port around `make_llm()`."""
    levels = [int(c) for c in a.concurrency.split(",")]
    if any(c < 1 for c in levels) or a.requests < 1 or a.max_tokens < 1:
        raise ValueError("--concurrency, --requests and --max-tokens must be positive")
    with nullcontext() if a.url else BackgroundServer(make_llm()) as server:
        url = (a.url or server.url).rstrip("/")
        model = httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"]
        asyncio.run(run_level(url, model, 1, 1, 2))  # warm-up: first-call costs stay out of the table
        results = [asyncio.run(run_level(url, model, c, a.requests, a.max_tokens)) for c in levels]
    print_table(results, f"minfer bench serve: {model} at {url}, {a.requests} requests x {a.max_tokens} tokens each")
    return 0
