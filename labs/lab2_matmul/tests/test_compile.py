"""Lab 2 public tests: CUDA's real compiler accepts every kernel (no GPU needed).

The simulator runs your kernel as Python, so it also runs Python no GPU can: lists, f-strings,
numpy functions. numba.cuda.compile_ptx turns each kernel into PTX, the GPU's assembly, as a launch
on a GPU would; these tests read that PTX too."""
from __future__ import annotations

import pytest

KINDS = ["naive", "tiled", "regblock"]


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_compiles_to_ptx(ptx, kind):
    result = ptx.get(f"{kind}/float32") or ptx.get("module")
    assert "error" not in result, f"CUDA's compiler rejects the {kind} kernel:\n{result['error'][:3000]}"
    code = result["ptx"]
    assert "ld.global.f32" in code and "st.global.f32" in code, "the kernel must read A and B and write C"
    if kind != "naive":
        assert ".shared" in code, "the tiles live in shared memory"
        assert "bar.sync" in code, "cuda.syncthreads() compiles to bar.sync"
