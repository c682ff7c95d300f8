"""Pictures of time, from the recorded run: one traced decode step, and who ran in every step."""
from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .memory import REQ_COLORS
from .run import MAX_BATCH_TOKENS, WORKLOAD, EngineRun


def decode_step(run: EngineRun) -> int:
    """The busiest step in which every request decoded one token (the latest, if several)."""
    decodes = [(len(items), i) for i, items in enumerate(run.steps) if items and not any(s.prefill for s in items)]
    if not decodes:
        raise ValueError("the recorded run has no decode-only step")
    return max(decodes)[1]


def timeline(run: EngineRun) -> Figure:
    step = decode_step(run)
    fig = Figure(figsize=(12, 5))
    top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1.3, 1]})
    run.timeline.plot_step(step, ax=top)
    top.set_title(f"{run.model}, step {step}: {len(run.steps[step])} requests decode one token each "
                  f"({top.get_title().split(': ')[-1]})", fontsize=11)
    ops = sorted(run.timeline.totals(depth=2, step=step).items(), key=lambda kv: kv[1])
    total = sum(t for _, t in ops)
    bottom.barh([n for n, _ in ops], [t * 1e3 for _, t in ops], color="#1f5fa8")
    for i, (_, t) in enumerate(ops):
        bottom.text(t * 1e3, i, f" {t / total:.0%}", va="center", fontsize=8)
    bottom.set_xlabel(f"ms in this step, summed over {run.config.num_layers} layers")
    bottom.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig


def batching(run: EngineRun) -> Figure:
    fig = Figure(figsize=(12, 4.6))
    ax = fig.add_subplot()
    for step, items in enumerate(run.steps):
        bottom = 0
        for item in items:
            ax.bar(step, item.tokens, bottom=bottom, color=REQ_COLORS[item.req], hatch="//" if item.prefill else None,
                   edgecolor="white", width=0.8)
            if item.tokens > 2:
                ax.text(step, bottom + item.tokens / 2, item.req, ha="center", va="center", color="white", fontsize=9)
            bottom += item.tokens
    arrivals: dict[int, list[str]] = {}
    for arrive, name, _, prompt, new in WORKLOAD:
        arrivals.setdefault(arrive, []).append(f"{name}: {prompt} + {new} tokens")
    for arrive, lines in arrivals.items():
        ax.annotate("arrive\n" + "\n".join(lines), (arrive - 0.4, MAX_BATCH_TOKENS + 1), fontsize=8, va="bottom",
                    xytext=(arrive - 0.4, MAX_BATCH_TOKENS + 4), arrowprops={"arrowstyle": "-"})
    ax.axhline(MAX_BATCH_TOKENS, color="#b3412a", ls="--", lw=1.2)
    ax.text(len(run.steps) - 0.5, MAX_BATCH_TOKENS + 0.5, f"token budget {MAX_BATCH_TOKENS}", ha="right", va="bottom",
            color="#b3412a", fontsize=9)
    ax.set(xlabel="step (one forward pass)", ylabel="tokens computed", ylim=(0, MAX_BATCH_TOKENS + 16),
           xticks=range(len(run.steps)))
    ax.legend(handles=[Patch(fc=c, label=f"request {r}") for r, c in REQ_COLORS.items()] +
              [Patch(fc="white", ec="black", hatch="//", label="prompt (prefill) tokens")], fontsize=8, ncol=5,
              loc="upper right")
    ax.set_title(f"{run.model}: continuous batching with chunked prefill (the recorded run)", fontsize=11)
    fig.tight_layout()
    return fig
