"""The cudasim backend: numba.cuda kernels on a CPU, one Python thread per GPU thread.

Two decisions live here and nowhere else.

- Whether this process's `numba.cuda` is the real one (GPU, or the compiler alone) or numba's CUDA
  simulator. numba reads NUMBA_ENABLE_CUDASIM once, when it is first imported, so every module that
  needs numba.cuda asks `numba_cuda()` for it instead of importing it.
- How a simulated launch runs. We keep the simulator's in-kernel `cuda` module (threadIdx, atomics,
  ...) but run each block ourselves: numba's runner polls its threads to find out when all have
  reached a barrier and copies every array in and out; ours waits on a real barrier (10-20x faster
  for kernels that synchronise) and passes arrays by reference, so a kernel writes straight into a
  tensor's memory. Shared and local arrays start as NaN (garbage on a GPU): a kernel that reads a
  slot nobody wrote shows NaN instead of a lucky zero. The tracer (minfer_course.tracer) observes a
  launch through the same runner.
"""
from __future__ import annotations

import importlib
import linecache
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

ENV = "NUMBA_ENABLE_CUDASIM"
Dim = tuple[int, int, int]


def numba_cuda(simulate: bool | None = None) -> ModuleType:
    """`numba.cuda`: the simulator (simulate=True), the real one (False: a GPU, or only the compiler),
    or None: the simulator unless a GPU is visible (or NUMBA_ENABLE_CUDASIM says otherwise).

    The choice is made once per process; asking for the other one later raises RuntimeError."""
    choose(simulate)
    cuda = importlib.import_module("numba.cuda")
    if simulate is not None and simulate != is_simulated(cuda):
        have, want = ("the CUDA simulator", "a GPU") if is_simulated(cuda) else ("a GPU", "the CUDA simulator")
        raise RuntimeError(
            f"numba.cuda is already set up for {have} in this process but {want} is needed now; numba "
            f"chooses once, when it is first imported: run this in a fresh process (or set {ENV})")
    return cuda


def choose(simulate: bool | None = None) -> None:
    """Settle the choice `numba_cuda` describes before numba is first imported, for any reason (the
    CPU kernels import numba without numba.cuda). Once numba is loaded this does nothing."""
    if "numba" not in sys.modules:
        if simulate is None:
            simulate = os.environ[ENV] == "1" if ENV in os.environ else not _gpu_visible()
        os.environ[ENV] = "1" if simulate else "0"


def is_simulated(cuda: ModuleType) -> bool:
    return cuda.jit.__module__.startswith("numba.cuda.simulator")


def _gpu_visible() -> bool:
    import torch

    return torch.cuda.is_available()


def dim3(d: int | Sequence[int]) -> Dim:
    d = (d,) if isinstance(d, int) else tuple(d)
    if not 1 <= len(d) <= 3 or any(not isinstance(x, (int, np.integer)) or x < 1 for x in d):
        raise ValueError(f"a grid or block shape is 1 to 3 positive integers, got {d}")
    return tuple(int(x) for x in d) + (1,) * (3 - len(d))


def launch(kernel: Any, grid: int | Sequence[int], block: int | Sequence[int], arrays: Sequence[Any],
           module: Any | None = None) -> None:
    """Run a simulator `@cuda.jit` kernel over `grid` x `block`, one block after another.

    numpy arrays are passed by reference. `module` (a SimModule) is what `cuda` means inside the
    kernel; the tracer passes one that records what each thread does."""
    numba_cuda(simulate=True)
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray, FakeWithinKernelCUDAArray
    from numba.cuda.simulator.kernel import _push_kernel_context
    from numba.cuda.simulator.kernelapi import swapped_cuda_module

    grid, block = dim3(grid), dim3(block)
    fn = kernel.py_func
    module = module if module is not None else SimModule(grid, block)
    args = [FakeWithinKernelCUDAArray(x if isinstance(x, FakeCUDAArray) else FakeCUDAArray(x))
            if isinstance(x, (np.ndarray, FakeCUDAArray)) else x for x in arrays]
    # the kernel's global `cuda` becomes `module` for the launch (numba's own mechanism, also for device functions)
    with _push_kernel_context(module), swapped_cuda_module(fn, module):
        for bz, by, bx in np.ndindex(grid[2], grid[1], grid[0]):
            module.new_block()
            _run_block(fn, args, (bx, by, bz), block)


def _run_block(fn: Callable, args: list, block_idx: Dim, block: Dim) -> None:
    from numba.cuda.simulator.kernelapi import Dim3

    barrier = _Barrier(block[0] * block[1] * block[2])
    threads = [_SimThread(fn, args, barrier, Dim3(*block_idx), Dim3(x, y, z), block)
               for z, y, x in np.ndindex(block[2], block[1], block[0])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if barrier.error is not None:
        raise barrier.error


class _Aborted(BaseException):
    """Raised in the threads of a block after one of them failed (BaseException: kernels can't catch it)."""


class _Barrier:
    """`cuda.syncthreads()` for one block: releases when every thread still running has arrived.

    Threads that have returned no longer count (numba's simulator does the same); the tracer reports
    threads that pass fewer barriers than their neighbours, which a GPU does not forgive."""

    def __init__(self, threads: int) -> None:
        self.cond = threading.Condition()
        self.live, self.arrived, self.generation = threads, 0, 0
        self.error: BaseException | None = None

    def wait(self) -> None:
        with self.cond:
            if self.error is not None:
                raise _Aborted
            generation = self.generation
            self.arrived += 1
            if self.arrived == self.live:
                self._release()
                return
            while self.generation == generation and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise _Aborted

    def leave(self, error: BaseException | None) -> None:
        with self.cond:
            self.live -= 1
            if error is not None and self.error is None:
                self.error = error
                self.cond.notify_all()
            elif self.arrived and self.arrived == self.live:
                self._release()

    def _release(self) -> None:
        self.arrived = 0
        self.generation += 1
        self.cond.notify_all()


class _SimThread(threading.Thread):
    """One GPU thread. The simulator's `cuda` module reads threadIdx/blockIdx from the current thread."""

    def __init__(self, fn: Callable, args: list, barrier: _Barrier, block_idx: Any, thread_idx: Any, block: Dim) -> None:
        super().__init__(daemon=True)  # a kernel that never returns must not keep the interpreter alive
        self.fn, self.args, self.barrier = fn, args, barrier
        self.blockIdx, self.threadIdx = block_idx, thread_idx
        self.thread_id = thread_idx.x + block[0] * (thread_idx.y + block[1] * thread_idx.z)  # for laneid

    def syncthreads(self) -> None:
        self.barrier.wait()

    def run(self) -> None:
        error = None
        try:
            self.fn(*self.args)
        except _Aborted:
            pass
        except Exception as e:  # noqa: BLE001 - re-raised in the launching thread, with the thread named
            error = _located(e, f"thread {tuple(self.threadIdx)} of block {tuple(self.blockIdx)}")
        self.barrier.leave(error)


def _located(e: Exception, where: str) -> Exception:
    try:
        located = type(e)(f"{where}: {e}")
    except Exception:  # noqa: BLE001 - exception types whose constructor takes other arguments
        located = RuntimeError(f"{where}: {type(e).__name__}: {e}")
    return located.with_traceback(e.__traceback__)


class SharedMemory:
    """`cuda.shared.array` in one block: one array per declaration, the same for every thread of the block.

    The simulator can only tell declarations apart by their source line (as numba's does), so two on
    one line would silently share memory: that is refused with an explanation instead."""

    def __init__(self, wrap: Callable[[np.ndarray, str], Any]) -> None:
        self.wrap = wrap
        self.arrays: dict[tuple[str, int], Any] = {}
        self.lock = threading.Lock()

    def array(self, shape: Any, dtype: Any, alignment: Any = None) -> Any:
        frame = sys._getframe(1)
        key = (frame.f_code.co_filename, frame.f_lineno)
        with self.lock:
            if key not in self.arrays:
                self.arrays[key] = self.wrap(_nan_array(shape, dtype), _declared_name(*key))
            return self.arrays[key]


class LocalMemory:
    """`cuda.local.array`: private to the calling thread."""

    def array(self, shape: Any, dtype: Any, alignment: Any = None) -> np.ndarray:
        return _nan_array(shape, dtype)


def _declared_name(filename: str, line: int) -> str:
    source = linecache.getline(filename, line)
    if source.count("shared.array") > 1:
        raise SyntaxError(f"{filename}:{line}: two cuda.shared.array on one line; the CUDA simulator would give "
                          "them the same memory: declare each shared array on its own line")
    m = re.search(r"(\w+)\s*=\s*cuda\.shared\.array", source)
    return m[1] if m else f"shared@{line}"


def _nan_array(shape: Any, dtype: Any) -> np.ndarray:
    from numba.cuda.np import numpy_support
    from numba.cuda import types

    dtype = numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else np.dtype(dtype)
    out = np.empty(shape, dtype)
    if np.issubdtype(dtype, np.floating):
        out.fill(np.nan)
    return out


class SimModule:
    """What `cuda` means inside a simulated kernel: numba's in-kernel module, with our shared and local
    memory and barrier. The tracer subclasses it (`wrap_shared`, `syncthreads`) to watch a launch."""

    def __init__(self, grid: Dim, block: Dim) -> None:
        from numba.cuda.simulator.kernelapi import FakeCUDAModule

        self._numba = FakeCUDAModule(grid, block, 0)  # everything else (atomics, fp16, ...) is numba's
        self.gridDim, self.blockDim = self._numba.gridDim, self._numba.blockDim
        self.local = LocalMemory()
        self.shared = SharedMemory(self.wrap_shared)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._numba, name)

    @property
    def threadIdx(self) -> Any:
        return threading.current_thread().threadIdx

    @property
    def blockIdx(self) -> Any:
        return threading.current_thread().blockIdx

    def grid(self, ndim: int) -> Any:
        return self._numba.grid(ndim)

    def syncthreads(self) -> None:
        threading.current_thread().syncthreads()

    def new_block(self) -> None:
        self.shared = SharedMemory(self.wrap_shared)  # each block gets its own shared memory

    def wrap_shared(self, array: np.ndarray, name: str) -> Any:
        return array
