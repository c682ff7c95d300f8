"""Convert a Llama-architecture GGUF file into a plain Hugging Face model folder.

The engine only ever loads HF folders (config.json + model.safetensors + tokenizer.json), so a
GGUF is converted once, up front: every tensor is dequantized to float32 and renamed, and the
tokenizer is rebuilt from the vocabulary stored in the metadata. transformers is deliberately
not used here (it is a test-only oracle); the `gguf` and `tokenizers` libraries are enough.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from tqdm import tqdm

# GGUF tensor name -> HF name; per-layer names are matched after the "blk.N." prefix.
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    "attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
}
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types (1 = normal)

# These llama.cpp pre-tokenizers isolate every number character before the GPT-2 regex, as the
# original SmolLM2/StarCoder tokenizer.json does with Digits(individual_digits). It matters beyond
# digit runs: "x  1" is [x, ĠĠ, 1] with it but [x, Ġ, Ġ, 1] with the bare GPT-2 regex.
_DIGIT_SPLIT_PRE = {"smollm", "starcoder", "refact"}


def _meta(reader: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _f32(value: float) -> float:
    # GGUF stores floats as float32, so 1e-5 comes back as 9.99999974e-06; the shortest float32
    # spelling gives back the number the original config.json had.
    return float(str(np.float32(value)))


def _hf_name(name: str) -> str:
    if name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[name]
    m = re.fullmatch(r"blk\.(\d+)\.(.+)", name)
    if m and m.group(2) in _LAYER_NAMES:
        return f"model.layers.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}"
    raise ValueError(f"GGUF tensor {name!r} has no Llama/Hugging Face equivalent; cannot convert")


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's converter interleaves the two rotary halves of each head's q/k rows (its rope
    # rotates adjacent pairs, HF's rotates halves); this is the exact inverse of that permute.
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _special_ids(reader: gguf.GGUFReader) -> dict[str, int]:
    keys = {"bos": "bos", "eos": "eos", "pad": "padding", "unk": "unknown"}
    ids = {name: _meta(reader, f"tokenizer.ggml.{key}_token_id") for name, key in keys.items()}
    return {name: int(tid) for name, tid in ids.items() if tid is not None}


def _config(reader: gguf.GGUFReader, has_output: bool) -> dict[str, Any]:
    arch = _meta(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"only Llama-architecture GGUF files are supported, this one is {arch!r}")
    hidden = int(_meta(reader, "llama.embedding_length"))
    n_head = int(_meta(reader, "llama.attention.head_count"))
    head_dim = int(_meta(reader, "llama.attention.key_length", hidden // n_head))
    if int(_meta(reader, "llama.rope.dimension_count", head_dim)) != head_dim:
        raise ValueError("partial rotary embeddings (rope.dimension_count != head_dim) are not supported")
    config: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": int(_meta(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(_meta(reader, "llama.block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": int(_meta(reader, "llama.attention.head_count_kv", n_head)),
        "head_dim": head_dim,
        "rms_norm_eps": _f32(_meta(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": _f32(_meta(reader, "llama.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(_meta(reader, "llama.context_length")),
        "vocab_size": int(_meta(reader, "llama.vocab_size") or len(_meta(reader, "tokenizer.ggml.tokens"))),
        "hidden_act": "silu",
        "tie_word_embeddings": not has_output,  # no output.weight: lm_head reuses the embedding
        "torch_dtype": "float32",
    }
    config.update({f"{n}_token_id": i for n, i in _special_ids(reader).items() if n != "unk"})
    return config


def _byte_alphabet() -> list[str]:
    # GPT-2's reversible byte -> printable-character table, indexed by byte value.
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def _tokenizer(reader: gguf.GGUFReader, tokens: list[str]) -> Tokenizer:
    if _meta(reader, "tokenizer.ggml.model") != "gpt2":
        raise ValueError("only byte-level BPE GGUF tokenizers (tokenizer.ggml.model 'gpt2') are supported")
    types: list[int] = _meta(reader, "tokenizer.ggml.token_type", [1] * len(tokens))
    # Tokens are stored in the byte-level alphabet already; one that is not (raw UTF-8) is
    # respelled so that BPE can reach it, as transformers does.
    table = _byte_alphabet()
    alphabet = set(table)
    spell = {t: t if set(t) <= alphabet else "".join(table[b] for b in t.encode()) for t in tokens}
    vocab = {spell[t]: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in _meta(reader, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix=""))
    prefix_space = bool(_meta(reader, "tokenizer.ggml.add_space_prefix"))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space)
    if _meta(reader, "tokenizer.ggml.pre") in _DIGIT_SPLIT_PRE:
        digits = pre_tokenizers.Digits(individual_digits=True)
        tok.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level])
    else:
        tok.pre_tokenizer = byte_level  # the plain GPT-2 regex: llama.cpp's "default"
    tok.decoder = decoders.ByteLevel()
    bos_id = _special_ids(reader).get("bos")
    if _meta(reader, "tokenizer.ggml.add_bos_token") and bos_id is not None:  # llama.cpp prepends BOS
        bos = tokens[bos_id]
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, bos_id)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # Control tokens (<|im_start|>...) must match whole in raw text, not be cut into BPE pieces.
    # Only tokens spelled as in the vocab are added, so each keeps its id; one that had to be
    # respelled is a llama.cpp mislabel, and adding it would grow the vocab past the model's.
    added = [(t, k) for t, k in zip(tokens, types) if k in (_CONTROL, _USER_DEFINED) and t in vocab]
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t, k in added if k == _CONTROL])
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t, k in added if k == _USER_DEFINED])
    return tok


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def convert_gguf(gguf_path: Path, out_dir: Path, progress: bool = True) -> None:
    """Write config.json, model.safetensors, tokenizer.json, tokenizer_config.json and
    generation_config.json for the Llama GGUF at `gguf_path` into the existing folder `out_dir`."""
    reader = gguf.GGUFReader(str(gguf_path))
    config = _config(reader, has_output=any(t.name == "output.weight" for t in reader.tensors))
    tokens: list[str] = _meta(reader, "tokenizer.ggml.tokens")
    tokenizer = _tokenizer(reader, tokens)  # before the weights, so a bad vocab fails fast

    tensors: dict[str, np.ndarray] = {}
    for t in tqdm(reader.tensors, desc="Converting GGUF tensors", unit="tensor", disable=not progress):
        # GGUF lists dims fastest-first ([in, out]); reversed, that is HF's [out_features, in_features].
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False).reshape(shape)
        if t.name.endswith("attn_q.weight"):
            w = _unpermute(w, config["num_attention_heads"])
        elif t.name.endswith("attn_k.weight"):
            w = _unpermute(w, config["num_key_value_heads"])
        tensors[_hf_name(t.name)] = np.ascontiguousarray(w)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})

    _write_json(out_dir / "config.json", config)
    # safetensors creates its file 0600; give it the same umask-derived mode as the other files.
    shutil.copymode(out_dir / "config.json", out_dir / "model.safetensors")
    tokenizer.save(str(out_dir / "tokenizer.json"))
    special = _special_ids(reader)
    tok_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",  # load tokenizer.json as is, no class rebuild
        "model_max_length": config["max_position_embeddings"],
        "add_bos_token": bool(_meta(reader, "tokenizer.ggml.add_bos_token")),
        "add_eos_token": bool(_meta(reader, "tokenizer.ggml.add_eos_token")),
        "clean_up_tokenization_spaces": False,
        **{f"{name}_token": tokens[tid] for name, tid in special.items()},
    }
    if (template := _meta(reader, "tokenizer.chat_template")) is not None:
        tok_config["chat_template"] = template
    _write_json(out_dir / "tokenizer_config.json", tok_config)
    generation = {f"{name}_token_id": tid for name, tid in special.items() if name != "unk"}
    _write_json(out_dir / "generation_config.json", generation)
