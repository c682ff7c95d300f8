"""The grading pipeline end to end, for every lab in minfer_course/labs.py LABS.

One run per lab (a module fixture): build and release (with the leak scan), collect a folder of
zipped and unzipped submissions, autograde in sandboxes (two at a time), feedback, export. The
submissions: the reference (full marks), the skeleton (zero), each known-wrong solution (less
than full, the expected tests named), notebooks that attack their test cells, and — for the first
lab only, since the sandbox is the same for every lab — hostile lab files (nothing unearned, a
clear reason, and the rest of the batch still graded). Many are graded with the QUICK scope (no
slow tests, no notebook) and short limits to keep this file short; the reference, the skeleton and
the notebook attacks run everything.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from grading_cases import Case, hostile_cases, lab_files, notebook_cases
from minfer_course.grading import course as grader
from minfer_course.grading.config import QUICK, Limits, load_grading
from minfer_course.grading.leakscan import LeakError, fingerprints, scan
from minfer_course.grading.results import SubmissionResult
from minfer_course.labs import LABS, REPO
from minfer_course.runner import materialize_wrong_solution, wrong_solution_specs

HOSTILE_LIMITS = Limits(wall_s=45, test_s=15, memory_mb=3072, output_mb=16)
HOSTILE_LAB = next(iter(LABS))


@dataclass
class Pipeline:
    lab: str
    course: grader.Course
    results: dict[str, SubmissionResult]
    cases: dict[str, Case]
    wrong: dict[str, dict]  # student -> the wrong solution's spec
    grades: dict[str, dict]  # student -> CSV row

    def feedback_text(self, student: str) -> str:
        pages = sorted((self.course.root / "feedback" / student / self.lab).glob("*.html"))
        return "\n".join(re.sub(r"<[^>]+>", "", p.read_text()) for p in pages)


def _write_submission(folder: Path, files: dict[str, str], notebook: dict | None, zipped: bool) -> None:
    if zipped:  # wrapped in a top folder, as zipping an assignment folder does
        with zipfile.ZipFile(folder.with_suffix(".zip"), "w") as zf:
            for rel, text in files.items():
                zf.writestr(f"lab/{rel}", text)
            if notebook is not None:
                zf.writestr(f"lab/{notebook['name']}", json.dumps(notebook["nb"]))
        return
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    if notebook is not None:
        (folder / notebook["name"]).write_text(json.dumps(notebook["nb"]))


@pytest.fixture(scope="module", params=sorted(LABS))
def pipeline(request, tmp_path_factory) -> Pipeline:
    lab = request.param
    grading = load_grading(lab)
    tmp = tmp_path_factory.mktemp(f"grading-{lab}")
    course = grader.open_course(tmp / "course")
    grader.build(course, lab)
    grader.release(course, lab)

    released = json.loads(course.released_notebook(grading).read_text())
    solved = json.loads((course.source(lab) / f"{grading.notebook}.ipynb").read_text())
    nb_name = f"{grading.notebook}.ipynb"
    incoming = tmp / "incoming"
    incoming.mkdir()
    cases = {f"q-{c.name}": c for c in hostile_cases(grading, course.root)} if lab == HOSTILE_LAB else {}
    cases |= {f"f-{c.name}": c for c in notebook_cases(grading, released)} if grading.notebook_source else {}
    for i, (student, case) in enumerate(cases.items()):
        _write_submission(incoming / student, case.files, {"name": nb_name, "nb": case.notebook or released}, i % 2 == 0)
    _write_submission(incoming / "f-reference", lab_files(grading, "reference"), {"name": nb_name, "nb": solved}, True)
    _write_submission(incoming / "f-skeleton", lab_files(grading, "skeleton"), {"name": nb_name, "nb": released}, False)
    wrong = {}
    for spec in wrong_solution_specs(LABS[lab]):
        folder = tmp / "wrong" / spec.stem
        materialize_wrong_solution(LABS[lab], spec, folder)
        files = {f"{grading.lab.folder}/{f}": (folder / f).read_text() for f in grading.files}
        _write_submission(incoming / f"q-wrong-{spec.stem}", files, {"name": nb_name, "nb": released}, False)
        wrong[f"q-wrong-{spec.stem}"] = tomllib.loads(spec.read_text())
    (incoming / "notes.txt").write_text("not a submission")

    grader.collect_folder(course, lab, incoming)
    results = {r.student: r for r in grader.autograde(course, lab, jobs=2, student="q-*", limits=HOSTILE_LIMITS,
                                                     scope=QUICK)}
    results |= {r.student: r for r in grader.autograde(course, lab, jobs=2, student="f-*")}
    grader.feedback(course, lab)
    out = grader.export(course, tmp / "grades.csv")
    with open(out) as f:
        grades = {row["student_id"]: row for row in csv.DictReader(f) if row["assignment"] == lab}
    return Pipeline(lab, course, results, cases, wrong, grades)


def _ran(result: SubmissionResult) -> float:
    """The points of the cells that had tests in this run (QUICK leaves some out)."""
    return sum(c.points for c in result.cells if c.tests)


@pytest.mark.slow  # the whole pipeline, real model included
def test_release_holds_what_students_need_and_nothing_else(pipeline):
    grading = load_grading(pipeline.lab)
    release = pipeline.course.release(pipeline.lab)
    names = {p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()}
    assert f"{grading.notebook}.ipynb" in names and "README.md" in names
    assert {f"{grading.lab.folder}/{f}" for f in grading.files} <= names
    assert any(n.endswith("+student-py3-none-any.whl") for n in names)
    assert not any("/hidden/" in f"/{n}" for n in names)
    assert scan(release, fingerprints()) == []


@pytest.mark.slow  # the whole pipeline, real model included
def test_leak_scan_fails_loudly_on_a_contaminated_release(pipeline, tmp_path):
    lab = LABS[pipeline.lab]
    bad = tmp_path / "release"
    shutil.copytree(pipeline.course.release(pipeline.lab), bad)
    module = next(iter(lab.modules.values()))
    (bad / "answer.py").write_text((REPO / "reference" / Path(*module.split("."))).with_suffix(".py").read_text())
    for hidden in (lab.path / "hidden").glob("test_*.py"):
        (bad / "notes.txt").write_text(hidden.read_text())
    with zipfile.ZipFile(bad / "engine.whl", "w") as zf:  # a built package with the full reference inside
        zf.write(REPO / "reference" / Path(*module.split(".")).with_suffix(".py"), "minfer/x.py")
    kinds = {(leak.path.split("!")[0], leak.kind) for leak in scan(bad, fingerprints())}
    assert ("answer.py", "solution code") in kinds and ("engine.whl", "solution code") in kinds
    assert ("notes.txt", "hidden test code") in kinds or not list((lab.path / "hidden").glob("test_*.py"))

    # the release step itself: a contaminated source folder gives a loud error and no release
    course = grader.open_course(tmp_path / "course")
    shutil.copytree(pipeline.course.source(pipeline.lab), course.source(pipeline.lab))
    shutil.copyfile(bad / "answer.py", course.source(pipeline.lab) / "answer.py")
    with pytest.raises(LeakError, match="solution code"):
        grader.release(course, pipeline.lab)
    assert not course.release(pipeline.lab).exists()


@pytest.mark.slow  # the whole pipeline, real model included
def test_reference_gets_full_marks(pipeline):
    r = pipeline.results["f-reference"]
    failed = [f"{t.nodeid}: {t.message}" for c in r.cells for t in c.tests if not t.passed]
    assert r.status == "graded" and not failed and not r.problems, (failed, r.problems)
    assert all(c.tests for c in r.cells), "every autograded cell has tests"
    assert r.total == r.max_total > 0
    assert float(pipeline.grades["f-reference"]["raw_score"]) == pytest.approx(r.max_total, abs=0.01)  # the gradebook agrees


@pytest.mark.slow  # the whole pipeline, real model included
def test_skeleton_gets_zero(pipeline):
    r = pipeline.results["f-skeleton"]
    assert r.status == "graded" and r.total == 0
    assert all(not t.passed for c in r.cells for t in c.tests)
    assert float(pipeline.grades["f-skeleton"]["raw_score"]) == pytest.approx(0, abs=0.01)


@pytest.mark.slow  # the whole pipeline, real model included
def test_wrong_solutions_get_less_than_full_with_the_failing_tests_named(pipeline):
    assert pipeline.wrong, "each lab has known-wrong solutions in grader/wrong_solutions/"
    for student, spec in pipeline.wrong.items():
        r = pipeline.results[student]
        failed = r.failed_tests()
        assert r.status == "graded" and r.total < _ran(r), f"{student} gets full marks"
        assert any(n.startswith("hidden/") for n in failed), f"{student}: no hidden test fails"
        missing = [t for t in spec.get("fails", []) if t not in failed]
        assert not missing, f"{student}: expected to fail {missing}, failed {failed}"
        feedback = pipeline.feedback_text(student)
        assert all(f"FAIL  {t}" in feedback for t in failed), f"{student}: feedback does not name its failures"
        assert float(pipeline.grades[student]["raw_score"]) == pytest.approx(r.total, abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    "infinite-loop", "exit-at-import", "memory-bomb", "fork-bomb", "output-flood", "network", "reads-hidden-tests",
    "writes-gradebook", "imports-the-answer", "copies-the-answer", "tampers-with-pytest", "edited-public-tests",
    "does-not-parse", "missing-file"])
def test_hostile_submission(pipeline, name):
    if pipeline.lab != HOSTILE_LAB:
        pytest.skip(f"hostile lab files are graded for {HOSTILE_LAB} only: the sandbox is the same for every lab")
    student = f"q-{name}"
    case, r = pipeline.cases[student], pipeline.results[student]
    said = " ".join(r.problems) + (" ".join(t.message for c in r.cells for t in c.tests) if case.reason_in_messages else "")
    assert case.reason in said, f"{student}: {case.reason!r} not in {r.problems}"
    assert r.status == case.status, (r.status, r.problems)
    if case.earns == "nothing":
        assert r.total == 0, f"{student} earned {r.total}"
    else:  # it keeps the points of its correct file, never all of them
        assert 0 < r.total < _ran(r)
    assert float(pipeline.grades[student]["raw_score"]) == pytest.approx(r.total, abs=0.01)
    if name == "edited-public-tests":
        submitted = pipeline.course.submission(student, pipeline.lab)
        assert not (submitted / LABS[pipeline.lab].folder / "tests").exists(), "collect takes only the graded files"


@pytest.mark.slow  # the whole pipeline, real model included
def test_notebook_attacks_score_nothing(pipeline):
    grading = load_grading(pipeline.lab)
    if grading.notebook_source is None:
        pytest.skip("this lab has no notebook")
    from nbgrader.api import Gradebook

    with Gradebook(pipeline.course.db_url) as gb:
        for student in ("f-notebook-monkeypatch", "f-notebook-test-cells-deleted"):
            r = pipeline.results[student]
            notebook_cells = [c for c in r.cells if not c.cell_id.startswith("suite_")]
            assert notebook_cells and all(c.tests and c.score == 0 for c in notebook_cells), student
            assert r.total == 0
            grades = gb.find_submission_notebook(grading.notebook, pipeline.lab, student).grades
            autograded = [g for g in grades if g.cell.cell_type == "code"]
            assert autograded and all(g.auto_score == 0 and not g.needs_manual_grade for g in autograded), student


@pytest.mark.slow  # the whole pipeline, real model included
def test_feedback_names_tests_but_never_quotes_hidden_source(pipeline):
    hidden = fingerprints().hidden_only()
    for student in pipeline.results:
        folder = pipeline.course.root / "feedback" / student / pipeline.lab
        assert folder.is_dir(), f"no feedback for {student}"
        assert scan(folder, hidden) == []
        results_file = pipeline.course.result_path(pipeline.lab, student)
        assert not any(line in results_file.read_text() for line in hidden.hidden)
    text = pipeline.feedback_text("f-skeleton")
    hidden_tests = [t.nodeid for c in pipeline.results["f-skeleton"].cells for t in c.tests if t.nodeid.startswith("hidden/")]
    assert hidden_tests and all(f"FAIL  {n}" in text for n in hidden_tests)


@pytest.mark.slow  # the whole pipeline, real model included
def test_the_batch_finishes_with_everyone_graded(pipeline):
    students = set(pipeline.course.students(pipeline.lab))
    assert students == set(pipeline.results) == set(pipeline.grades)
    assert {"f-reference", "f-skeleton"} <= students and "notes" not in students


def test_points_cover_every_test_exactly_once():
    for lab in LABS.values():
        grading = load_grading(lab.name)
        out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                              "--impl", "reference", "tests", "hidden"], cwd=lab.path, capture_output=True, text=True)
        nodeids = [line.removeprefix(f"{lab.folder}/") for line in out.stdout.splitlines() if "::" in line]
        assert nodeids, out.stdout + out.stderr
        assert grading.check_coverage(nodeids) == []


def test_handout_points_table_matches_the_grading_config():
    for lab in LABS.values():
        grading = load_grading(lab.name)
        readme = (lab.path / "README.md").read_text()
        if "| points |" not in readme:
            continue
        for part in grading.parts:
            assert re.search(rf"^\|\s*{re.escape(part.title)}\s*\|\s*{part.points:g}\s*\|", readme, re.M), part.title


def test_student_edition_wheel_has_no_answers(tmp_path):
    from minfer_course.grading.edition import build_edition, build_wheel, unowned_solution_regions

    edition = build_edition(tmp_path / "ed", LABS.values())
    assert unowned_solution_regions(edition) == []
    wheel = build_wheel(edition, tmp_path / "dist")
    assert scan(tmp_path / "dist", fingerprints()) == []
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target",
                    str(tmp_path / "site"), str(wheel)], check=True)
    lab = next(iter(LABS.values()))
    module = next(iter(lab.modules.values()))
    code = (f"import {module} as m, inspect; src = inspect.getsource(m); "
            "assert 'NotImplementedError' in src and 'BEGIN SOLUTION' not in src; print(m.__file__)")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path / 'site')!r}); {code}"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and str(tmp_path / "site") in out.stdout, out.stderr


def test_without_namespaces_the_audit_hook_still_refuses_processes_and_network(tmp_path):
    """What an unprivileged container gets (no unshare): the same refusals, from the audit hook alone."""
    from dataclasses import replace

    from minfer_course.grading import grade
    from minfer_course.grading.submission import read_submission
    from minfer.loader import store

    grading = load_grading(sorted(LABS)[0])
    attacks = {
        "fork": ("import os, time\nfor _ in range(20):\n    if os.fork() == 0:\n        time.sleep(600)\n", "(os.fork)"),
        "ctypes-fork": ("import ctypes\nctypes.CDLL(None).fork()\n", "calling fork() through ctypes"),
        "spawn": ("import subprocess\nsubprocess.run(['sleep', '600'])\n", "(subprocess.Popen)"),
        "network": ("import socket\nsocket.socket().connect(('127.0.0.1', 9))\n", "network access"),
    }
    subs = []
    for name, (code, _) in attacks.items():
        for rel, text in {**lab_files(grading, "skeleton"), f"{grading.lab.folder}/{grading.files[0]}": code}.items():
            (tmp_path / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / rel).write_text(text)
        subs.append(read_submission(grading, tmp_path / name, name, ()))
    (tmp_path / "work").mkdir()
    run = grade.start(grading, None, tmp_path / "work", 2, store.store_root(), limits=HOSTILE_LIMITS, scope=QUICK)
    run = replace(run, isolation=replace(run.isolation, namespaces=False))
    for result in grade.grade_all(run, subs, jobs=2):
        assert result.total == 0 and result.status == "graded", (result.student, result.problems)
        assert any(attacks[result.student][1] in p for p in result.problems), (result.student, result.problems)


def test_a_release_ships_another_labs_answers_only_when_configured(tmp_path):
    """release_keeps: the default strips every lab; a kept lab ships as plain code (no markers) and
    the release's leak scan then accepts it, while any other lab's answer is still a leak."""
    from minfer_course.grading.edition import build_edition, unowned_solution_regions

    if len(LABS) < 2:
        pytest.skip("needs two labs")
    second = list(LABS.values())[1]
    edition = build_edition(tmp_path / "ed", [lab for lab in LABS.values() if lab is not second], keep=[second])
    assert unowned_solution_regions(edition) == []
    assert scan(tmp_path / "ed", fingerprints((second.name,))) == []
    leaks = scan(tmp_path / "ed", fingerprints())
    assert leaks and all(leak.kind == "solution code" for leak in leaks)
    shipped = {Path(leak.path).with_suffix("").as_posix().replace("/", ".") for leak in leaks}
    assert shipped <= set(second.modules.values())


def test_processes_a_conftest_starts_are_guarded_once_submitted_code_runs(tmp_path):
    """Lab 2's conftest starts CUDA's compiler in a process of its own, on the student's file. Such
    a process runs the sandbox's engine; it may set its tools up (here: start a process), never
    reads the test folders, and is under the full policy from the moment submitted code runs."""
    from minfer_course.grading import grade, sandbox
    from minfer_course.grading.submission import read_submission
    from minfer.loader import store

    grading = load_grading(HOSTILE_LAB)
    files = {**lab_files(grading, "skeleton"),
             f"{grading.lab.folder}/{grading.files[0]}": "import subprocess\nsubprocess.run(['true'])\n"}
    for rel, text in files.items():
        (tmp_path / "sub" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "sub" / rel).write_text(text)
    (tmp_path / "work").mkdir()
    run = grade.start(grading, None, tmp_path / "work", 1, store.store_root(), scope=QUICK)
    box = sandbox.instantiate(run.bundle, read_submission(grading, tmp_path / "sub", "x", ()), tmp_path / "work" / "box")
    sandbox.write_spec(run.bundle, box, run.limits, [*run.protected, run.work], QUICK)
    lab_dir = box.root / grading.lab.folder
    test_file = next((lab_dir / "hidden").glob("test_*.py"), None) or next((lab_dir / "tests").glob("test_*.py"))
    program = (
        "import subprocess\n"
        "subprocess.run(['true'], check=True)\n"  # before submitted code: a tool may start a process
        "try:\n"
        f"    open({str(test_file)!r}).read()\n"
        "except PermissionError:\n"
        "    print('walled')\n"
        "import minfer\n"
        "print('engine', minfer.__file__)\n"
        "from minfer_course.labs import load\n"
        "try:\n"
        f"    load({grading.name!r}, 'student')\n"
        "except PermissionError as e:\n"
        "    print('armed', e)\n")
    out = subprocess.run([sys.executable, "-c", program], cwd=box.root, env=sandbox.environment(box, run.bundle, run.isolation),
                         capture_output=True, text=True, timeout=300)
    assert "walled" in out.stdout, out.stdout + out.stderr
    assert f"engine {box.root / 'reference'}" in out.stdout, out.stdout + out.stderr
    assert "armed grading sandbox: starting or signalling processes" in out.stdout, out.stdout + out.stderr
    sandbox.remove(box)
