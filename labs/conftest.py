"""Shared by every lab's tests: `--impl` picks the implementation under test.

    --impl student        the files in the lab's folder (default)
    --impl reference      the reference solution
    --impl path/to/dir    any folder with the lab's files (a known-wrong solution, a submission)
"""
from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--impl", default="student", help="student | reference | a folder with the lab's files")


@pytest.fixture(scope="session")
def impl(request) -> str:
    return request.config.getoption("--impl")
