"""Copied into a grading sandbox as notebook/test_notebook.py: one test per autograded notebook cell."""
from pathlib import Path

import pytest

from minfer_course.grading.nbsuite import NotebookRun, headless_shell, load_cells

RUN = NotebookRun(load_cells(Path(__file__).with_name("cells.json")))
SHELL = headless_shell()  # made now, while collecting: it sets up its profile folder under $HOME
RUN.namespace["get_ipython"] = lambda: SHELL


@pytest.mark.parametrize("grade_id", RUN.test_ids)
def test_cell(grade_id):
    RUN.check(grade_id)
