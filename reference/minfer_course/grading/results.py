"""A graded submission: per-test outcomes, per-cell scores, and the reasons a student should read.

Each score lands in one autograded cell of the lab's notebook (a suite part, or one of the
notebook's own test cells); that is how it reaches nbgrader's gradebook, feedback and export.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

MESSAGE_CHARS = 300  # of a failure message shown in feedback


@dataclass(frozen=True)
class TestOutcome:
    nodeid: str
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class CellScore:
    cell_id: str  # the notebook cell's grade_id
    title: str
    points: float
    score: float
    tests: tuple[TestOutcome, ...]

    def report(self) -> str:
        """What the student reads under the cell: test names and messages, never test source."""
        passed = sum(t.passed for t in self.tests)
        lines = [f"{self.title}: {passed} of {len(self.tests)} tests passed, {self.score:g} / {self.points:g} points"]
        for t in self.tests:
            lines.append(f"  {'PASS' if t.passed else 'FAIL'}  {t.nodeid}")
            if not t.passed and t.message:
                message = " ".join(t.message.split())
                lines.append(f"        {message[:MESSAGE_CHARS]}{' ...' if len(message) > MESSAGE_CHARS else ''}")
        return "\n".join(lines)


@dataclass(frozen=True)
class SubmissionResult:
    lab: str
    student: str
    digest: str  # of the submission
    bundle_digest: str  # of the tests, engine and points it was graded with
    status: str  # "graded", "timed out", "crashed", "tampered", "setup error"
    problems: tuple[str, ...]
    cells: tuple[CellScore, ...]
    seconds: float
    scope: str = ""  # which tests ran: "" for all of them (see config.Scope)

    @property
    def total(self) -> float:
        return round(sum(c.score for c in self.cells), 2)

    @property
    def max_total(self) -> float:
        return round(sum(c.points for c in self.cells), 2)

    def cell(self, cell_id: str) -> CellScore | None:
        return next((c for c in self.cells if c.cell_id == cell_id), None)

    def failed_tests(self) -> list[str]:
        return [t.nodeid for c in self.cells for t in c.tests if not t.passed]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> SubmissionResult:
        data = json.loads(path.read_text())
        cells = tuple(CellScore(**{**c, "tests": tuple(TestOutcome(**t) for t in c["tests"])}) for c in data.pop("cells"))
        return SubmissionResult(**{**data, "cells": cells, "problems": tuple(data["problems"])})
