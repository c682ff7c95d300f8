"""The few numbers of a Hugging Face config.json the engine needs; what it cannot run is refused here, by name."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SUPPORTED = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position: int
    tie_word_embeddings: bool
    qkv_bias: bool
    qk_norm: bool
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None

    @classmethod
    def from_dir(cls, path: Path) -> "ModelConfig":
        file = Path(path) / "config.json"
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing: a Hugging Face model folder needs a config.json")
        try:
            return cls.from_hf(json.loads(file.read_text()), where=str(file))
        except json.JSONDecodeError as e:  # from_hf itself never raises it
            raise ValueError(f"{file} is not valid JSON ({e}); re-download or re-convert the model") from e

    @classmethod
    def from_hf(cls, raw: dict, where: str = "config") -> "ModelConfig":
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                               "num_attention_heads") if k not in raw]
        if missing:
            raise ValueError(f"{where}: missing required key(s) {missing}; is this a complete model config?")
        archs = raw.get("architectures") or []
        if (arch := next((SUPPORTED[a] for a in archs if a in SUPPORTED), None)) is None:
            raise ValueError(f"{where}: unsupported architecture {archs or raw.get('model_type')!r}; "
                             f"minfer runs {sorted(SUPPORTED)}")
        rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
        if (rope_type := rope.get("rope_type", rope.get("type", "default"))) not in ("default", None):
            raise ValueError(f"{where}: rope scaling {rope_type!r} is not supported; only plain RoPE is")
        if raw.get("mlp_bias"):
            raise ValueError(f"{where}: MLP biases are not supported")
        heads, eos = raw["num_attention_heads"], raw.get("eos_token_id")
        return cls(
            arch=arch, vocab_size=raw["vocab_size"], hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"], num_layers=raw["num_hidden_layers"], num_heads=heads,
            num_kv_heads=raw.get("num_key_value_heads") or heads, rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
            head_dim=raw.get("head_dim") or raw["hidden_size"] // heads,
            rope_theta=float(raw.get("rope_theta") or rope.get("rope_theta") or 10000.0),
            max_position=raw.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            # one dataclass for Llama, Qwen2 and Qwen3: Qwen2 always has q/k/v biases, the others only when asked
            qkv_bias=arch == "qwen2" or bool(raw.get("attention_bias", False)), qk_norm=arch == "qwen3",
            eos_token_ids=tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,)),
            bos_token_id=raw.get("bos_token_id"))

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def kv_bytes_per_token(self, element_size: int) -> int:
        return 2 * self.num_layers * self.kv_size * element_size
