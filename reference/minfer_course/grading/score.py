"""From what the test process reported to scores and reasons. Fails closed: a test that did not
report a pass scores nothing, and a run whose integrity test passed scores nothing at all."""
from __future__ import annotations

import re
import signal

from .bundle import Bundle
from .config import NOTEBOOK_SUITE, Limits, Scope
from .guard import DENIED_PREFIX
from .results import CellScore, SubmissionResult, TestOutcome
from .sandbox import RawRun, SandboxDir
from .submission import Submission

MAX_REASONS = 8


def notebook_nodeid(grade_id: str) -> str:
    return f"{NOTEBOOK_SUITE}/test_notebook.py::test_cell[{grade_id}]"


def score(bundle: Bundle, submission: Submission, box: SandboxDir, raw: RawRun, limits: Limits,
          scope: Scope = Scope()) -> SubmissionResult:
    collected = next((r["collected"] for r in raw.lines if isinstance(r.get("collected"), list)), None)
    reported = {str(r["test"]): TestOutcome(str(r["test"]), r.get("passed") is True, str(r.get("message", "")))
                for r in raw.lines if "test" in r}
    finished = next((r for r in raw.lines if "finished" in r), None)
    status, why = _status(limits, raw, finished=finished is not None, collected=collected)
    if finished and finished.get("error"):
        why = f"the test run ended early ({str(finished['error'])[:200]}); tests that had not finished score 0"
    canary = reported.pop(box.canary, None)
    if canary is not None and canary.passed:
        status, why = "tampered", "the test harness was tampered with (a test that must fail passed): every score is 0"
    problems = list(submission.problems) + ([why] if why else []) + _reasons(limits, reported.values())

    def outcome(nodeid: str) -> TestOutcome:
        if status == "tampered":
            return TestOutcome(nodeid, False, "not counted: the test harness was tampered with")
        return reported.get(nodeid) or TestOutcome(nodeid, False, f"did not finish: {why or 'no result reported'}")

    nodeids = [str(n) for n in collected or [] if n != box.canary]
    cells = [_cell(part.cell_id, part.title, part.points, [outcome(n) for n in nodeids if part.matches(n)])
             for part in bundle.grading.parts]
    if bundle.notebook is not None:
        for grade_id, points in bundle.notebook.points.items():
            tests = [outcome(notebook_nodeid(grade_id))] if notebook_nodeid(grade_id) in nodeids else []
            cells.append(_cell(grade_id, f"notebook cell {grade_id}", points, tests))
    return SubmissionResult(bundle.grading.name, submission.student, submission.digest, bundle.digest, status,
                            tuple(problems), tuple(cells), round(raw.seconds, 2), scope.label)


def _cell(cell_id: str, title: str, points: float, tests: list[TestOutcome]) -> CellScore:
    earned = round(points * sum(t.passed for t in tests) / len(tests), 2) if tests else 0.0
    return CellScore(cell_id, title, points, earned, tuple(tests))


def _status(limits: Limits, raw: RawRun, finished: bool, collected: list | None) -> tuple[str, str | None]:
    if finished:
        return "graded", None
    if raw.timed_out:
        return "timed out", (f"the tests were stopped at the {limits.wall_s:g} s wall-clock limit; "
                             "tests that had not finished score 0")
    if collected is None:  # no submitted code runs before collection: this is the grader's problem
        return "setup error", f"the tests did not start (a grading setup problem): {raw.output_tail[-600:]}"
    if raw.returncode < 0:
        name = signal.Signals(-raw.returncode).name
        cause = {"SIGXCPU": "the CPU time limit", "SIGKILL": "a limit (memory, CPU or wall clock)"}.get(name, name)
        return "crashed", f"the test process was killed by {cause}; tests that had not finished score 0"
    return "crashed", (f"the test process exited (status {raw.returncode}) before the tests finished, as "
                       "os._exit or sys.exit in submitted code does; tests that had not finished score 0")


def _reasons(limits: Limits, outcomes) -> list[str]:
    """One line per kind of trouble the failure messages show, for the summary."""
    reasons: list[str] = []
    for t in outcomes:
        if t.passed:
            continue
        m = t.message
        if DENIED_PREFIX in m:
            found = re.search(re.escape(DENIED_PREFIX) + r" (.*?) is not allowed \((\S+)", m)
            reasons.append(f"blocked by the grading sandbox: {found[1]} ({found[2]})" if found else m[:200])
        if "MemoryError" in m:
            reasons.append(f"ran out of memory (the limit is {limits.memory_mb} MB)")
        if "File too large" in m or "[Errno 27]" in m:
            reasons.append(f"wrote more than the output limit ({limits.output_mb} MB)")
    unique = list(dict.fromkeys(reasons))
    return unique[:MAX_REASONS] + ([f"... and {len(unique) - MAX_REASONS} more"] if len(unique) > MAX_REASONS else [])
