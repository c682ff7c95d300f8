"""A notebook's autograded cells as tests, run in the grading sandbox instead of the student's kernel.

nbgrader would run a test cell in the kernel where the student's own cells ran, so a cell could
hide errors (a custom exception handler, a patched `assert` helper) and pass with no solution.
Here the cells come from the released notebook (the instructor's copy), with only the
submission's solution cells filled in; extra cells the student added never run. Cells run in
order in one namespace, as a notebook would; an error in an ordinary cell is remembered and
named by the next test cell that fails.
"""
from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from pathlib import Path

# taken before any student cell runs, so rebinding builtins cannot reach the runner
_exec, _compile = builtins.exec, builtins.compile


@dataclass(frozen=True)
class Cell:
    source: str
    grade_id: str | None = None
    test: bool = False  # an autograded test cell (its outcome is a test's)


def load_cells(path: Path) -> list[Cell]:
    return [Cell(**c) for c in json.loads(path.read_text())]


class NotebookRun:
    """Runs the cells lazily, up to the test cell asked for."""

    def __init__(self, cells: list[Cell]) -> None:
        self.cells = cells
        self.errors: dict[int, str] = {}
        self.done = 0
        self.namespace: dict = {"__name__": "__main__", "__builtins__": builtins}

    @property
    def test_ids(self) -> list[str]:
        return [c.grade_id for c in self.cells if c.test]

    def check(self, grade_id: str) -> None:
        index = next(i for i, c in enumerate(self.cells) if c.test and c.grade_id == grade_id)
        while self.done <= index:
            self._run(self.done)
            self.done += 1
        if index in self.errors:
            earlier = [f"cell {i} ({self.cells[i].grade_id or 'code'}): {e}" for i, e in self.errors.items() if i < index]
            hint = f" (the first earlier error: {earlier[0]})" if earlier else ""  # usually the cause
            raise AssertionError(f"{self.errors[index]}{hint}")

    def _run(self, i: int) -> None:
        try:
            code = _compile(_transform(self.cells[i].source), f"<notebook cell {i}>", "exec", dont_inherit=True)
            _exec(code, self.namespace)
        except BaseException as e:  # noqa: BLE001 - a cell may raise anything, SystemExit included
            if isinstance(e, KeyboardInterrupt):
                raise
            self.errors[i] = f"{type(e).__name__}: {e}"[:1000]


def _transform(source: str) -> str:
    """IPython syntax (%magics) to Python; `get_ipython()` is bound to a headless shell."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def headless_shell():
    """An IPython shell without a frontend, for `%matplotlib inline` and friends."""
    from IPython.core.interactiveshell import InteractiveShell

    class Headless(InteractiveShell):
        def enable_gui(self, gui=None) -> None:  # figures render with the inline backend; nothing to start
            pass

    return Headless.instance()
