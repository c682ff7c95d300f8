"""The `minfer` command. Most checks call `minfer.cli.main([...])` in-process on a tiny random
Llama (byte tokenizer, no chat template unless a test adds one); the two checks on the real model
run the command in a subprocess, as a user would, against the store the session already pulled."""
from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minfer import LLM, SamplingParams
from minfer.cli import main

# a small chat template for the tiny model: every message on its own line, then the reply's cue
TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.fixture(scope="module")
def tiny(tiny_dir) -> Path:
    return tiny_dir("llama")


@pytest.fixture(scope="module")
def tiny_chat(tiny, tmp_path_factory) -> Path:
    """The tiny model with a chat template, so `minfer chat` can run on it."""
    folder = tmp_path_factory.mktemp("tiny-chat") / "model"
    shutil.copytree(tiny, folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    return folder


@pytest.fixture
def isolated(monkeypatch, tmp_path) -> Path:
    """An empty store and working folder, so nothing the CLI does reaches the real ones."""
    monkeypatch.setenv("MINFER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINFER_WHEEL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr); argparse's own exits count as exit codes."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def expected_text(model: Path, prompt: str, max_tokens: int) -> str:
    """What the Python API gives for the CLI's defaults (greedy)."""
    llm = LLM(str(model), kv_cache_mb=4)
    return llm.generate([prompt], SamplingParams(temperature=0.0, max_tokens=max_tokens))[0].text


# ---------------------------------------------------------------------------------------------
# --help


@pytest.mark.parametrize(
    "argv, mentions",
    [
        ([], ["generate", "chat", "model", "bench"]),
        (["generate"], ["--raw", "--model", "--device", "--dtype", "--max-tokens", "--temperature", "--top-k",
                        "--top-p", "--seed", "--stop", "--ignore-eos"]),
        (["chat"], ["--system", "--model", "--max-tokens", "--temperature"]),
        (["model"], ["pull", "list", "convert", "--force"]),
        (["bench"], ["--model", "--device", "--decode-tokens", "--requests", "serve", "matmul"]),
        (["bench", "matmul"], ["--impl", "--sizes", "--kernels", "--dtype"]),
    ],
    ids=["minfer", "generate", "chat", "model", "bench", "bench-matmul"],
)
def test_help(capsys, argv, mentions):
    code, out, err = run(argv + ["--help"], capsys)
    assert code == 0, err
    assert out.startswith("usage: minfer")
    for word in mentions:
        assert word in out, f"`minfer {' '.join(argv)} --help` does not mention {word}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU case is tests/test_kernels.py's")
def test_bench_matmul_without_a_gpu_says_why_it_measures_nothing(capsys):
    code, out, err = run(["bench", "matmul", "--impl", "student"], capsys)
    assert code == 0, err
    assert "no CUDA GPU" in out and "simulator" in out


def test_bench_matmul_rejects_an_unknown_kernel_naming_the_form(capsys):
    code, out, err = run(["bench", "matmul", "--kernels", "tiled:16", "blocked:16x4"], capsys)
    assert code == 2
    assert "'blocked:16x4'" in err and "KIND[:TILE[xRB]]" in err


def test_no_subcommand_is_a_usage_error(capsys):
    code, out, err = run([], capsys)
    assert code == 2
    assert "usage: minfer" in err and "command" in err


# ---------------------------------------------------------------------------------------------
# generate


def test_generate_one_prompt_streams_the_text(tiny, capsys):
    code, out, err = run(["generate", "--model", str(tiny), "--raw", "--max-tokens", "5", "abc"], capsys)
    assert code == 0, err
    text = expected_text(tiny, "abc", 5)
    assert text
    assert out == text + "\n"


def test_generate_two_prompts_print_both_with_headers(tiny, capsys):
    code, out, err = run(["generate", "--model", str(tiny), "--raw", "--max-tokens", "5", "abc", "xyz"], capsys)
    assert code == 0, err
    assert out == f"### abc\n{expected_text(tiny, 'abc', 5)}\n\n### xyz\n{expected_text(tiny, 'xyz', 5)}\n\n"


def test_generate_unknown_model(isolated, capsys):
    code, out, err = run(["generate", "--model", "nonexistent", "x"], capsys)
    assert code == 2
    assert err.startswith("minfer: error: ") and "'nonexistent'" in err and "smollm2-135m" in err
    assert out == ""
    assert not (isolated / "models").exists()


@pytest.mark.parametrize(
    "flags, field",
    [(["--temperature", "-1"], "temperature"), (["--max-tokens", "0"], "max_tokens"),
     (["--top-p", "0"], "top_p"), (["--top-k", "-5"], "top_k")],
)
def test_generate_bad_sampling_flag(isolated, capsys, flags, field):
    # checked before any model is loaded (the default model is not even looked up)
    code, out, err = run(["generate", *flags, "x"], capsys)
    assert code == 2
    assert err.startswith(f"minfer: error: SamplingParams.{field}=")
    assert not isolated.exists()


def test_generate_prompt_longer_than_the_context_window(tiny, capsys):
    code, out, err = run(["generate", "--model", str(tiny), "--raw", "x" * 600], capsys)
    assert code == 2
    assert err.startswith("minfer: error: the prompt has 600 tokens but the context window is 512")


def test_generate_bad_device_and_dtype(tiny, capsys):
    code, _, err = run(["generate", "--model", str(tiny), "--device", "tpu", "x"], capsys)
    assert code == 2 and err.startswith("minfer: error: unknown device 'tpu'")
    code, _, err = run(["generate", "--model", str(tiny), "--dtype", "int8", "x"], capsys)
    assert code == 2 and "invalid choice: 'int8'" in err  # argparse refuses it


# ---------------------------------------------------------------------------------------------
# chat (stdin is not a terminal here, so there is no banner and no prompts)


@pytest.fixture
def chat_log(monkeypatch) -> list[list[dict[str, str]]]:
    """Every conversation the CLI asks the model to continue, as it was at that moment."""
    log: list[list[dict[str, str]]] = []
    original = LLM.chat_prompt

    def recording(self, messages):
        log.append(copy.deepcopy(messages))
        return original(self, messages)

    monkeypatch.setattr(LLM, "chat_prompt", recording)
    return log


def test_chat_replies_then_exits(tiny_chat, capsys, monkeypatch, chat_log):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi!\n/exit\nnever read\n"))
    code, out, err = run(["chat", "--model", str(tiny_chat), "--max-tokens", "4"], capsys)
    assert code == 0, err
    assert chat_log == [[{"role": "user", "content": "Hi!"}]]
    assert "minfer chat with" not in out  # the banner is for terminals only
    assert out.endswith("\n")


def test_chat_keeps_the_conversation(tiny_chat, capsys, monkeypatch, chat_log):
    monkeypatch.setattr(sys, "stdin", io.StringIO("one\n\n   \n/reset\ntwo\nthree\n"))  # then EOF
    code, out, err = run(["chat", "--model", str(tiny_chat), "--max-tokens", "4", "--system", "be brief"], capsys)
    assert code == 0, err
    system = {"role": "system", "content": "be brief"}
    assert len(chat_log) == 3  # blank lines are skipped, /reset is not a message
    assert chat_log[0] == [system, {"role": "user", "content": "one"}]
    assert chat_log[1] == [system, {"role": "user", "content": "two"}]  # /reset kept only the system prompt
    second, third = chat_log[1], chat_log[2]
    assert third[:2] == second and third[2]["role"] == "assistant" and third[3] == {"role": "user", "content": "three"}
    assert third[2]["content"] in out  # the reply that was printed is the one remembered


def test_chat_without_a_chat_template(tiny, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi!\n"))
    code, out, err = run(["chat", "--model", str(tiny)], capsys)
    assert code == 2
    assert err.startswith("minfer: error: this model has no chat template")


# ---------------------------------------------------------------------------------------------
# model


def test_model_list(isolated, capsys):
    code, out, err = run(["model", "list"], capsys)
    assert code == 0, err
    assert "smollm2-135m" in out and "not pulled" in out
    assert f"store: {isolated}" in out
    # a folder counts as installed only once its completion marker is there
    (isolated / "models" / "smollm2-135m").mkdir(parents=True)
    assert "not pulled" in run(["model", "list"], capsys)[1]
    (isolated / "models" / "smollm2-135m" / ".complete").write_text("")
    code, out, _ = run(["model", "list"], capsys)
    assert code == 0 and "installed" in out and "not pulled" not in out


def test_model_pull_unknown_name(isolated, capsys):
    code, out, err = run(["model", "pull", "no-such-model"], capsys)
    assert code == 2
    assert err.startswith("minfer: error: unknown model 'no-such-model'") and "smollm2-135m" in err
    assert not isolated.exists()


def test_model_bad_action(capsys):
    code, _, err = run(["model", "remove"], capsys)
    assert code == 2 and "invalid choice: 'remove'" in err


def test_model_convert_errors(isolated, tmp_path, capsys):
    code, _, err = run(["model", "convert", "only-one-arg"], capsys)
    assert code == 2 and err.startswith("minfer: error: usage: minfer model convert GGUF_FILE OUT_FOLDER")
    code, _, err = run(["model", "convert", "missing.gguf", "out"], capsys)
    assert code == 2 and err.startswith("minfer: error: no GGUF file at missing.gguf")
    (tmp_path / "garbage.gguf").write_bytes(b"this is not a gguf file" * 10)
    code, _, err = run(["model", "convert", "garbage.gguf", "out"], capsys)
    assert code == 2 and err.startswith("minfer: error: ")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # nothing half-written


def test_model_convert_into_a_non_empty_folder(isolated, tmp_path, capsys):
    (tmp_path / "some.gguf").write_bytes(b"GGUF")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    code, _, err = run(["model", "convert", "some.gguf", "out"], capsys)
    assert code == 2 and err.startswith("minfer: error: ") and "not empty" in err
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------------------
# the real model, as a user runs it (a subprocess each; ~10 s, mostly loading)


def minfer_cmd(args: list[str], smollm2_dir: Path, tmp_path: Path, stdin: str | None = None):
    env = dict(os.environ, MINFER_HOME=str(Path(smollm2_dir).parent.parent))  # the already-pulled store
    env.pop("MINFER_WHEEL_DIR", None)
    return subprocess.run([sys.executable, "-m", "minfer.cli", *args], input=stdin if stdin is not None else "",
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


@pytest.mark.slow
def test_generate_on_the_real_model(smollm2_dir, tmp_path):
    proc = minfer_cmd(["generate", "What is the capital of France?", "--max-tokens", "24"], smollm2_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout
    assert "downloading" not in proc.stderr  # the store was reused


@pytest.mark.slow
def test_chat_on_the_real_model(smollm2_dir, tmp_path):
    proc = minfer_cmd(["chat", "--max-tokens", "16"], smollm2_dir, tmp_path, stdin="What is 2+2?\nAnd 3+3?\n")
    assert proc.returncode == 0, proc.stderr
    replies = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(replies) >= 2, proc.stdout  # one reply per user line (16 tokens of SmolLM2 fit on a line)
    assert "4" in replies[0]
    assert "minfer chat with" not in proc.stdout  # not a terminal: no banner, no prompts


@pytest.mark.parametrize("argv,packed", [
    (["generate", "hi"], None),  # one float32 stream: panels where matmul.c runs, else plain weights (faster than oneDNN's)
    (["generate", "hi", "there"], True),  # a batch: prepacked products are faster
    (["generate", "--dtype", "bfloat16", "hi"], True),  # bfloat16 streams faster prepacked, even one row
    (["generate", "--prepack", "hi"], True),
    (["generate", "--no-prepack", "hi", "there"], False),
])
def test_weight_layout_follows_the_workload(tiny, monkeypatch, capsys, argv, packed):
    if packed is None:
        from minfer.hal import get_device
        from minfer.kernels import can_compile, native

        packed = can_compile(get_device("cpu"), torch.float32) and native.address("minfer_matmul_f32") != 0
    assert _prepack_chosen(tiny, monkeypatch, argv) is packed


def test_one_float32_stream_without_matmul_c_keeps_plain_weights(tiny, monkeypatch):
    """Without matmul.c (no C compiler, say) one float32 stream decodes faster from plain weights than
    from oneDNN's layout; with it, from its panels."""
    from minfer.kernels import native

    monkeypatch.setattr(native, "address", lambda name: 0)
    assert _prepack_chosen(tiny, monkeypatch, ["generate", "hi"]) is False


def _prepack_chosen(model, monkeypatch, argv: list[str]) -> bool:
    """The prepack_weights the CLI gives the engine for `argv` (a `minfer generate` on `model`)."""
    import minfer.engine

    seen = {}

    class Spy(minfer.engine.LLM):
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(minfer.engine, "LLM", Spy)
    assert main(argv[:1] + ["--model", str(model), "--max-tokens", "2"] + argv[1:]) == 0
    return seen["prepack_weights"]
