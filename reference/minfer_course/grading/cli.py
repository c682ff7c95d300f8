"""`minfer grade ...`: the instructor's commands (grader/README.md walks through a semester)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..labs import LABS, REPO


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grade", help="instructor: build, release, collect, autograde, feedback, export (nbgrader)")
    p.add_argument("action", choices=["build", "release", "collect", "autograde", "feedback", "export", "leakscan"])
    p.add_argument("lab", nargs="?", help="lab1, ... ('all' for build and release); leakscan: a folder")
    p.add_argument("folder", nargs="?", help="collect: a folder with one <student>.zip or <student>/ per student")
    p.add_argument("--course-dir", type=Path, default=REPO / "grader", help="the nbgrader course folder (default: grader/)")
    p.add_argument("--jobs", type=int, default=1, help="autograde: submissions graded in parallel")
    p.add_argument("--student", help="autograde: only this student")
    p.add_argument("--force", action="store_true", help="autograde: grade again even where a saved result still matches")
    p.add_argument("--to", type=Path, default=None, help="export: the CSV file to write (default: COURSE_DIR/grades.csv)")
    p.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from . import course as c

    if a.action == "leakscan":
        return _leakscan(Path(a.lab or "."))
    course = c.open_course(a.course_dir)
    if a.action == "export":
        print(c.export(course, a.to or course.root / "grades.csv"))
        return 0
    labs = _labs(a)
    for lab in labs:
        if a.action == "build":
            c.build(course, lab)
        elif a.action == "release":
            c.release(course, lab)
        elif a.action == "collect":
            if not a.folder:
                raise ValueError("usage: minfer grade collect LAB FOLDER")
            c.collect_folder(course, lab, Path(a.folder))
        elif a.action == "autograde":
            if a.jobs < 1:
                raise ValueError(f"--jobs must be at least 1, got {a.jobs}")
            c.autograde(course, lab, jobs=a.jobs, student=a.student, force=a.force)
        elif a.action == "feedback":
            c.feedback(course, lab)
    return 0


def _labs(a: argparse.Namespace) -> list[str]:
    if not a.lab:
        raise ValueError(f"minfer grade {a.action} needs a lab: {', '.join(LABS)}" +
                         (" or all" if a.action in ("build", "release") else ""))
    if a.lab == "all" and a.action in ("build", "release"):
        return list(LABS)
    if a.lab not in LABS:
        raise ValueError(f"unknown lab {a.lab!r}; labs: {', '.join(LABS)}")
    return [a.lab]


def _leakscan(path: Path) -> int:
    from .leakscan import fingerprints, scan

    if not path.exists():
        raise ValueError(f"{path} does not exist")
    leaks = scan(path, fingerprints())
    for leak in leaks:
        print(leak)
    print(f"{len(leaks)} leaks in {path}")
    return 1 if leaks else 0
