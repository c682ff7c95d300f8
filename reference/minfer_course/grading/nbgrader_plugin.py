"""nbgrader's side: autograde takes its scores from the sandbox instead of the student's kernel.

`SandboxResults` replaces nbgrader's Execute preprocessor (grader/nbgrader_config.py), so plain
`nbgrader autograde` never runs a student's cell. It fills every autograded cell of a submission
with the sandbox's outcome: the test report as printed output, and the cell's score as the cell's
result, which nbgrader's own SaveAutoGrades reads as partial credit. Scores then reach the
gradebook, formgrader, feedback and export through nbgrader's usual path. A cell the sandbox has
no score for gets an error output, which nbgrader scores 0: the plugin fails closed.
"""
from __future__ import annotations

from pathlib import Path

from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbformat.v4 import new_output
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput,
                                    NbGraderPreprocessor, SaveAutoGrades)
from nbgrader.utils import is_grade, is_solution
from traitlets import Unicode

from ..labs import LABS
from .config import load_grading
from .results import SubmissionResult


class SandboxResults(NbGraderPreprocessor):
    course_root = Unicode("", help="the course directory (where sandbox_results/ lives)").tag(config=True)

    def preprocess(self, nb, resources):
        from .course import Course, result_for

        info = resources["nbgrader"]
        result = result_for(Course(Path(self.course_root)), info["assignment"], info["student"])
        first = True
        for cell in nb.cells:
            if cell.cell_type == "code" and is_grade(cell) and not is_solution(cell):
                cell.outputs = outputs(result, cell.metadata.nbgrader["grade_id"], problems=first)
                first = False
        return nb, resources


def outputs(result: SubmissionResult, grade_id: str, problems: bool) -> list:
    score = result.cell(grade_id)
    if score is None:
        return [new_output("error", ename="NotGraded", evalue=f"no sandbox score for {grade_id}",
                           traceback=[f"NotGraded: the sandbox has no score for cell {grade_id}; it scores 0"])]
    text = score.report()
    if problems and result.problems:
        text = "About this submission:\n" + "".join(f"  - {p}\n" for p in result.problems) + "\n" + text
    return [new_output("stream", name="stdout", text=text + "\n"),
            new_output("execute_result", data={"text/plain": repr(score.score)}, execution_count=1)]


def autograde_preprocessors() -> list:
    """nbgrader's autograde list with Execute swapped for SandboxResults."""
    return [SandboxResults, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
            AssignLatePenalties, CheckCellMetadata]


def exclude_overwriting() -> dict[str, list[str]]:
    """The student's lab files are what is graded: autograde must not swap in the skeletons."""
    out = {}
    for name, lab in LABS.items():
        out[name] = [f"{lab.folder}/{f}" for f in load_grading(name).files]
    return out
