"""The timeline profiler: traces are valid Chrome JSON and their totals add up."""
from __future__ import annotations

import json

import pytest

from minfer import LLM, SamplingParams
from minfer.diagnostics.timeline import Timeline

OPS = {"attn_norm", "qkv_proj", "rope", "attention", "o_proj", "mlp_norm", "mlp"}


@pytest.fixture(scope="module")
def traced(tiny_dir):
    llm = LLM(str(tiny_dir("llama")), kv_cache_mb=8, block_size=4, max_batch_tokens=16, max_running=4)
    prompts = [[(i * 7 + j) % 256 for j in range(n)] for i, n in enumerate([5, 23, 11])]
    with llm.tracing() as tl:
        outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=6, ignore_eos=True))
    assert llm.timeline is None and llm.model.timeline is None, "tracing() detaches the timeline afterwards"
    return llm, tl, outs


def test_every_step_has_its_phases_and_every_layer_its_operators(traced):
    llm, tl, outs = traced
    steps = tl.steps()
    assert len(steps) >= 6  # 6 tokens each, prompts chunked by the 16-token budget
    for step in steps[:3]:
        names = [s.name for s in tl.spans if s.step == step.step]
        for phase in ("schedule", "prepare", "forward", "sample", "output"):
            assert names.count(phase) == 1, (phase, names)
        for op in OPS:
            assert names.count(op) == llm.config.num_layers, op


def test_totals_add_up(traced):
    _, tl, _ = traced
    for step in tl.steps():
        phases = tl.totals(depth=1, step=step.step)
        ops = tl.totals(depth=2, step=step.step)
        assert sum(phases.values()) <= step.dur_ns / 1e9 + 1e-9, "phases nest inside their step"
        assert sum(ops.values()) <= phases["forward"] + 1e-9, "operators nest inside the forward pass"
        assert sum(phases.values()) > 0.5 * step.dur_ns / 1e9, "the phases account for most of the step"
    assert sum(tl.totals(depth=0).values()) == pytest.approx(sum(s.dur_ns for s in tl.steps()) / 1e9)


def test_chrome_trace_is_valid_and_nested(traced, tmp_path):
    _, tl, _ = traced
    path = tl.save_chrome(tmp_path / "trace.json")
    data = json.loads(path.read_text())  # what Perfetto's and chrome://tracing's JSON importers read
    events = data["traceEvents"]
    assert len(events) == len(tl.spans) and not list(tmp_path.glob("*.tmp"))
    for e in events:
        assert e["ph"] == "X" and e["dur"] >= 0 and isinstance(e["ts"], float) and {"pid", "tid", "name"} <= set(e)
    # complete events on one thread must nest: each starts and ends inside any event it overlaps
    stack: list[tuple[float, float]] = []
    for e in sorted(events, key=lambda e: (e["ts"], -e["dur"])):
        while stack and e["ts"] >= stack[-1][1]:
            stack.pop()
        if stack:
            assert e["ts"] + e["dur"] <= stack[-1][1] + 1e-3, e
        stack.append((e["ts"], e["ts"] + e["dur"]))


def test_plot_step_draws_and_empty_timeline_explains(traced):
    import matplotlib

    matplotlib.use("Agg")
    _, tl, _ = traced
    ax = tl.plot_step()
    assert ax.patches and "ms" in ax.get_title()
    with pytest.raises(ValueError, match="no complete step"):
        Timeline().plot_step()


def test_tracing_does_not_change_the_tokens(traced):
    llm, _, outs = traced
    prompts = [[(i * 7 + j) % 256 for j in range(n)] for i, n in enumerate([5, 23, 11])]
    again = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=6, ignore_eos=True))
    assert [o.token_ids for o in again] == [o.token_ids for o in outs]


def test_generate_trace_writes_a_chrome_trace(tiny_dir, tmp_path, capsys):
    from minfer.cli import main

    out = tmp_path / "t.json"
    assert main(["generate", "--model", str(tiny_dir("llama")), "--raw", "--max-tokens", "3", "--trace", str(out), "hi"]) == 0
    err = capsys.readouterr().err
    assert f"trace: {out}" in err and "attention" in err
    names = {e["name"] for e in json.loads(out.read_text())["traceEvents"]}
    assert {"step", "forward", "attention", "mlp"} <= names


def test_memory_probe_tracks_kv_and_workspace_step_by_step(tiny_dir):
    llm = LLM(str(tiny_dir("llama")), kv_cache_mb=8, block_size=4, max_batch_tokens=16, max_running=4)
    with llm.tracing(memory=True) as tl:
        llm.generate([[5] * 30], SamplingParams(temperature=0, max_tokens=8, ignore_eos=True))
    kv = [s.memory["kv"] for s in tl.steps()]
    per_block = llm.kv.block_bytes
    # 30 prompt tokens in chunks of 16 and 14, then one token per step (K/V of tokens 31 ... 36 kept;
    # the step that computes token 37 finishes the request, which hands every block back)
    assert [b // per_block for b in kv] == [4, 8, 8, 8, 9, 9, 9, 9, 0], kv
    assert all(s.memory["workspace"] > 0 for s in tl.spans if s.depth == 2), "buffers are live during the operators"
    assert tl.memory_by_op()["attention"] >= max(kv)
    counters = [e for e in tl.chrome_events() if e["ph"] == "C"]
    assert len(counters) == len(tl.steps()) and counters[-1]["args"]["kv"] == pytest.approx(kv[-1] / 2**20)
    import matplotlib

    matplotlib.use("Agg")
    assert tl.plot_memory().collections


def test_hardware_monitor_samples_cpu_and_memory():
    import torch

    from minfer.diagnostics.hardware import HardwareMonitor

    with HardwareMonitor(interval=0.02) as hw:
        a = torch.randn(512, 512)
        for _ in range(200):
            a = torch.tanh(a @ a)
    assert len(hw.samples) >= 3
    assert max(s.cpu_percent for s in hw.samples) > 20, "a busy matmul loop shows as CPU use"
    assert all(s.rss_bytes > 10 * 2**20 for s in hw.samples)
    assert "CPU" in hw.summary() and "resident" in hw.summary()


def test_hardware_monitor_reports_a_workload_shorter_than_one_interval():
    from minfer.diagnostics.hardware import HardwareMonitor

    with HardwareMonitor(interval=60) as hw:
        sum(i * i for i in range(200_000))
    assert len(hw.samples) == 1, "the partial interval at the end is sampled"
    assert hw.summary().startswith("hardware: CPU")
