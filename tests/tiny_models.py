"""Tiny random Llama / Qwen2 / Qwen3 checkpoints built offline with transformers (test-only)."""
from __future__ import annotations

from pathlib import Path

import torch

# one shape per architecture, chosen to exercise GQA, odd head counts and the per-arch switches
TINY = {
    "llama": dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, rope_theta=10000.0),
    "llama-untied": dict(num_attention_heads=6, num_key_value_heads=3, head_dim=16, tie_word_embeddings=False, rope_theta=500000.0),
    "qwen2": dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False, rope_theta=1000000.0),
    "qwen3": dict(num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=True, rope_theta=1000000.0, head_dim=16),
}


def build_tiny(kind: str, out: Path, seed: int = 0) -> Path:
    import transformers as tf

    cls = {"llama": (tf.LlamaConfig, tf.LlamaForCausalLM), "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
           "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM)}[kind.split("-")[0]]
    wide = kind == "llama-untied"  # every projection's outputs in 48s: matmul.c's panels (kernels.prepack)
    cfg = cls[0](vocab_size=256, hidden_size=96 if wide else 64, intermediate_size=96 if wide else 128, num_hidden_layers=2,
                 max_position_embeddings=512, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, **TINY[kind])
    torch.manual_seed(seed)
    model = cls[1](cfg).eval()
    # random init leaves norms at 1 and biases at 0: perturb them so a wrong formula shows
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(out, safe_serialization=True)
    _byte_tokenizer(out)
    return out


def _byte_tokenizer(out: Path) -> None:
    """A 256-token byte-level tokenizer, so tiny models can also be driven with text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet[:256])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(str(out / "tokenizer.json"))
