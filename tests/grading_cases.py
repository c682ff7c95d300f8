"""Submissions for the grading pipeline's test (tests/test_grading.py), for any lab.

Each hostile case is a function of the lab that returns the files of a submission folder (paths
relative to the assignment folder, as a student would zip it) and what grading must say about it.
Hostile code goes in the lab's first file; the other files are the skeleton unless a case says.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from minfer_course.grading.config import LabGrading
from minfer_course.labs import REPO, reference_file


@dataclass(frozen=True)
class Case:
    name: str
    files: dict[str, str]  # path in the submission -> text
    reason: str  # must appear in the result's problems (or, if marked, in its failure messages)
    status: str = "graded"
    earns: str = "nothing"  # "nothing" or "some" (a partly correct submission keeps what it earned)
    reason_in_messages: bool = False
    notebook: dict | None = field(default=None, compare=False)  # a notebook to submit instead of the release's


def lab_files(grading: LabGrading, kind: str) -> dict[str, str]:
    """The lab files as `kind`: "skeleton" (the release's) or "reference" (the answer)."""
    out = {}
    for name, module in grading.lab.modules.items():
        path = reference_file(module) if kind == "reference" else grading.lab.path / name
        out[f"{grading.lab.folder}/{name}"] = path.read_text()
    return out


def _first(grading: LabGrading, code: str, rest: str = "skeleton") -> dict[str, str]:
    files = lab_files(grading, rest)
    files[f"{grading.lab.folder}/{grading.files[0]}"] = code
    return files


def hostile_cases(grading: LabGrading, course_root: Path) -> list[Case]:
    lab = grading.lab
    first = f"{lab.folder}/{grading.files[0]}"
    hidden = sorted((lab.path / "hidden").glob("test_*.py"))
    answer = reference_file(lab.modules[grading.files[0]])
    cases = [
        Case("infinite-loop", _first(grading, "import time\nwhile True:  # swallows the per-test timeout too\n"
             "    try:\n        time.sleep(0.05)\n    except BaseException:\n        pass\n"),
             "wall-clock limit", status="timed out"),
        Case("exit-at-import", _first(grading, "import os\nos._exit(0)\n"), "exited (status 0)", status="crashed"),
        Case("memory-bomb", _first(grading, "hog = []\nwhile True:\n    hog.append(bytearray(64 << 20))\n"),
             "ran out of memory"),
        Case("fork-bomb", _first(grading, "import os, time\nfor _ in range(50):  # bounded\n"
             "    if os.fork() == 0:\n        time.sleep(600)\n        os._exit(0)\n"),
             "starting or signalling processes (os.fork)"),
        Case("output-flood", _first(grading, "import sys\nfor _ in range(64):\n    sys.stdout.write('x' * (1 << 20))\n"),
             "output limit"),
        Case("network", _first(grading, "import socket\nsocket.create_connection(('pypi.org', 443), timeout=5)\n"),
             "network access"),
        Case("reads-hidden-tests", _first(grading, "import glob\nfrom pathlib import Path\nfound = []\n"
             f"for p in [{str(hidden[0]) if hidden else str(REPO / 'README.md')!r}, "
             "*glob.glob(str(Path(__file__).parent / 'hidden' / '*.py'))]:\n"
             "    try:\n        found.append(Path(p).read_text())\n    except OSError as e:\n        found.append(repr(e))\n"
             "raise RuntimeError('exfiltrated: ' + ' '.join(found))\n"),
             "reading the instructor's files", reason_in_messages=False),
        Case("writes-gradebook", _first(grading, "import sqlite3\n"
             f"db = {str(course_root / 'gradebook.db')!r}\ntry:\n    open(db, 'r+b').write(b'x')\nfinally:\n"
             "    sqlite3.connect(db).execute('update grade set auto_score = 100')\n"),
             "this call (sqlite3.connect)"),
        Case("imports-the-answer", {f"{lab.folder}/{f}": f"from {m} import *  # the engine's own copy\n"
                                    for f, m in lab.modules.items()},
             "not implemented yet", reason_in_messages=True),
        Case("copies-the-answer", _first(grading, "from pathlib import Path\n"
             f"exec(compile(Path({str(answer)!r}).read_text(), 'answer', 'exec'))\n"),
             "reading the instructor's files"),
        Case("tampers-with-pytest", _first(grading, lab_files(grading, "skeleton")[first] +
             "\nimport _pytest.reports as _r\n_init = _r.TestReport.__init__\n\n\ndef _always_passed(self, *a, **k):\n"
             "    _init(self, *a, **k)\n    self.outcome, self.longrepr = 'passed', None\n\n\n"
             "_r.TestReport.__init__ = _always_passed\n"),
             "tampered with", status="tampered"),
        Case("edited-public-tests", {**lab_files(grading, "skeleton"),
                                     **{f"{lab.folder}/tests/{p.name}": "def test_everything():\n    pass\n"
                                        for p in (lab.path / "tests").glob("test_*.py")},
                                     f"{lab.folder}/conftest.py": "import pytest\n"},
             "not implemented yet", reason_in_messages=True),
        Case("does-not-parse", _first(grading, "def broken(:\n", rest="reference"), "does not parse",
             earns="some" if len(grading.files) > 1 else "nothing"),
        Case("missing-file", {k: v for k, v in lab_files(grading, "reference").items() if k != first},
             "is missing from the submission", earns="some" if len(grading.files) > 1 else "nothing"),
    ]
    return cases


def notebook_cases(grading: LabGrading, released: dict) -> list[Case]:
    """Notebooks that try to pass their test cells without the work (lab files: the skeleton)."""
    patch = ("import builtins, subprocess, pytest\n"
             "subprocess.run = lambda *a, **k: subprocess.CompletedProcess(a, 0)\n"
             "pytest.main = lambda *a, **k: 0\n"
             "builtins.AssertionError = type('NeverRaised', (Exception,), {})\n"
             "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)  # hides errors in a kernel\n")
    monkey = json.loads(json.dumps(released))
    for cell in monkey["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution") and cell["cell_type"] == "code":
            cell["source"] = patch + "".join(cell["source"])
    monkey["cells"].insert(1, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                               "source": patch})
    gutted = json.loads(json.dumps(released))
    tests = [c for c in gutted["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade")
             and not c["metadata"]["nbgrader"].get("solution")]
    for cell in tests[1:]:
        gutted["cells"].remove(cell)  # deleted test cells (and the suite parts' cells)
    if tests:
        tests[0]["source"] = "pass  # edited: nothing to check\n"
    skeleton = lab_files(grading, "skeleton")
    return [Case("notebook-monkeypatch", skeleton, "not implemented", reason_in_messages=True, notebook=monkey),
            Case("notebook-test-cells-deleted", skeleton, "not implemented", reason_in_messages=True, notebook=gutted)]
