"""The shared vocabulary of the engine: what a request is, how it should be sampled, what comes out.

Every module speaks in these types, so they are defined once, here. Quantities that can be
derived (how many tokens are still to be computed, how long a sequence is) are properties, so
each is defined exactly once.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch


@dataclass
class SamplingParams:
    """How to turn logits into tokens and when to stop (vLLM's names, so habits carry over)."""

    temperature: float = 1.0  # 0 means greedy
    top_k: int = -1  # -1 or 0: no top-k filter
    top_p: float = 1.0
    seed: int | None = None  # per-request: the same seed gives the same tokens, whatever the batch
    max_tokens: int = 16
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"SamplingParams.{name}={getattr(self, name)!r} is invalid: {why}")

        if not _is_number(self.temperature) or not math.isfinite(self.temperature) or self.temperature < 0:
            raise bad("temperature", "must be a finite number >= 0 (0 means greedy)")
        if not _is_int(self.top_k) or (self.top_k < 0 and self.top_k != -1):
            raise bad("top_k", "must be an integer >= 1, or -1/0 to disable")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise bad("top_p", "must be in (0, 1]")
        if self.seed is not None and not _is_int(self.seed):
            raise bad("seed", "must be an integer or None")
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise bad("max_tokens", "must be an integer >= 1")
        if not isinstance(self.stop, list) or not all(isinstance(s, str) and s for s in self.stop):
            raise bad("stop", "must be a list of non-empty strings")
        if not isinstance(self.ignore_eos, bool):
            raise bad("ignore_eos", "must be True or False")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SamplingParams":
        """Build from user input, rejecting unknown names instead of silently ignoring them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown sampling field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class Status(enum.Enum):
    WAITING = "waiting"  # queued; holds no KV blocks
    RUNNING = "running"  # holds KV blocks; prefilling or decoding
    FINISHED = "finished"


@dataclass
class Req:
    """One request as it moves through the engine."""

    req_id: int
    prompt_ids: list[int]
    params: SamplingParams
    output_ids: list[int] = field(default_factory=list)
    num_computed: int = 0  # tokens whose K/V are already in the cache
    num_cached: int = 0  # of those, how many came from the prefix cache (not computed by us)
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)  # chained hashes of the full blocks
    status: Status = Status.WAITING
    finish_reason: str | None = None  # "stop" | "length" | "abort"
    generator: torch.Generator | None = None

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    @property
    def seq_len(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def extend_len(self) -> int:
        """Tokens that still need a forward pass before the next token can be sampled."""
        return self.seq_len - self.num_computed

    @property
    def finished(self) -> bool:
        return self.status is Status.FINISHED


@dataclass
class ScheduledReq:
    """A request's share of one step: `num_tokens` new tokens starting at `req.num_computed`."""

    req: Req
    num_tokens: int

    @property
    def start(self) -> int:
        return self.req.num_computed

    @property
    def end(self) -> int:
        return self.req.num_computed + self.num_tokens

    @property
    def samples(self) -> bool:
        """True when this chunk reaches the end of the sequence, so its last logits give a token."""
        return self.end == self.req.seq_len


@dataclass
class Batch:
    """What the scheduler hands to the model for one forward pass."""

    items: list[ScheduledReq]

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.items)

    @property
    def sampling(self) -> list[ScheduledReq]:
        return [s for s in self.items if s.samples]


@dataclass
class RequestOutput:
    """What the user gets back (vLLM-like: `outs[0].text`, `outs[0].token_ids`)."""

    req_id: int
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str | None
    finished: bool
