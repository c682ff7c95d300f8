"""DESIGN.md's size contract: the five modules 200-500 lines each, the engine under 5,000 (the course
tooling and the benchmarks are packages beside it, reference/minfer_course and reference/minfer_bench)."""
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[1] / "reference" / "minfer"


def lines(paths) -> int:
    return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in paths)


def test_the_engine_stays_under_5000_lines():
    total = lines([*ENGINE.rglob("*.py"), *ENGINE.rglob("*.c")])  # the C kernels count too
    assert total < 5000, f"reference/minfer has {total} lines: move tooling out of the engine, or simplify"


@pytest.mark.parametrize("module", ["loader", "graph", "scheduler", "memory", "output"])
def test_each_module_is_200_to_500_lines(module):
    assert 200 <= lines((ENGINE / module).glob("*.py")) <= 500
