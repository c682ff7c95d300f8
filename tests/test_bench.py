"""`minfer bench` runs end to end and prints its table (speed itself is never asserted)."""
from __future__ import annotations

from minfer.cli import main


def test_bench_prints_ratios(tiny_dir, capsys):
    code = main(["bench", "--model", str(tiny_dir("llama")), "--requests", "3", "--decode-tokens", "24",
                 "--prompt-tokens", "8", "--long-prompt-tokens", "200"])
    out = capsys.readouterr().out
    assert code == 0
    table, rest = out.split("\n| optimisation (same run", 1)
    switches, fast = rest.split("\nfaster dtype path")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "metric" not in line]
    assert len(rows) == 4, out
    assert "200-token prompt" in rows[2]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[2]) > 0 and cells[3].endswith("x"), row
    rows = [line for line in switches.splitlines() if line.startswith("| ")]
    assert len(rows) == 8 and "prefix caching" in rows[0] and "fused SDPA prefill" in rows[1], switches
    assert "paged prefill kernel (vs SDPA)" in rows[2], switches  # decode_attention.c, built by CI's gcc
    assert "prepacked weights" in rows[3] and "batch-1 decode" in rows[4], switches  # float32 on a CPU
    # numba is installed with the test extras
    assert "compiled decode kernel" in rows[5] and "C decode attention (vs numba's)" in rows[6], switches
    assert "compiled RMSNorm/RoPE/SwiGLU" in rows[7], switches
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[2]) > 0 and cells[3].endswith("x"), row
    # the same run adds the faster dtype path, against transformers in bfloat16, with its accuracy
    assert fast.startswith(": ") and "bfloat16 with int8 weights (decode)" in fast.splitlines()[0]
    rows = [line for line in fast.split("| optimisation")[0].splitlines()[3:] if line.startswith("| ")]
    assert len(rows) == 2 and "batch-1 decode" in rows[0] and "serving 3 requests" in rows[1], fast
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[2]) > 0 and cells[3].endswith("x"), row
    rows = [line for line in fast.split("| optimisation (same run")[1].splitlines() if line.startswith("| ")]
    assert len(rows) == 3 and "layers in one compiled call" in rows[0], fast
    assert "compiled RMSNorm" in rows[1] and "compiled int8 product" in rows[2], fast
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[2]) > 0 and cells[3].endswith("x"), row
    assert "GB/s copy bandwidth" in fast and "accuracy of torch.bfloat16 with int8 weights against float32" in fast
    # under each serving row, how close it came to the machine's bound
    for part in (table, fast):
        line = next(l for l in part.splitlines() if l.startswith("serving computes"))
        assert "% of the bound's speed" in line and "the bound allows at most" in line, line


def test_serving_work_counts_each_product_attention_and_kv_read_once():
    from minfer.loader.config import ModelConfig
    from minfer_bench.engine import serving_work

    cfg = ModelConfig("llama", vocab_size=5, hidden_size=4, intermediate_size=3, num_layers=2, num_heads=2,
                      num_kv_heads=1, head_dim=2, rms_norm_eps=1e-5, rope_theta=1e4, max_position=64,
                      tie_word_embeddings=True, qkv_bias=False, qk_norm=False, eos_token_ids=(0,), bos_token_id=None)
    # one request, a 2-token prompt and 2 new tokens: positions 0, 1 (prefill) and 2 (the first new
    # token fed back) run through the model; the second new token is never fed back.
    # Projections per token and layer: qkv 4x(4+2+2) + o 4x4 + gate/up 4x6 + down 3x4 = 84 weights.
    projections = 3 * 2 * (2 * 84)
    head = 2 * (2 * 4 * 5)  # each new token's logits
    attention = 2 * 4 * 4 * (1 + 2 + 3)  # per layer: 4 FLOPs x 4 query values x (keys seen by positions 0, 1, 2)
    kv_read = 3 * 2 * 2 * 2 * 4  # position 2 reads 3 tokens' K and V, 2 values each, 2 layers, float32
    assert serving_work(cfg, [2], [2], 4) == (projections + head + attention, kv_read)
    # two such requests in bfloat16: twice the FLOPs, twice the tokens read at half the bytes each
    assert serving_work(cfg, [2, 2], [2, 2], 2) == (2 * (projections + head + attention), 2 * (kv_read // 2))


def test_bench_profile_and_bandwidth_line(tiny_dir, tmp_path, capsys):
    import json

    trace = tmp_path / "bench.json"
    code = main(["bench", "--model", str(tiny_dir("llama")), "--no-hf", "--skip", "serve", "--skip", "switches", "--decode-tokens", "8",
                 "--long-prompt-tokens", "50",
                 "--prompt-tokens", "8", "--profile", str(trace)])
    out = capsys.readouterr().out
    assert code == 0
    assert "of this machine's" in out and "GB/s copy bandwidth" in out
    assert "profile: 8 requests x 32 tokens" in out and "attention" in out and "hardware: CPU" in out
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e["ph"] == "C" for e in events) and any(e["name"] == "mlp" for e in events)


def test_bench_sweep_table_and_plot(tiny_dir, tmp_path, capsys):
    plot = tmp_path / "sweep.png"
    code = main(["bench", "--model", str(tiny_dir("llama")), "--no-hf", "--skip", "decode", "--skip", "serve",
                 "--skip", "switches", "--sweep", str(plot)])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| decode") or line.startswith("| prefill")]
    assert [r.split("|")[1].strip() for r in rows] == [
        "decode, batch 1", "decode, batch 4", "decode, batch 16", "decode, batch 64",
        "prefill, 16-token prompt", "prefill, 128-token prompt", "prefill, 511-token prompt"]
    kv = [float(r.split("|")[3]) for r in rows]
    assert kv[0] < kv[1] < kv[2] < kv[3], "more requests hold more KV cache"
    assert plot.stat().st_size > 1000


def test_bench_accuracy_report_for_bf16(tiny_dir, capsys):
    code = main(["bench", "--model", str(tiny_dir("llama")), "--no-hf", "--dtype", "bfloat16", "--skip", "decode",
                 "--skip", "serve", "--skip", "switches", "--accuracy"])
    out = capsys.readouterr().out
    assert code == 0
    line = next(l for l in out.splitlines() if l.startswith("accuracy of torch.bfloat16 against float32"))
    agree, total = map(int, line.split("divergence ")[1].split(" ")[0].split("/"))
    assert total == 8 * 64 and 0 < agree <= total
    assert "perplexity on a fixed" in line


def test_bench_int8_weights_switch_and_accuracy(tiny_dir, capsys):
    code = main(["bench", "--model", str(tiny_dir("llama")), "--no-hf", "--dtype", "bfloat16", "--quantize", "int8",
                 "--skip", "serve", "--decode-tokens", "8", "--long-prompt-tokens", "64", "--accuracy"])
    out = capsys.readouterr().out
    assert code == 0
    assert "bfloat16, int8 weights (decode)" in out
    switches = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| int8 weights")]
    assert switches == ["int8 weights: batch-1 decode of 32 tokens, s", "int8 weights: 16 requests x 32 tokens, s"]
    assert "accuracy of torch.bfloat16 with int8 weights against float32" in out


def test_float32_panels_switch_their_fused_layers_on_one_request_and_on_a_batch(tiny_dir):
    """llama-untied's projections are all matmul.c panels: float32 decode steps of any size run fused."""
    from minfer import LLM
    from minfer_bench.engine import compiled_switches

    llm = LLM(str(tiny_dir("llama-untied")), kv_cache_mb=2)
    if llm.model.decode_layers is None:
        import pytest

        pytest.skip("no C compiler built matmul.c here")
    rows = compiled_switches(llm, list(range(3, 60)))
    assert [r.name.split(":")[0] for r in rows[:2]] == ["layers in one compiled call"] * 2
    assert "batch-1" in rows[0].name and "16 requests" in rows[1].name and all(r.on > 0 and r.off > 0 for r in rows)
    assert llm.model.decode_layers is not None  # switched back on
