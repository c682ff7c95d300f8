"""The leak scan: nothing of the answers or of the hidden suites may leave in a release or feedback.

Fingerprints come from the repository: every line inside a solution region (reference modules
and notebooks) and every line of a hidden test file, less the lines students may see anyway (the
rest of the engine, the public tests, the skeletons, the notebooks outside solutions) and lines
too short to tell anything apart. The scan reads every file under a folder, opening archives
(wheels, zips, tarballs) member by member, notebooks cell by cell and HTML with its tags removed,
and also flags solution markers, hidden test files, compiled code and symbolic links.
"""
from __future__ import annotations

import html
import io
import json
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..labs import LABS, REPO, reference_file
from .config import SUITES
from .edition import PACKAGES

MIN_CHARS = 24  # a shorter line is too common to prove a leak
MARKER = re.compile(r"^\s*#+\s*(BEGIN|END) (SOLUTION|HIDDEN TESTS)\b")
COMPILED = (".pyc", ".pyo", ".so", ".pyd")
MAX_MEMBER_BYTES = 64 << 20
TAG = re.compile(r"<[^>]*>")


class LeakError(RuntimeError):
    """A release or feedback holds something students must not get; the message lists it all."""


@dataclass(frozen=True)
class Leak:
    path: str  # relative to the scanned folder; "a.whl!minfer/x.py" inside an archive
    line: int
    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.text[:100]}"


@dataclass(frozen=True)
class Fingerprints:
    solution: frozenset[str]
    hidden: frozenset[str]
    hidden_files: frozenset[str]
    markers: bool = True  # flag solution and hidden-test markers

    def hidden_only(self) -> Fingerprints:
        """For feedback, which quotes the student's own code (it may match, or even be, ours)."""
        return Fingerprints(frozenset(), self.hidden, self.hidden_files, markers=False)


def _norm(line: str) -> str:
    return " ".join(line.split())


def _regions(text: str) -> tuple[set[str], set[str]]:
    """(lines inside solution regions, lines outside), normalized."""
    inside, outside, in_region = set(), set(), False
    for line in text.splitlines():
        m = MARKER.match(line)
        if m and m[2] == "SOLUTION":
            in_region = m[1] == "BEGIN"
            continue
        (inside if in_region else outside).add(_norm(line))
    return inside, outside


def _notebook_sources(text: str) -> list[str]:
    nb = json.loads(text)
    out = []
    for cell in nb.get("cells", []):
        for item in [cell.get("source", "")] + [o.get("text", "") for o in cell.get("outputs", [])] + [
                v for o in cell.get("outputs", []) for v in o.get("data", {}).values()]:
            out.append("".join(item) if isinstance(item, list) else str(item))
    return out


def fingerprints(released: tuple[str, ...] = ()) -> Fingerprints:
    """`released`: labs whose solutions this release ships on purpose (config.release_keeps)."""
    solution, public, hidden, names = set(), set(), set(), set()
    kept = {reference_file(m) for name in released for m in LABS[name].modules.values()}
    for path in [p for package in PACKAGES for p in (REPO / "reference" / package).rglob("*.py")]:
        inside, outside = _regions(path.read_text())
        solution |= set() if path in kept else inside
        public |= outside | (inside if path in kept else set())
    for nb in (REPO / "notebooks").glob("*.ipynb"):
        for source in _notebook_sources(nb.read_text()):
            inside, outside = _regions(source)
            solution |= inside
            public |= outside
    for lab in LABS.values():
        for path in lab.path.rglob("*"):
            if not path.is_file() or path.suffix not in (".py", ".md", ".json"):
                continue
            lines = {_norm(line) for line in path.read_text().splitlines()}
            if "hidden" in path.relative_to(lab.path).parts:
                hidden |= lines
                names.add(path.name)
            else:
                public |= lines
    keep = lambda lines: frozenset(x for x in lines if len(x) >= MIN_CHARS and x not in public)  # noqa: E731
    return Fingerprints(keep(solution), keep(hidden), frozenset(n for n in names if n.endswith(".py")))


def scan(root: Path, fp: Fingerprints) -> list[Leak]:
    leaks: list[Leak] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            leaks.append(Leak(rel, 0, "symbolic link", str(path.readlink())))
        elif path.is_file():
            leaks += _scan_bytes(rel, path.read_bytes(), fp, depth=0)
    return leaks


def _scan_bytes(name: str, data: bytes, fp: Fingerprints, depth: int) -> list[Leak]:
    base = name.rsplit("!", 1)[-1]
    leaks = []
    if Path(base).name in fp.hidden_files or any(part in SUITES[1:] for part in Path(base).parts[:-1]):
        leaks.append(Leak(name, 0, "hidden test file", base))
    if base.endswith(COMPILED):
        leaks.append(Leak(name, 0, "compiled code", base))
    if depth < 3 and (archive := _members(base, data)) is not None:
        for member, content in archive:
            leaks += _scan_bytes(f"{name}!{member}", content, fp, depth + 1)
        return leaks
    text = data.decode("utf-8", "replace")
    chunks = [text]
    if base.endswith(".ipynb"):
        try:
            chunks = _notebook_sources(text)
        except (ValueError, AttributeError, TypeError):
            pass
    for chunk in chunks:
        for number, line in enumerate(chunk.splitlines(), 1):
            if base.endswith((".html", ".htm")):
                line = html.unescape(TAG.sub("", line))
            norm = _norm(line)
            if fp.markers and MARKER.match(line):
                leaks.append(Leak(name, number, "solution or hidden-test marker", norm))
            elif norm in fp.solution:
                leaks.append(Leak(name, number, "solution code", norm))
            elif norm in fp.hidden:
                leaks.append(Leak(name, number, "hidden test code", norm))
    return leaks


def _members(name: str, data: bytes) -> list[tuple[str, bytes]] | None:
    """The regular files of a zip (wheels) or tar (sdists) archive, or None if `data` is neither."""
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                return [(i.filename, zf.read(i)) for i in zf.infolist()
                        if not i.is_dir() and i.file_size <= MAX_MEMBER_BYTES]
        except zipfile.BadZipFile:
            return None
    if not name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return None
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            return [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()
                    if m.isfile() and m.size <= MAX_MEMBER_BYTES]
    except (tarfile.TarError, EOFError, OSError):
        return None
