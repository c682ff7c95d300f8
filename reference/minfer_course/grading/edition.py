"""The student edition: the engine with lab-owned solution regions stripped, as a folder or a wheel.

Students install it (`pip install minfer-*+student-*.whl`) so notebooks and tests have the engine
around their lab code; the full reference never ships. A release strips every lab. A grading
sandbox for lab N strips lab N only: the lab under test must be unreachable there, while the
code of the other labs must work, because a later lab builds on the earlier ones.
"""
from __future__ import annotations

import base64
import hashlib
import shutil
import tomllib
import zipfile
from collections.abc import Iterable
from pathlib import Path

from ..labs import REPO, Lab
from ..skeletons import BEGIN, END, strip_solutions

EDITION_TAG = "student"  # the wheel's local version label: minfer-0.1.0+student
# what the distribution installs (pyproject.toml): the engine, the course tooling, the benchmarks
PACKAGES = ("minfer", "minfer_course", "minfer_bench")


def build_edition(dest: Path, strip: Iterable[Lab], keep: Iterable[Lab] = ()) -> Path:
    """Write reference/'s packages to dest/, the engine (dest/minfer, returned) with `strip`'s solution
    regions replaced and `keep`'s solutions kept as plain code (their markers dropped)."""
    for package in PACKAGES:
        shutil.copytree(REPO / "reference" / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    out = dest / "minfer"
    for lab, stripped in [(lab, True) for lab in strip] + [(lab, False) for lab in keep]:
        for file, module in lab.modules.items():
            rel = Path(*module.split(".")[1:]).with_suffix(".py")
            target = out / rel
            text = target.read_text()
            text = strip_solutions(text, str(rel), f"{lab.folder}/{file}") if stripped else _drop_markers(text)
            target.write_text(text)
    return out


def _drop_markers(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not (BEGIN.match(line) or END.match(line)))


def unowned_solution_regions(edition: Path) -> list[str]:
    """Files of a fully stripped edition that still hold a solution region: a module with
    `### BEGIN SOLUTION` that no lab in LABS claims would otherwise ship its answer."""
    return [str(p.relative_to(edition.parent)) for p in _files(edition) if p.suffix == ".py"
            and any(BEGIN.match(line) for line in p.read_text().splitlines())]


def _files(edition: Path) -> list[Path]:
    """Every file of the edition's packages (edition: its dest/minfer)."""
    return sorted(p for package in PACKAGES for p in (edition.parent / package).rglob("*") if p.is_file())


def build_wheel(edition: Path, out_dir: Path) -> Path:
    """A pure-Python wheel of the edition's packages (edition: its dest/minfer), written without build tools.

    Name, version and dependencies come from pyproject.toml; the version gets the `+student`
    label so `pip list` tells a student edition from the reference at a glance."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    version = f"{project['version']}+{EDITION_TAG}"
    info = f"{project['name'].replace('-', '_')}-{version}.dist-info"
    files: dict[str, bytes] = {
        p.relative_to(edition.parent).as_posix(): p.read_bytes() for p in _files(edition) if p.suffix != ".pyc"
    }
    requires = "".join(f"Requires-Dist: {d}\n" for d in project.get("dependencies", []))
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {version}\n"
        f"Summary: {project.get('description', '')} (student edition: lab solutions removed)\n"
        f"Requires-Python: {project.get('requires-python', '>=3.10')}\n{requires}").encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: minfer grade\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    scripts = project.get("scripts", {})
    files[f"{info}/entry_points.txt"] = ("[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())).encode()
    record = [f"{name},sha256={_b64(hashlib.sha256(data).digest())},{len(data)}" for name, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join(record + [f"{info}/RECORD,,"]) + "\n").encode()

    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{project['name'].replace('-', '_')}-{version}-py3-none-any.whl"
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: reproducible wheels
            entry.compress_type, entry.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            zf.writestr(entry, data)
    tmp.replace(wheel)
    return wheel


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
