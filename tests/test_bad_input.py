"""Bad input is refused with a message that names the problem and says what to do, and a refusal
leaves nothing half-done behind: no request in the engine, no KV block held, no folder in the store.

Everything here runs on a tiny random Llama (built once per session by the `tiny_dir` fixture), or on
broken copies of it; nothing loads the real model.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch

from minfer import LLM, SamplingParams
from minfer.loader import store

# ---------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def tiny(tiny_dir) -> Path:
    return tiny_dir("llama")  # vocab 256, context window (max_position_embeddings) 512


@pytest.fixture(scope="module")
def llm(tiny) -> LLM:
    return LLM(str(tiny), kv_cache_mb=4)


@pytest.fixture
def broken(tiny, tmp_path):
    """broken(edit=None) -> a fresh copy of the tiny model folder, with config.json edited by `edit`."""

    def make(edit=None) -> Path:
        folder = tmp_path / f"model{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny, folder)
        if edit is not None:
            cfg = json.loads((folder / "config.json").read_text())
            edit(cfg)
            (folder / "config.json").write_text(json.dumps(cfg))
        return folder

    return make


def assert_clean(llm: LLM) -> None:
    """Nothing of a refused request is left: no request, no queued work, every KV block free."""
    assert llm.reqs == {}
    assert not llm.has_unfinished()
    assert llm.kv.pool.num_free == llm.kv.pool.num_blocks


def greedy(n: int) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=n)


# ---------------------------------------------------------------------------------------------
# which model


def test_unknown_model_name_lists_the_builtins(monkeypatch, tmp_path):
    monkeypatch.setenv("MINFER_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"unknown model 'no-such-model'.*smollm2-135m.*Hugging Face model folder"):
        LLM("no-such-model")
    assert not (tmp_path / "home").exists()


def test_folder_without_config_json(broken):
    folder = broken()
    (folder / "config.json").unlink()
    with pytest.raises(ValueError, match=rf"{folder}.* has no config\.json.*Hugging Face model folder"):
        LLM(str(folder), kv_cache_mb=4)


def test_unsupported_architecture_is_named(broken):
    folder = broken(lambda c: c.update(architectures=["GPT2LMHeadModel"]))
    with pytest.raises(ValueError, match=r"config\.json: unsupported architecture \['GPT2LMHeadModel'\]") as e:
        LLM(str(folder), kv_cache_mb=4)
    assert "LlamaForCausalLM" in str(e.value)  # ... and what it can run instead


def test_config_json_that_is_not_json(broken):
    folder = broken()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON.*re-download or re-convert"):
        LLM(str(folder), kv_cache_mb=4)


def test_config_json_missing_a_required_key(broken):
    folder = broken(lambda c: c.pop("hidden_size"))
    with pytest.raises(ValueError, match=r"config\.json.*hidden_size"):
        LLM(str(folder), kv_cache_mb=4)


@pytest.mark.parametrize("device, why", [("tpu", r"unknown device 'tpu'"), ("cuda:7", r"cuda")])
def test_bad_device(tiny, device, why):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    with pytest.raises(ValueError, match=why):
        LLM(str(tiny), device=device, kv_cache_mb=4)


def test_bad_dtype(tiny):
    with pytest.raises(ValueError, match=r"dtype 'int8' is not supported.*float32"):
        LLM(str(tiny), dtype="int8", kv_cache_mb=4)


# ---------------------------------------------------------------------------------------------
# checkpoint files


def test_missing_safetensors_file(broken):
    folder = broken()
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors is missing.*re-download"):
        LLM(str(folder), kv_cache_mb=4)


def test_missing_shard_named_by_the_index(broken):
    folder = broken()
    shard = "model-00002-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"lm_head.weight": shard}}))
    with pytest.raises(FileNotFoundError, match=rf"{shard} is missing.*re-download"):
        LLM(str(folder), kv_cache_mb=4)


def _truncate(f: Path) -> None:
    os.truncate(f, f.stat().st_size // 2)


def _garble_header_json(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[8:40] = b"\xff" * 32  # the JSON header starts after its 8-byte length
    f.write_bytes(bytes(data))


def _garble_header_length(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[0:8] = b"\xff" * 8
    f.write_bytes(bytes(data))


def _empty(f: Path) -> None:
    f.write_bytes(b"")


@pytest.mark.parametrize("damage", [_truncate, _garble_header_json, _garble_header_length, _empty],
                         ids=["truncated", "garbled-header", "garbled-header-length", "empty"])
def test_damaged_safetensors_file(broken, damage):
    folder = broken()
    damage(folder / "model.safetensors")
    with pytest.raises(ValueError, match=r"model\.safetensors is corrupt or truncated.*delete it and download or convert"):
        LLM(str(folder), kv_cache_mb=4)


def test_tensor_shape_disagrees_with_config(broken):
    folder = broken(lambda c: c.update(hidden_size=128))
    with pytest.raises(ValueError, match=r"tensor 'model\.embed_tokens\.weight' has shape \(256, 64\), config\.json implies \(256, 128\)"):
        LLM(str(folder), kv_cache_mb=4)


def test_missing_tensor_is_named(broken):
    from safetensors.torch import load_file, save_file

    folder = broken()
    f = folder / "model.safetensors"
    tensors = load_file(str(f))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(f), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"no tensor 'model\.layers\.1\.mlp\.up_proj\.weight'.*config\.json"):
        LLM(str(folder), kv_cache_mb=4)


def test_config_with_more_layers_than_the_checkpoint(broken):
    folder = broken(lambda c: c.update(num_hidden_layers=3))
    with pytest.raises(ValueError, match=r"no tensor 'model\.layers\.2\.self_attn\.q_proj\.weight'"):
        LLM(str(folder), kv_cache_mb=4)


def test_checkpoint_with_tensors_the_config_does_not_use(broken):
    folder = broken(lambda c: c.update(num_hidden_layers=1))
    with pytest.raises(ValueError, match=r"tensors this architecture does not use: \['model\.layers\.1\."):
        LLM(str(folder), kv_cache_mb=4)


def test_missing_tokenizer_json(broken):
    folder = broken()
    (folder / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json is missing"):
        LLM(str(folder), kv_cache_mb=4)


def test_corrupt_tokenizer_json(broken):
    folder = broken()
    (folder / "tokenizer.json").write_text("{")
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        LLM(str(folder), kv_cache_mb=4)


# ---------------------------------------------------------------------------------------------
# prompts


@pytest.mark.parametrize("prompt", [[5] * 600, "x" * 600, [5] * 512], ids=["600-ids", "600-chars", "512-ids"])
def test_prompt_longer_than_the_context_window(llm, prompt):
    with pytest.raises(ValueError, match=r"the prompt has \d+ tokens but the context window is 512; shorten the prompt"):
        llm.add_request(prompt, greedy(4))
    assert_clean(llm)


def test_prompt_that_just_fits_the_context_window(llm):
    out = llm.generate([[5] * 511], greedy(8))[0]
    assert len(out.token_ids) == 1 and out.finish_reason == "length"  # the window caps max_tokens
    assert_clean(llm)


@pytest.mark.parametrize("prompt", ["", []], ids=["empty-text", "no-ids"])
def test_empty_prompt(llm, prompt):
    with pytest.raises(ValueError, match=r"the prompt is empty"):
        llm.add_request(prompt, greedy(4))
    with pytest.raises(ValueError, match=r"the prompt is empty"):
        llm.generate([prompt], greedy(4))
    assert_clean(llm)


@pytest.mark.parametrize("ids", [[1, 256], [-1], [1, 2.0], [1, "2"]], ids=["vocab-size", "negative", "float", "str"])
def test_token_ids_outside_the_vocabulary(llm, ids):
    with pytest.raises(ValueError, match=r"prompt token ids must be integers in \[0, 256\)"):
        llm.add_request(ids, greedy(4))
    assert_clean(llm)


def test_chat_prompt_without_a_chat_template(llm):
    with pytest.raises(ValueError, match=r"no chat template.*plain prompts"):
        llm.chat_prompt([{"role": "user", "content": "hi"}])


# ---------------------------------------------------------------------------------------------
# sampling parameters


@pytest.mark.parametrize(
    "field, value",
    [("temperature", -1.0), ("temperature", math.nan), ("temperature", math.inf), ("temperature", "0.5"),
     ("top_k", -2), ("top_k", 1.5), ("top_p", 0.0), ("top_p", 1.5), ("seed", "42"), ("seed", 1.0),
     ("max_tokens", 0), ("max_tokens", 2.0), ("max_tokens", True), ("stop", [""]), ("stop", [1]),
     ("stop", ("a",)), ("ignore_eos", 1)],
)
def test_invalid_sampling_params_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"SamplingParams\.{field}=.* is invalid: must be"):
        SamplingParams(**{field: value})


def test_valid_sampling_params_edge_values():
    SamplingParams(temperature=0, top_k=0, top_p=1, seed=0, max_tokens=1, stop="x", ignore_eos=True)
    SamplingParams(top_k=-1, top_p=1e-6, seed=None, stop=[])


def test_sampling_params_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown sampling field\(s\) \['temprature'\]; known fields: .*'temperature'"):
        SamplingParams.from_dict({"temprature": 0.5, "max_tokens": 4})
    assert SamplingParams.from_dict({"temperature": 0.5, "max_tokens": 4}).max_tokens == 4
    with pytest.raises(ValueError, match=r"SamplingParams\.max_tokens"):
        SamplingParams.from_dict({"max_tokens": -3})  # known keys are still checked


def test_generate_with_mismatched_prompts_and_params(llm):
    with pytest.raises(ValueError, match=r"got 2 prompts but 1 SamplingParams"):
        llm.generate(["ab", "cd"], [greedy(2)])
    with pytest.raises(ValueError, match=r"got 1 prompts but 3 SamplingParams"):
        llm.generate([[5, 6]], [greedy(2)] * 3)
    assert_clean(llm)


def test_generate_with_one_bad_prompt_leaves_nothing_behind(llm):
    with pytest.raises(ValueError, match=r"the prompt is empty"):
        llm.generate([[5, 6, 7], []], greedy(2))
    try:
        assert_clean(llm)
    finally:  # do not let the leftover request leak into the other tests of this module
        for req_id in list(llm.reqs):
            llm.abort(req_id)
            llm.pop_output(req_id)


# ---------------------------------------------------------------------------------------------
# the KV cache


def test_request_that_can_never_fit_the_kv_cache(broken):
    # a long context window (RoPE needs no tensors for it) and a 1 MiB cache: 512 blocks of 4 tokens
    folder = broken(lambda c: c.update(max_position_embeddings=8192))
    llm = LLM(str(folder), kv_cache_mb=1, block_size=4)
    assert llm.kv.pool.num_blocks * llm.kv.block_size < 4100
    prompt = list(range(3, 103))
    with pytest.raises(ValueError, match=r"up to 4100 tokens cannot fit the KV cache.*raise kv_cache_mb or lower max_tokens"):
        llm.add_request(prompt, greedy(4000))
    with pytest.raises(ValueError, match=r"kv_cache_mb"):
        list(llm.stream(prompt, greedy(4000)))
    assert_clean(llm)
    # the engine is still usable, and a request that fits runs
    out = llm.generate([prompt], greedy(4))[0]
    assert len(out.token_ids) == 4
    assert llm.reqs == {} and not llm.has_unfinished()


def test_zero_block_size(tiny):
    with pytest.raises(ValueError, match=r"block"):
        LLM(str(tiny), kv_cache_mb=4, block_size=0)


# ---------------------------------------------------------------------------------------------
# the model store


@pytest.mark.parametrize("call", [store.pull, store.resolve, store.gguf_path], ids=["pull", "resolve", "gguf_path"])
def test_store_refuses_unknown_names_and_creates_nothing(monkeypatch, tmp_path, call):
    home = tmp_path / "home"
    monkeypatch.setenv("MINFER_HOME", str(home))
    monkeypatch.delenv("MINFER_WHEEL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"unknown model 'no-such-model'; built-in models: smollm2-135m"):
        call("no-such-model")
    assert not (home / "models").exists() or not any((home / "models").iterdir())
    assert not (home / "models" / "no-such-model").exists()
    assert not (home / "downloads").exists()
