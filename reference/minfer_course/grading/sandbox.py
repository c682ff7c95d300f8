"""One submission, one sandbox: a fresh folder and a separate, limited test process.

The folder is a copy of the lab's bundle with the submission's files dropped in. The process
(guard.py) gets a scrubbed environment, its own session (so the whole process group can be
killed), a wall-clock limit enforced from here, and, where the kernel lets us create them, new
network and PID namespaces: no network at all, and every process it starts dies with it.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .bundle import Bundle
from .config import NOTEBOOK_SUITE, SUITES, Limits, Scope
from .submission import Submission

GUARD = Path("reference/minfer_course/grading/guard.py")  # inside the sandbox
# Python processes started in the sandbox without -I load this first (PYTHONPATH=<sandbox>/_boot)
CHILD_BOOT = """import importlib.util, os
spec = importlib.util.spec_from_file_location("_minfer_sandbox_guard", os.environ["MINFER_SANDBOX_GUARD"])
guard = importlib.util.module_from_spec(spec)
spec.loader.exec_module(guard)
guard.guard_child(os.environ["MINFER_SANDBOX_SPEC"])
"""
UNSHARE = ["unshare", "--net", "--pid", "--fork", "--kill-child"]
MAX_RESULTS_BYTES = 16 << 20
PREIMPORT = ["pytest", "numpy", "torch", "minfer"]
NOTEBOOK_PREIMPORT = ["IPython.core.interactiveshell", "IPython.core.inputtransformer2", "matplotlib.pyplot"]


@dataclass(frozen=True)
class Isolation:
    namespaces: bool  # unshare --net --pid works here (root, or unprivileged user namespaces)
    threads: int  # torch / BLAS threads per test process
    model_store: str  # MINFER_HOME for the tests (read-only for them)

    @staticmethod
    def probe(jobs: int, model_store: Path) -> Isolation:
        try:
            ok = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        return Isolation(ok, max(1, (os.cpu_count() or 1) // max(1, jobs)), str(model_store))


@dataclass(frozen=True)
class RawRun:
    lines: list[dict]  # the guard's JSON lines: {"collected"}, {"test"}..., {"finished"}
    returncode: int
    timed_out: bool
    seconds: float
    output_tail: str  # the last few KB the test process printed


@dataclass(frozen=True)
class SandboxDir:
    root: Path
    nonce: str  # names the integrity test, which must fail

    @property
    def scratch(self) -> Path:
        return self.root / "home"

    @property
    def private(self) -> Path:
        return self.root / "_grading"

    @property
    def canary(self) -> str:
        return f"integrity/test_{self.nonce}.py::test_{self.nonce}"


def instantiate(bundle: Bundle, submission: Submission, dest: Path) -> SandboxDir:
    shutil.copytree(bundle.root, dest)
    box = SandboxDir(dest, "i" + secrets.token_hex(6))
    lab_dir = dest / bundle.grading.lab.folder
    for name, text in submission.files.items():
        if text is not None:  # otherwise the skeleton from the bundle stays
            (lab_dir / name).write_text(text, encoding="utf-8")
    if bundle.notebook is not None:
        cells = bundle.notebook.with_solutions(submission.cells)
        (lab_dir / NOTEBOOK_SUITE / "cells.json").write_text(json.dumps(cells))
    (lab_dir / "integrity").mkdir()
    (lab_dir / "integrity" / f"test_{box.nonce}.py").write_text(
        f"def test_{box.nonce}():\n    raise AssertionError('this test must fail')\n")
    for sub in ("tmp", "mpl"):
        (box.scratch / sub).mkdir(parents=True)
    (dest / "_boot").mkdir()
    (dest / "_boot" / "sitecustomize.py").write_text(CHILD_BOOT)
    box.private.mkdir()
    _read_only(dest, keep=[box.scratch, box.private])
    return box


def _read_only(root: Path, keep: list[Path]) -> None:
    """Nothing but the scratch folder is writable (for the owner; root ignores modes)."""
    for path in sorted(root.rglob("*"), reverse=True):
        if any(path == k or k in path.parents for k in keep):
            continue
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def remove(box: SandboxDir) -> None:
    for path in [box.root, *box.root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o700)
    shutil.rmtree(box.root, ignore_errors=True)


def run(bundle: Bundle, box: SandboxDir, limits: Limits, isolation: Isolation, protected: list[Path],
        scope: Scope = Scope()) -> RawRun:
    spec_file = write_spec(bundle, box, limits, protected, scope)
    cmd = [sys.executable, "-I", "-B", str(box.root / GUARD), str(spec_file)]
    if isolation.namespaces:
        cmd = [*UNSHARE, *cmd]
    start = time.monotonic()
    # output goes through a pipe into a bounded tail: a flood costs the submission its time, not our disk
    proc = subprocess.Popen(cmd, cwd=box.scratch, env=environment(box, bundle, isolation), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    tail = Tail()
    reader = threading.Thread(target=tail.drain, args=(proc.stdout,), daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=limits.wall_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        _kill_group(proc.pid)
        proc.wait()
        reader.join(timeout=10)
    return RawRun(_read_lines(box.private / "results.jsonl"), proc.returncode, timed_out,
                  time.monotonic() - start, tail.text())


def write_spec(bundle: Bundle, box: SandboxDir, limits: Limits, protected: list[Path], scope: Scope) -> Path:
    """What guard.py needs, in the sandbox's private folder (where submitted code cannot read it)."""
    lab_dir = box.root / bundle.grading.lab.folder
    suites = [lab_dir / s for s in SUITES if (lab_dir / s).is_dir()]
    if bundle.notebook is not None and scope.notebook:
        suites.append(lab_dir / NOTEBOOK_SUITE)
    args = [*map(str, suites), str(lab_dir / "integrity"), "-p", "no:cacheprovider", "--assert=plain",
            "-q", "--tb=short", "-c", str(lab_dir / "pytest.ini"), "--rootdir", str(lab_dir)]
    select = " and ".join(f"({m})" for m in (bundle.grading.select, scope.select) if m)
    if select:
        args += ["-m", select]
    spec = {
        "sandbox": str(box.root), "scratch": str(box.scratch), "results": str(box.private / "results.jsonl"),
        "limits": limits.__dict__, "protected": [str(p) for p in protected], "pytest_args": args,
        "preimport": PREIMPORT + (NOTEBOOK_PREIMPORT if bundle.notebook else []),
        "test_folders": [str(lab_dir / s) for s in (*SUITES, NOTEBOOK_SUITE, "integrity")],
        "student_files": [str(lab_dir / f) for f in bundle.grading.files],
        # the test sources leave the disk once collected, before any submitted code runs
        "delete_after_collection": [str(p) for s in suites + [lab_dir / NOTEBOOK_SUITE] for p in s.rglob("test_*.py")]
        + [str(p) for p in (lab_dir / "integrity").glob("*.py")],
    }
    spec_file = box.private / "run.json"
    spec_file.write_text(json.dumps(spec))
    return spec_file


class Tail:
    """The last `size` bytes of a stream."""

    def __init__(self, size: int = 8192) -> None:
        self.size = size
        self.data = b""

    def drain(self, stream) -> None:
        with stream:
            for chunk in iter(lambda: stream.read(65536), b""):
                self.data = (self.data + chunk)[-self.size:]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def environment(box: SandboxDir, bundle: Bundle, isolation: Isolation) -> dict[str, str]:
    """Built from nothing: no proxies, tokens or paths of the instructor's leak through."""
    threads = str(isolation.threads)
    return {
        "PYTHONPATH": str(box.root / "_boot"), "MINFER_SANDBOX_SPEC": str(box.private / "run.json"),
        "MINFER_SANDBOX_GUARD": str(box.root / GUARD),
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(box.scratch), "TMPDIR": str(box.scratch / "tmp"),
        # speed is not graded, and numba would compile the engine's CPU kernels afresh in every sandbox
        "MINFER_COMPILED_KERNELS": "0",
        "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(box.scratch / "mpl"),
        "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
        "MINFER_HOME": isolation.model_store, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "NO_COLOR": "1",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",  # oracles load local folders only
        **bundle.grading.env,
    }


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, "rb") as f:
        data = f.read(MAX_RESULTS_BYTES)
    lines = []
    for raw in data.splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue  # a line cut short by a kill
        if isinstance(record, dict):
            lines.append(record)
    return lines
