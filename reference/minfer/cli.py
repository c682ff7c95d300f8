"""`minfer ...`: the command line. Each subcommand is a thin layer over the Python API."""
from __future__ import annotations

import argparse
import sys


def engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m", help="builtin name or a Hugging Face model folder")
    p.add_argument("--lab", action="append", default=[], metavar="LAB=FOLDER",
                   help="run a lab's code inside the engine, e.g. lab1=labs/lab1_allocator (repeatable)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--quantize", default=None, choices=["int8"],
                   help="int8 weights for decode steps, one scale per output row (CPU, with --dtype bfloat16)")


def kernel_args(p: argparse.ArgumentParser) -> None:
    from .kernels import MATMULS

    p.add_argument("--matmul", default="torch", choices=MATMULS,
                   help="kernel of the linear layers; numba-* are lab 2's (simulated on a CPU: tiny models only)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--prepack", dest="prepack", action="store_true", default=None,
                   help="prepack the weights (CPU: float32 into matmul.c's panels, else for oneDNN): faster; the "
                        "default, except for one float32 stream without matmul.c, where plain weights decode faster")
    g.add_argument("--no-prepack", dest="prepack", action="store_false",
                   help="keep the weights plain: less memory for a tied head, slower products")


def _sampling_args(p: argparse.ArgumentParser, max_tokens: int) -> None:
    p.add_argument("--max-tokens", type=int, default=max_tokens)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=-1)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--ignore-eos", action="store_true")


def _params(a: argparse.Namespace):
    from .core import SamplingParams

    return SamplingParams(temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, seed=a.seed,
                          max_tokens=a.max_tokens, stop=a.stop, ignore_eos=a.ignore_eos)


def _prepack(a: argparse.Namespace, one_stream: bool) -> bool:
    """--prepack / --no-prepack, else the faster layout: prepacked (see minfer.kernels.prepack), except for
    one float32 stream where matmul.c's panels cannot run (no numba or no C compiler): one row at a time,
    MKL streams plain weights faster than oneDNN's layout (SmolLM2: 47 against 36 tokens/s; panels: 62)."""
    chosen = getattr(a, "prepack", None)
    if chosen is not None or not one_stream or a.dtype != "float32":
        return True if chosen is None else chosen
    import torch

    from .hal import get_device
    from .kernels import can_compile, native

    return can_compile(get_device(a.device), torch.float32) and native.address("minfer_matmul_f32") != 0


def build_llm(a: argparse.Namespace, one_stream: bool = False):
    from minfer_course.labs import parse_lab_args
    from .engine import LLM

    matmul, labs = getattr(a, "matmul", "torch"), parse_lab_args(a.lab)
    if matmul != "torch" and not a.device.startswith("cuda"):
        print("minfer: note: numba kernels run in the CUDA simulator on a CPU, about a millisecond per GPU "
              "thread: fine for a tiny model, hours for SmolLM2", file=sys.stderr)
    if matmul == "torch" and "lab2" in labs:
        print("minfer: note: lab2's kernels run only with --matmul numba-naive|numba-tiled|numba-regblock",
              file=sys.stderr)
    return LLM(a.model, device=a.device, dtype=a.dtype, matmul=matmul, labs=labs,
               prepack_weights=_prepack(a, one_stream), quantize=getattr(a, "quantize", None))


def cmd_generate(a: argparse.Namespace) -> int:
    from contextlib import nullcontext

    params = _params(a)
    llm = build_llm(a, one_stream=len(a.prompt) == 1)
    use_template = llm.tokenizer.chat_template is not None and not a.raw
    prompts = [llm.chat_prompt([{"role": "user", "content": p}]) if use_template else p for p in a.prompt]
    with llm.tracing() if a.trace else nullcontext() as timeline:
        if len(prompts) == 1:  # one prompt: stream it, as a person watching would want
            for delta in llm.stream(prompts[0], params):
                print(delta, end="", flush=True)
            print()
        else:
            for prompt, out in zip(a.prompt, llm.generate(prompts, params)):
                print(f"### {prompt}\n{out.text}\n")
    if a.trace:
        timeline.save_chrome(a.trace)
        ops = sorted(timeline.totals(depth=2).items(), key=lambda kv: -kv[1])
        total = sum(s.dur_ns for s in timeline.steps()) / 1e9
        print(f"trace: {a.trace} ({len(timeline.steps())} steps, {total:.2f} s; open it in ui.perfetto.dev)", file=sys.stderr)
        print("  " + ", ".join(f"{name} {sec / total:.0%}" for name, sec in ops[:6]), file=sys.stderr)
    return 0


def cmd_chat(a: argparse.Namespace) -> int:
    params = _params(a)
    llm = build_llm(a, one_stream=True)
    messages: list[dict[str, str]] = [{"role": "system", "content": a.system}] if a.system else []
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"minfer chat with {a.model} — /reset clears the conversation, /exit or Ctrl-D quits")
    while True:
        try:
            line = input("you> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if line.strip() in ("/exit", "/quit"):
            return 0
        if line.strip() == "/reset":
            messages = messages[:1] if a.system else []
            continue
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        print("assistant> " if interactive else "", end="", flush=True)
        reply = ""
        for delta in llm.stream(llm.chat_prompt(messages), params):
            reply += delta
            print(delta, end="", flush=True)
        print()
        messages.append({"role": "assistant", "content": reply})


def cmd_model(a: argparse.Namespace) -> int:
    from pathlib import Path

    from .loader import store

    if a.action == "list":
        for name, desc, installed in store.list_models():
            print(f"{name:16} {'installed' if installed else 'not pulled':11} {desc}")
        print(f"store: {store.store_root()}")
    elif a.action == "pull":
        print(store.pull(a.args[0] if a.args else "smollm2-135m", force=a.force))
    elif a.action == "convert":
        if len(a.args) != 2:
            raise ValueError("usage: minfer model convert GGUF_FILE OUT_FOLDER")
        print(store.convert(Path(a.args[0]), Path(a.args[1])))
    return 0


def server_module(module: str):
    """minfer.server's `module` (or the benchmark that loads it); their dependencies are an extra, so say how to get them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise RuntimeError(f"the server needs extra packages ({e.name} is missing): pip install 'minfer[serve]'") from e


def cmd_serve(a: argparse.Namespace) -> int:
    runner = server_module("minfer.server.runner")  # before loading the model: a missing package should fail at once
    runner.serve(build_llm(a), a.served_name, a.host, a.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minfer", description="A small, readable LLM inference engine.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="generate text for one or more prompts")
    p.add_argument("prompt", nargs="+", help="prompt text (several prompts run as one batch)")
    p.add_argument("--raw", action="store_true", help="do not wrap prompts in the model's chat template")
    p.add_argument("--trace", metavar="OUT.json", help="time every step and operator; write a Chrome trace (Perfetto)")
    engine_args(p)
    kernel_args(p)
    _sampling_args(p, 64)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("chat", help="interactive chat; replies stream as they are generated")
    p.add_argument("--system", default=None, help="system prompt")
    engine_args(p)
    kernel_args(p)
    _sampling_args(p, 256)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("model", help="the model store: pull | list | convert")
    p.add_argument("action", choices=["pull", "list", "convert"])
    p.add_argument("args", nargs="*", help="pull: [NAME] (default smollm2-135m); convert: GGUF_FILE OUT_FOLDER")
    p.add_argument("--force", action="store_true", help="pull again even if present")
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("serve", help="an OpenAI-compatible HTTP server (pip install 'minfer[serve]')")
    engine_args(p)
    kernel_args(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-name", default=None, help="the model's id in the API (default: its folder's name)")
    p.set_defaults(func=cmd_serve)

    from minfer_bench.cli import register as register_bench
    from minfer_course.commands import register as register_course
    from minfer_course.grading.cli import register as register_grade

    register_bench(sub)  # `minfer bench ...`: minfer against transformers, and the bench modes
    register_course(sub)  # `minfer lab ...`, `minfer slides ...`
    register_grade(sub)  # `minfer grade ...`: the instructor's nbgrader workflow
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError, MemoryError) as e:
        print(f"minfer: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
