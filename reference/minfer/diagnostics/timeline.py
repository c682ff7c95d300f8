"""Timeline profiler: where a step's time goes, operator by operator.

The engine and the model mark their phases with `span(name)`; with no timeline attached the marks
cost one attribute check, so the hot path pays nothing when nobody is looking. A `Timeline` keeps
the spans (name, start, duration, nesting depth, step) and turns them into:

- a Chrome trace (`save_chrome`), which Perfetto (ui.perfetto.dev) and chrome://tracing open;
- per-name totals (`totals`), the numbers behind "attention is 40% of a decode step";
- a matplotlib drawing of one step (`plot_step`);
- with a memory `probe` (see `memory_probe`), bytes per tier at the end of every span: the
  engine's own allocator, KV blocks and attention scratch, step by step (`plot_memory`) and as
  counter tracks in the Chrome trace.

Times are wall-clock from `time.perf_counter_ns`: on a GPU, `synchronize=True` makes each span
wait for the device so it measures the work, not the launch.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator


_NOTHING = nullcontext()


def no_span(name: str) -> nullcontext:
    """What code marks its phases with when no timeline is attached: costs one call."""
    return _NOTHING


@dataclass
class Span:
    name: str
    start_ns: int
    dur_ns: int
    depth: int  # 0 = a whole step, 1 = a phase inside it, 2 = an operator inside a layer
    step: int
    memory: dict[str, int] | None = None  # bytes per tier when the span ended (with a probe)


@dataclass
class Timeline:
    synchronize: Callable[[], None] | None = None  # e.g. the device's synchronize on a GPU
    probe: Callable[[], dict[str, int]] | None = None  # bytes per memory tier, sampled at each span's end
    spans: list[Span] = field(default_factory=list)
    step: int = 0
    _depth: int = 0
    _origin: int = field(default_factory=time.perf_counter_ns)

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        if self.synchronize:
            self.synchronize()
        depth, start = self._depth, time.perf_counter_ns()
        self._depth += 1
        try:
            yield
        finally:
            if self.synchronize:
                self.synchronize()
            self._depth -= 1
            end = time.perf_counter_ns()
            memory = self.probe() if self.probe else None
            self.spans.append(Span(name, start - self._origin, end - start, depth, self.step, memory))
            if depth == 0:
                self.step += 1

    # -- views ---------------------------------------------------------------------------------
    def steps(self) -> list[Span]:
        return [s for s in self.spans if s.depth == 0]

    def totals(self, depth: int | None = None, step: int | None = None) -> dict[str, float]:
        """Seconds spent in each span name (optionally at one depth, or in one step)."""
        out: dict[str, float] = defaultdict(float)
        for s in self.spans:
            if (depth is None or s.depth == depth) and (step is None or s.step == step):
                out[s.name] += s.dur_ns / 1e9
        return dict(out)

    def memory_by_op(self) -> dict[str, int]:
        """Most bytes (all probed tiers together) seen at the end of each operator or phase."""
        out: dict[str, int] = {}
        for s in self.spans:
            if s.memory and s.depth > 0:
                out[s.name] = max(out.get(s.name, 0), sum(s.memory.values()))
        return out

    def chrome_events(self) -> list[dict]:
        """Complete events ("ph": "X", microseconds), one per span, on one thread; with a probe,
        a counter event ("ph": "C") per step so Perfetto draws a memory track under the timeline."""
        events = [{"name": s.name, "ph": "X", "ts": s.start_ns / 1e3, "dur": s.dur_ns / 1e3, "pid": 0, "tid": 0,
                   "args": {"step": s.step}} for s in sorted(self.spans, key=lambda s: (s.start_ns, s.depth))]
        events += [{"name": "memory (MiB)", "ph": "C", "ts": (s.start_ns + s.dur_ns) / 1e3, "pid": 0,
                    "args": {k: v / 2**20 for k, v in s.memory.items()}} for s in self.steps() if s.memory]
        return events

    def save_chrome(self, path: str | Path) -> Path:
        """Write the Chrome trace JSON atomically (a temp file renamed into place)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"traceEvents": self.chrome_events(), "displayTimeUnit": "ms"}, f)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return path

    def plot_memory(self, ax=None):
        """Bytes per tier at the end of every step, stacked: a request's life in memory."""
        import matplotlib.pyplot as plt

        steps = [s for s in self.steps() if s.memory]
        if not steps:
            raise ValueError("no memory samples: attach a probe (LLM.tracing(memory=True))")
        ax = ax or plt.subplots(figsize=(10, 3))[1]
        tiers = list(steps[0].memory)
        ax.stackplot(range(len(steps)), *[[s.memory[t] / 2**20 for s in steps] for t in tiers], labels=tiers)
        ax.set_xlabel("step")
        ax.set_ylabel("MiB")
        ax.legend(loc="upper left", fontsize=8)
        return ax

    def plot_step(self, step: int | None = None, ax=None):
        """Draw one step (default: the slowest) as nested bars, one row per depth."""
        import matplotlib.pyplot as plt

        steps = self.steps()
        if not steps:
            raise ValueError("the timeline has no complete step: run the engine with the timeline attached first")
        chosen = max(steps, key=lambda s: s.dur_ns) if step is None else next(s for s in steps if s.step == step)
        spans = [s for s in self.spans if s.step == chosen.step]
        ax = ax or plt.subplots(figsize=(12, 2.5))[1]
        names = sorted({s.name for s in spans if s.depth > 0})
        colors = {n: plt.cm.tab20(i % 20) for i, n in enumerate(names)}
        for s in spans:
            x = (s.start_ns - chosen.start_ns) / 1e6
            ax.barh(-s.depth, s.dur_ns / 1e6, left=x, color=colors.get(s.name, "lightgrey"), edgecolor="none")
        ax.set_yticks([0, -1, -2], ["step", "phase", "operator"])
        ax.set_xlabel("ms")
        ax.set_title(f"step {chosen.step}: {chosen.dur_ns / 1e6:.1f} ms")
        ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()], labels=list(colors),
                  fontsize=7, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
        return ax
