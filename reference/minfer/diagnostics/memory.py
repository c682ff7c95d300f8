"""Peak memory of a workload, tier by tier, against the theoretical minimum.

Measured: the weight tier, the most KV blocks referenced at once, the workspace allocator's peak,
and the logits. Minimum: the parameters themselves, K/V for exactly the tokens held at the
busiest moment, and the smallest activation set a layer can run in (the residual stream plus the
widest intermediate, gate and up together) for the largest step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..kernels import Int8Weight


@dataclass
class MemoryReport:
    weights: int
    kv: int
    workspace: int
    logits: int
    minimum: int

    @property
    def peak(self) -> int:
        return self.weights + self.kv + self.workspace + self.logits

    @property
    def ratio(self) -> float:
        return self.peak / self.minimum

    def table(self) -> str:
        mb = lambda n: f"{n / 2**20:9.1f} MiB"  # noqa: E731
        rows = [("weights", self.weights), ("KV cache (peak blocks)", self.kv), ("workspace (allocator peak)", self.workspace),
                ("logits", self.logits), ("peak, all tiers", self.peak), ("theoretical minimum", self.minimum)]
        return "\n".join(f"{k:28}{mb(v)}" for k, v in rows) + f"\n{'ratio':28}{self.ratio:9.3f}x"


def measure(llm, prompts, params) -> MemoryReport:
    """Run `prompts` on a fresh engine `llm` and report its peak memory by tier."""
    cfg, item = llm.config, llm.dtype.itemsize
    llm.kv.peak_blocks = 0
    llm.allocator.peak = 0
    busiest_tokens = largest_step = 0
    ids = [llm.add_request(p, sp) for p, sp in zip(prompts, params)]
    while llm.has_unfinished():
        finished = [r for r in llm.step() if r.finished]
        largest_step = max(largest_step, llm.workspace.shape_key or 0)  # tokens in the step just run
        held = sum(r.num_computed for r in llm.scheduler.running) + sum(r.num_computed for r in finished)
        busiest_tokens = max(busiest_tokens, held)
    for i in ids:
        llm.pop_output(i)
    params_bytes = sum(p.numel() for p in _parameters(llm.model)) * item
    act = largest_step * (cfg.hidden_size + 2 * cfg.intermediate_size) * item
    minimum = params_bytes + busiest_tokens * cfg.kv_bytes_per_token(item) + act
    return MemoryReport(
        weights=llm.model.weight_bytes,
        kv=llm.kv.peak_blocks * llm.kv.block_bytes,
        workspace=llm.allocator.stats().peak,
        logits=len(prompts) * cfg.vocab_size * 4,
        minimum=minimum,
    )


def _parameters(model):
    # each weight once, keyed by storage address: a tied head (or its transposed view) is the
    # embedding's memory; a prepacked weight (no address) is its own copy; an int8 one counts its
    # int8 values, one per parameter
    key = lambda t: id(t) if t.is_mkldnn else t.data_ptr()  # noqa: E731
    weights = [model.embedding, model.final_norm, model.lm_head]
    weights += [t for layer in model.layers for t in vars(layer).values() if t is not None]
    weights = [t.q if isinstance(t, Int8Weight) else t for t in weights]
    return {key(t): t for t in weights}.values()


def memory_probe(llm, weights: bool = True) -> Callable[[], dict[str, int]]:
    """A probe for `Timeline`: bytes held right now by each tier the engine manages itself.

    kv: blocks referenced by requests; workspace: the step allocator's live bytes; scratch: the
    attention gather buffer; weights (constant) only when asked, since it dwarfs the rest here.
    """
    pool, kv, alloc = llm.kv.pool, llm.kv, llm.allocator

    def probe() -> dict[str, int]:
        out = {"weights": llm.model.weight_bytes} if weights else {}
        out.update(kv=(pool.num_blocks - pool.num_free) * kv.block_bytes, workspace=alloc.stats().allocated,
                   scratch=kv.scratch_bytes)
        return out

    return probe
