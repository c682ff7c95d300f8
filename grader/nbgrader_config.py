"""nbgrader configuration of the minfer course.

The course directory is the folder holding this file: grader/ in the repository, or any folder
`minfer grade ... --course-dir DIR` set up (it copies this file there). Every nbgrader command run
in that folder reads it, whether `minfer grade` runs it or you do.
"""
import os
import warnings

from sqlalchemy.exc import SAWarning

from minfer_course.grading.nbgrader_plugin import autograde_preprocessors, exclude_overwriting

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file
COURSE = os.path.dirname(os.path.abspath(__file__))

# nbgrader 0.9's gradebook trips SQLAlchemy 2's autoflush warning three times per submission
# (nbgrader/api.py, harmless): hundreds of lines that would bury the grading log
warnings.filterwarnings("ignore", category=SAWarning, module="nbgrader")

c.CourseDirectory.course_id = "minfer"
c.CourseDirectory.root = COURSE

# Per-cell timeout wherever nbgrader itself runs notebooks (`nbgrader validate`): the lab
# notebooks load and run SmolLM2.
c.ExecutePreprocessor.timeout = 300
c.Execute.timeout = 300

# Autograde never runs a student's cells in a kernel: SandboxResults takes Execute's place and
# fills each autograded cell with the outcome of the lab's suites and the notebook's test cells,
# run on the submission in a separate, limited process (minfer_course/grading/).
c.Autograde.autograde_preprocessors = autograde_preprocessors()
c.SandboxResults.course_root = COURSE

# The student's lab files are what is graded: never overwrite them with the released skeletons.
c.Autograde.exclude_overwriting = exclude_overwriting()

# Deleted cells: `minfer grade autograde` puts them back from the release before nbgrader runs
# (nbgrader's OverwriteCells.add_missing_cells fails when the cell before is not a graded one).
# Their scores come from the instructor's copies in the sandbox in any case.
