"""The implementation switch for lab 1's public and hidden tests (`--impl`: see ../conftest.py).

    pytest labs/lab1_allocator/tests                      # your files in this folder (default)
    pytest labs/lab1_allocator/tests --impl reference     # the reference solution
    pytest labs/lab1_allocator/tests --impl path/to/dir   # any folder with allocator.py and block_pool.py
"""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def lab(impl):
    """The implementation under test: `lab.allocator.Allocator`, `lab.block_pool.BlockPool`, ..."""
    from minfer.course.labs import load

    return load("lab1", impl)
