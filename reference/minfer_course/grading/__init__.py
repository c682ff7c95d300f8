"""Instructor side: nbgrader release, sandboxed autograding with hidden suites, feedback, export.

config.py (per-lab points and limits) · edition.py (the student edition) · assignment.py (nbgrader
source folder) · leakscan.py · collect.py · submission.py · bundle.py, sandbox.py, guard.py,
nbsuite.py (the sandbox) · score.py, results.py · grade.py (batches) · nbgrader_plugin.py ·
course.py (the steps) · cli.py (`minfer grade`). grader/README.md is the instructor's guide.
"""
