"""Compile lab 2's kernels with CUDA's own compiler (NVVM), no GPU needed.

The simulator runs kernels as Python, so it accepts code no GPU can run (a Python list, an f-string,
np.zeros, ...). numba.cuda.compile_ptx lowers a kernel exactly as a GPU launch would, and fails on
such code. numba picks simulator or compiler once per process, so this runs in its own process:

    python -m minfer_course.ptx --impl reference     # JSON on stdout

{"toolchain": null or why NVVM could not be found, "kernels": {"tiled/float32": {"ptx": "..."} or {"error": "..."}}}
NVVM and NVRTC come from the pip wheels nvidia-nvvm and nvidia-cuda-nvrtc (the test extra).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DTYPES = ("float32", "float16")
CC = (8, 0)  # any real architecture will do: the point is that the compiler accepts the kernel


def compile_kernels(kernels: Any, tile: int, rb: int) -> dict[str, dict[str, str]]:
    from minfer.hal.cudasim import numba_cuda

    cuda = numba_cuda(simulate=False)
    out = {}
    for kind in kernels.KINDS:
        for dtype in DTYPES:
            t = getattr(cuda.types, dtype)
            sig = (t[:, ::1], t[:, ::1], t[:, ::1])
            try:
                kernel = kernels.kernel_for(kind, tile, rb)
                ptx, _ = cuda.compile_ptx(getattr(kernel, "py_func", kernel), sig, cc=CC)
                out[f"{kind}/{dtype}"] = {"ptx": ptx}
            except Exception as e:  # noqa: BLE001 - the student's code: report whatever the compiler says
                out[f"{kind}/{dtype}"] = {"error": f"{type(e).__name__}: {e}"}
    return out


def toolchain_problem() -> str | None:
    """None when NVVM compiles a trivial kernel, else why not (a missing wheel, usually)."""
    from minfer.hal.cudasim import numba_cuda

    cuda = numba_cuda(simulate=False)

    def probe(x):
        x[0] = 1.0

    try:
        cuda.compile_ptx(probe, (cuda.types.float32[::1],), cc=CC)
    except Exception as e:  # noqa: BLE001
        return (f"CUDA's compiler is not usable here ({type(e).__name__}: {str(e)[:300]}); "
                "install the test extra: pip install -e '.[test]' (nvidia-nvvm, nvidia-cuda-nvrtc)")
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", default="student", help="student | reference | a folder with matmul_numba.py")
    p.add_argument("--tile", type=int, default=16)
    p.add_argument("--rb", type=int, default=4)
    a = p.parse_args(argv)
    problem = toolchain_problem()
    result: dict[str, Any] = {"toolchain": problem, "kernels": {}}
    if problem is None:
        from minfer_course.labs import load

        try:
            kernels = load("lab2", a.impl).matmul_numba
            result["kernels"] = compile_kernels(kernels, a.tile, a.rb)
        except Exception as e:  # noqa: BLE001 - a module that does not even import
            result["kernels"] = {"module": {"error": f"{type(e).__name__}: {e}"}}
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
