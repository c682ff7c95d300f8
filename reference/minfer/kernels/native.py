"""C kernels: decode_attention.c and matmul.c, built once per machine with the system's C compiler, and loaded.

Built `-march=native` (this CPU's vector instructions), so made here, not shipped: into the store
($MINFER_HOME or ~/.cache/minfer, under native/), named by a hash of source, flags and compiler,
through a temporary file renamed when complete (~2 s, once). Where no compiler works, `address`
answers 0, after a warning saying why: cpu_numba.py then runs its numba attention, and float32 weights
are prepacked for oneDNN instead (kernels.prepack).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import subprocess
import sysconfig
import tempfile
import warnings
from pathlib import Path

from ..loader.store import store_root

SOURCES = [Path(__file__).with_name(name) for name in ("decode_attention.c", "matmul.c")]
# -ffp-contract and the -f...-math flags let the compiler fuse multiply-adds and vectorise the softmax's
# sum (reassociating it) without -ffast-math's assumption of finite values (the max starts at -inf)
FLAGS = ["-O3", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math", "-fno-signed-zeros",
         "-fassociative-math", "-shared", "-fPIC"]


@functools.cache
def library() -> ctypes.CDLL | None:
    """The C kernels built for this machine (once, then from the store), or None where they cannot be."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")  # $CC, Python's compiler, cc
    info = Path("/proc/cpuinfo")  # -march=native code suits this kind of CPU only, and a store may serve several
    cpu = next((s for s in info.read_text().splitlines() if s.startswith(("flags", "Features"))), "") if info.exists() else ""
    error = ""
    for arch in (["-march=native"], []):  # some compilers (Apple's, on arm64) refuse -march=native
        flags = FLAGS + arch
        parts = [*(f.read_bytes() for f in SOURCES),
                 *(s.encode() for s in [*cc, *flags, platform.machine(), cpu or platform.processor()])]
        path = store_root() / "native" / f"kernels-{hashlib.sha256(b' '.join(parts)).hexdigest()[:16]}.so"
        error = "" if path.exists() else _build(cc, flags, path)
        if not error:
            try:
                return ctypes.CDLL(str(path))
            except OSError as e:  # a library it cannot load
                error = str(e)
    warnings.warn(f"minfer: could not build its C kernels with {' '.join(cc)} ({error}); decode attention "
                  "runs numba's kernel instead, products oneDNN's (set CC to a working C compiler)", stacklevel=2)
    return None


def _build(cc: list[str], flags: list[str], path: Path) -> str:
    """Compile SOURCES into `path` (through a temporary file, renamed); the error, or "" on success."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
        os.close(fd)
    except OSError as e:
        return f"cannot write {path.parent}: {e}"
    try:
        proc = subprocess.run([*cc, *flags, *map(str, SOURCES), "-o", tmp, "-lm"], capture_output=True, text=True)
        if proc.returncode != 0:
            return (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        os.replace(tmp, path)
        return ""
    except OSError as e:  # no such compiler
        return str(e)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def address(name: str) -> int:
    """The address of the C function `name`, or 0 where there is none: an unbuilt library, or (say) a
    head size decode_attention.c has no version for (minfer_attend_{f32,bf16}_d{16,32,64,128,256})."""
    lib = library()
    fn = getattr(lib, name, None) if lib is not None else None
    return ctypes.cast(fn, ctypes.c_void_p).value or 0 if fn is not None else 0


def attend_fn(dtype: str, head_dim: int) -> int:
    """decode_attention.c's kernel for `dtype` ("f32" or "bf16") and `head_dim`, or 0."""
    return address(f"minfer_attend_{dtype}_d{head_dim}")
