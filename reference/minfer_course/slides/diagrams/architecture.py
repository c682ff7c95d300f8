"""The five modules as the source tree has them: files, line counts, and which files each lab owns."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from minfer_course.labs import LABS

MODULES = [("loader", "① loader", "config, safetensors,\nGGUF, model store"),
           ("graph", "② graph", "the model as math,\npaged attention"),
           ("scheduler", "③ scheduler", "continuous batching,\nchunked prefill"),
           ("memory", "④ memory", "allocator, KV block\npool, tiers"),
           ("output", "⑤ output", "sampling, stop rules,\ndetokenizer")]
SUPPORT = [("hal", "device layer"), ("kernels", "matmul kernels"), ("diagnostics", "memory, timeline")]
LAB_COLORS = {"lab1": "#d97706", "lab2": "#7c3aed", "lab3": "#059669"}


def count_lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def module_files(package: Path, folder: str) -> list[tuple[str, int]]:
    """(file, lines) of a module folder, biggest first; the one-line __init__ files are left out."""
    files = [(f.name, count_lines(f)) for f in sorted((package / folder).glob("*.py"))]
    return sorted([(n, c) for n, c in files if n != "__init__.py" or c > 3], key=lambda x: -x[1])


def lab_owners() -> dict[str, str]:
    """'memory/allocator.py' -> 'lab1', from the labs' own table of owned modules."""
    return {"/".join(module.split(".")[1:]) + ".py": lab.name
            for lab in LABS.values() for module in lab.modules.values()}


def draw(package: Path) -> Figure:
    owners = lab_owners()
    fig = Figure(figsize=(13, 5.6))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 46)
    ax.axis("off")
    width, gap = 17.2, 2.9
    for k, (folder, title, role) in enumerate(MODULES):
        x = 1 + k * (width + gap)
        files = module_files(package, folder)
        ax.add_patch(FancyBboxPatch((x, 10), width, 28, boxstyle="round,pad=0.3", fc="#eef3fa", ec="#1f5fa8", lw=1.5))
        ax.text(x + width / 2, 36, title, ha="center", va="top", fontsize=15, weight="bold", color="#1f5fa8")
        ax.text(x + width / 2, 32.6, f"{folder}/ · {sum(c for _, c in files)} lines", ha="center", va="top", fontsize=10)
        ax.text(x + width / 2, 30.2, role, ha="center", va="top", fontsize=9, color="#555", style="italic")
        for i, (name, lines) in enumerate(files[:7]):
            lab = owners.get(f"{folder}/{name}")
            ax.text(x + 1, 24.5 - i * 2.1, f"{name}", fontsize=9, va="center", color=LAB_COLORS.get(lab, "#222"),
                    weight="bold" if lab else "normal")
            ax.text(x + width - 1, 24.5 - i * 2.1, f"{lines}" + (f" {lab}" if lab else ""), fontsize=8.5, va="center",
                    ha="right", color=LAB_COLORS.get(lab, "#666"))
        if k:
            ax.add_patch(FancyArrowPatch((x - gap + 0.3, 24), (x - 0.3, 24), arrowstyle="-|>", mutation_scale=18,
                                         color="#1f5fa8"))
    engine = count_lines(package / "engine.py")
    ax.text(50, 43.5, f"engine.py · class LLM ({engine} lines) wires the five modules, in this order",
            ha="center", fontsize=12, weight="bold")
    for k, (folder, role) in enumerate(SUPPORT):
        files = module_files(package, folder)
        owned = [(name, owners[f"{folder}/{name}"]) for name, _ in files if f"{folder}/{name}" in owners]
        x = 4 + k * 32
        ax.add_patch(FancyBboxPatch((x, 2), 28, 4.4, boxstyle="round,pad=0.3", fc="#f3f3f3", ec="#999"))
        label = f"{folder}/ · {sum(c for _, c in files)} lines · {role}"
        ax.text(x + 14, 4.2 + 0.9 * bool(owned), label, ha="center", va="center", fontsize=9.5, color="#444")
        for name, lab in owned[:1]:
            ax.text(x + 14, 3.0, f"{name} {lab}", ha="center", va="center", fontsize=9, weight="bold",
                    color=LAB_COLORS.get(lab, "#444"))
    total = sum(count_lines(f) for f in package.rglob("*.py"))
    ax.text(99, 0.3, f"read from {package.name}/ at build time · engine {total} lines · "
            "coloured files: owned by a lab", ha="right", fontsize=8, color="#777")
    return fig
