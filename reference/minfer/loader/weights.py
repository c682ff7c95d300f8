"""Reading a checkpoint's tensors, with errors that say which file is wrong and what to do."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open


def checkpoint_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a Hugging Face folder: one file, or the shards its index names."""
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    shards = json.loads(index.read_text())["weight_map"].values() if index.is_file() else ["model.safetensors"]
    files = [model_dir / s for s in sorted(set(shards))]
    if missing := [f for f in files if not f.is_file()]:
        raise FileNotFoundError(f"{missing[0]} is missing; minfer loads safetensors checkpoints "
                                "(re-download the model, or `minfer model pull --force` for a builtin)")
    return files


def load_tensors(model_dir: Path, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint by Hugging Face name, cast to `dtype`."""
    tensors: dict[str, torch.Tensor] = {}
    for f in checkpoint_files(model_dir):
        try:
            with safe_open(str(f), framework="pt") as sf:
                tensors.update({name: sf.get_tensor(name).to(dtype) for name in sf.keys()})
        except (SafetensorError, OSError, RuntimeError) as e:
            raise ValueError(f"{f} is corrupt or truncated ({e}); delete it and download or convert the "
                             "model again (`minfer model pull --force smollm2-135m` for the builtin)") from e
    return tensors


def take(tensors: dict[str, torch.Tensor], name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Pop one tensor, checking that it exists and has the shape the config promises."""
    if name not in tensors:
        raise ValueError(f"checkpoint has no tensor {name!r}; is config.json for this checkpoint?")
    t = tensors.pop(name)
    if tuple(t.shape) != shape:
        raise ValueError(f"tensor {name!r} has shape {tuple(t.shape)}, config.json implies {shape}")
    return t
