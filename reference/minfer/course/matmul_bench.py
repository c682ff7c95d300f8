"""Time lab 2's kernels against torch on a GPU:  python -m minfer.course.matmul_bench --impl reference

It runs in a process of its own because numba chooses GPU or simulator once per process, and the
lab notebook's process has chosen the simulator (for the tracer). Without a GPU it says so and exits.
"""
from __future__ import annotations

import argparse
import sys

import torch

# (kernel, tile, rb): the GPU sizes worth comparing
CONFIGS = [("naive", 16, 1), ("tiled", 16, 1), ("tiled", 32, 1), ("regblock", 16, 4)]


def time_ms(fn, repeat: int = 10) -> float:
    fn()  # compile (numba) or pick an algorithm (cuBLAS) outside the timing
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(repeat):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeat


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", default="student", help="student | reference | a folder with matmul_numba.py")
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096], help="M = K = N")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU is visible: the benchmark needs one (the simulator's timings would mean nothing)")
        return 0
    from minfer.course.labs import load
    from minfer.hal.cudasim import numba_cuda

    numba_cuda(simulate=False)
    kernels = load("lab2", a.impl).matmul_numba
    print(f"{torch.cuda.get_device_name()}, float32; GFLOP/s (ms)")
    print(f"{'M=K=N':>6} {'torch':>16}" + "".join(f"{f'{k} {t}' + (f'x{r}' if r > 1 else ''):>18}" for k, t, r in CONFIGS))
    for n in a.sizes:
        x, w = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")
        out = torch.empty(n, n, device="cuda")
        runs = [lambda x=x, w=w, out=out: torch.matmul(x, w, out=out)]
        runs += [lambda x=x, w=w, out=out, k=k, t=t, r=r: kernels.matmul(x, w, out, kind=k, tile=t, rb=r)
                 for k, t, r in CONFIGS]
        cells = []
        for run in runs:
            ms = time_ms(run)
            cells.append(f"{2 * n**3 / ms / 1e6:9.0f} ({ms:6.2f})")
        print(f"{n:>6} " + " ".join(f"{c:>17}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
