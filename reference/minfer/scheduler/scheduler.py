"""Continuous batching with chunked prefill.

Each step the scheduler fills a token budget: first one token for every decoding request (so
running requests never stall behind a long prompt), then chunks of prompts still being prefilled,
then new requests from the queue. Requests join and leave between any two steps. When the KV pool
runs dry, the youngest running request is preempted: its blocks are freed and it is requeued at the
front, to be recomputed (mostly from the prefix cache) when space returns.
"""
from __future__ import annotations

from collections import deque

from ..core import Batch, Req, ScheduledReq, Status
from ..memory.kv_cache import KVCache


class Scheduler:
    def __init__(self, kv: KVCache, max_batch_tokens: int = 1024, max_running: int = 64,
                 chunked_prefill: bool = True):
        if max_batch_tokens < max_running:
            raise ValueError("max_batch_tokens must be >= max_running so every running request can decode")
        self.kv = kv
        self.max_batch_tokens = max_batch_tokens
        self.max_running = max_running
        self.chunked_prefill = chunked_prefill
        self.waiting: deque[Req] = deque()
        self.running: list[Req] = []
        self.num_preemptions = 0

    def add(self, req: Req) -> None:
        self.waiting.append(req)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> Batch | None:
        items: list[ScheduledReq] = []
        budget = self.max_batch_tokens
        decoding = [r for r in self.running if r.extend_len == 1]
        prefilling = [r for r in self.running if r.extend_len > 1]
        for req in decoding + prefilling:
            if budget == 0 or req.status is not Status.RUNNING:  # preempted earlier in this loop
                continue
            n = min(req.extend_len, budget)
            if not self._reserve(req, req.num_computed + n, items):
                continue
            items.append(ScheduledReq(req, n))
            budget -= n
        while self.waiting and budget > 0 and len(self.running) < self.max_running:
            req = self.waiting[0]
            if not req.block_table and self.kv.pool.enable_prefix_cache:
                self.kv.match_prefix(req)
            n = min(req.extend_len, budget)
            if (n < req.extend_len and not self.chunked_prefill) or not self.kv.can_allocate(req, req.num_computed + n):
                # a waiting request must hold no blocks, or waiting requests could starve the pool;
                # its matched blocks stay in the prefix cache, so the next try finds them again
                self.kv.release(req)
                req.num_computed = req.num_cached = 0
                break
            self.kv.allocate(req, req.num_computed + n)
            self.waiting.popleft()
            req.status = Status.RUNNING
            self.running.append(req)
            items.append(ScheduledReq(req, n))
            budget -= n
        return Batch(items) if items else None

    def advance(self, batch: Batch) -> None:
        """After the forward pass: the batch's tokens now have their K/V in the cache, and blocks that
        became full join the prefix cache, where later requests with the same tokens find them."""
        for item in batch.items:
            item.req.num_computed += item.num_tokens
            self.kv.commit(item.req)

    def _reserve(self, req: Req, num_tokens: int, scheduled: list[ScheduledReq]) -> bool:
        """Make room for `req` to hold `num_tokens`, preempting younger requests; False if `req` itself went."""
        while not self.kv.can_allocate(req, num_tokens):
            victim = next(r for r in reversed(self.running) if all(s.req is not r for s in scheduled))
            self.preempt(victim)
            if victim is req:
                return False
        self.kv.allocate(req, num_tokens)
        return True

    def preempt(self, req: Req) -> None:
        self.running.remove(req)
        self.kv.release(req)
        req.num_computed = req.num_cached = 0
        req.status = Status.WAITING
        self.waiting.appendleft(req)
        self.num_preemptions += 1

    def finish(self, req: Req, reason: str) -> None:
        if req in self.running:
            self.running.remove(req)
        elif req in self.waiting:
            self.waiting.remove(req)
        self.kv.release(req)
        req.status = Status.FINISHED
        req.finish_reason = reason
