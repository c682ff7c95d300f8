"""Lab 3's pictures of the model's math, computed by the reference's own functions."""
from __future__ import annotations

import torch
from matplotlib.figure import Figure

from minfer.core import SamplingParams
from minfer.graph.attention import causal_bias, group_heads
from minfer.output.sampling import sampling_probs

from .run import BLOCK_SIZE, EngineRun

CACHED, NEW = 8, 6  # a chunk of 6 new tokens after 8 tokens already in the KV cache


def causal_mask() -> Figure:
    bias = causal_bias(CACHED, CACHED + NEW)  # [NEW, CACHED + NEW]: 0 visible, -inf hidden
    fig = Figure(figsize=(9, 4.6))
    ax = fig.add_subplot()
    ax.imshow(torch.isfinite(bias).float().numpy(), cmap="Blues", vmin=-0.3, vmax=1.3, aspect="equal")
    for i in range(NEW):
        for j in range(CACHED + NEW):
            ax.text(j, i, "0" if torch.isfinite(bias[i, j]) else "-inf", ha="center", va="center", fontsize=8,
                    color="white" if torch.isfinite(bias[i, j]) else "#888")
    for b in range(BLOCK_SIZE, CACHED + NEW, BLOCK_SIZE):
        ax.axvline(b - 0.5, color="#b3412a", lw=1, ls=":")
    ax.axvline(CACHED - 0.5, color="#b3412a", lw=2.5)
    ax.set_xticks(range(CACHED + NEW), [str(j) for j in range(CACHED + NEW)])
    ax.set_yticks(range(NEW), [str(CACHED + i) for i in range(NEW)])
    ax.set_xlabel(f"key position (dotted: KV blocks of {BLOCK_SIZE}; left of the thick line: cached prefix)")
    ax.set_ylabel("query position")
    ax.set_title(f"causal_bias(start={CACHED}, end={CACHED + NEW}): query p sees keys 0 … p", fontsize=11)
    fig.tight_layout()
    return fig


def gqa(run: EngineRun) -> Figure:
    cfg = run.config
    heads, kv_heads = cfg.num_heads, cfg.num_kv_heads
    labels = torch.arange(heads, dtype=torch.float32).view(1, 1, heads, 1)
    served = group_heads(labels, kv_heads)[:, 0, :, 0].long()  # [KVH, G]: the query heads each KV head serves
    fig = Figure(figsize=(12, 3.8))
    for ax, title, kv_of in (
        (fig.add_subplot(1, 2, 1), f"right: head h reads KV head h // G (G = {heads // kv_heads})",
         {int(h): j for j in range(kv_heads) for h in served[j]}),
        (fig.add_subplot(1, 2, 2), "wrong (a known mistake): h % KVH", {h: h % kv_heads for h in range(heads)}),
    ):
        for h in range(heads):
            j = kv_of[h]
            x_kv = (j + 0.5) * heads / kv_heads - 0.5
            ax.plot([h, x_kv], [1, 0], color=f"C{j}", lw=1.5)
            ax.text(h, 1.08, f"q{h}", ha="center", fontsize=9, color=f"C{j}", weight="bold")
        for j in range(kv_heads):
            ax.text((j + 0.5) * heads / kv_heads - 0.5, -0.2, f"kv{j}", ha="center", fontsize=10, color=f"C{j}",
                    weight="bold")
        ax.set(xlim=(-1, heads), ylim=(-0.35, 1.25), title=title)
        ax.axis("off")
    fig.suptitle(f"{run.model}: {heads} query heads share {kv_heads} KV heads", fontsize=11)
    fig.tight_layout()
    return fig


def sampling(run: EngineRun) -> Figure:
    logits = run.first_logits
    settings = {"T = 1": SamplingParams(temperature=1.0), "T = 0.6": SamplingParams(temperature=0.6),
                "T = 1, top-k 5": SamplingParams(temperature=1.0, top_k=5),
                "T = 1, top-p 0.8": SamplingParams(temperature=1.0, top_p=0.8)}
    probs = {name: sampling_probs(logits[None], p)[0] for name, p in settings.items()}
    top = torch.argsort(probs["T = 1"], descending=True)[:12]
    fig = Figure(figsize=(12, 3.7))
    ax = fig.add_subplot()
    width = 0.8 / len(probs)
    for k, (name, p) in enumerate(probs.items()):
        ax.bar([i + (k - 1.5) * width for i in range(len(top))], p[top].numpy(), width, label=name)
    ax.set_xticks(range(len(top)), [repr(run.decode([int(t)])) for t in top], rotation=30, fontsize=9)
    ax.set_ylabel("probability")
    ax.set_title(f"{run.model}: the next token after request A's prompt, under four sampling settings", fontsize=11)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig
