"""Generate each lab's skeleton files from the reference's solution regions.

Inside a function, a region between `### BEGIN SOLUTION` and `### END SOLUTION` becomes
`raise NotImplementedError("<hint>")` (the hint is the text after `hint:` on the BEGIN line).
Elsewhere (helpers in a class body) it becomes a comment inviting the student's own helpers.
Everything else is copied verbatim, so `diff skeleton reference` shows exactly what is missing.
"""
from __future__ import annotations

import re
from pathlib import Path

from .labs import LABS, Lab, reference_file

BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION(?:\s+hint:\s*(?P<hint>.*?))?\s*$")
END = re.compile(r"^\s*### END SOLUTION\s*$")
HEADER = "# GENERATED from {src} by `minfer lab skeletons`: fill in the parts marked NotImplementedError.\n"


def _in_function(lines: list[str], i: int, indent: str) -> bool:
    """True when line i (a BEGIN marker) sits in a function body rather than a class body."""
    for line in reversed(lines[:i]):
        stripped = line.strip()
        if stripped and len(line) - len(line.lstrip()) < len(indent):
            return stripped.startswith(("def ", "async def "))
    return False


def strip_solutions(source: str, where: str = "<source>", label: str = "") -> str:
    """`label` (the skeleton's path) prefixes each NotImplementedError, so the engine's error says where."""
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = BEGIN.match(lines[i])
        if not m:
            if END.match(lines[i]):
                raise ValueError(f"{where}:{i + 1}: END SOLUTION without BEGIN")
            out.append(lines[i])
            i += 1
            continue
        start, indent, hint = i, m["indent"], m["hint"] or "your code here"
        while i < len(lines) and not END.match(lines[i]):
            i += 1
        if i == len(lines):
            raise ValueError(f"{where}:{start + 1}: BEGIN SOLUTION without END")
        if _in_function(lines, start, indent):
            message = f"{label}: not implemented yet ({hint})" if label else hint
            out.append(f"{indent}# TODO: {hint}\n{indent}raise NotImplementedError({message!r})\n")
        else:
            out.append(f"{indent}# TODO: your own helper methods, if you want some ({hint})\n")
        i += 1
    return "".join(out)


def skeleton_files(lab: Lab) -> dict[Path, str]:
    files = {}
    for file, module in lab.modules.items():
        src = reference_file(module)
        rel = src.relative_to(lab.path.parents[1])
        files[lab.path / file] = HEADER.format(src=rel) + strip_solutions(src.read_text(), str(rel), f"{lab.folder}/{file}")
    return files


def write_skeletons(check: bool = False) -> list[Path]:
    """Write every lab's skeletons; with check=True only report the stale ones. Returns stale paths."""
    stale = []
    for lab in LABS.values():
        for path, text in skeleton_files(lab).items():
            if not path.is_file() or path.read_text() != text:
                stale.append(path)
                if not check:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(text)
                    tmp.replace(path)
    return stale
