"""Diagrams drawn by code at build time, so they stay true to the engine.

`DIAGRAMS` maps a name (as in `![...](diagram:NAME)`) to a function of a `DiagramContext` that
returns a matplotlib Figure. Most draw from one recorded run of the real engine (run.py), made at
most once per build and only if a deck asks for such a diagram.
"""
from __future__ import annotations

import io
from functools import cached_property
from pathlib import Path
from typing import Callable

from matplotlib.figure import Figure

from . import architecture, attention, kernels, memory, timing
from .run import EngineRun, record_run


class DiagramContext:
    def __init__(self, package: Path, model: str = "auto", log: Callable[[str], None] = print) -> None:
        """`package`: the minfer package folder the architecture is read from; `model`: "auto"
        (SmolLM2 if pulled, else a tiny random Llama), a builtin name or a model folder."""
        self.package, self.model, self.log = package, model, log
        self._png: dict[str, bytes] = {}

    @cached_property
    def run(self) -> EngineRun:
        self.log("  recording an engine run for the diagrams ...")
        run = record_run(self.model)
        self.log(f"  recorded {len(run.steps)} steps of {run.model}")
        return run

    def png(self, name: str) -> bytes:
        """Diagram `name` as PNG bytes, drawn once per build."""
        if name not in DIAGRAMS:
            raise ValueError(f"unknown diagram {name!r}; diagrams: {', '.join(sorted(DIAGRAMS))}")
        if name not in self._png:
            buf = io.BytesIO()
            DIAGRAMS[name](self).savefig(buf, format="png", dpi=110, facecolor="#fbfaf7")
            self._png[name] = buf.getvalue()
        return self._png[name]


DIAGRAMS: dict[str, Callable[[DiagramContext], Figure]] = {
    "architecture": lambda ctx: architecture.draw(ctx.package),
    "memory_map": lambda ctx: memory.memory_map(ctx.run),
    "kv_blocks": lambda ctx: memory.kv_blocks(ctx.run),
    "tiling": lambda ctx: kernels.tiling(),
    "causal_mask": lambda ctx: attention.causal_mask(),
    "gqa": lambda ctx: attention.gqa(ctx.run),
    "sampling": lambda ctx: attention.sampling(ctx.run),
    "timeline": lambda ctx: timing.timeline(ctx.run),
    "batching": lambda ctx: timing.batching(ctx.run),
}
