"""The implementation switch for lab 1's public and hidden tests.

    pytest labs/lab1_allocator/tests                      # your files in this folder (default)
    pytest labs/lab1_allocator/tests --impl reference     # the reference solution
    pytest labs/lab1_allocator/tests --impl path/to/dir   # any folder with allocator.py and block_pool.py
"""
from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--impl", default="student", help="student | reference | a folder with the lab's files")


@pytest.fixture(scope="session")
def lab(request):
    """The implementation under test: `lab.allocator.Allocator`, `lab.block_pool.BlockPool`, ..."""
    from minfer.course.labs import load

    return load("lab1", request.config.getoption("--impl"))


@pytest.fixture(scope="session")
def impl(request) -> str:
    return request.config.getoption("--impl")
