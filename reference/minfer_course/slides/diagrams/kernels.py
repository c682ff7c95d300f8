"""Lab 2's pictures: which tiles a thread block reads, and how many reads each kernel makes."""
from __future__ import annotations

from typing import Callable

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

N, TILE = 12, 4  # the drawing: 12 x 12 matrices in 4 x 4 tiles
ROW, COL, PHASE = 1, 2, 1  # the block of C shown, and the phase being loaded
KINDS = ("naive", "tiled", "regblock")
FORMULAS = {"naive": ("2K", ""), "tiled": ("2K/tile", "2K"), "regblock": ("2K/(tile·rb)", "2K/rb")}
SIM_MN, SIM_K, SIM_TILE, SIM_RB = 16, 32, 4, 2  # small enough for the simulator: 256 threads a launch


def reads_per_output() -> tuple[dict[str, tuple[float, float]], str]:
    """(global, shared) reads per element of C for each kernel, and where the numbers come from.

    Counted by lab 2's tracer on the reference kernels in numba's CUDA simulator; where it cannot run
    (no numba, or numba already set up for a real GPU in this process), the closed forms it confirms.
    """
    k, tile, rb = SIM_K, SIM_TILE, SIM_RB
    try:
        from minfer_course.tracer import trace_matmul
        from minfer.kernels import matmul_numba

        counts = {}
        for kind in KINDS:
            trace, _, _ = trace_matmul(matmul_numba, kind, SIM_MN, k, SIM_MN, tile, rb)
            counts[kind] = (trace.total("global_reads") / SIM_MN**2, trace.total("shared_reads") / SIM_MN**2)
        return counts, f"counted by lab 2's tracer (reference kernels, K={k}, tile={tile}, rb={rb})"
    except (ImportError, RuntimeError):
        closed = {"naive": (2 * k, 0), "tiled": (2 * k / tile, 2 * k), "regblock": (2 * k / (tile * rb), 2 * k / rb)}
        return closed, f"closed forms, K={k}, tile={tile}, rb={rb} (the tracer needs numba's CUDA simulator)"


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
    counts, source = reads_per_output()
    y = range(len(KINDS))
    bars.barh([i + 0.2 for i in y], [counts[k][0] for k in KINDS], height=0.38, color="#1f5fa8", label="global memory")
    bars.barh([i - 0.2 for i in y], [counts[k][1] for k in KINDS], height=0.38, color="#d97706", label="shared memory")
    for i, kind in enumerate(KINDS):
        for value, formula, dy in zip(counts[kind], FORMULAS[kind], (0.2, -0.2), strict=True):
            if value:
                bars.text(value + 1, i + dy, f"{value:g} = {formula}", va="center", fontsize=9)
    bars.set_yticks(list(y), [f"{k}_kernel" for k in KINDS], fontsize=10)
    bars.invert_yaxis()
    bars.set_xlim(0, max(max(c) for c in counts.values()) * 1.45)
    bars.set_xlabel("reads per element of C")
    bars.set_title(source, fontsize=9)
    bars.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    return fig
