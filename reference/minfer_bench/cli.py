"""`minfer bench ...`: the benchmarks' command, registered on minfer's command line (minfer.cli), so
that the engine carries none of it. Its modes: `serve` loads the HTTP server, `matmul` times lab 2's
kernels on a GPU."""
from __future__ import annotations

import argparse

from minfer.cli import build_llm, engine_args, kernel_args, server_module


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="minfer vs transformers on the same weights, as a table of ratios")
    engine_args(p)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--prompt-tokens", type=int, default=100, help="prompt length for decode and time to first token")
    p.add_argument("--long-prompt-tokens", type=int, default=1000, help="the long prompt's length (time to first token)")
    p.add_argument("--requests", type=int, default=64, help="requests in the serving workload")
    p.add_argument("--skip", action="append", default=[], choices=["decode", "serve", "switches", "fast"],
                   help="leave a part out (repeatable); fast: the bfloat16 + int8 table a float32 run adds on a CPU")
    p.add_argument("--no-hf", action="store_true", help="minfer alone (no transformers column)")
    p.add_argument("--accuracy", action="store_true",
                   help="with --dtype bfloat16/float16: greedy agreement and perplexity against float32")
    p.add_argument("--sweep", metavar="OUT.png", default=None,
                   help="also sweep batch size 1-64 and prompt length 16-2048: tokens/s and memory, plotted to OUT.png ('-': table only)")
    p.add_argument("--profile", metavar="OUT.json", default=None,
                   help="also profile a short workload: per-operator times, memory, CPU/GPU use; Chrome trace to OUT.json")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_bench)
    modes = p.add_subparsers(dest="bench_mode", metavar="{serve,matmul}")
    q = modes.add_parser("matmul", help="lab 2's numba.cuda kernels against torch.matmul on a GPU: GFLOP/s and ratios")
    from minfer_course.matmul_bench import build_parser as matmul_bench_args

    matmul_bench_args(q)
    q.set_defaults(func=cmd_bench_matmul)
    q = modes.add_parser(
        "serve", help="load the HTTP server: requests/s, time to first token, time between tokens")
    engine_args(q)
    kernel_args(q)
    q.add_argument("--url", default=None, help="a running server (default: start one here on a free port)")
    q.add_argument("--concurrency", default="1,4,16,32", help="comma-separated levels of requests in flight")
    q.add_argument("--requests", type=int, default=32, help="requests at each level")
    q.add_argument("--max-tokens", type=int, default=32, help="output tokens per request (EOS ignored)")
    q.set_defaults(func=cmd_bench_serve)


def cmd_bench(a: argparse.Namespace) -> int:
    from .engine import run_bench

    return run_bench(a)


def cmd_bench_serve(a: argparse.Namespace) -> int:
    return server_module("minfer_bench.serve").run_load_bench(a, lambda: build_llm(a))


def cmd_bench_matmul(a: argparse.Namespace) -> int:
    from minfer_course.matmul_bench import run

    return run(a)
