"""`minfer bench matmul`: lab 2's kernels against torch.matmul (cuBLAS) on a GPU, as GFLOP/s and ratios.

Also runnable as `python -m minfer_course.matmul_bench --impl student` (the lab 2 notebook does so):
it must run in a process of its own because numba chooses GPU or simulator once per process, and
the notebook's process has chosen the simulator (for the tracer). Without a GPU it says why it
cannot measure anything and exits with 0: simulated timings would time Python, not a GPU.

Every kernel's first result is checked against torch's before it is timed, so a wrong kernel is
reported as wrong instead of fast. cuBLAS runs in true float32 (TF32 off, torch's default), the
arithmetic the kernels do.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable

# (kernel, tile, rb): the sizes worth comparing on a GPU. Register blocking gets two shapes: 4 x 4
# outputs per thread (the lab's default) and 8 x 8 (fewer shared-memory reads per product).
CONFIGS = [("naive", 16, 1), ("tiled", 16, 1), ("tiled", 32, 1), ("regblock", 16, 4), ("regblock", 16, 8)]
SIZES = [256, 512, 1024, 2048, 4096]


def parse_config(text: str) -> tuple[str, int, int]:
    """'tiled:32' or 'regblock:16x8' -> (kind, tile, rb)."""
    kind, _, shape = text.partition(":")
    tile, _, rb = (shape or "16").partition("x")
    try:
        if kind not in ("naive", "tiled", "regblock"):
            raise ValueError(kind)
        return kind, int(tile), int(rb or (4 if kind == "regblock" else 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KIND[:TILE[xRB]] with KIND naive, tiled or "
                                         "regblock, e.g. tiled:32 or regblock:16x8") from None


def label(kind: str, tile: int, rb: int) -> str:
    return f"{kind} {tile}" + (f"x{rb}" if kind == "regblock" else "")


def time_ms(fn: Callable[[], object], min_ms: float = 50.0) -> float:
    """Mean milliseconds per call, repeating until `min_ms` of GPU time has passed (at least 3 calls)."""
    import torch

    fn()  # compile (numba) or choose an algorithm (cuBLAS) outside the timing
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    repeat, elapsed = 3, 0.0
    while True:
        torch.cuda.synchronize()
        start.record()
        for _ in range(repeat):
            fn()
        end.record()
        torch.cuda.synchronize()
        elapsed = start.elapsed_time(end)
        if elapsed >= min_ms or repeat >= 1000:
            return elapsed / repeat
        repeat = min(1000, max(repeat * 2, int(repeat * min_ms / max(elapsed, 1e-3)) + 1))


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", default="reference", help="reference | student | a folder with matmul_numba.py")
    p.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="square sizes M = K = N")
    p.add_argument("--kernels", type=parse_config, nargs="+", default=CONFIGS, metavar="KIND[:TILE[xRB]]",
                   help="kernels to time (default: naive:16 tiled:16 tiled:32 regblock:16x4 regblock:16x8)")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                   help="operand type (float16 is summed in float32 by the kernels and by cuBLAS)")
    return p


def run(a: argparse.Namespace) -> int:
    import torch  # here, not at the top: the CLI builds this parser for every command

    if not torch.cuda.is_available():
        print("minfer bench matmul: no CUDA GPU is visible, so there is nothing to measure. Under the simulator\n"
              "each GPU thread is a Python thread: its timings rank kernels by threads and barriers, not by\n"
              "memory traffic. Run this on a machine with an NVIDIA GPU.")
        return 0
    from minfer_course.labs import load
    from minfer.hal.cudasim import numba_cuda

    numba_cuda(simulate=False)  # raises if this process already chose the simulator
    # numba warns at every launch of fewer blocks than it likes: the small sizes, on purpose
    warnings.filterwarnings("ignore", message=".*under-utilization.*")
    kernels = load("lab2", a.impl).matmul_numba
    dtype = getattr(torch, a.dtype)
    torch.backends.cuda.matmul.allow_tf32 = False  # the kernels do true float32 arithmetic
    names = ["torch"] + [label(*c) for c in a.kernels]
    peer = "cuBLAS, TF32 off" if dtype == torch.float32 else "cuBLAS on tensor cores, which the kernels do not use"
    print(f"{torch.cuda.get_device_name()}, {a.dtype}: GFLOP/s, and % of torch.matmul ({peer})")
    print(f"{'M=K=N':>6} " + " ".join(f"{n:>18}" for n in names))
    worst: dict[str, float] = {}
    failed: dict[str, str] = {}
    for n in a.sizes:
        g = torch.Generator(device="cuda").manual_seed(n)
        x = torch.randn(n, n, device="cuda", generator=g).to(dtype)
        w = torch.randn(n, n, device="cuda", generator=g).to(dtype)
        ref = torch.empty(n, n, device="cuda", dtype=dtype)
        torch_ms = time_ms(lambda x=x, w=w, ref=ref: torch.matmul(x, w, out=ref))
        cells = [f"{2 * n**3 / torch_ms / 1e6:9.0f}" + " " * 9]
        for kind, tile, rb in a.kernels:
            out = torch.full((n, n), float("nan"), device="cuda", dtype=dtype)
            key = label(kind, tile, rb)
            try:
                kernels.matmul(x, w, out, kind=kind, tile=tile, rb=rb)
            except Exception as e:  # noqa: BLE001  e.g. too many registers x threads for one block
                failed.setdefault(key, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")
                cells.append(f"{'cannot launch':>18}")
                continue
            # relative to the result's scale (~sqrt(n)): float32 sums in another order differ slightly
            err = ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()
            worst[key] = max(worst.get(key, 0.0), err)
            if not err < (1e-4 if dtype == torch.float32 else 1e-2):
                cells.append(f"{'WRONG':>18}")
                continue
            ms = time_ms(lambda x=x, w=w, out=out, kind=kind, tile=tile, rb=rb: kernels.matmul(x, w, out, kind=kind, tile=tile, rb=rb))
            cells.append(f"{2 * n**3 / ms / 1e6:9.0f} ({100 * torch_ms / ms:4.0f}%)")
        print(f"{n:>6} " + " ".join(f"{c:>18}" for c in cells))
    print("largest error relative to the result's largest value: "
          + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    for key, why in failed.items():
        print(f"{key} cannot launch on this GPU: {why}")
    return 1 if failed or any(not v < (1e-4 if dtype == torch.float32 else 1e-2) for v in worst.values()) else 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
