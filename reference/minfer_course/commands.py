"""`minfer lab ...` and `minfer slides ...`: the course's commands, registered on minfer's command line
(minfer.cli) the way grading/cli.py registers `minfer grade`, so that the engine carries none of them."""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="course labs: skeletons | test | diff")
    p.add_argument("action", choices=["skeletons", "test", "diff"])
    p.add_argument("lab", nargs="?", help="lab1, ... (all labs when left out)")
    p.add_argument("--check", action="store_true", help="skeletons: fail if a committed skeleton is stale")
    p.add_argument("--impl", default="student", help="test: student | reference | a folder")
    p.add_argument("--hidden", action="store_true", help="test: the hidden suite too (instructors)")
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("slides", help="course slides: build every deck in slides/ to HTML and PDF")
    p.add_argument("action", choices=["build"])
    p.add_argument("deck", nargs="*", help="intro, lab1_allocator, ... (all decks when left out)")
    p.add_argument("--out", default=None, help="output folder (default slides/build)")
    p.add_argument("--no-pdf", action="store_true", help="HTML only (PDF needs Chromium)")
    p.add_argument("--model", default="auto", help="the diagrams' engine run: auto (SmolLM2 if pulled, else a tiny "
                   "random Llama), a builtin name or a model folder")
    p.set_defaults(func=cmd_slides)


def cmd_lab(a: argparse.Namespace) -> int:
    from .labs import LABS, REPO, get_lab, reference_file
    from .skeletons import write_skeletons

    if a.action == "skeletons":
        stale = write_skeletons(check=a.check)
        for path in stale:
            print(f"{'stale' if a.check else 'wrote'}: {path.relative_to(REPO)}")
        if a.check and stale:
            print("minfer: error: skeletons are out of date; run `minfer lab skeletons`", file=sys.stderr)
            return 1
        return 0
    labs = [get_lab(a.lab)] if a.lab else list(LABS.values())
    if a.action == "diff":  # what a student must write: the committed skeleton against the reference
        for lab in labs:
            for file, module in lab.modules.items():
                subprocess.run(["diff", "-u", str(lab.path / file), str(reference_file(module))])
        return 0
    suites = ["tests", "hidden"] if a.hidden else ["tests"]
    cmd = [sys.executable, "-m", "pytest", "--impl", a.impl, *(str(lab.path / s) for lab in labs for s in suites)]
    return subprocess.run(cmd, cwd=REPO).returncode


def cmd_slides(a: argparse.Namespace) -> int:
    try:
        from .slides.build import build
        from .slides.diagrams import DIAGRAMS  # noqa: F401  (matplotlib: fail before any work)
    except ImportError as e:
        raise RuntimeError(f"the slides need extra packages ({e.name} is missing): pip install 'minfer[slides]'") from e
    start = time.perf_counter()
    built = build(a.deck or None, Path(a.out) if a.out else None, pdf=not a.no_pdf, model=a.model)
    print(f"{len(built)} deck(s) in {built[0].html.parent if built else a.out} ({time.perf_counter() - start:.0f} s)")
    return 0
