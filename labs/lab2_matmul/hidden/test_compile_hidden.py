"""Lab 2 hidden tests: float16 kernels compile, and register blocking really uses registers (not released)."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("kind", ["naive", "tiled", "regblock"])
def test_float16_kernel_compiles(ptx, kind):
    result = ptx.get(f"{kind}/float16") or ptx.get("module")
    assert "error" not in result, result["error"][:3000]
    assert "ld.global" in result["ptx"] and "st.global" in result["ptx"]


def test_regblock_accumulators_live_in_registers(ptx):
    """Compiled with tile 16, rb 4: each step of k is 16 fused multiply-adds on registers."""
    result = ptx.get("regblock/float32") or ptx.get("module")
    assert "error" not in result, result["error"][:3000]
    code = result["ptx"]
    assert code.count("fma.rn.f32") >= 16, "expected the rb x rb products of a step unrolled into fma instructions"
    assert ".local" not in code, "the accumulators spilled to local memory (loops the compiler cannot unroll?)"
