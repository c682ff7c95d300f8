"""Lab 2 hidden tests: corner shapes, other tile sizes, float16 (not released to students)."""
from __future__ import annotations

import pytest
import torch

TILE, RB = 4, 2
KINDS = ["naive", "tiled", "regblock"]
# K = 1; one element; exactly one tile; K shorter than a tile; a long dot product; 3 x 3 register blocks
SHAPES = [(3, 1, 5), (1, 1, 1), (4, 4, 4), (5, 3, 2), (1, 33, 1), (17, 9, 19)]


def operands(m: int, k: int, n: int, dtype=torch.float32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=g).to(dtype), torch.randn(k, n, generator=g).to(dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", KINDS)
def test_corner_shapes(kernels, kind, shape):
    a, b = operands(*shape)
    torch.testing.assert_close(kernels.matmul(a, b, kind=kind, tile=TILE, rb=RB), a @ b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tile,rb", [(2, 3), (8, 1)])
@pytest.mark.parametrize("kind", KINDS)
def test_other_tile_sizes(kernels, kind, tile, rb):
    a, b = operands(11, 10, 13)
    torch.testing.assert_close(kernels.matmul(a, b, kind=kind, tile=tile, rb=rb), a @ b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_float16_operands_are_multiplied_and_summed_in_float32(kernels, kind):
    """Into a float32 C the result must be exact to float32 rounding: a float16 product or sum is not."""
    g = torch.Generator().manual_seed(2)
    a = (1 + torch.rand(6, 8, generator=g)).half()  # products of values in [1, 2) need more than float16's 11 bits
    b = (1 + torch.rand(8, 5, generator=g)).half()
    out = torch.empty(6, 5)
    kernels.matmul(a, b, out, kind=kind, tile=TILE, rb=RB)
    torch.testing.assert_close(out, (a.double() @ b.double()).float(), atol=0, rtol=2e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_float16_in_float16_out(kernels, kind):
    a, b = operands(7, 12, 9, torch.float16)
    c = kernels.matmul(a, b, kind=kind, tile=TILE, rb=RB)
    assert c.dtype == torch.float16
    torch.testing.assert_close(c, (a.float() @ b.float()).half(), atol=2e-3, rtol=2e-3)
