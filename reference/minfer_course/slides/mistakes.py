"""The "common mistakes" of a lab: the descriptions of its known-wrong solutions.

Each `grader/wrong_solutions/<lab>/*.toml` is a plausible mistake that the hidden suite must catch
(DESIGN §3), so its `description` is exactly what a student should hear about. A lab whose folder
does not exist yet falls back to the list written in the deck itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tomllib


@dataclass(frozen=True)
class Mistake:
    name: str  # the wrong solution's file stem: split_off_by_one, ...
    description: str


def wrong_solutions(root: Path, lab: str) -> list[Mistake]:
    """The lab's known-wrong solutions, sorted by name; [] when the lab has none yet."""
    folder = root / "grader" / "wrong_solutions" / lab
    out = []
    for spec in sorted(folder.glob("*.toml")):
        description = tomllib.loads(spec.read_text(encoding="utf-8")).get("description", "").strip()
        if not description:
            raise ValueError(f"{spec}: a wrong solution needs a description (it is shown on the slides)")
        out.append(Mistake(spec.stem, description))
    return out


def parse_fallback(body: str) -> list[Mistake]:
    """Fallback lines in a deck's fence: `- name: description`."""
    out = []
    for line in body.splitlines():
        if not line.strip():
            continue
        name, sep, description = line.strip().removeprefix("- ").partition(":")
        if not sep:
            raise ValueError(f"a mistakes fence line is '- name: description', got {line!r}")
        out.append(Mistake(name.strip(), description.strip()))
    return out


def mistakes_for(root: Path, lab: str, fallback: str) -> tuple[list[Mistake], bool]:
    """(mistakes, from_grader): the grader's list when the lab has one, else the deck's own."""
    found = wrong_solutions(root, lab)
    return (found, True) if found else (parse_fallback(fallback), False)
