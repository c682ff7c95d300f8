"""Lab 1's pictures, drawn from the recorded run: the workspace arena's memory map, the KV block pool."""
from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from .run import BLOCK_SIZE, EngineRun, KVSnapshot

REQ_COLORS = {"A": "#1f77b4", "B": "#ff7f0e", "C": "#2ca02c", "D": "#9467bd"}
KiB = 1024


def memory_map(run: EngineRun) -> Figure:
    """Every live block of the engine's allocator after each malloc / free, and the totals."""
    fig = Figure(figsize=(12, 5.2))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    colors = {name: f"C{i}" for i, name in enumerate(run.buffer_names)}
    names: dict[int, str] = {}  # offset -> buffer name while live (a step takes buffer_plan in order)
    taken = 0
    for t, event in enumerate(run.memory):
        live = dict(event.live)
        for offset in list(names):
            if offset not in live:
                del names[offset]
        for offset in live:
            if offset not in names:
                names[offset] = run.buffer_names[taken % len(run.buffer_names)]
                taken += 1
        for offset, size in event.live:
            top.add_patch(Rectangle((t, offset / KiB), 1, size / KiB, color=colors[names[offset]], lw=0))
    top.set(xlim=(0, len(run.memory)), ylim=(0, run.arena / KiB), ylabel="arena offset (KiB)",
            title=f"workspace arena of {run.model}: live blocks after each malloc / free")
    top.legend(handles=[Patch(color=c, label=n) for n, c in colors.items()], ncol=7, fontsize=8, loc="upper right")
    x = range(len(run.memory))
    bottom.plot(x, [e.allocated / KiB for e in run.memory], label="allocated", lw=1.2)
    bottom.plot(x, [e.reserved / KiB for e in run.memory], label="reserved (allocated + cached)", lw=1.2, ls="--")
    bottom.set(xlabel="allocator event", ylabel="KiB")
    bottom.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def kv_blocks(run: EngineRun) -> Figure:
    """The block tables of the running requests at the busiest step, and the pool they point into."""
    snap = run.kv
    used = [i for i, (r, c) in enumerate(zip(snap.ref_counts, snap.cached, strict=True)) if r or c]
    shown = min(len(snap.ref_counts), max(used, default=0) + 9)
    block_size = BLOCK_SIZE
    fig = Figure(figsize=(12, 5.4))
    tables, pool = fig.subplots(2, 1, gridspec_kw={"height_ratios": [len(snap.tables) + 0.5, 2.4]})
    for row, (req, table) in enumerate(sorted(snap.tables.items())):
        y = len(snap.tables) - 1 - row
        tables.text(-0.4, y + 0.4, f"{req}: {snap.tokens[req]} tokens", ha="right", va="center", fontsize=10)
        for j, b in enumerate(table):
            shared = snap.ref_counts[b] > 1
            tables.add_patch(Rectangle((j, y), 0.92, 0.8, fc=REQ_COLORS[owner_first(snap, b)] if shared else REQ_COLORS[req],
                                       ec="black" if shared else "none", lw=2, hatch="//" if shared else None, alpha=0.9))
            tables.text(j + 0.46, y + 0.4, str(b), ha="center", va="center", fontsize=9, color="white", weight="bold")
    tables.set(xlim=(-4, max(map(len, snap.tables.values())) + 0.5), ylim=(-0.2, len(snap.tables)))
    tables.set_title(f"block tables at step {snap.step} ({block_size} tokens per block): entry j = the block holding "
                     f"tokens {block_size}j … {block_size}j+{block_size - 1}", fontsize=11)
    tables.axis("off")
    per_row = 18
    for b in range(shown):
        x, y = b % per_row, -(b // per_row)
        ref = snap.ref_counts[b]
        held = any(b in table for table in snap.tables.values())
        color = REQ_COLORS[owner_first(snap, b)] if held else ("#c7c7c7" if snap.cached[b] else "white")
        pool.add_patch(Rectangle((x, y), 0.92, 0.8, fc=color, ec="black" if ref > 1 else "#999", lw=2 if ref > 1 else 0.8,
                                 hatch="//" if ref > 1 else None))
        pool.text(x + 0.46, y + 0.4, f"{b}" + (f" ×{ref}" if ref > 1 else ""), ha="center", va="center", fontsize=9,
                  color="white" if held else "black", weight="bold" if held else "normal")
    pool.set(xlim=(-0.2, per_row), ylim=(-(shown - 1) // per_row - 0.3, 1))
    pool.set_title(f"the pool: first {shown} of {len(snap.ref_counts)} blocks", fontsize=11)
    pool.axis("off")
    handles = [Patch(fc=c, label=f"request {r}") for r, c in REQ_COLORS.items() if r in snap.tables]
    handles += [Patch(fc="white", ec="black", hatch="//", label="shared prefix (×2: ref count 2)"),
                Patch(fc="#c7c7c7", label="cached, unreferenced (evictable, LRU)"), Patch(fc="white", ec="#999", label="free")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8.5, frameon=False)
    fig.subplots_adjust(left=0.02, right=0.99, top=0.93, bottom=0.1, hspace=0.3)
    return fig


def owner_first(snap: KVSnapshot, block: int) -> str:
    """The first request (by name) whose table holds `block`: a shared block takes its colour."""
    return min(r for r, table in snap.tables.items() if block in table)

