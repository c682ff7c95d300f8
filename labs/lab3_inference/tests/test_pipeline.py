"""Weight mapping, batch preparation and the whole engine on your modules, against transformers."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from minfer.core import Batch, Req, SamplingParams, ScheduledReq


def test_mapping_takes_every_tensor(lab, tiny):
    from minfer.loader.config import ModelConfig

    path = tiny("llama")
    cfg = ModelConfig.from_dir(path)
    sd = load_file(path / "model.safetensors")
    expected = dict(sd)
    mt = lab.mapping.map_hf_tensors(cfg, dict(sd))
    assert len(mt.layers) == 2
    torch.testing.assert_close(mt.embed, expected["model.embed_tokens.weight"])
    torch.testing.assert_close(mt.layers[1].k, expected["model.layers.1.self_attn.k_proj.weight"])
    torch.testing.assert_close(mt.layers[0].down, expected["model.layers.0.mlp.down_proj.weight"])
    torch.testing.assert_close(mt.layers[0].mlp_norm, expected["model.layers.0.post_attention_layernorm.weight"])
    assert mt.lm_head is mt.embed, "tied embeddings: the output head is the embedding matrix itself"


def test_mapping_rejects_a_missing_tensor(lab, tiny):
    from minfer.loader.config import ModelConfig

    path = tiny("llama")
    sd = load_file(path / "model.safetensors")
    del sd["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises((KeyError, ValueError), match="up_proj"):
        lab.mapping.map_hf_tensors(ModelConfig.from_dir(path), sd)


def test_slot_ids_follow_the_block_table(lab):
    assert lab.batch.slot_ids([3, 0, 7], 2, 9, 4) == [14, 15, 0, 1, 2, 3, 28]


def _req(i: int, ids: list[int], table: list[int], computed: int) -> Req:
    r = Req(i, ids, SamplingParams(temperature=0, max_tokens=4))
    r.block_table, r.num_computed = table, computed
    return r


def test_prepare_flattens_a_mixed_batch(lab, tiny):
    from minfer.hal import get_device
    from minfer.loader.config import ModelConfig
    from minfer.memory.kv_cache import KVCache

    kv = KVCache(ModelConfig.from_dir(tiny("llama")), get_device("cpu"), torch.float32, num_blocks=8, block_size=2)
    prefill = _req(0, [5, 6, 7], [4, 1], 0)  # a 3-token prompt, all of it this step
    decode = _req(1, [9, 8, 7, 6], [2, 6], 3)  # three tokens cached; its 4th is new
    batch = Batch([ScheduledReq(prefill, 3), ScheduledReq(decode, 1)])
    fi = lab.batch.prepare(batch, kv, get_device("cpu"))
    # decodes come first in the flattened batch, then the prompt
    assert fi.ids.tolist() == [6, 5, 6, 7]
    assert fi.positions.tolist() == [3, 0, 1, 2]
    assert fi.meta.slot_mapping.tolist() == [13, 8, 9, 2]
    assert fi.logit_rows.tolist() == [3, 0], "logit rows follow batch.sampling order: the prompt's last row, then the decode"


def test_engine_on_your_modules_matches_transformers(lab, tiny, engine_matches_transformers):
    prompt = [(7 * i + 3) % 256 for i in range(21)]
    engine_matches_transformers(tiny("llama"), prompt, new_tokens=6)
