"""The paged KV cache's write and gather, the causal mask, GQA head grouping and attention itself."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def scratch_factory():
    return lambda n: torch.empty(n)


def test_write_kv_then_gather_blocks(lab):
    kvh, d, bs, nblocks = 2, 4, 4, 6
    k_cache, v_cache = torch.zeros(kvh, nblocks * bs, d), torch.zeros(kvh, nblocks * bs, d)
    k, v = torch.randn(6, kvh, d), torch.randn(6, kvh, d)
    slots = torch.tensor([20, 21, 22, 23, 8, 9])  # block 5 whole, then the start of block 2
    lab.attention.write_kv(k_cache, v_cache, slots, k, v)
    for t, s in enumerate(slots.tolist()):
        torch.testing.assert_close(k_cache[:, s], k[t])
        torch.testing.assert_close(v_cache[:, s], v[t])
    kc, vc = lab.attention.gather_kv(k_cache, v_cache, torch.tensor([5, 2]), bs, scratch_factory())
    assert kc.shape == (kvh, 8, d)
    torch.testing.assert_close(kc[:, :6], k.transpose(0, 1))
    torch.testing.assert_close(vc[:, :6], v.transpose(0, 1))


def test_causal_bias_whole_prompt(lab):
    bias = lab.attention.causal_bias(0, 3)
    inf = float("-inf")
    torch.testing.assert_close(bias, torch.tensor([[0, inf, inf], [0, 0, inf], [0, 0, 0]]))


def test_group_heads_order_and_inverse(lab):
    n, t, h, d, kvh = 2, 3, 4, 5, 2
    q = torch.randn(n, t, h, d)
    g = lab.attention.group_heads(q, kvh)
    assert g.shape == (kvh, n, (h // kvh) * t, d)
    # KV head 1 serves query heads 2 and 3; row g * Tq + t holds head 1 * G + g at token t
    torch.testing.assert_close(g[1, 0, 1 * t + 2], q[0, 2, 3])
    torch.testing.assert_close(lab.attention.ungroup_heads(g, t), q)


def test_attend_matches_sdpa_with_gqa(lab):
    torch.manual_seed(3)
    h, kvh, t, d = 4, 2, 7, 8
    q, k, v = torch.randn(1, h, t, d), torch.randn(1, kvh, t, d), torch.randn(1, kvh, t, d)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    A = lab.attention
    grouped = A.group_heads(q.transpose(1, 2), kvh)
    out = A.attend(grouped, k.transpose(0, 1), v.transpose(0, 1), A.causal_bias(0, t).repeat(h // kvh, 1)[None])
    torch.testing.assert_close(A.ungroup_heads(out, t), ref.transpose(1, 2))
