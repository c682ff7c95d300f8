"""The implementation switch (`--impl`) and shared fixtures for lab 3's tests.

    pytest labs/lab3_inference/tests                      # your files in this folder (default)
    pytest labs/lab3_inference/tests --impl reference     # the reference solution
    pytest labs/lab3_inference/tests --impl path/to/dir   # any folder with the lab's five files

Tiny random models are built offline with transformers (the oracle), once per test session.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch


def pytest_addoption(parser):
    from minfer_course.labs import add_lab_options

    add_lab_options(parser)


@pytest.fixture(scope="session")
def impl(request) -> str:
    return request.config.getoption("--impl")


@pytest.fixture(scope="session")
def lab(impl):
    """The implementation under test: `lab.layers`, `lab.attention`, `lab.mapping`, `lab.batch`, `lab.sampling`."""
    from minfer_course.labs import load

    return load("lab3", impl)


def build_tiny(out: Path, arch: str = "llama", seed: int = 0, **overrides) -> Path:
    """A random 2-layer model saved as a Hugging Face folder, with a byte-level tokenizer."""
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    cfg_cls, model_cls = {"llama": (tf.LlamaConfig, tf.LlamaForCausalLM), "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
                          "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM)}[arch]
    kw = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-6, bos_token_id=1,
              eos_token_id=2, tie_word_embeddings=True, rope_theta=10000.0)
    kw.update(overrides)
    torch.manual_seed(seed)
    model = model_cls(cfg_cls(**kw)).eval()
    with torch.no_grad():  # random init leaves norms at 1 and biases at 0: perturb them so a wrong formula shows
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(out, safe_serialization=True)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet[:256])}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(str(out / "tokenizer.json"))
    return out


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """tiny(name, arch=..., **config) -> folder of that model, built once per session and name."""
    built: dict[str, Path] = {}

    def get(name: str, arch: str = "llama", **overrides) -> Path:
        if name not in built:
            built[name] = build_tiny(tmp_path_factory.mktemp(name), arch, **overrides)
        return built[name]

    return get


def hf_model(path: Path):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def engine_matches_transformers(lab):
    """engine_matches_transformers(path, prompt, new_tokens, ...): the engine on your modules vs transformers."""
    return lambda *args, **kwargs: _check_logits(lab, *args, **kwargs)


def _check_logits(lab, path: Path, prompt: list[int], new_tokens: int, block_size: int = 4,
                 max_batch_tokens: int = 512) -> None:
    """Run the engine on the lab's modules and compare every step's logits with transformers."""
    from minfer import LLM, SamplingParams
    from minfer_course.spy import record_logits

    hf = hf_model(path)
    llm = LLM(str(path), kv_cache_mb=16, block_size=block_size, max_batch_tokens=max_batch_tokens, max_running=4,
              labs={"lab3": lab})
    seen = record_logits(llm)
    out = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=new_tokens, ignore_eos=True))[0]
    sampled = [s for s in seen if s.shape[0] == 1]
    assert len(sampled) == new_tokens
    ids = list(prompt)
    for step, ours in enumerate(sampled):
        with torch.no_grad():
            ref = hf(torch.tensor([ids])).logits[0, -1].float()
        torch.testing.assert_close(ours[0], ref, atol=1e-4, rtol=1e-4,
                                   msg=lambda m: f"logits differ from transformers at step {step} (0 = prefill): {m}")
        ids.append(out.token_ids[step])
