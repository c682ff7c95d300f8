"""The course notebooks are valid nbgrader source notebooks, and each runs top to bottom on the reference.

The fast test checks nbgrader's cell metadata (with nbgrader's own validator too) and what a release
built from the notebook would contain; the slow one executes every cell in a fresh kernel, with the
lab modules taken from the reference (MINFER_LAB_IMPL=reference), as CI does.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.ipynb"))
NBGRADER_KEYS = {"grade", "solution", "locked", "grade_id", "schema_version", "task"}


def _read(path: Path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def test_every_lab_has_a_notebook():
    from minfer_course.labs import LABS

    assert {NOTEBOOKS / f"{Path(lab.folder).name}.ipynb" for lab in LABS.values()} <= set(SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_nbgrader_metadata(path):
    nb = _read(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    ids: list[str] = []
    autograded, manual, solutions = [], [], []
    for i, cell in enumerate(nb.cells):
        where = f"{path.name} cell {i}"
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{where}: commit the source without outputs"
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            assert "BEGIN SOLUTION" not in cell.source, f"{where}: solution region outside a solution cell"
            continue
        assert NBGRADER_KEYS <= set(meta), f"{where}: nbgrader metadata lacks {NBGRADER_KEYS - set(meta)}"
        assert meta["schema_version"] == 3, where
        if meta["grade"] or meta["solution"] or meta["locked"]:
            assert meta["grade_id"], f"{where}: empty grade_id"
            ids.append(meta["grade_id"])
        if meta["grade"]:
            assert meta.get("points", 0) > 0, f"{where}: a graded cell needs points > 0"
        if meta["grade"] and not meta["solution"]:
            assert cell.cell_type == "code" and meta["locked"], f"{where}: an autograded test cell is locked code"
            assert "BEGIN SOLUTION" not in cell.source, where
            autograded.append(meta["grade_id"])
        if meta["grade"] and meta["solution"]:
            manual.append(meta["grade_id"])
            if cell.cell_type == "markdown":
                assert "YOUR ANSWER HERE" in cell.source, f"{where}: the answer cell shows the student where to write"
        if meta["solution"] and cell.cell_type == "code":
            src = cell.source
            assert "### BEGIN SOLUTION" in src and "### END SOLUTION" in src, f"{where}: no solution region"
            assert src.index("### BEGIN SOLUTION") < src.index("### END SOLUTION"), where
            solutions.append(meta["grade_id"])
    assert len(ids) == len(set(ids)), f"duplicate grade_id: {sorted(i for i in ids if ids.count(i) > 1)}"
    assert autograded, "no autograded test cell"
    assert manual, "no manually graded cell"
    assert solutions, "no solution cell with ### BEGIN SOLUTION / ### END SOLUTION"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_nbgrader_accepts_and_releases(path):
    """nbgrader's own validator, and the student version its release step would produce."""
    from nbgrader.nbgraderformat import MetadataValidator
    from nbgrader.preprocessors import CheckCellMetadata, ClearOutput, ClearSolutions

    nb = _read(path)
    MetadataValidator().validate_nb(nb)
    resources: dict = {}
    for pre in (CheckCellMetadata(), ClearSolutions(), ClearOutput()):
        nb, resources = pre.preprocess(nb, resources)
    release = json.dumps(nb)
    assert "BEGIN SOLUTION" not in release and "END SOLUTION" not in release
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            assert "raise NotImplementedError()" in cell.source
            compile(cell.source, f"{path.name}: released solution cell", "exec")


@pytest.mark.slow
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    from nbclient import NotebookClient

    # the kernel inherits this process's environment: the reference lab modules, a headless backend
    monkeypatch.setenv("MINFER_LAB_IMPL", "reference")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = _read(path)
    client = NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=True,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    errors = [
        f"cell {i}: {out.ename}: {out.evalue}"
        for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
        for out in cell.outputs if out.output_type == "error"
    ]
    assert not errors, "\n".join(errors)
    assert all(cell.execution_count for cell in nb.cells if cell.cell_type == "code"), "a code cell did not run"
