"""Convert a Llama GGUF once, up front, into the Hugging Face folder the engine loads: tensors dequantized to
float32 and renamed, tokenizer rebuilt from the metadata; without transformers, a test-only oracle."""
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

# GGUF tensor name -> HF name, both less ".weight"; per-layer names follow a "blk.N." prefix.
_GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_LAYER_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types (1 = normal)

# These llama.cpp pre-tokenizers isolate every number character before the GPT-2 regex, as the original
# SmolLM2/StarCoder tokenizer.json does with Digits(individual_digits). It matters beyond digit runs:
# "x  1" is [x, ĠĠ, 1] with it but [x, Ġ, Ġ, 1] with the bare GPT-2 regex.
_DIGIT_SPLIT_PRE = {"smollm", "starcoder", "refact"}


def _meta(reader: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _f32(value: float) -> float:
    # GGUF floats are float32 (1e-5 reads 9.99999974e-06); the shortest float32 spelling is config.json's number.
    return float(str(np.float32(value)))


def _hf_name(name: str) -> str:
    m = re.fullmatch(r"(?:blk\.(\d+)\.)?(\w+)\.weight", name)
    if not (hf := m and (_LAYER_NAMES if m[1] else _GLOBAL_NAMES).get(m[2])):
        raise ValueError(f"GGUF tensor {name!r} has no Llama/Hugging Face equivalent; cannot convert")
    return f"model.layers.{m[1]}.{hf}.weight" if m[1] else f"{hf}.weight"


def _special_ids(reader: gguf.GGUFReader) -> dict[str, int]:
    keys = {"bos": "bos", "eos": "eos", "pad": "padding", "unk": "unknown"}
    return {n: int(i) for n, k in keys.items() if (i := _meta(reader, f"tokenizer.ggml.{k}_token_id")) is not None}


def _config(reader: gguf.GGUFReader) -> dict[str, Any]:
    if (arch := _meta(reader, "general.architecture")) != "llama":
        raise ValueError(f"only Llama-architecture GGUF files are supported, this one is {arch!r}")
    hidden = int(_meta(reader, "llama.embedding_length"))
    n_head = int(_meta(reader, "llama.attention.head_count"))
    head_dim = int(_meta(reader, "llama.attention.key_length", hidden // n_head))
    if int(_meta(reader, "llama.rope.dimension_count", head_dim)) != head_dim:
        raise ValueError("partial rotary embeddings (rope.dimension_count != head_dim) are not supported")
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": int(_meta(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(_meta(reader, "llama.block_count")), "num_attention_heads": n_head,
        "num_key_value_heads": int(_meta(reader, "llama.attention.head_count_kv", n_head)), "head_dim": head_dim,
        "rms_norm_eps": _f32(_meta(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": _f32(_meta(reader, "llama.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(_meta(reader, "llama.context_length")),
        "vocab_size": int(_meta(reader, "llama.vocab_size") or len(_meta(reader, "tokenizer.ggml.tokens"))),
        "hidden_act": "silu",
        "tie_word_embeddings": not any(t.name == "output.weight" for t in reader.tensors),  # lm_head reuses embed
        "torch_dtype": "float32", **{f"{n}_token_id": i for n, i in _special_ids(reader).items() if n != "unk"},
    }


def _tokenizer(reader: gguf.GGUFReader, tokens: list[str]) -> Tokenizer:
    if _meta(reader, "tokenizer.ggml.model") != "gpt2":
        raise ValueError("only byte-level BPE GGUF tokenizers (tokenizer.ggml.model 'gpt2') are supported")
    types: list[int] = _meta(reader, "tokenizer.ggml.token_type", [1] * len(tokens))
    # Tokens are stored in GPT-2's byte-level alphabet already; one that is not (raw UTF-8) is respelled
    # so that BPE can reach it, as transformers does.
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    to_bytes = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)  # GPT-2's byte -> character map
    vocab = {t if set(t) <= alphabet else to_bytes.pre_tokenize_str(t)[0][0]: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in _meta(reader, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix=""))
    pre = pre_tokenizers.ByteLevel(add_prefix_space=bool(_meta(reader, "tokenizer.ggml.add_space_prefix")))
    if _meta(reader, "tokenizer.ggml.pre") in _DIGIT_SPLIT_PRE:  # else the plain GPT-2 regex: llama.cpp's "default"
        pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), pre])
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    bos_id = _special_ids(reader).get("bos")
    if _meta(reader, "tokenizer.ggml.add_bos_token") and bos_id is not None:  # llama.cpp prepends BOS
        bos = tokens[bos_id]
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, bos_id)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # Control tokens (<|im_start|>...) must match whole in raw text, not be cut into BPE pieces. Only those spelled
    # as in the vocab are added, keeping their ids: a respelled one is a llama.cpp mislabel and would grow the vocab.
    added = [(t, k) for t, k in zip(tokens, types) if k in (_CONTROL, _USER_DEFINED) and t in vocab]
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t, k in added if k == _CONTROL])
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t, k in added if k == _USER_DEFINED])
    return tok


def convert_gguf(gguf_path: Path, out_dir: Path, progress: bool = True) -> None:
    """Write the Hugging Face files for the Llama GGUF at `gguf_path` into the existing folder `out_dir`."""
    reader = gguf.GGUFReader(str(gguf_path))
    config = _config(reader)
    tokens: list[str] = _meta(reader, "tokenizer.ggml.tokens")
    tokenizer = _tokenizer(reader, tokens)  # before the weights, so a bad vocab fails fast

    tensors: dict[str, np.ndarray] = {}
    for t in tqdm(reader.tensors, desc="Converting GGUF tensors", unit="tensor", disable=not progress):
        # GGUF lists dims fastest-first ([in, out]); reversed, that is HF's [out_features, in_features].
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False).reshape(shape)
        if t.name.endswith(("attn_q.weight", "attn_k.weight")):
            # llama.cpp's converter interleaves the two rotary halves of each head's q/k rows (its rope
            # rotates adjacent pairs, HF's rotates halves); this is the exact inverse of that permute.
            n = config["num_attention_heads" if t.name.endswith("attn_q.weight") else "num_key_value_heads"]
            w = w.reshape(n, shape[0] // n // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)
        tensors[_hf_name(t.name)] = np.ascontiguousarray(w)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save(str(out_dir / "tokenizer.json"))

    special = _special_ids(reader)
    tok_config: dict[str, Any] = {  # PreTrainedTokenizerFast: load tokenizer.json as is, no class rebuild
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": config["max_position_embeddings"],
        **{f"add_{n}_token": bool(_meta(reader, f"tokenizer.ggml.add_{n}_token")) for n in ("bos", "eos")},
        "clean_up_tokenization_spaces": False, **{f"{name}_token": tokens[tid] for name, tid in special.items()},
    }
    if (template := _meta(reader, "tokenizer.chat_template")) is not None:
        tok_config["chat_template"] = template
    generation = {f"{n}_token_id": i for n, i in special.items() if n != "unk"}
    for name, obj in (("config", config), ("tokenizer_config", tok_config), ("generation_config", generation)):
        (out_dir / f"{name}.json").write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    # safetensors creates its file 0600; give it the same umask-derived mode as the other files.
    shutil.copymode(out_dir / "config.json", out_dir / "model.safetensors")
