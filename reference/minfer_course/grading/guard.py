"""The test process of a grading sandbox: limits, import isolation, an audit hook, then pytest.

Started by sandbox.py as `python -I -B <sandbox>/reference/minfer_course/grading/guard.py RUN.json`
(-I: no PYTHONPATH, no user site, no script folder on sys.path), it

1. sets its own resource limits (address space, CPU time, file size, core dumps, open files, and
   processes where the kernel enforces that limit), so everything it starts inherits them;
2. puts the sandbox's engine (the student edition for this lab) first on sys.path and walls off
   every other copy of minfer it can see, so the answer cannot be imported from the grading
   environment;
3. runs pytest with a plugin that, once the tests are collected and before any student code runs,
   deletes the test sources from disk and installs an audit hook (which can never be removed)
   that refuses network access, new processes, writes outside the sandbox's scratch folder, reads
   of the instructor's files, the gradebook database, C functions called through ctypes that
   would go around it, and the usual tools for rewriting the harness from inside (gc walks,
   trace functions, swapping a function's code);
4. streams one JSON line per finished test to a file opened before the hook, so the tests that
   finished still count if the process is killed later.

Only the standard library is imported before step 2. An audit hook is not a security boundary on
its own (ctypes can go around it); the kernel-side limits and, where available, network and PID
namespaces (sandbox.py) are the other layers.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import stat
import sys
from pathlib import Path

MB = 1 << 20
DENIED_PREFIX = "grading sandbox:"  # the scorer recognizes refusals by this prefix
PROCESS_EVENTS = ("os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system",
                  "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill")
INTROSPECTION_EVENTS = ("gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace", "sys.setprofile")
# C functions that would go around the hook; libraries may still load (torch opens libc itself)
C_FUNCTIONS = frozenset(
    "fork vfork clone clone3 execve execv execvp execvpe execl execlp execle fexecve system popen posix_spawn "
    "posix_spawnp syscall socket connect bind sendto open open64 openat openat64 creat fopen fopen64 freopen "
    "unlink unlinkat rename renameat renameat2 truncate ftruncate kill tgkill ptrace dlopen dlsym".split())
PATH_WRITE_EVENTS = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
                     "os.truncate", "os.utime", "shutil.rmtree")
PATH_COPY_EVENTS = ("shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree", "shutil.move")
PATH_READ_EVENTS = ("os.listdir", "os.scandir", "glob.glob", "glob.glob/2")


def set_limits(limits: dict) -> None:
    def cap(which: int, value: int) -> None:
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))

    cap(resource.RLIMIT_AS, int(limits["memory_mb"]) * MB)
    cap(resource.RLIMIT_CPU, int(limits["wall_s"]) + 10)
    cap(resource.RLIMIT_FSIZE, int(limits["output_mb"]) * MB)
    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_NOFILE, 1024)
    if os.geteuid() != 0:  # the kernel ignores RLIMIT_NPROC for root; it counts all of this user's tasks
        cap(resource.RLIMIT_NPROC, _user_tasks() + 256)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us


def _user_tasks() -> int:
    uid, count = os.getuid(), 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                count += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
    return count


def isolate_imports(edition: Path) -> list[str]:
    """Put the edition first; return every other minfer package on the path (to be walled off)."""
    others = [str(Path(p, "minfer").resolve()) for p in sys.path
              if p and Path(p, "minfer").is_dir() and Path(p).resolve() != edition.resolve()]
    sys.path[:] = [str(edition)] + [p for p in sys.path if p]  # site-packages may hold a minfer too: keep it
    # setuptools' editable installs resolve `minfer` through a finder on sys.meta_path
    sys.meta_path[:] = [f for f in sys.meta_path if "minfer" not in type(f).__module__.lower()]
    for name in [m for m in sys.modules if m.split(".")[0] in ("minfer", "minfer_course", "minfer_bench")]:
        del sys.modules[name]
    return others


class Policy:
    """The audit hook. Paths are compared after resolving symlinks."""

    def __init__(self, scratch: Path, private: Path, protected: list[str], walls: list[str],
                 guard_code: bool = True, arm_on: list[str] | None = None) -> None:
        self.guard_code = guard_code  # the test process: test functions must keep their code
        # a helper process sets its tools up freely (walls still hold) until submitted code first runs
        self.arm_on = {os.path.realpath(f) for f in arm_on} if arm_on is not None else None
        self.scratch = os.path.realpath(scratch)  # the only writable folder (HOME, TMPDIR)
        self.private = os.path.realpath(private)  # the harness's own files: results, run spec
        self.sandbox = os.path.realpath(private.parent)
        self.protected = [os.path.realpath(p) for p in protected]  # the instructor's files, other sandboxes
        self.walls = [os.path.realpath(p) for p in walls]  # every minfer but the sandbox's, even in site-packages
        # the Python environment stays readable even inside a protected folder (a .venv in the
        # repository), unless an entry would open up a whole protected folder (the repository on sys.path)
        self.python = [real for real in map(os.path.realpath, {sys.prefix, sys.base_prefix, *filter(None, sys.path)})
                       if os.path.isdir(real) and not any(_under(real, w) for w in self.walls)
                       and not any(_under(p, real) for p in self.protected)]
        self.pid = os.readlink("/proc/self")  # as /proc numbers us: in a PID namespace getpid() says 1

    def __call__(self, event: str, args: tuple) -> None:
        if self.arm_on is not None:
            if not self._arming(event, args):
                return
            self.arm_on = None
        if event == "open":
            self._open(args[0], args[1], args[2])
        elif event.startswith("socket."):
            self._deny("network access", event)
        elif event in PROCESS_EVENTS:
            self._deny("starting or signalling processes", event)
        elif event in INTROSPECTION_EVENTS or event.startswith("sqlite3."):
            self._deny("this call", event)
        elif event in ("ctypes.dlsym", "ctypes.dlsym/handle") and str(args[1]).lstrip("_") in C_FUNCTIONS:
            self._deny(f"calling {args[1]}() through ctypes", event)
        elif event == "object.__setattr__" and args[1] == "__code__" and self.guard_code:
            self._deny("replacing a function's code", event)
        elif event in PATH_WRITE_EVENTS or event in PATH_COPY_EVENTS:
            for i, path in enumerate(args[:2]):
                if isinstance(path, (str, bytes, os.PathLike)):  # a copy reads its source, writes its target
                    self._check(path, write=not (i == 0 and event in PATH_COPY_EVENTS), event=event)
        elif event in ("os.link", "os.symlink"):
            self._deny("creating links", event)
        elif event in PATH_READ_EVENTS and isinstance(args[0], (str, bytes, os.PathLike)):
            self._check(args[0], write=False, event=event)

    def _arming(self, event: str, args: tuple) -> bool:
        """Before submitted code runs: only the walls hold. True once it is compiled or executed."""
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            real = os.path.realpath(os.fsdecode(args[0]))
            if any(_under(real, w) for w in self.walls):
                self._deny("reading the instructor's files", f"open {real}")
        filename = args[1] if event == "compile" else getattr(args[0], "co_filename", None) if event == "exec" else None
        return isinstance(filename, str) and os.path.realpath(filename) in self.arm_on

    def _open(self, path: object, mode: object, flags: object) -> None:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return  # an already open file descriptor
        write = isinstance(mode, str) and any(c in mode for c in "wax+")
        if isinstance(flags, int):
            write = write or bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC))
        self._check(path, write, "open")

    def _check(self, path: str | bytes | os.PathLike, write: bool, event: str) -> None:
        real = os.path.realpath(os.fsdecode(path))
        if real == os.devnull:
            return
        if _under(real, self.private):
            self._deny("touching the grader's files", f"{event} {real}")
        if write and not _under(real, self.scratch):
            self._deny("writing outside the scratch folder $HOME", f"{event} {real}")
        if any(_under(real, w) for w in self.walls) or (
                any(_under(real, p) for p in self.protected)
                and not any(_under(real, ok) for ok in [self.sandbox, *self.python])):
            self._deny("reading the instructor's files", f"{event} {real}")
        parts = real.split("/")
        if len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit() and parts[2] != self.pid:
            self._deny("looking at other processes", f"{event} {real}")

    @staticmethod
    def _deny(what: str, detail: str) -> None:
        raise PermissionError(f"{DENIED_PREFIX} {what} is not allowed ({detail})")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class Reporter:
    """pytest plugin: seals the sandbox after collection, times out tests, streams outcomes."""

    def __init__(self, out, spec: dict, policy: Policy) -> None:
        self.out = out
        self.test_s = float(spec["limits"]["test_s"])
        self.sources = [Path(p) for p in spec["delete_after_collection"]]
        self.policy: Policy | None = policy
        self.state: dict[str, dict] = {}

    def emit(self, record: dict) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def pytest_collection_finish(self, session) -> None:
        self.emit({"collected": [item.nodeid for item in session.items]})
        folders = {path.parent for path in self.sources if path.is_file()}
        for folder in folders:  # the sandbox is read-only on disk (for a non-root owner)
            folder.chmod(folder.stat().st_mode | stat.S_IWUSR)
        for path in self.sources:  # no student code has run yet; from here on it could read them
            if path.is_file():
                path.unlink()
        for folder in folders:
            folder.chmod(folder.stat().st_mode & ~stat.S_IWUSR)
        sys.addaudithook(self.policy)
        self.policy = None  # the interpreter holds the only reference now

    def pytest_runtest_protocol(self, item, nextitem):
        def expire(signum, frame):
            raise TimeoutError(f"{DENIED_PREFIX} the test ran past its {self.test_s:g} s limit")

        signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, self.test_s)
        return None  # pytest's own protocol runs the test

    def pytest_runtest_logreport(self, report) -> None:
        s = self.state.setdefault(report.nodeid, {"passed": False, "failed": False, "message": ""})
        if report.failed and not s["failed"]:
            s["failed"], s["message"] = True, _message(report)
        elif report.skipped and not s["message"]:
            s["message"] = f"skipped: {_message(report)}"
        if report.when == "call" and report.passed:
            s["passed"] = True
        if report.when == "teardown":
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.emit({"test": report.nodeid, "passed": s["passed"] and not s["failed"],
                       "message": s["message"][:2000]})


def _message(report) -> str:
    """The exception line only: never a traceback, which would quote test source."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message
    if isinstance(report.longrepr, tuple):  # skips: (file, line, reason)
        return str(report.longrepr[-1])
    return str(report.longrepr).strip().splitlines()[-1] if report.longrepr else ""


def guard_child(spec_file: str) -> None:
    """A Python process started in the sandbox (a lab's conftest may start one while pytest
    configures, before any test) runs under the same policy once it runs a submitted file, and
    never reads the test folders: the sandbox's sitecustomize calls this first thing."""
    spec = json.loads(Path(spec_file).read_text())
    walls = isolate_imports(Path(spec["sandbox"]) / "reference") + spec["test_folders"]
    # no tests live in this process, and the libraries it imports from here on (asyncio's
    # types.coroutine) set a function's code themselves
    sys.addaudithook(Policy(Path(spec["scratch"]), Path(spec["results"]).parent, spec["protected"], walls,
                            guard_code=False, arm_on=spec["student_files"]))


def main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    set_limits(spec["limits"])
    sandbox = Path(spec["sandbox"])
    walls = isolate_imports(sandbox / "reference")
    out = open(spec["results"], "w", encoding="utf-8")  # opened before the hook: only we hold it
    for module in spec["preimport"]:  # load the libraries the tests use while reading files is unrestricted
        __import__(module)
    policy = Policy(Path(spec["scratch"]), Path(spec["results"]).parent, spec["protected"], walls)
    import pytest

    try:
        record = {"finished": int(pytest.main(spec["pytest_args"], plugins=[Reporter(out, spec, policy)]))}
    except BaseException as e:  # noqa: BLE001 - pytest itself broke (e.g. its output failed): say so
        record = {"finished": -1, "error": f"{type(e).__name__}: {e}"[:500]}
    out.write(json.dumps(record) + "\n")
    out.flush()
    os._exit(0)  # skip atexit handlers and finalizers the submission may have registered


if __name__ == "__main__":
    main(sys.argv[1])
