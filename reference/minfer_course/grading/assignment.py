"""Assemble a lab's nbgrader source folder: what `nbgrader generate_assignment` turns into a release.

    source/<lab>/<notebook>.ipynb              notebooks/<notebook>.ipynb + one autograded cell per part
    source/<lab>/labs/<lab folder>/            handout, skeletons, conftest, public tests (never hidden/)
    source/<lab>/minfer-*+student-*.whl        the student edition: every lab's solutions stripped
    source/<lab>/README.md                     how to install, work, check and submit

The part cells are where the suite scores live in nbgrader's gradebook: each is a locked,
autograded code cell holding only a comment, so running it in a student's kernel does nothing,
and autograde fills it with the sandbox's outcome for that part.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..labs import LABS, REPO
from ..skeletons import write_skeletons
from .config import SUITES, LabGrading
from .edition import build_edition, build_wheel, unowned_solution_regions

INTRO_ID = "autograded_files"


def build_source(grading: LabGrading, dest: Path) -> Path:
    """Write the source folder to `dest` through a temporary sibling, then swap it in."""
    stale = write_skeletons(check=True)
    if stale:
        raise ValueError(f"committed skeletons are stale ({', '.join(map(str, stale))}); run `minfer lab skeletons`")
    tmp = dest.with_name(f".{dest.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_notebook(grading, tmp / f"{grading.notebook}.ipynb")
        _copy_lab(grading, tmp / grading.lab.folder)
        wheel = _write_wheel(grading, tmp)
        template = (REPO / "grader" / "assignment_README.md").read_text()
        files = ", ".join(f"`{f}`" for f in grading.files)
        paths = ", ".join(f"`{grading.lab.folder}/{f}`" for f in grading.files)
        (tmp / "README.md").write_text(template.format(lab=grading.name, folder=grading.lab.folder, files=files,
                                                       paths=paths, notebook=grading.notebook, wheel=wheel.name))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _write_notebook(grading: LabGrading, path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    source = grading.notebook_source
    if source is not None:
        nb = nbformat.read(source, as_version=4)
        if any("BEGIN HIDDEN TESTS" in c.source for c in nb.cells):
            raise ValueError(f"{source}: hidden tests in notebook cells are not supported; put them in "
                             f"{grading.lab.folder}/hidden/, which is graded outside the student's kernel")
    else:
        nb = new_notebook(metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}})
        nb.cells.append(_locked(new_markdown_cell(f"# {grading.name}\n\nSee `{grading.lab.folder}/README.md`."),
                                "intro"))
    files = " and ".join(f"`{f}`" for f in grading.files)
    nb.cells.append(_locked(new_markdown_cell(
        f"## Autograded: your lab files\n\nYour {files} in `{grading.lab.folder}/` are graded outside this "
        f"notebook, by the public tests in `{grading.lab.folder}/tests/` and a hidden suite, in a separate "
        "process. Each cell below is one part of the points table; your feedback lists its tests there. "
        f"Check yourself with `minfer lab test {grading.name}`."), INTRO_ID))
    for part in grading.parts:
        cell = new_code_cell(f"# {part.title} ({part.points:g} points): graded outside this notebook by the\n"
                             f"# tests of your lab files; your feedback lists them here.")
        nb.cells.append(_locked(cell, part.cell_id, points=part.points))
    nbformat.write(nb, path)


def _locked(cell, grade_id: str, points: float | None = None):
    meta = {"grade": points is not None, "grade_id": grade_id, "locked": True, "schema_version": 3,
            "solution": False, "task": False}
    if points is not None:
        meta["points"] = points
    cell.metadata["nbgrader"] = meta
    return cell


def _copy_lab(grading: LabGrading, dest: Path) -> None:
    lab = grading.lab
    dest.mkdir(parents=True)
    for name in ["README.md", "conftest.py", *grading.files]:
        if (lab.path / name).is_file():
            shutil.copyfile(lab.path / name, dest / name)
    public = SUITES[0]
    if (lab.path / public).is_dir():
        shutil.copytree(lab.path / public, dest / public, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _write_wheel(grading: LabGrading, dest: Path) -> Path:
    keep = [LABS[name] for name in grading.release_keeps]
    with tempfile.TemporaryDirectory() as tmp:
        edition = build_edition(Path(tmp), [lab for lab in LABS.values() if lab not in keep], keep)
        unowned = unowned_solution_regions(edition)
        if unowned:
            raise ValueError(f"solution regions that no lab in minfer_course/labs.py owns would ship: {unowned}")
        return build_wheel(edition, dest)
