"""`minfer bench` runs end to end and prints its table (speed itself is never asserted)."""
from __future__ import annotations

from minfer.cli import main


def test_bench_prints_ratios(tiny_dir, capsys):
    code = main(["bench", "--model", str(tiny_dir("llama")), "--requests", "3", "--decode-tokens", "24",
                 "--prompt-tokens", "8"])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| ") and "metric" not in line]
    assert len(rows) == 3, out
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[2]) > 0 and cells[3].endswith("x"), row


def test_bench_profile_and_bandwidth_line(tiny_dir, tmp_path, capsys):
    import json

    trace = tmp_path / "bench.json"
    code = main(["bench", "--model", str(tiny_dir("llama")), "--no-hf", "--skip", "serve", "--decode-tokens", "8",
                 "--prompt-tokens", "8", "--profile", str(trace)])
    out = capsys.readouterr().out
    assert code == 0
    assert "of this machine's" in out and "GB/s copy bandwidth" in out
    assert "profile: 8 requests x 32 tokens" in out and "attention" in out and "hardware: CPU" in out
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e["ph"] == "C" for e in events) and any(e["name"] == "mlp" for e in events)
