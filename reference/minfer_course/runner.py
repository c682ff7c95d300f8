"""Run a lab's public and hidden suites against one implementation, in a separate process.

A separate pytest process per implementation keeps imports apart (each run loads its own copy of
the lab's modules) and gives per-test outcomes through JUnit XML, which graders can store.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .labs import REPO, Lab, reference_file


@dataclass(frozen=True)
class Outcome:
    suite: str  # "tests" (public) or "hidden"
    name: str
    passed: bool
    message: str


def run_suites(lab: Lab, impl: str | Path, suites: tuple[str, ...] = ("tests", "hidden"),
               extra: tuple[str, ...] = (), timeout: float = 900) -> list[Outcome]:
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "results.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
               "--impl", str(impl), *extra, *(str(lab.path / s) for s in suites)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if not xml.is_file():
            raise RuntimeError(f"pytest did not run for {impl}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        outcomes = []
        for case in ET.parse(xml).getroot().iter("testcase"):
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if case.find("skipped") is not None:
                continue
            suite = "hidden" if ".hidden." in case.get("classname", "") or case.get("classname", "").startswith("hidden") else "tests"
            outcomes.append(Outcome(suite, case.get("name", ""), bad is None, "" if bad is None else bad.get("message", "")))
        return outcomes


def materialize_wrong_solution(lab: Lab, spec: Path, out: Path) -> str:
    """Write the reference solution with the spec's edits applied into `out`; return its description.

    Each edit's `find` must occur exactly once, so a reference change that invalidates a
    known-wrong solution fails loudly instead of silently testing the right code.
    """
    data = tomllib.loads(spec.read_text())
    files = {f: reference_file(m).read_text() for f, m in lab.modules.items()}
    for edit in data["edit"]:
        text = files[edit["file"]]
        if text.count(edit["find"]) != 1:
            raise ValueError(f"{spec.name}: the text to replace occurs {text.count(edit['find'])} times in {edit['file']}, not once")
        files[edit["file"]] = text.replace(edit["find"], edit["replace"])
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    return data["description"]


def wrong_solution_specs(lab: Lab) -> list[Path]:
    return sorted((REPO / "grader" / "wrong_solutions" / lab.name).glob("*.toml"))
