"""The labs and the implementation switch.

A lab owns a few reference modules. Its folder holds a same-named copy of each (the student's
work); the switch decides whether tests and the engine use those files, the reference modules, or
another folder (a known-wrong solution, a collected submission).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace


def _course_root() -> Path:
    """The folder that holds `labs/`: this source checkout; for an installed engine (the student
    edition a course releases) $MINFER_COURSE_ROOT, else the working directory (the assignment folder)."""
    checkout = Path(__file__).resolve().parents[2]  # reference/minfer_course/labs.py
    if (checkout / "labs").is_dir():
        return checkout
    return Path(os.environ.get("MINFER_COURSE_ROOT") or os.getcwd()).resolve()


REPO = _course_root()


@dataclass(frozen=True)
class Lab:
    name: str
    folder: str  # relative to the repository root
    modules: dict[str, str]  # file name in the lab folder -> reference module it replaces

    @property
    def path(self) -> Path:
        return REPO / self.folder


LABS = {
    "lab1": Lab("lab1", "labs/lab1_allocator", {
        "allocator.py": "minfer.memory.allocator",
        "block_pool.py": "minfer.memory.block_pool",
    }),
    "lab2": Lab("lab2", "labs/lab2_matmul", {
        "matmul_numba.py": "minfer.kernels.matmul_numba",
    }),
    "lab3": Lab("lab3", "labs/lab3_inference", {
        "layers.py": "minfer.graph.layers",
        "attention.py": "minfer.graph.attention",
        "mapping.py": "minfer.loader.mapping",
        "batch.py": "minfer.scheduler.batch",
        "sampling.py": "minfer.output.sampling",
    }),
}


def get_lab(name: str) -> Lab:
    if name not in LABS:
        raise ValueError(f"unknown lab {name!r}; labs: {', '.join(LABS)}")
    return LABS[name]


def reference_file(module: str) -> Path:
    return REPO / "reference" / Path(*module.split(".")).with_suffix(".py")


def load(lab: str, impl: str | Path = "student") -> SimpleNamespace:
    """The lab's modules from `impl`: 'student' (the lab folder), 'reference', or a folder path.

    Attributes are named after the files: `load("lab1").allocator.Allocator`.
    """
    spec = get_lab(lab)
    folder = spec.path if impl == "student" else None if impl == "reference" else Path(impl)
    mods: dict[str, ModuleType] = {}
    for file, module in spec.modules.items():
        stem = file.removesuffix(".py")
        if folder is None:
            mods[stem] = importlib.import_module(module)
            continue
        path = folder / file
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: lab {lab} expects {', '.join(spec.modules)} in {folder}")
        name = f"minfer_{lab}_impl_{abs(hash(str(path.resolve())))}.{stem}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = mod  # dataclasses look their module up while the file executes
        mod_spec.loader.exec_module(mod)
        mods[stem] = mod
    return SimpleNamespace(**mods)


def parse_lab_args(values: list[str]) -> dict[str, SimpleNamespace]:
    """`--lab lab1=labs/lab1_allocator` (repeatable) -> {"lab1": modules}."""
    out = {}
    for v in values:
        name, sep, folder = v.partition("=")
        if not sep:
            raise ValueError(f"--lab takes NAME=FOLDER (e.g. lab1=labs/lab1_allocator), got {v!r}")
        out[name] = load(name, "reference" if folder == "reference" else Path(folder))
    return out


def add_lab_options(parser) -> None:
    """The options every lab's tests take; each lab's conftest.py calls this from pytest_addoption.

    Each lab folder registers them itself, so a lab's folder runs on its own: copied into a release
    or a grading sandbox, where no conftest above it is loaded. Several labs in one pytest session
    would register them twice: the second time is a no-op.
    """
    for flag, kwargs in (("--impl", dict(default="student", help="student | reference | a folder with the lab's files")),
                         ("--record-golden", dict(action="store_true",
                                                  help="record the reference engine's outputs into golden.json"))):
        try:
            parser.addoption(flag, **kwargs)
        except ValueError:  # already added by another lab's conftest in this session
            pass
