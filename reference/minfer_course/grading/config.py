"""Per-lab grading configuration: what a student submits, which suites decide which points, limits.

Everything derives from `minfer_course/labs.py` LABS and one small file per lab, `grader/labs/<lab>.toml`
(the single source of truth for suite points; the notebook's own cells carry theirs). A lab
without that file still grades: each test file becomes a part worth 10 points, with the default
limits, and the course's model pulled before grading.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from ..labs import LABS, REPO, Lab, get_lab

SUITES = ("tests", "hidden")  # public and hidden pytest suites, folders of the lab
NOTEBOOK_SUITE = "notebook"  # the notebook's test cells, run as tests in the sandbox
PART_PREFIX = "suite_"  # grade_id of the notebook cell that carries a part's score


@dataclass(frozen=True)
class Limits:
    wall_s: float = 600  # one submission, every suite
    test_s: float = 300  # one test
    memory_mb: int = 4096  # address space of the test process
    output_mb: int = 16  # largest file the test process may write (captured output included)


@dataclass(frozen=True)
class Scope:
    """Which tests a grading run includes. Real grading runs them all; the pipeline's own CI test
    grades many submissions with `QUICK`, where the slow tests and the notebook simply score 0."""

    select: str = ""  # a pytest -m expression, added to the lab's own
    notebook: bool = True

    @property
    def label(self) -> str:
        """Empty for a full run, else what it leaves out; saved with each result, so a result is
        only ever reused by a run of the same scope."""
        return "" if self == Scope() else f"-m {self.select!r}" + ("" if self.notebook else ", no notebook")

    @staticmethod
    def from_label(label: str) -> Scope:
        return QUICK if label == QUICK.label else Scope()


QUICK = Scope("not slow", notebook=False)


@dataclass(frozen=True)
class Part:
    id: str
    title: str
    points: float
    tests: tuple[str, ...]  # fnmatch patterns over node ids relative to the lab folder

    @property
    def cell_id(self) -> str:
        return PART_PREFIX + self.id

    def matches(self, nodeid: str) -> bool:
        return any(fnmatchcase(nodeid, pattern) for pattern in self.tests)


@dataclass(frozen=True)
class LabGrading:
    lab: Lab
    parts: tuple[Part, ...]
    limits: Limits = Limits()
    models: tuple[str, ...] = ()  # builtin models to pull before grading (the sandbox has no network)
    select: str = ""  # pytest -m expression, e.g. "not gpu" on graders without a GPU
    env: dict[str, str] = field(default_factory=dict)  # extra environment of the test process
    # labs whose reference code this lab's release ships (their answers become visible): a course
    # decision, for an earlier lab whose engine runs need a later lab's code; empty = strip every lab
    release_keeps: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.lab.name

    @property
    def notebook(self) -> str:
        """The assignment's notebook name (without .ipynb): the lab folder's name."""
        return Path(self.lab.folder).name

    @property
    def notebook_source(self) -> Path | None:
        path = REPO / "notebooks" / f"{self.notebook}.ipynb"
        return path if path.is_file() else None

    @property
    def files(self) -> tuple[str, ...]:
        """The lab files a student submits, relative to the lab folder."""
        return tuple(self.lab.modules)

    def part_of(self, nodeid: str) -> Part | None:
        return next((p for p in self.parts if p.matches(nodeid)), None)

    def check_coverage(self, nodeids: list[str]) -> list[str]:
        """Problems with the parts against the collected tests: unmatched tests, doubly matched
        tests, patterns that match nothing."""
        problems = []
        for nodeid in nodeids:
            owners = [p.id for p in self.parts if p.matches(nodeid)]
            if len(owners) != 1:
                problems.append(f"{nodeid} is in {len(owners)} parts {owners}, not exactly one")
        for part in self.parts:
            for pattern in part.tests:
                if not any(fnmatchcase(n, pattern) for n in nodeids):
                    problems.append(f"part {part.id!r}: pattern {pattern!r} matches no test")
        return problems


def config_path(lab: Lab) -> Path:
    return REPO / "grader" / "labs" / f"{lab.name}.toml"


def load_grading(name: str) -> LabGrading:
    lab = get_lab(name)
    path = config_path(lab)
    if not path.is_file():
        return LabGrading(lab, _default_parts(lab), models=DEFAULT_MODELS)
    try:
        data = tomllib.loads(path.read_text())
        parts = tuple(Part(p["id"], p["title"], float(p["points"]), tuple(p["tests"])) for p in data["part"])
        limits = Limits(**data.get("limits", {}))
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: {type(e).__name__}: {e}; each [[part]] needs id, title, points and tests, "
                         f"and [limits] takes {', '.join(Limits.__dataclass_fields__)}") from e
    ids = [p.id for p in parts]
    if len(set(ids)) != len(ids) or not all(i.isidentifier() for i in ids):
        raise ValueError(f"{path}: part ids must be distinct identifiers, got {ids}")
    keeps = tuple(data.get("release_keeps", ()))
    if unknown := [k for k in keeps if k not in LABS or k == name]:
        raise ValueError(f"{path}: release_keeps names {unknown}, which are not other labs in minfer_course/labs.py")
    return LabGrading(lab, parts, limits, tuple(data.get("models", ())), data.get("select", ""),
                      dict(data.get("env", {})), keeps)


def all_gradings() -> list[LabGrading]:
    return [load_grading(name) for name in LABS]


DEFAULT_MODELS = ("smollm2-135m",)  # the course's model: most labs' engine tests load it


def _default_parts(lab: Lab) -> tuple[Part, ...]:
    """No grader/labs/<lab>.toml: one part per test file, 10 points each."""
    files = sorted(p.relative_to(lab.path).as_posix() for s in SUITES for p in (lab.path / s).glob("test_*.py"))
    return tuple(Part(f.removesuffix(".py").replace("/", "_"), f, 10.0, (f"{f}::*",)) for f in files)
