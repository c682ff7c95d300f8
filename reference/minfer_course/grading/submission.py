"""One student's submission as the grader sees it: the lab files and the notebook's solution cells.

A submission folder (nbgrader's `submitted/<student>/<lab>/`) holds the notebook and the lab files
at the paths the release gave them (`labs/lab1_allocator/allocator.py`). Nothing here runs student
code: files are read, size-checked and parsed. A lab file that is missing or does not parse is
graded as the released skeleton (it earns nothing, and the other files still count); a missing
solution cell is graded as the released stub.
"""
from __future__ import annotations

import ast
import copy
import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from .config import LabGrading

MAX_SOURCE_BYTES = 1 << 20  # a lab file
MAX_NOTEBOOK_BYTES = 64 << 20  # a notebook with its outputs (plots)
UNREADABLE = ".unreadable"  # suffix of a submitted notebook that could not be read (kept for review)
MISSING = ".missing"  # marker: the submission had no notebook


@dataclass(frozen=True)
class Submission:
    student: str
    folder: Path
    files: dict[str, str | None]  # lab file -> its source; None: graded as the skeleton
    cells: dict[str, str]  # solution cell grade_id -> its source, as submitted
    problems: tuple[str, ...]  # what the student should be told, one sentence each

    @property
    def digest(self) -> str:
        """Identifies what is graded; a cached result is reused only for the same digest."""
        data = json.dumps({"files": self.files, "cells": self.cells, "problems": self.problems}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()


def read_submission(grading: LabGrading, folder: Path, student: str, solution_ids: tuple[str, ...]) -> Submission:
    problems: list[str] = []
    files = {name: _read_source(folder / grading.lab.folder / name, name, problems) for name in grading.files}
    cells: dict[str, str] = {}
    notebook = folder / f"{grading.notebook}.ipynb"
    if (folder / (notebook.name + MISSING)).exists():
        problems.append(f"{notebook.name} was not submitted: the released notebook stands in, so its exercises score 0")
    elif (folder / (notebook.name + UNREADABLE)).exists():
        problems.append(f"{notebook.name} could not be read as a notebook: the released notebook stands in, "
                        "so its exercises score 0")
    elif solution_ids:
        try:
            cells = _solution_cells(notebook)
        except (OSError, ValueError, AttributeError) as e:
            problems.append(f"{notebook.name} could not be read ({type(e).__name__}): its exercises score 0")
        else:
            problems += [f"the solution cell {grade_id!r} is missing from {notebook.name}: the released stub "
                         "was graded in its place" for grade_id in solution_ids if grade_id not in cells]
    return Submission(student, folder, files, {k: v for k, v in cells.items() if k in solution_ids}, tuple(problems))


def _read_source(path: Path, name: str, problems: list[str]) -> str | None:
    skeleton = "graded as the released skeleton"
    if path.is_symlink() or not path.is_file():
        problems.append(f"{name} is missing from the submission: {skeleton}")
        return None
    if path.stat().st_size > MAX_SOURCE_BYTES:
        problems.append(f"{name} is larger than {MAX_SOURCE_BYTES >> 20} MiB: {skeleton}")
        return None
    try:
        text = path.read_bytes().decode("utf-8")
        ast.parse(text, filename=name)  # parse only: nothing is compiled or run here
    except UnicodeDecodeError:
        problems.append(f"{name} is not UTF-8 text: {skeleton}")
        return None
    except SyntaxError as e:
        problems.append(f"{name} does not parse (line {e.lineno}: {e.msg}): {skeleton}")
        return None
    except (ValueError, RecursionError, MemoryError) as e:
        problems.append(f"{name} cannot be parsed ({type(e).__name__}): {skeleton}")
        return None
    return text


def _solution_cells(notebook: Path) -> dict[str, str]:
    """grade_id -> source of the code solution cells (the first one of each id)."""
    if notebook.is_symlink() or notebook.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"{notebook.name} is a link or larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
    nb = json.loads(notebook.read_bytes())
    cells: dict[str, str] = {}
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and meta.get("solution") and isinstance(meta.get("grade_id"), str):
            source = cell.get("source", "")
            cells.setdefault(meta["grade_id"], "".join(source) if isinstance(source, list) else str(source))
    return cells


def repair_notebook(folder: Path, notebook_name: str, released: Path) -> str | None:
    """Make `folder` hold a notebook nbgrader can autograde, so every score reaches the gradebook:
    a missing or unreadable notebook is replaced by the released one (an unreadable file is kept
    beside it), and deleted nbgrader cells are put back from the release (nbgrader's own
    `add_missing_cells` fails when the cell before is not a graded one). Returns what was done."""
    import nbformat

    path = folder / notebook_name
    if not path.is_file() or path.is_symlink():
        if (folder / (notebook_name + MISSING)).exists():
            return None
        (folder / (notebook_name + MISSING)).write_text("the submission had no notebook\n")
        shutil.copyfile(released, path)
        return "missing notebook replaced by the released one"
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
        raw = json.loads(path.read_text(encoding="utf-8"))
        added_ids = _add_missing_cell_ids(raw)
        nb = nbformat.reads(json.dumps(raw), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - any failure to read means nbgrader cannot grade it
        path.replace(folder / (notebook_name + UNREADABLE))
        shutil.copyfile(released, path)
        return f"unreadable notebook ({type(e).__name__}) replaced by the released one"
    restored = _restore_cells(nb, nbformat.read(released, as_version=4))
    if not restored and not added_ids:
        return None
    tmp = path.with_name(f".{path.name}.repairing")
    nbformat.write(nb, tmp)
    tmp.replace(path)
    done = [f"deleted cells put back from the release: {', '.join(restored)}"] if restored else []
    return "; ".join(done + ([f"cell ids added where missing ({added_ids})"] if added_ids else []))


def _add_missing_cell_ids(raw: object) -> int:
    """nbformat 4.5 cells carry ids; a cell added by an older tool may not. nbformat fills them in
    with a warning today and promises to refuse such notebooks later: give them ids ourselves."""
    if not (isinstance(raw, dict) and raw.get("nbformat") == 4 and raw.get("nbformat_minor", 0) >= 5
            and isinstance(raw.get("cells"), list)):
        return 0
    bare = [c for c in raw["cells"] if isinstance(c, dict) and "id" not in c]
    for cell in bare:
        cell["id"] = uuid.uuid4().hex[:12]
    return len(bare)


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _restore_cells(nb, released) -> list[str]:
    """Insert each released nbgrader cell missing from `nb` after its released predecessor."""
    restored: list[str] = []
    for i, cell in enumerate(released.cells):
        grade_id = _grade_id(cell)
        if grade_id is None or any(_grade_id(c) == grade_id for c in nb.cells):
            continue
        before = [_grade_id(c) for c in released.cells[:i] if _grade_id(c)]
        where = max((j + 1 for j, c in enumerate(nb.cells) if _grade_id(c) in before), default=0)
        cell = copy.deepcopy(cell)
        if "id" in cell:
            cell["id"] = uuid.uuid4().hex[:12]  # cell ids must stay unique in the notebook
        nb.cells.insert(where, cell)
        restored.append(grade_id)
    return restored
