"""A lab's grading bundle: what every sandbox of a grading run starts from, built once per run.

    <bundle>/reference/minfer/            the student edition for this lab: its solutions stripped
    <bundle>/reference/minfer_course/     the course tooling and the benchmarks, as released
    <bundle>/reference/minfer_bench/
    <bundle>/labs/<lab>/conftest.py       the instructor's copies of the lab's suites
    <bundle>/labs/<lab>/tests/ hidden/
    <bundle>/labs/<lab>/<lab files>       the released skeletons: stand-ins for unusable files
    <bundle>/labs/<lab>/notebook/         the notebook's test cells as tests
    <bundle>/labs/<lab>/pytest.ini        markers only; nothing from the instructor's config

The layout mirrors the repository, so `minfer_course.labs` finds the lab folder as in a checkout
and the lab's own conftest (`--impl student`, the default) loads the submission's files.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..labs import REPO
from .config import PART_PREFIX, SUITES, LabGrading
from .edition import build_edition
from .nbsuite import Cell

NOTEBOOK_TESTS = Path(__file__).with_name("notebook_tests.py")


@dataclass(frozen=True)
class NotebookCells:
    cells: tuple[Cell, ...]  # the released notebook's code cells, in order (part cells left out)
    points: dict[str, float]  # test cell grade_id -> points
    solution_ids: tuple[str, ...]

    def with_solutions(self, solutions: dict[str, str]) -> list[dict]:
        """The cells to run for one submission: its solution cells, the released ones elsewhere."""
        return [{"source": solutions.get(c.grade_id, c.source) if c.grade_id in self.solution_ids else c.source,
                 "grade_id": c.grade_id, "test": c.test} for c in self.cells]


@dataclass(frozen=True)
class Bundle:
    grading: LabGrading
    root: Path
    notebook: NotebookCells | None
    digest: str  # of everything that decides a grade except the submission

    @property
    def lab_dir(self) -> Path:
        return self.root / self.grading.lab.folder


def released_cells(path: Path) -> NotebookCells:
    """The code cells of a released notebook (solutions already cleared by nbgrader)."""
    nb = json.loads(path.read_text())
    cells, points, solutions = [], {}, []
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if cell["cell_type"] != "code" or str(grade_id).startswith(PART_PREFIX):
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        test = bool(meta.get("grade")) and not meta.get("solution")
        if test:
            points[grade_id] = float(meta["points"])
        if meta.get("solution"):
            solutions.append(grade_id)
        cells.append(Cell(source, grade_id, test))
    return NotebookCells(tuple(cells), points, tuple(solutions))


def build_bundle(grading: LabGrading, released_notebook: Path | None, dest: Path) -> Bundle:
    lab = grading.lab
    build_edition(dest / "reference", [lab])
    lab_dir = dest / lab.folder
    lab_dir.mkdir(parents=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for suite in SUITES:
        if (lab.path / suite).is_dir():
            shutil.copytree(lab.path / suite, lab_dir / suite, ignore=skip)
    for name in ["conftest.py", *grading.files]:
        shutil.copyfile(lab.path / name, lab_dir / name)
    markers = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"].get("markers", [])
    (lab_dir / "pytest.ini").write_text("[pytest]\naddopts =\nmarkers =\n" + "".join(f"    {m}\n" for m in markers))
    notebook = released_cells(released_notebook) if released_notebook else None
    if notebook is not None:
        (lab_dir / "notebook").mkdir()
        shutil.copyfile(NOTEBOOK_TESTS, lab_dir / "notebook" / "test_notebook.py")
    digest = hashlib.sha256()
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(dest)}\0".encode() + path.read_bytes())
    digest.update(repr((grading.parts, grading.limits, grading.select, notebook)).encode())
    return Bundle(grading, dest, notebook, digest.hexdigest())
