"""Lab 2's fixtures (`--impl`), and the CUDA simulator.

    pytest labs/lab2_matmul/tests                      # your matmul_numba.py (default)
    pytest labs/lab2_matmul/tests --impl reference     # the reference solution

Kernels run in numba's CUDA simulator on every machine, GPU or not (the tracer needs it), so the
simulator is chosen here, before anything imports numba. CUDA's real compiler runs in a process of
its own (the `ptx` fixture).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minfer_course.labs import REPO, load
from minfer.hal.cudasim import numba_cuda

numba_cuda(simulate=True)
PTX = pytest.StashKey[subprocess.Popen]()


def pytest_addoption(parser):
    from minfer_course.labs import add_lab_options

    add_lab_options(parser)


@pytest.fixture(scope="session")
def impl(request) -> str:
    return request.config.getoption("--impl")


@pytest.fixture(scope="session")
def kernels(impl):
    """The module under test: `kernels.matmul`, `kernels.tiled_kernel`, `kernels.launch_config`, ..."""
    return load("lab2", impl).matmul_numba


def pytest_configure(config):
    # CUDA's compiler runs in a process of its own (numba chooses simulator or compiler once per
    # process); start it now, so that it compiles while the simulator runs the other tests
    impl = config.getoption("--impl")
    impl = impl if impl in ("student", "reference") else str(Path(impl).resolve())
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    config.stash[PTX] = subprocess.Popen([sys.executable, "-m", "minfer_course.ptx", "--impl", impl], cwd=REPO,
                                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: "ptx" in getattr(item, "fixturenames", ()))  # the compiler's results last


def pytest_unconfigure(config):
    proc = config.stash.get(PTX, None)
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="session")
def ptx(pytestconfig) -> dict[str, dict[str, str]]:
    """{"tiled/float32": {"ptx": ...} or {"error": ...}, ...}: each kernel compiled by CUDA's compiler."""
    stdout, stderr = pytestconfig.stash[PTX].communicate(timeout=600)
    if pytestconfig.stash[PTX].returncode != 0:
        pytest.fail(f"the compiler check crashed:\n{stderr[-3000:]}")
    result = json.loads(stdout)
    if result["toolchain"]:
        pytest.skip(result["toolchain"])
    return result["kernels"]
