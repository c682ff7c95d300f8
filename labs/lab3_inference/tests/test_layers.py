"""RMSNorm, rotary embeddings and SwiGLU against transformers' Llama modules."""
from __future__ import annotations

import torch


def test_rms_norm_matches_llama(lab):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch.manual_seed(0)
    ref = LlamaRMSNorm(64, eps=1e-6)
    with torch.no_grad():
        ref.weight.copy_(torch.randn(64))
    x = torch.randn(5, 64) * 3
    torch.testing.assert_close(lab.layers.rms_norm(x, ref.weight.detach(), 1e-6), ref(x).detach())


def test_rms_norm_writes_into_out(lab):
    x, w, out = torch.randn(3, 8), torch.randn(8), torch.zeros(3, 8)
    got = lab.layers.rms_norm(x, w, 1e-5, out=out)
    assert got.data_ptr() == out.data_ptr(), "with out=..., the result must be written into out"
    torch.testing.assert_close(out, w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5))


def _hf_rope(head_dim: int, theta: float, positions: torch.Tensor):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    cfg = LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, rope_theta=theta, max_position_embeddings=4096)
    cos, sin = LlamaRotaryEmbedding(cfg)(torch.zeros(1), positions[None])
    return cos[0], sin[0]


def test_rope_inv_freq_and_cos_sin_match_llama(lab):
    positions = torch.tensor([0, 1, 2, 7, 31])
    inv_freq = lab.layers.rope_inv_freq(16, 10000.0)
    assert inv_freq.shape == (8,)
    cos, sin = lab.layers.rope_cos_sin(positions, inv_freq, torch.float32)
    ref_cos, ref_sin = _hf_rope(16, 10000.0, positions)
    assert cos.shape == (5, 1, 16), "cos/sin are [T, 1, head_dim] so they broadcast over heads"
    torch.testing.assert_close(cos[:, 0], ref_cos)
    torch.testing.assert_close(sin[:, 0], ref_sin)


def test_apply_rope_matches_llama(lab):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    torch.manual_seed(1)
    positions = torch.arange(6)
    cos, sin = _hf_rope(16, 10000.0, positions)
    q, k = torch.randn(1, 4, 6, 16), torch.randn(1, 2, 6, 16)  # HF layout [B, H, T, D]
    ref_q, ref_k = apply_rotary_pos_emb(q, k, cos[None], sin[None])
    ours_cos, ours_sin = cos[:, None, :], sin[:, None, :]
    torch.testing.assert_close(lab.layers.apply_rope(q[0].transpose(0, 1), ours_cos, ours_sin), ref_q[0].transpose(0, 1))
    torch.testing.assert_close(lab.layers.apply_rope(k[0].transpose(0, 1), ours_cos, ours_sin), ref_k[0].transpose(0, 1))


def test_swiglu_matches_llama_mlp(lab):
    torch.manual_seed(2)
    gate, up = torch.randn(4, 12), torch.randn(4, 12)
    got = lab.layers.swiglu(torch.cat([gate, up], dim=-1).clone())
    torch.testing.assert_close(got, torch.nn.functional.silu(gate) * up)
