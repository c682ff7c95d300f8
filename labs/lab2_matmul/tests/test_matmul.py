"""Lab 2 public tests: the three kernels compute C = A @ B. Run: pytest labs/lab2_matmul/tests"""
from __future__ import annotations

import pytest
import torch

TILE, RB = 4, 2  # 16 threads per block: cheap to simulate, and tiles that edges cut through

KINDS = ["naive", "tiled", "regblock"]
# (M, K, N): several blocks along both grid axes with every edge cutting through a tile; one row of C; one column
SHAPES = [(8, 8, 8), (9, 13, 11), (1, 16, 6), (6, 5, 1)]


def operands(m: int, k: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", KINDS)
def test_kernel_matches_torch(kernels, kind, shape):
    a, b = operands(*shape)
    c = kernels.matmul(a, b, kind=kind, tile=TILE, rb=RB)
    torch.testing.assert_close(c, a @ b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_launch_config_covers_c_with_less_than_a_block_to_spare(kernels, kind):
    side = TILE * RB if kind == "regblock" else TILE  # rows and columns of C per block
    for m, n in [(1, 1), (8, 8), (9, 17), (30, 3)]:
        (gx, gy), threads = kernels.launch_config(kind, m, n, TILE, RB)
        assert tuple(threads) == (TILE, TILE)
        assert n <= gx * side < n + side, f"{gx} blocks along x for {n} columns"
        assert m <= gy * side < m + side, f"{gy} blocks along y for {m} rows"


@pytest.mark.parametrize("kind", KINDS)
def test_result_lands_in_out_even_a_strided_view(kernels, kind):
    """The engine hands the kernel views of its workspace: C must be written in place, nowhere else."""
    a, b = operands(5, 8, 6)
    big = torch.full((5, 9), float("nan"))
    out = big[:, 2:8]  # rows of 9 values, 6 of them ours
    assert kernels.matmul(a, b, out, kind=kind, tile=TILE, rb=RB) is out
    torch.testing.assert_close(out, a @ b, atol=1e-5, rtol=1e-5)
    assert big[:, :2].isnan().all() and big[:, 8:].isnan().all(), "wrote outside C"
