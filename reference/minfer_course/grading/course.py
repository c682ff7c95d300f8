"""The course directory and the instructor's steps; each wraps the standard nbgrader command and
prints it, so the two can be mixed (formgrader, `nbgrader db student import`, ...).

    build      notebooks/ + skeletons + public tests + student edition -> source/<lab>/
    release    nbgrader generate_assignment, then the leak scan          -> release/<lab>/
    collect    a folder of <student>.zip or <student>/                    -> submitted/<student>/<lab>/
    autograde  the sandboxes (in parallel), then nbgrader autograde      -> gradebook.db, autograded/
    feedback   nbgrader generate_feedback, then a hidden-source scan     -> feedback/
    export     nbgrader export                                           -> grades.csv
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from ..labs import REPO
from . import grade
from .assignment import build_source
from .collect import Collected, collect
from .config import LabGrading, Limits, Scope, load_grading
from .leakscan import Leak, LeakError, fingerprints, scan
from .results import SubmissionResult
from .submission import Submission, read_submission, repair_notebook

Log = Callable[[str], None]


def say(line: str) -> None:
    print(line, flush=True)  # progress shows while a batch runs, also when redirected to a file


@dataclass(frozen=True)
class Course:
    root: Path

    def source(self, lab: str) -> Path:
        return self.root / "source" / lab

    def release(self, lab: str) -> Path:
        return self.root / "release" / lab

    def submission(self, student: str, lab: str) -> Path:
        return self.root / "submitted" / student / lab

    def result_path(self, lab: str, student: str) -> Path:
        return self.root / "sandbox_results" / lab / f"{student}.json"

    def released_notebook(self, grading: LabGrading) -> Path:
        path = self.release(grading.name) / f"{grading.notebook}.ipynb"
        if not path.is_file():
            raise ValueError(f"{path} does not exist: release {grading.name} first (minfer grade release {grading.name})")
        return path

    def students(self, lab: str) -> list[str]:
        return sorted(p.parent.name for p in (self.root / "submitted").glob(f"*/{lab}") if p.is_dir())

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.root / 'gradebook.db'}"


def open_course(root: Path) -> Course:
    """The course folder, made if needed, with nbgrader_config.py (a copy of grader/'s)."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    config = root / "nbgrader_config.py"
    if not config.exists():
        shutil.copyfile(REPO / "grader" / "nbgrader_config.py", config)
    return Course(root)


SCOPE_ENV = "MINFER_GRADE_SCOPE"  # tells SandboxResults, in the nbgrader we run, which results to accept


def nbgrader(course: Course, *args: str, check: bool = True, log: Log = say, scope: Scope = Scope()) -> int:
    log(f"$ nbgrader {shlex.join(args)}    # in {course.root}")
    # nbgrader runs tools of its environment (alembic) by name: put that environment first on PATH
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           SCOPE_ENV: scope.label}
    code = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course.root, env=env).returncode
    if check and code:
        raise RuntimeError(f"nbgrader {args[0]} failed (exit status {code}); its log is above")
    return code


def build(course: Course, lab: str, log: Log = say) -> Path:
    dest = build_source(load_grading(lab), course.source(lab))
    log(f"built {dest}")
    return dest


def release(course: Course, lab: str, log: Log = say) -> Path:
    if not course.source(lab).is_dir():
        raise ValueError(f"{course.source(lab)} does not exist: run `minfer grade build {lab}` first")
    nbgrader(course, "generate_assignment", lab, "--force", log=log)
    out = course.release(lab)
    leaks = scan(out, fingerprints(load_grading(lab).release_keeps))
    if leaks:
        shutil.rmtree(out)
        raise LeakError(f"the release of {lab} leaks answers or hidden tests, so {out} was deleted:\n{_lines(leaks)}")
    log(f"leak scan: {sum(p.is_file() for p in out.rglob('*'))} files in {out}, archives included: clean")
    return out


def collect_folder(course: Course, lab: str, folder: Path, log: Log = say) -> list[Collected]:
    done, skipped = collect(load_grading(lab), folder, course.root / "submitted")
    for c in done:
        log(f"{c.student}: {len(c.found)} files" + (f"; missing {', '.join(c.missing)}" if c.missing else ""))
    for s in skipped:
        log(f"skipped {s}")
    return done


@contextmanager
def session(course: Course, grading: LabGrading, jobs: int, limits: Limits | None = None,
            scope: Scope = Scope()) -> Iterator[grade.GradingRun]:
    from minfer.loader import store

    released = course.released_notebook(grading)
    for model in grading.models:  # the sandbox has no network: pull what the tests load now
        store.pull(model)
    work = Path(tempfile.mkdtemp(prefix=f"minfer-grade-{grading.name}-"))
    try:
        yield grade.start(grading, released, work, jobs, store.store_root(), [course.root], limits, scope)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _submission(course: Course, run: grade.GradingRun, student: str) -> Submission:
    ids = run.bundle.notebook.solution_ids if run.bundle.notebook else ()
    return read_submission(run.bundle.grading, course.submission(student, run.bundle.grading.name), student, ids)


def _cached(course: Course, run: grade.GradingRun, sub: Submission) -> SubmissionResult | None:
    path = course.result_path(run.bundle.grading.name, sub.student)
    if not path.is_file():
        return None
    result = SubmissionResult.load(path)
    same = (result.digest, result.bundle_digest, result.scope) == (sub.digest, run.bundle.digest, run.scope.label)
    return result if same and result.status != "setup error" else None


def autograde(course: Course, lab: str, jobs: int = 1, student: str | None = None, force: bool = False,
              limits: Limits | None = None, scope: Scope = Scope(), log: Log = say) -> list[SubmissionResult]:
    """`student`: an id, or a pattern as nbgrader's --student takes it (`team-*`)."""
    grading = load_grading(lab)
    students = [s for s in course.students(lab) if student is None or fnmatchcase(s, student)]
    if not students:
        raise ValueError(f"no submissions of {lab} in {course.root / 'submitted'}: run `minfer grade collect` first")
    released = course.released_notebook(grading)
    for s in students:  # nbgrader must be able to read every notebook, or the lab files' points are lost
        if note := repair_notebook(course.submission(s, lab), released.name, released):
            log(f"{s}: {note}")
    with session(course, grading, jobs, limits, scope) as run:
        subs = [_submission(course, run, s) for s in students]
        todo = [sub for sub in subs if force or _cached(course, run, sub) is None]
        log(f"{lab}: grading {len(todo)} of {len(subs)} submissions, {jobs} at a time "
            f"({'network and PID namespaces' if run.isolation.namespaces else 'no namespaces: audit hook only'})")
        start = time.monotonic()
        grade.grade_all(run, todo, jobs, done=lambda r: (r.save(course.result_path(lab, r.student)), log(_line(r))))
        if todo:
            took = time.monotonic() - start
            log(f"{len(todo)} submissions in {took:.1f} s: {took / len(todo):.1f} s per submission")
    nbgrader(course, "autograde", lab, "--force", *([f"--student={student}"] if student else []), check=False,
             log=log, scope=scope)
    _check_gradebook(course, lab, students, log)
    results = [SubmissionResult.load(course.result_path(lab, s)) for s in students]
    if broken := [r.student for r in results if r.status == "setup error"]:
        log(f"WARNING: the grader failed, not the student, for {', '.join(broken)}: their scores are 0 until you fix "
            "the cause (see each line above) and run autograde again")
    return results


def result_for(course: Course, lab: str, student: str) -> SubmissionResult:
    """The sandbox result nbgrader's autograde needs: the saved one if it still matches the
    submission and the tests, else graded now."""
    scope = Scope.from_label(os.environ.get(SCOPE_ENV, ""))
    with session(course, load_grading(lab), jobs=1, scope=scope) as run:
        sub = _submission(course, run, student)
        result = _cached(course, run, sub) or run.grade(sub)
        result.save(course.result_path(lab, student))
        return result


def _check_gradebook(course: Course, lab: str, students: list[str], log: Log) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(course.db_url) as gb:
        for s in students:
            try:
                gb.find_submission(lab, s)
            except MissingEntry:
                log(f"WARNING: {s} has no autograded {lab} in the gradebook: see nbgrader's log above")


def feedback(course: Course, lab: str, log: Log = say) -> list[Path]:
    nbgrader(course, "generate_feedback", lab, "--force", log=log)
    folders = sorted((course.root / "feedback").glob(f"*/{lab}"))
    hidden = fingerprints().hidden_only()
    leaks = [(folder, leak) for folder in folders for leak in scan(folder, hidden)]
    if leaks:
        for folder in {f for f, _ in leaks}:
            shutil.rmtree(folder)
        raise LeakError("feedback quotes hidden test source, so it was deleted:\n" + _lines([l for _, l in leaks]))
    log(f"hidden-source scan: feedback of {len(folders)} students clean")
    return sorted(p for f in folders for p in f.rglob("*.html"))


def export(course: Course, to: Path, log: Log = say) -> Path:
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        unsandboxed = [f"{sub.student.id}/{a.name}" for a in gb.assignments for sub in a.submissions
                       if not course.result_path(a.name, sub.student.id).is_file()]
    if unsandboxed:
        raise ValueError(f"autograded without the sandbox, so their scores cannot be trusted: {', '.join(unsandboxed)}; "
                         "run `minfer grade autograde LAB` for them")
    to = to.resolve()
    nbgrader(course, "export", f"--to={to}", log=log)
    return to


def _line(r: SubmissionResult) -> str:
    problems = "; ".join(r.problems)
    return f"  {r.student:<16} {r.total:7.2f} / {r.max_total:g}  {r.status:<11} {r.seconds:6.1f} s  {problems[:300]}"


def _lines(leaks: list[Leak], most: int = 30) -> str:
    text = "\n".join(f"  {leak}" for leak in leaks[:most])
    return text + (f"\n  ... and {len(leaks) - most} more" if len(leaks) > most else "")
