"""The implementation switch for lab 1's public and hidden tests (`--impl`: see ../conftest.py).

    pytest labs/lab1_allocator/tests                      # your files in this folder (default)
    pytest labs/lab1_allocator/tests --impl reference     # the reference solution
    pytest labs/lab1_allocator/tests --impl path/to/dir   # any folder with allocator.py and block_pool.py

The engine tests compare with the reference's tokens recorded in golden.json beside them (the
student edition and the grading sandbox have no reference to run); `--impl reference -m slow
--record-golden` records them again.
"""
from __future__ import annotations

import pytest


def pytest_addoption(parser):
    from minfer_course.labs import add_lab_options

    add_lab_options(parser)


@pytest.fixture(scope="session")
def impl(request) -> str:
    return request.config.getoption("--impl")


@pytest.fixture(scope="session")
def lab(impl):
    """The implementation under test: `lab.allocator.Allocator`, `lab.block_pool.BlockPool`, ..."""
    from minfer_course.labs import load

    return load("lab1", impl)


@pytest.fixture
def golden(request):
    """The reference's recorded outputs for this test file's folder: `golden.tokens(name, prompts, params, **engine)`."""
    from pathlib import Path

    from minfer_course.golden import Golden

    return Golden(Path(request.path).parent / "golden.json", record=request.config.getoption("--record-golden"))
