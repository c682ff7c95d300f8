"""Lab 2's pictures: which tiles a thread block reads, and how many reads each kernel makes."""
from __future__ import annotations

from typing import Callable

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

N, TILE = 12, 4  # the drawing: 12 x 12 matrices in 4 x 4 tiles
ROW, COL, PHASE = 1, 2, 1  # the block of C shown, and the phase being loaded


def reads_per_output(k: int, tile: int, block_tile: int, micro: int) -> dict[str, tuple[int, int]]:
    """(global, shared) reads per element of C: what lab 2's tracer counts, as closed forms.

    naive: each of the K steps reads A[i, k] and B[k, j] from global memory (2K). tiled: per phase
    each thread loads one element of each tile (2K/TILE global), then reads TILE of each from shared
    memory (2K shared). register-blocked: each thread keeps micro x micro outputs in registers, so
    every shared value it reads serves `micro` outputs (2K/micro shared), and a block_tile-wide
    block tile is loaded once for all its outputs (2K/block_tile global).
    """
    return {"naive": (2 * k, 0), f"tiled (TILE={tile})": (2 * k // tile, 2 * k),
            f"register-blocked\n({block_tile}x{block_tile} block, {micro}x{micro}/thread)": (2 * k // block_tile, 2 * k // micro)}


def _matrix(ax: Axes, x0: float, y0: float, label: str, shade: Callable[[int, int], str]) -> None:
    for i in range(N // TILE):
        for j in range(N // TILE):
            ax.add_patch(Rectangle((x0 + j * TILE, y0 + (N // TILE - 1 - i) * TILE), TILE, TILE,
                                   fc=shade(i, j), ec="#555", lw=1))
    ax.text(x0 + N / 2, y0 - 1.2, label, ha="center", va="top", fontsize=12, weight="bold")


def tiling() -> Figure:
    fig = Figure(figsize=(12, 5.2))
    ax, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})

    def a_shade(i: int, j: int) -> str:
        return "#1f5fa8" if (i, j) == (ROW, PHASE) else "#a9c4e6" if i == ROW else "white"

    def b_shade(i: int, j: int) -> str:
        return "#b3412a" if (i, j) == (PHASE, COL) else "#eab2a5" if j == COL else "white"

    _matrix(ax, 0, 0, "A  (M x K)", a_shade)
    _matrix(ax, N + 2, N + 3, "B  (K x N)", b_shade)
    _matrix(ax, N + 2, 0, "C = A B  (M x N)", lambda i, j: "#7c3aed" if (i, j) == (ROW, COL) else "white")
    ax.text(0, 2 * N + 2, f"a thread block = one {TILE}x{TILE}\ntile of C, a thread per element\n\n"
            f"phase p: load A({ROW}, p), B(p, {COL})\ninto shared memory; sync;\n{TILE} multiply-adds; sync\n\n"
            f"dark: phase {PHASE} of {N // TILE}", va="top", fontsize=9)
    ax.set(xlim=(-0.5, 2 * N + 2.5), ylim=(-3, 2 * N + 3.5), aspect="equal")
    ax.axis("off")
    counts = reads_per_output(k=1024, tile=16, block_tile=64, micro=4)
    names = list(counts)
    y = range(len(names))
    bars.barh([i + 0.2 for i in y], [g for g, _ in counts.values()], height=0.38, color="#1f5fa8", label="global memory")
    bars.barh([i - 0.2 for i in y], [s for _, s in counts.values()], height=0.38, color="#d97706", label="shared memory")
    for i, (g, s) in enumerate(counts.values()):
        bars.text(g * 1.1, i + 0.2, str(g), va="center", fontsize=9)
        if s:
            bars.text(s * 1.1, i - 0.2, str(s), va="center", fontsize=9)
    bars.set_yticks(list(y), names, fontsize=9)
    bars.invert_yaxis()
    bars.set_xscale("log")
    bars.set_xlim(8, 2e4)
    bars.set_xlabel("reads per element of C (K = 1024, log scale)")
    bars.set_title("naive 2K global reads; tiled 2K/TILE", fontsize=11)
    bars.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    return fig
