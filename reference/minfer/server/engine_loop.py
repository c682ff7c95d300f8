"""One thread owns the engine; asyncio handlers talk to it through an inbox and per-request queues.

The engine is not thread-safe, so nothing but this thread calls into it. Handlers post commands
(add, abort) to the inbox; the thread runs them between steps, steps while any request is
unfinished, and hands each request's new text to that request's asyncio queue with
`call_soon_threadsafe`. With no work it sleeps on a condition variable: an idle server spends no CPU.
Requests from every client join the same continuous batch, because they all reach the same `LLM`.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from ..core import SamplingParams
from ..engine import LLM, Prompt


@dataclass
class Event:
    text: str  # new text; a tail that may still become a stop string is held back
    completion_tokens: int  # output tokens so far
    finish_reason: str | None = None  # "stop" | "length" on the last event


@dataclass
class Stream:
    """The asyncio side of one request: its Events (or the exception that ended it) arrive in `queue`."""

    req_id: int
    prompt_tokens: int
    queue: asyncio.Queue

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            item = await self.queue.get()
            if isinstance(item, Exception):
                raise item
            yield item
            if item.finish_reason is not None:
                return


@dataclass(frozen=True)
class Stats:
    """A snapshot the loop thread publishes after each iteration (replaced whole, never half-updated)."""

    running: int = 0
    waiting: int = 0
    peak_batch: int = 0  # most requests that received a token in one step
    aborted: int = 0  # requests whose client went away before they finished
    kv_free_blocks: int = 0
    kv_total_blocks: int = 0


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the event loop is closed: the server is shutting down, nobody listens
        pass


class EngineLoop:
    def __init__(self, llm: LLM) -> None:
        self.llm = llm
        self.stats = Stats()
        self._cv = threading.Condition()
        self._inbox: list[Callable[[], None]] = []
        self._stopping = False
        self._open: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}  # loop thread only
        self._thread = threading.Thread(target=self._run, name="minfer-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join()

    # -- called from the event loop ------------------------------------------------------------
    async def submit(self, prompt: Prompt, params: SamplingParams) -> Stream:
        """Queue a request; raises the engine's ValueError (prompt too long, ...) before any output."""
        loop = asyncio.get_running_loop()
        accepted: asyncio.Future[Stream] = loop.create_future()
        queue: asyncio.Queue = asyncio.Queue()

        def add() -> None:
            try:
                req_id = self.llm.add_request(prompt, params)
            except Exception as e:  # noqa: BLE001  (the handler decides what the client hears)
                _post(loop, self._settle, accepted, e)
                return
            self._open[req_id] = (loop, queue)
            _post(loop, self._settle, accepted, Stream(req_id, len(self.llm.reqs[req_id].prompt_ids), queue))

        self._command(add)
        return await accepted

    def _settle(self, accepted: asyncio.Future, result: Stream | Exception) -> None:
        if accepted.cancelled():  # the client left while the request was being queued
            if isinstance(result, Stream):
                self.abort(result.req_id)
        elif isinstance(result, Exception):
            accepted.set_exception(result)
        else:
            accepted.set_result(result)

    def abort(self, req_id: int) -> None:
        """Stop a request and free its KV blocks; a no-op once it has finished."""
        self._command(lambda: self._finish(req_id, None))

    def _command(self, fn: Callable[[], None]) -> None:
        with self._cv:
            self._inbox.append(fn)
            self._cv.notify()

    # -- the loop thread -------------------------------------------------------------------------
    def _run(self) -> None:
        self._publish_stats()
        while True:
            with self._cv:
                while not (self._inbox or self._stopping or self.llm.has_unfinished()):
                    self._cv.wait()
                if self._stopping:
                    break
                commands, self._inbox = self._inbox, []
            for command in commands:
                command()
            if self.llm.has_unfinished():
                self._step()
            self._publish_stats()
        for req_id in list(self._open):  # leave the engine clean for whoever uses it next
            self._finish(req_id, RuntimeError("the server is shutting down"))

    def _step(self) -> None:
        try:
            reqs = self.llm.step()
        except Exception as e:  # report it to every waiting client rather than hang them
            for req_id in list(self._open):
                self._finish(req_id, e)
            return
        self.stats = replace(self.stats, peak_batch=max(self.stats.peak_batch, len(reqs)))
        for req in reqs:
            if req.req_id not in self._open:
                continue
            event = Event(self.llm.output.stream_delta(req), len(req.output_ids), req.finish_reason)
            loop, queue = self._open[req.req_id]
            if req.finished:
                del self._open[req.req_id]
                self.llm.pop_output(req.req_id)
            _post(loop, queue.put_nowait, event)

    def _finish(self, req_id: int, error: Exception | None) -> None:
        """End an open request early: the client left (error None), or the engine failed."""
        if req_id not in self._open:
            return
        loop, queue = self._open.pop(req_id)
        self.llm.abort(req_id)
        self.llm.pop_output(req_id)
        if error is None:
            self.stats = replace(self.stats, aborted=self.stats.aborted + 1)
        else:
            _post(loop, queue.put_nowait, error)

    def _publish_stats(self) -> None:
        pool, scheduler = self.llm.kv.pool, self.llm.scheduler
        self.stats = replace(self.stats, running=len(scheduler.running), waiting=len(scheduler.waiting),
                             kv_free_blocks=pool.num_free, kv_total_blocks=pool.num_blocks)
