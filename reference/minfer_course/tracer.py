"""A memory-traffic tracer for numba.cuda kernels in the simulator (lab 2), in the spirit of GPU-Puzzles.

`trace(kernel, grid, block, a=..., b=..., c=...)` runs one launch through hal/cudasim.py with every
global array and every shared array replaced by a recording proxy, and returns a `Trace`:

- per thread: reads and writes of global and of shared memory, barriers passed;
- per thread, the sequence of global accesses, so `max_stride` can tell whether neighbouring
  threads (threadIdx.x and x + 1) touch neighbouring addresses at each step (coalescing);
- hazards. Time inside a block is cut into *epochs* by barriers: a thread's epoch is the number of
  `cuda.syncthreads()` it has passed. Two threads touching the same shared slot in the same epoch,
  one of them writing, is a race whatever order the simulator happened to run them in (a GPU runs
  them in any order); so is reading a slot that no thread of the block has written. And every
  thread of a block must pass the same number of barriers.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minfer.hal.cudasim import SimModule, dim3, launch, numba_cuda

Thread = tuple[tuple[int, int, int], tuple[int, int, int]]  # (blockIdx, threadIdx)


@dataclass
class Traffic:
    global_reads: int = 0
    global_writes: int = 0
    shared_reads: int = 0
    shared_writes: int = 0
    barriers: int = 0
    accesses: list[tuple[str, int, bool]] = field(default_factory=list)  # global (array, flat index, is write)


@dataclass(frozen=True)
class Hazard:
    kind: str  # "race", "uninitialized read" or "barrier divergence"
    block: tuple[int, int, int]
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} in block {self.block}: {self.detail}"


@dataclass
class Trace:
    threads: dict[Thread, Traffic]
    hazards: list[Hazard]

    def per_thread(self, what: str) -> np.ndarray:
        """One count per thread: 'global_reads', 'shared_reads', 'barriers', ..."""
        return np.array([getattr(t, what) for t in self.threads.values()])

    def active(self, what: str) -> np.ndarray:
        """Like per_thread, over the threads that wrote to global memory (those inside C)."""
        return np.array([getattr(t, what) for t in self.threads.values() if t.global_writes])

    def total(self, what: str) -> int:
        return int(self.per_thread(what).sum())

    def max_stride(self, array: str) -> int:
        """Largest distance, in elements, between the i-th accesses to `array` of threads x and x + 1."""
        worst = 0
        for (blk, (x, y, z)), t in self.threads.items():
            right = self.threads.get((blk, (x + 1, y, z)))
            if right is None:
                continue
            mine = [i for name, i, _ in t.accesses if name == array]
            theirs = [i for name, i, _ in right.accesses if name == array]
            worst = max([worst, *(abs(q - p) for p, q in zip(mine, theirs))])
        return worst

    def summary(self) -> str:
        cols = ("global_reads", "global_writes", "shared_reads", "shared_writes", "barriers")
        rows = [f"{len(self.threads)} threads; per thread (min / mean / max):"]
        for c in cols:
            v = self.per_thread(c)
            rows.append(f"  {c:14} {v.min():6d} {v.mean():8.1f} {v.max():6d}")
        rows.append(f"  hazards: {len(self.hazards)}" + "".join(f"\n    {h}" for h in self.hazards[:5]))
        return "\n".join(rows)


class _Recorder:
    """Everything the proxies report goes here; each thread only touches its own Traffic entry."""

    def __init__(self) -> None:
        self.threads: dict[Thread, Traffic] = {}
        # (block, shared array, flat slot, epoch) -> (writers, readers)
        self.slots: dict[tuple, tuple[set, set]] = {}
        self.written: set[tuple] = set()  # (block, shared array, flat slot) written at least once
        self.hazards: list[Hazard] = []

    def me(self) -> tuple[Thread, Traffic]:
        # dict.setdefault is one step under the GIL: threads never lose each other's entries
        t = threading.current_thread()
        key = (tuple(t.blockIdx), tuple(t.threadIdx))
        return key, self.threads.setdefault(key, Traffic())

    def global_access(self, array: str, flat: int, write: bool) -> None:
        _, traffic = self.me()
        traffic.accesses.append((array, flat, write))
        if write:
            traffic.global_writes += 1
        else:
            traffic.global_reads += 1

    def shared_access(self, array: str, index: Any, flat: int, write: bool) -> None:
        (blk, tid), traffic = self.me()
        writers, readers = self.slots.setdefault((blk, array, flat, traffic.barriers), (set(), set()))
        if write:
            traffic.shared_writes += 1
            writers.add(tid)
            self.written.add((blk, array, flat))
        else:
            traffic.shared_reads += 1
            readers.add(tid)
            if (blk, array, flat) not in self.written and len(self.hazards) < 100:
                self.hazards.append(Hazard("uninitialized read", blk, f"thread {tid} read {array}{index} "
                                           "before any thread of the block wrote it"))

    def finish(self, grid: tuple, block: tuple) -> Trace:
        for blk in np.ndindex(*grid):  # threads that returned before touching memory count too
            for tid in np.ndindex(*block):
                self.threads.setdefault((blk, tid), Traffic())
        for (blk, array, flat, epoch), (writers, readers) in self.slots.items():
            if writers and len(writers | readers) > 1:
                self.hazards.append(Hazard("race", blk, (
                    f"slot {flat} of {array}, between barriers {epoch} and {epoch + 1}: written by threads "
                    f"{sorted(writers)[:3]} and read by {sorted(readers - writers)[:3]} with no cuda.syncthreads() "
                    "between them, so the result depends on which thread runs first")))
        by_block: dict[tuple, set[int]] = defaultdict(set)
        for (blk, _), t in self.threads.items():
            by_block[blk].add(t.barriers)
        for blk, counts in by_block.items():
            if len(counts) > 1:
                self.hazards.append(Hazard("barrier divergence", blk, (
                    f"threads passed {sorted(counts)} barriers: every thread of a block must reach every "
                    "cuda.syncthreads() (a thread that returns early leaves the others waiting on a GPU)")))
        return Trace(self.threads, self.hazards)


def _traced_global(recorder: _Recorder, name: str, array: np.ndarray) -> Any:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    class TracedGlobal(FakeCUDAArray):
        def __getitem__(self, index: Any) -> Any:
            value = super().__getitem__(index)
            recorder.global_access(name, _flat(array, index), False)
            return value

        def __setitem__(self, index: Any, value: Any) -> None:
            super().__setitem__(index, value)
            recorder.global_access(name, _flat(array, index), True)

    return TracedGlobal(array)


class _TracedShared:
    def __init__(self, recorder: _Recorder, name: str, array: np.ndarray) -> None:
        self.recorder, self.name, self.array = recorder, name, array
        self.shape, self.dtype, self.ndim, self.size = array.shape, array.dtype, array.ndim, array.size

    def __getitem__(self, index: Any) -> Any:
        value = self.array[index]
        self.recorder.shared_access(self.name, index, _flat(self.array, index), False)
        return value

    def __setitem__(self, index: Any, value: Any) -> None:
        self.array[index] = value
        self.recorder.shared_access(self.name, index, _flat(self.array, index), True)

    def __len__(self) -> int:
        return len(self.array)


def _flat(array: np.ndarray, index: Any) -> int:
    index = index if isinstance(index, tuple) else (index,)
    if len(index) != array.ndim or not all(isinstance(i, (int, np.integer)) for i in index):
        raise TypeError(f"the tracer follows single-element accesses a[i, j]; got index {index!r}")
    return int(np.ravel_multi_index(tuple(int(i) % s for i, s in zip(index, array.shape)), array.shape))


class _TracingModule(SimModule):
    def __init__(self, grid: tuple, block: tuple, recorder: _Recorder) -> None:
        self.recorder = recorder
        super().__init__(grid, block)

    def wrap_shared(self, array: np.ndarray, name: str) -> Any:
        return _TracedShared(self.recorder, name, array)

    def syncthreads(self) -> None:
        self.recorder.me()[1].barriers += 1  # before waiting: everything after is the next epoch
        super().syncthreads()


def trace(kernel: Any, grid: Any, block: Any, **arrays: Any) -> Trace:
    """Launch `kernel` in the simulator with its arguments given by name, in order; numpy arrays are traced."""
    numba_cuda(simulate=True)
    recorder = _Recorder()
    grid, block = dim3(grid), dim3(block)
    args = [_traced_global(recorder, name, x) if isinstance(x, np.ndarray) else x for name, x in arrays.items()]
    launch(kernel, grid, block, args, module=_TracingModule(grid, block, recorder))
    return recorder.finish(grid, block)


def trace_matmul(kernels: Any, kind: str, m: int, k: int, n: int, tile: int = 4, rb: int = 2,
                 dtype: Any = np.float32, seed: int = 0) -> tuple[Trace, np.ndarray, np.ndarray]:
    """Trace one launch of lab 2's `kind` kernel (from the module `kernels`) on random [m, k] @ [k, n].

    Returns the trace, C as computed, and C from numpy (float64) for comparison."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    c = np.zeros((m, n), np.float32 if dtype == np.float16 else dtype)
    grid, block = kernels.launch_config(kind, m, n, tile, rb)
    t = trace(kernels.kernel_for(kind, tile, rb), grid, block, a=a, b=b, c=c)
    return t, c, a.astype(np.float64) @ b.astype(np.float64)
