"""Collect a folder of submissions (one zip file or folder per student) into nbgrader's layout.

`<folder>/alice.zip` or `<folder>/alice/` becomes `submitted/alice/<lab>/`, holding only the
files the lab grades, at the paths the release gave them. Students zip in many ways (the whole
assignment folder, a folder around it, just the files), so each expected file is found at its
release path, under one top folder, or (if unambiguous) by its name outside any test folder.
Only those files are read: archives are never extracted, links are not followed, sizes are capped.
"""
from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .config import SUITES, LabGrading
from .submission import MAX_NOTEBOOK_BYTES

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}$")
MAX_MEMBERS = 5000
EXTRA = ("timestamp.txt",)  # nbgrader reads the submission time from it (late penalties)


@dataclass(frozen=True)
class Collected:
    student: str
    found: tuple[str, ...]
    missing: tuple[str, ...]  # expected files not in the submission (or too large to take)


def expected_files(grading: LabGrading) -> list[str]:
    return [f"{grading.notebook}.ipynb", *(f"{grading.lab.folder}/{f}" for f in grading.files)]


def collect(grading: LabGrading, folder: Path, submitted: Path) -> tuple[list[Collected], list[str]]:
    """Returns what was collected per student, and the entries that were skipped (with why)."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; give a folder holding one <student>.zip or <student>/ each")
    done, skipped = [], []
    for entry in sorted(folder.iterdir()):
        student = entry.name.removesuffix(".zip")
        if entry.name.startswith("."):
            continue
        if not (entry.is_dir() or entry.suffix == ".zip") or entry.is_symlink():
            skipped.append(f"{entry.name}: not a folder or a .zip file")
        elif not STUDENT_ID.match(student):
            skipped.append(f"{entry.name}: {student!r} is not a usable student id (letters, digits, _.@+-)")
        else:
            try:
                if entry.is_dir():
                    done.append(_store(grading, student, _folder_members(entry), submitted / student / grading.name))
                else:
                    with zipfile.ZipFile(entry) as zf:
                        done.append(_store(grading, student, _zip_members(zf), submitted / student / grading.name))
            except (zipfile.BadZipFile, OSError, ValueError) as e:
                skipped.append(f"{entry.name}: cannot be read ({e})")
    return done, skipped


Reader = Callable[[], bytes]


def _store(grading: LabGrading, student: str, members: dict[str, Reader], dest: Path) -> Collected:
    """Write the expected files to dest (replacing an earlier collection) through a temporary folder."""
    tmp = dest.with_name(f".{dest.name}.collecting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    found, missing = [], []
    for rel in [*expected_files(grading), *EXTRA]:
        member = _locate(rel, list(members))
        try:
            data = members[member]() if member is not None else None
        except ValueError:  # too large
            data = None
        if data is None:
            missing += [] if rel in EXTRA else [rel]
            continue
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
        found.append(rel)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return Collected(student, tuple(found), tuple(missing))


def _locate(rel: str, names: list[str]) -> str | None:
    if rel in names:
        return rel
    nested = [n for n in names if n.endswith("/" + rel) and n.count("/") == rel.count("/") + 1]
    if len(nested) == 1:
        return nested[0]
    base = PurePosixPath(rel).name
    loose = [n for n in names if PurePosixPath(n).name == base and not set(PurePosixPath(n).parts) & set(SUITES)]
    return loose[0] if len(loose) == 1 else None


def _zip_members(zf: zipfile.ZipFile) -> dict[str, Reader]:
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > MAX_MEMBERS:
        raise ValueError(f"more than {MAX_MEMBERS} files")
    members = {}
    for info in infos:
        name = info.filename.replace("\\", "/")
        is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
        if not is_link and not name.startswith("/") and ".." not in PurePosixPath(name).parts:
            members[name] = lambda i=info: _read_capped(zf.open(i), i.file_size)
    return members


def _folder_members(root: Path) -> dict[str, Reader]:
    members = {}
    for path in root.rglob("*"):
        if len(members) > MAX_MEMBERS:
            raise ValueError(f"more than {MAX_MEMBERS} files")
        inside = path.relative_to(root).parents
        if path.is_file() and not any((root / q).is_symlink() for q in [path.relative_to(root), *inside]):
            members[path.relative_to(root).as_posix()] = lambda p=path: _read_capped(open(p, "rb"), p.stat().st_size)
    return members


def _read_capped(stream, size: int) -> bytes:
    with stream:
        if size > MAX_NOTEBOOK_BYTES:
            raise ValueError(f"a file of {size} bytes is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
        return stream.read(MAX_NOTEBOOK_BYTES + 1)[:MAX_NOTEBOOK_BYTES]
